//! ROIAlign as torchvision's `roi_align`: one thread per output value, averaging bilinear
//! samples of its bin with torchvision's border rules (samples beyond one pixel outside are 0,
//! others are clamped to the map) and its float32 arithmetic in the same order.

use burn::backend::wgpu::CubeTensor;
use burn::backend::{Dispatch, TensorMetadata};
use burn::tensor::{Shape, Tensor};
use cubecl::prelude::CubeDim;

use crate::ops::KernelOps;
use crate::resample::is_cube_device;

mod kernel {
    use cubecl::prelude::*;

    /// Bilinear value of `plane` (starting at `base`) at `(y, x)`, torchvision's rules.
    #[cube]
    fn bilinear(
        input: &Tensor<f32>,
        base: usize,
        height: usize,
        width: usize,
        y_in: f32,
        x_in: f32,
    ) -> f32 {
        let mut value = 0.0f32;
        if !(y_in < -1.0f32
            || y_in > f32::cast_from(height)
            || x_in < -1.0f32
            || x_in > f32::cast_from(width))
        {
            let mut y = f32::max(y_in, 0.0f32);
            let mut x = f32::max(x_in, 0.0f32);
            let mut y_low = usize::cast_from(y);
            let mut x_low = usize::cast_from(x);
            let mut y_high = y_low + 1;
            let mut x_high = x_low + 1;
            if y_low >= height - 1 {
                y_low = height - 1;
                y_high = y_low;
                y = f32::cast_from(y_low);
            }
            if x_low >= width - 1 {
                x_low = width - 1;
                x_high = x_low;
                x = f32::cast_from(x_low);
            }
            let ly = y - f32::cast_from(y_low);
            let lx = x - f32::cast_from(x_low);
            let hy = 1.0f32 - ly;
            let hx = 1.0f32 - lx;
            let sy = input.stride(2);
            let sx = input.stride(3);
            let v1 = input[base + y_low * sy + x_low * sx];
            let v2 = input[base + y_low * sy + x_high * sx];
            let v3 = input[base + y_high * sy + x_low * sx];
            let v4 = input[base + y_high * sy + x_high * sx];
            value = hy * hx * v1 + hy * lx * v2 + ly * hx * v3 + ly * lx * v4;
        }
        value
    }

    #[cube(launch)]
    pub fn roi_align(
        input: &Tensor<f32>,
        boxes: &Tensor<f32>,
        output: &mut Tensor<f32>,
        spatial_scale: f32,
        offset: f32,
        sampling_ratio: u32,
        min_size: f32,
    ) {
        let channels = output.shape(1);
        let pooled = output.shape(2);
        if ABSOLUTE_POS >= output.shape(0) * channels * pooled * pooled {
            terminate!();
        }
        let pw = ABSOLUTE_POS % pooled;
        let ph = (ABSOLUTE_POS / pooled) % pooled;
        let c = (ABSOLUTE_POS / (pooled * pooled)) % channels;
        let r = ABSOLUTE_POS / (pooled * pooled * channels);
        let n = usize::cast_from(boxes[r * 5]);
        let start_w = boxes[r * 5 + 1] * spatial_scale - offset;
        let start_h = boxes[r * 5 + 2] * spatial_scale - offset;
        let end_w = boxes[r * 5 + 3] * spatial_scale - offset;
        let end_h = boxes[r * 5 + 4] * spatial_scale - offset;
        // `min_size` is 1 without alignment (torchvision's minimum) and −∞ with it.
        let roi_w = f32::max(end_w - start_w, min_size);
        let roi_h = f32::max(end_h - start_h, min_size);
        let pooled_f = f32::cast_from(pooled);
        let bin_h = roi_h / pooled_f;
        let bin_w = roi_w / pooled_f;
        let mut grid_h = sampling_ratio as usize;
        let mut grid_w = sampling_ratio as usize;
        if sampling_ratio == 0 {
            // Adaptive: ceil of the bin size; a non-positive one samples nothing (value 0).
            grid_h = usize::cast_from(f32::max(f32::ceil(roi_h / pooled_f), 0.0f32));
            grid_w = usize::cast_from(f32::max(f32::ceil(roi_w / pooled_f), 0.0f32));
        }
        let height = input.shape(2);
        let width = input.shape(3);
        let base = n * input.stride(0) + c * input.stride(1);
        let grid_hf = f32::cast_from(grid_h);
        let grid_wf = f32::cast_from(grid_w);
        let mut acc = 0.0f32;
        for iy in 0..grid_h {
            let y = start_h
                + f32::cast_from(ph) * bin_h
                + (f32::cast_from(iy) + 0.5f32) * bin_h / grid_hf;
            for ix in 0..grid_w {
                let x = start_w
                    + f32::cast_from(pw) * bin_w
                    + (f32::cast_from(ix) + 0.5f32) * bin_w / grid_wf;
                acc += bilinear(input, base, height, width, y, x);
            }
        }
        let count = f32::max(grid_hf * grid_wf, 1.0f32);
        output[ABSOLUTE_POS] = acc / count;
    }
}

/// Which ROIAlign: output side, the box-to-map scale, samples per bin side (0: adaptive,
/// `ceil(roi size / output size)`), and whether to shift by half a pixel (`aligned=True`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoiAlignParams {
    pub output_size: usize,
    pub spatial_scale: f32,
    pub sampling_ratio: usize,
    pub aligned: bool,
}

/// ROIAlign of `features` (on a wgpu device) over `boxes` (rows `(batch index, x1, y1, x2,
/// y2)` in input coordinates, f32, same device). `None` for tensors not on a CubeCL device.
///
/// # Shapes
/// `features`: `[N, C, H, W]`, `boxes`: `[R * 5]` → `[R, C, out, out]` (R ≥ 1)
pub fn roi_align(
    features: Tensor<4>,
    boxes: Tensor<1>,
    params: RoiAlignParams,
) -> Option<Tensor<4>> {
    if !is_cube_device(&features.device()) {
        return None;
    }
    Some(Tensor::from_dispatch(Dispatch::roi_align(
        features.into_dispatch(),
        boxes.into_dispatch(),
        params,
    )))
}

/// Launches the kernel on CubeCL tensors (see [`KernelOps::roi_align`]).
pub(crate) fn launch(input: CubeTensor, boxes: CubeTensor, params: RoiAlignParams) -> CubeTensor {
    let channels = input.shape()[1];
    let rois = boxes.shape()[0] / 5;
    let out = params.output_size;
    let client = input.client.clone();
    let n = rois * channels * out * out;
    let output = CubeTensor::new_contiguous(
        client.clone(),
        input.device.clone(),
        Shape::new([rois, channels, out, out]),
        client.empty(n * std::mem::size_of::<f32>()),
        input.dtype,
    );
    let dim = CubeDim::new(&client, n);
    let count = cubecl::calculate_cube_count_elemwise(&client, n, dim);
    let (offset, min_size) = if params.aligned {
        (0.5, f32::NEG_INFINITY)
    } else {
        (0.0, 1.0)
    };
    kernel::roi_align::launch(
        &client,
        count,
        dim,
        input.into_tensor_arg(),
        boxes.into_tensor_arg(),
        output.clone().into_tensor_arg(),
        params.spatial_scale,
        offset,
        params.sampling_ratio as u32,
        min_size,
    );
    output
}
