//! Nearest colour per pixel: the index of the candidate colour at the smallest squared RGB
//! distance (ties to the lowest index), or the candidate count when even that one is farther
//! than a limit. Colours are whole numbers held in f32, so every distance is exact and the
//! result equals an integer search on the host.

use burn::backend::wgpu::CubeTensor;
use burn::backend::{Dispatch, TensorMetadata};
use burn::tensor::{Shape, Tensor};

use crate::ops::KernelOps;
use crate::resample::is_cube_device;
use cubecl::prelude::CubeDim;

mod kernel {
    use cubecl::prelude::*;

    #[cube(launch)]
    pub fn nearest_color(
        pixels: &Tensor<f32>,
        colors: &Tensor<f32>,
        output: &mut Tensor<f32>,
        max_d2: f32,
    ) {
        if ABSOLUTE_POS >= output.shape(0) {
            terminate!();
        }
        let r = pixels[ABSOLUTE_POS * 3];
        let g = pixels[ABSOLUTE_POS * 3 + 1];
        let b = pixels[ABSOLUTE_POS * 3 + 2];
        let k = colors.shape(0);
        let mut best = 1.0e9f32;
        let mut best_i = 0usize;
        for i in 0..k {
            let dr = r - colors[i * 3];
            let dg = g - colors[i * 3 + 1];
            let db = b - colors[i * 3 + 2];
            let d2 = dr * dr + dg * dg + db * db;
            if d2 < best {
                best = d2;
                best_i = i;
            }
        }
        if best > max_d2 {
            best_i = k;
        }
        output[ABSOLUTE_POS] = f32::cast_from(best_i);
    }
}

/// For each pixel of `pixels` (`[n, 3]`, RGB as whole f32, contiguous, on a wgpu device) the
/// index of the nearest of `colors` (`[k, 3]`, likewise), ties to the lowest index, or `k` when
/// its squared distance exceeds `max_d2` (a whole number). `None` for tensors not on a CubeCL
/// device.
///
/// # Shapes
/// `pixels`: `[n, 3]`, `colors`: `[k, 3]` → `[n]`
pub fn nearest_color(pixels: Tensor<2>, colors: Tensor<2>, max_d2: f32) -> Option<Tensor<1>> {
    if !is_cube_device(&pixels.device()) {
        return None;
    }
    Some(Tensor::from_dispatch(Dispatch::nearest_color(
        pixels.into_dispatch(),
        colors.into_dispatch(),
        max_d2,
    )))
}

/// Launches the kernel on CubeCL tensors (see [`KernelOps::nearest_color`]).
pub(crate) fn launch(pixels: CubeTensor, colors: CubeTensor, max_d2: f32) -> CubeTensor {
    let n = pixels.shape()[0];
    let client = pixels.client.clone();
    let output = CubeTensor::new_contiguous(
        client.clone(),
        pixels.device.clone(),
        Shape::new([n]),
        client.empty(n * std::mem::size_of::<f32>()),
        pixels.dtype,
    );
    let dim = CubeDim::new(&client, n);
    let count = cubecl::calculate_cube_count_elemwise(&client, n, dim);
    kernel::nearest_color::launch(
        &client,
        count,
        dim,
        pixels.into_tensor_arg(),
        colors.into_tensor_arg(),
        output.clone().into_tensor_arg(),
        max_d2,
    );
    output
}
