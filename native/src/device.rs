//! Choosing the burn device and dtype from `--device` and `--dtype`.

use anyhow::{Result, bail};
use burn::tensor::{DType, Device};
use clap::ValueEnum;

/// `--device`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeviceArg {
    /// burn's multi-threaded CPU backend (flex).
    Cpu,
    /// burn's wgpu backend (Vulkan, Metal, DX12).
    Wgpu,
    /// wgpu on a hardware adapter if there is one, else the CPU.
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
    pub name: &'static str,
    pub dtype: DType,
}

/// Opens the device asked for. `auto` takes wgpu only on a hardware adapter: a software Vulkan
/// (lavapipe) is far slower than the CPU backend.
pub fn select(device: DeviceArg, dtype: DTypeArg) -> Result<Selected> {
    let (device, name) = match device {
        DeviceArg::Cpu => (Device::flex(), "cpu"),
        DeviceArg::Wgpu => match Device::wgpu_options().init() {
            Ok(d) => (d, "wgpu"),
            Err(e) => bail!("--device wgpu: no usable wgpu adapter ({e})"),
        },
        DeviceArg::Auto => match hardware_adapter().then(|| Device::wgpu_options().init()) {
            Some(Ok(d)) => (d, "wgpu"),
            _ => (Device::flex(), "cpu"),
        },
    };
    let dtype = match dtype {
        DTypeArg::F32 => DType::F32,
        DTypeArg::F16 if name == "wgpu" && device.supports_dtype(DType::F16) => DType::F16,
        DTypeArg::F16 => {
            bail!("--dtype f16 needs a wgpu adapter with 16-bit float support; use --dtype f32")
        }
    };
    Ok(Selected {
        device,
        name,
        dtype,
    })
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
