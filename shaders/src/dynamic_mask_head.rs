//! DiffusionInst's dynamic mask head: per instance, three 1×1 convolutions (8→8, ReLU, 8→8,
//! ReLU, 8→1) whose weights are that instance's 153 controller outputs, then a sigmoid. One
//! thread per (instance, pixel): it reads the pixel's 8 mask-feature channels once and keeps
//! the hidden activations in registers, so nothing `[K, 8, H, W]`-sized is ever stored.

use burn::backend::wgpu::CubeTensor;
use burn::backend::{Dispatch, TensorMetadata};
use burn::tensor::{Shape, Tensor};

use crate::ops::KernelOps;
use crate::resample::is_cube_device;
use cubecl::prelude::CubeDim;

/// Mask-feature channels.
pub const CHANNELS: usize = 8;
/// Parameters per instance: `[W0 (8×8) | W1 (8×8) | W2 (1×8) | b0 (8) | b1 (8) | b2 (1)]`,
/// weights `[out, in]` row-major.
pub const PARAMS: usize = 153;

mod kernel {
    use cubecl::prelude::*;

    #[cube(launch)]
    pub fn dynamic_mask_head(
        features: &Tensor<f32>,
        kernels: &Tensor<f32>,
        output: &mut Tensor<f32>,
    ) {
        let pixels = features.shape(1);
        if ABSOLUTE_POS >= output.shape(0) * pixels {
            terminate!();
        }
        let p = ABSOLUTE_POS % pixels;
        let k = ABSOLUTE_POS / pixels;
        let base = k * 153;
        let mut x = Array::<f32>::new(8usize);
        for c in 0..8usize {
            x[c] = features[c * pixels + p];
        }
        let mut h1 = Array::<f32>::new(8usize);
        for o in 0..8usize {
            let mut acc = kernels[base + 136 + o];
            for c in 0..8usize {
                acc += kernels[base + o * 8 + c] * x[c];
            }
            h1[o] = f32::max(acc, 0.0f32);
        }
        let mut h2 = Array::<f32>::new(8usize);
        for o in 0..8usize {
            let mut acc = kernels[base + 144 + o];
            for c in 0..8usize {
                acc += kernels[base + 64 + o * 8 + c] * h1[c];
            }
            h2[o] = f32::max(acc, 0.0f32);
        }
        let mut logit = kernels[base + 152];
        for c in 0..8usize {
            logit += kernels[base + 128 + c] * h2[c];
        }
        output[ABSOLUTE_POS] = 1.0f32 / (1.0f32 + f32::exp(-logit));
    }
}

/// The mask probabilities of `K` instances (on a wgpu device). `None` for tensors not on a
/// CubeCL device.
///
/// # Shapes
/// `features`: `[8, H·W]`, `kernels`: `[K·153]` → `[K, H·W]` (K ≥ 1)
pub fn dynamic_mask_head(features: Tensor<2>, kernels: Tensor<1>) -> Option<Tensor<2>> {
    let [channels, _] = features.dims();
    assert_eq!(channels, CHANNELS, "mask features have 8 channels");
    if !is_cube_device(&features.device()) {
        return None;
    }
    Some(Tensor::from_dispatch(Dispatch::dynamic_mask_head(
        features.into_dispatch(),
        kernels.into_dispatch(),
    )))
}

/// Launches the kernel on CubeCL tensors (see [`KernelOps::dynamic_mask_head`]).
pub(crate) fn launch(features: CubeTensor, kernels: CubeTensor) -> CubeTensor {
    let pixels = features.shape()[1];
    let instances = kernels.shape()[0] / PARAMS;
    let client = features.client.clone();
    let n = instances * pixels;
    let output = CubeTensor::new_contiguous(
        client.clone(),
        features.device.clone(),
        Shape::new([instances, pixels]),
        client.empty(n * std::mem::size_of::<f32>()),
        features.dtype,
    );
    let dim = CubeDim::new(&client, n);
    let count = cubecl::calculate_cube_count_elemwise(&client, n, dim);
    kernel::dynamic_mask_head::launch(
        &client,
        count,
        dim,
        features.into_tensor_arg(),
        kernels.into_tensor_arg(),
        output.clone().into_tensor_arg(),
    );
    output
}
