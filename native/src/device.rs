//! Choosing the burn device and dtype from `--device` and `--dtype`.
//!
//! Every backend is a value of `--device` in every build; one this build was compiled without
//! (`vulkan`, `metal`, `cuda` are cargo features of the CLI) is refused with the feature to
//! rebuild with, and `auto` skips it.

use anyhow::{Result, bail};
use burn::backend::{Backend, Dispatch};
use burn::tensor::{DType, Device};
use clap::ValueEnum;

/// `--device`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeviceArg {
    /// burn's multi-threaded CPU backend (flex).
    Cpu,
    /// burn's wgpu backend on whichever graphics API the adapter offers (WGSL; SPIR-V on Vulkan
    /// in a build with the `vulkan` feature).
    Wgpu,
    /// wgpu pinned to Vulkan with burn's SPIR-V compiler (subgroups, cooperative matrices).
    /// Needs the `vulkan` feature.
    Vulkan,
    /// wgpu pinned to Metal with burn's MSL compiler. Needs the `metal` feature.
    Metal,
    /// burn's CUDA backend. Needs the `cuda` feature and an NVIDIA driver.
    Cuda,
    /// The fastest backend this build has and this machine offers: CUDA, then Vulkan or Metal
    /// on a hardware adapter, then wgpu on a hardware adapter, else the CPU.
    Auto,
}

/// `--dtype`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DTypeArg {
    F32,
    F16,
}

/// The chosen device, its name for reports, and the dtype to run in.
pub struct Selected {
    pub device: Device,
    /// The `--device` value it answers to (`auto` resolved).
    pub name: &'static str,
    pub dtype: DType,
}

impl Selected {
    /// burn's name for the backend stack, compiler included: `…wgpu<wgsl>…`, `…wgpu<spirv>…`.
    pub fn runtime(&self) -> String {
        Dispatch::name(self.device.as_dispatch())
    }
}

/// Opens the device asked for. `auto` takes a GPU backend only on a hardware adapter: a software
/// Vulkan (lavapipe) is far slower than the CPU backend.
pub fn select(device: DeviceArg, dtype: DTypeArg) -> Result<Selected> {
    let (device, name) = match device {
        DeviceArg::Cpu => (Device::flex(), "cpu"),
        DeviceArg::Auto => auto(),
        gpu => (open(gpu)?, name(gpu)),
    };
    let dtype = match dtype {
        DTypeArg::F32 => DType::F32,
        DTypeArg::F16 if name != "cpu" && device.supports_dtype(DType::F16) => DType::F16,
        DTypeArg::F16 => bail!(
            "--dtype f16 needs a GPU device with 16-bit float support ({name} has none); use --dtype f32"
        ),
    };
    Ok(Selected {
        device,
        name,
        dtype,
    })
}

fn name(device: DeviceArg) -> &'static str {
    match device {
        DeviceArg::Cpu => "cpu",
        DeviceArg::Wgpu => "wgpu",
        DeviceArg::Vulkan => "vulkan",
        DeviceArg::Metal => "metal",
        DeviceArg::Cuda => "cuda",
        DeviceArg::Auto => "auto",
    }
}

/// The backends `auto` tries, fastest first, each only where this build has it.
fn auto() -> (Device, &'static str) {
    let mut order = Vec::new();
    if cfg!(feature = "cuda") {
        order.push(DeviceArg::Cuda);
    }
    if hardware_adapter() {
        if cfg!(feature = "vulkan") {
            order.push(DeviceArg::Vulkan);
        }
        if cfg!(feature = "metal") {
            order.push(DeviceArg::Metal);
        }
        order.push(DeviceArg::Wgpu);
    }
    order
        .into_iter()
        .find_map(|d| open(d).ok().map(|device| (device, name(d))))
        .unwrap_or((Device::flex(), "cpu"))
}

/// Initialises a GPU backend, or says why it cannot.
fn open(device: DeviceArg) -> Result<Device> {
    use burn::tensor::wgpu::WgpuBackend;
    let wgpu = |api: WgpuBackend| {
        Device::wgpu_options()
            .graphics_api(api)
            .init()
            .map_err(|e| anyhow::anyhow!("--device {}: no usable adapter ({e})", name(device)))
    };
    match device {
        DeviceArg::Wgpu => wgpu(WgpuBackend::Auto),
        #[cfg(feature = "vulkan")]
        DeviceArg::Vulkan => wgpu(WgpuBackend::Vulkan),
        #[cfg(not(feature = "vulkan"))]
        DeviceArg::Vulkan => Err(missing("vulkan")),
        #[cfg(feature = "metal")]
        DeviceArg::Metal => wgpu(WgpuBackend::Metal),
        #[cfg(not(feature = "metal"))]
        DeviceArg::Metal => Err(missing("metal")),
        #[cfg(feature = "cuda")]
        DeviceArg::Cuda => cuda(),
        #[cfg(not(feature = "cuda"))]
        DeviceArg::Cuda => Err(missing("cuda")),
        DeviceArg::Cpu | DeviceArg::Auto => unreachable!("not a GPU backend"),
    }
}

/// The error for a backend this build was compiled without.
#[cfg(not(all(feature = "vulkan", feature = "metal", feature = "cuda")))]
fn missing(feature: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "--device {feature}: this maskforge was built without the `{feature}` feature; \
         rebuild it with `cargo install --path native --features {feature}`"
    )
}

/// The first CUDA device, opened now so that a machine without a driver is an error here and
/// not a panic at the first tensor.
#[cfg(feature = "cuda")]
fn cuda() -> Result<Device> {
    let device = Device::cuda(0);
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| device.identity())) {
        Ok(Some(_)) => Ok(device),
        _ => bail!("--device cuda: no usable CUDA device (is the NVIDIA driver installed?)"),
    }
}

/// Whether wgpu sees an adapter that is not a CPU (software) implementation.
fn hardware_adapter() -> bool {
    use burn::tensor::wgpu::wgpu;
    let instance = wgpu::Instance::default();
    let adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
    adapters
        .iter()
        .any(|a| a.get_info().device_type != wgpu::DeviceType::Cpu)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backend_left_out_of_the_build_is_refused_with_the_feature_to_add() {
        for (arg, feature, built) in [
            (DeviceArg::Vulkan, "vulkan", cfg!(feature = "vulkan")),
            (DeviceArg::Metal, "metal", cfg!(feature = "metal")),
            (DeviceArg::Cuda, "cuda", cfg!(feature = "cuda")),
        ] {
            if built {
                continue;
            }
            let err = select(arg, DTypeArg::F32)
                .err()
                .expect("refused")
                .to_string();
            assert!(err.contains(&format!("--features {feature}")), "{err}");
        }
    }

    #[test]
    fn the_cpu_refuses_f16_and_names_its_runtime() {
        let err = select(DeviceArg::Cpu, DTypeArg::F16)
            .err()
            .expect("refused");
        assert!(err.to_string().contains("--dtype f32"), "{err}");
        let cpu = select(DeviceArg::Cpu, DTypeArg::F32).unwrap();
        assert!(cpu.runtime().contains("flex"), "{}", cpu.runtime());
    }
}
