//! DiffusionInst's dynamic mask head: each detection's 153 controller outputs are the weights
//! of three 1×1 convolutions (8→8, 8→8, 8→1, ReLU between) run over the image's mask features,
//! stored `[W0 (8×8) | W1 (8×8) | W2 (1×8) | b0 (8) | b1 (8) | b2 (1)]` with weights
//! `[out, in]` row-major. The original runs them as a grouped convolution; on a CubeCL device
//! the `maskforge-shaders` kernel runs all three per (instance, pixel) in registers, elsewhere
//! they are one batched matrix product per layer.

use burn::tensor::activation::{relu, sigmoid};
use burn::tensor::{DType, Tensor, TensorData};

use super::head::{KERNEL_PARAMS, MASK_CHANNELS};

const C: usize = MASK_CHANNELS;

/// The mask probabilities of `K` instances of one image.
///
/// # Shapes
/// `mask_feat`: `[8, H, W]`, `kernels`: `[K·153]` row-major → `[K, H, W]`
pub fn instance_masks(mask_feat: Tensor<3>, kernels: &[f32]) -> Tensor<3> {
    let [_, h, w] = mask_feat.dims();
    let k = kernels.len() / KERNEL_PARAMS;
    let device = mask_feat.device();
    if k > 0 && maskforge_shaders::resample::is_cube_device(&device) {
        let params =
            Tensor::<1>::from_data(TensorData::new(kernels.to_vec(), [kernels.len()]), &device);
        let features = mask_feat.clone().cast(DType::F32).reshape([C, h * w]);
        if let Some(masks) =
            maskforge_shaders::dynamic_mask_head::dynamic_mask_head(features, params)
        {
            return masks.reshape([k, h, w]);
        }
    }
    let part = |offset: usize, rows: usize, cols: usize| {
        let mut values = Vec::with_capacity(k * rows * cols);
        for params in kernels.chunks_exact(KERNEL_PARAMS) {
            values.extend_from_slice(&params[offset..offset + rows * cols]);
        }
        Tensor::<3>::from_data(TensorData::new(values, [k, rows, cols]), &device)
    };
    let (w0, w1, w2) = (part(0, C, C), part(C * C, C, C), part(2 * C * C, 1, C));
    let biases = 2 * C * C + C;
    let (b0, b1, b2) = (
        part(biases, C, 1),
        part(biases + C, C, 1),
        part(biases + 2 * C, 1, 1),
    );
    let x = mask_feat.reshape([1, C, h * w]).expand([k, C, h * w]);
    let x = relu(w0.matmul(x) + b0);
    let x = relu(w1.matmul(x) + b1);
    sigmoid(w2.matmul(x) + b2).reshape([k, h, w])
}
