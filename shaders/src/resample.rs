//! One separable resampling pass along rows, with per-output-column taps computed on the host:
//! `out[y, x] = clamp(floor(Σ_i in[y, start[x] + i] · w[x, i] + 0.5), 0, 255)`. Two passes
//! (rows, then the transposed image) give Pillow's 8-bit bicubic resize with its 8-bit rounding
//! between passes.

use burn::backend::wgpu::CubeTensor;
use burn::backend::{Dispatch, DispatchDevice, TensorMetadata};
use burn::tensor::Device;
use burn::tensor::{Shape, Tensor, TensorData};

use crate::ops::KernelOps;
use cubecl::prelude::CubeDim;

mod kernel {
    use cubecl::prelude::*;

    #[cube(launch)]
    pub fn resample_rows(
        input: &Tensor<f32>,
        starts: &Tensor<f32>,
        weights: &Tensor<f32>,
        output: &mut Tensor<f32>,
        taps: u32,
    ) {
        let out_w = output.shape(1);
        if ABSOLUTE_POS >= output.shape(0) * out_w {
            terminate!();
        }
        let y = ABSOLUTE_POS / out_w;
        let x = ABSOLUTE_POS % out_w;
        let in_w = input.shape(1);
        let start = usize::cast_from(starts[x]);
        let taps = taps as usize;
        let mut acc = 0.0f32;
        for i in 0..taps {
            let mut col = start + i;
            if col >= in_w {
                col = in_w - 1;
            }
            acc += input[y * input.stride(0) + col * input.stride(1)] * weights[x * taps + i];
        }
        let mut v = f32::floor(acc + 0.5);
        if v < 0.0 {
            v = 0.0;
        }
        if v > 255.0 {
            v = 255.0;
        }
        output[ABSOLUTE_POS] = v;
    }
}

/// Whether `device` runs CubeCL kernels (wgpu), so the kernels here apply.
pub fn is_cube_device(device: &Device) -> bool {
    matches!(device.as_dispatch(), DispatchDevice::Cube(_))
}

/// Resamples each row of `input` (`[h, w]`, 8-bit values as f32, on a wgpu device) to
/// `starts.len()` columns: output column `x` sums `weights[x]` over input columns
/// `starts[x]..`. Returns `None` for tensors not on a CubeCL device.
///
/// # Shapes
/// `input`: `[h, w]`, `weights`: `out_w` rows of equal length → `[h, out_w]`
pub fn resample_rows(
    input: Tensor<2>,
    starts: &[usize],
    weights: &[Vec<f32>],
) -> Option<Tensor<2>> {
    let device = input.device();
    if !is_cube_device(&device) {
        return None;
    }
    let out_w = starts.len();
    let taps = weights.iter().map(Vec::len).max().unwrap_or(0);
    let mut flat = vec![0f32; out_w * taps];
    for (x, w) in weights.iter().enumerate() {
        flat[x * taps..x * taps + w.len()].copy_from_slice(w);
    }
    let starts = Tensor::<1>::from_data(
        TensorData::new(
            starts.iter().map(|&s| s as f32).collect::<Vec<_>>(),
            [out_w],
        ),
        &device,
    );
    let weights = Tensor::<1>::from_data(TensorData::new(flat, [out_w * taps]), &device);
    Some(Tensor::from_dispatch(Dispatch::resample_rows(
        input.into_dispatch(),
        starts.into_dispatch(),
        weights.into_dispatch(),
        taps as u32,
    )))
}

/// Launches the kernel on CubeCL tensors (see [`KernelOps::resample_rows`]).
pub(crate) fn launch(
    input: CubeTensor,
    starts: CubeTensor,
    weights: CubeTensor,
    taps: u32,
) -> CubeTensor {
    let client = input.client.clone();
    let [h, out_w] = [input.shape()[0], starts.shape()[0]];
    let n = h * out_w;
    let output = CubeTensor::new_contiguous(
        client.clone(),
        input.device.clone(),
        Shape::new([h, out_w]),
        client.empty(n * std::mem::size_of::<f32>()),
        input.dtype,
    );
    let dim = CubeDim::new(&client, n);
    let count = cubecl::calculate_cube_count_elemwise(&client, n, dim);
    kernel::resample_rows::launch(
        &client,
        count,
        dim,
        input.into_tensor_arg(),
        starts.into_tensor_arg(),
        weights.into_tensor_arg(),
        output.clone().into_tensor_arg(),
        taps,
    );
    output
}
