//! The kernels as one burn backend extension. [`CubeBackend`] launches them; under burn's fusion
//! each call is recorded as one opaque operation in the fusion stream (its output's shape and
//! dtype given here), so the element-wise work before and after it still fuses instead of being
//! flushed around it. The public functions of the kernel modules call these through
//! [`Dispatch`](burn::backend::Dispatch), on CubeCL devices only.

use burn::backend::fusion::custom::TensorSpec;
use burn::backend::tensor::FloatTensor;
use burn::backend::wgpu::CubeBackend;
use burn::backend::{Backend, backend_extension};
use burn::tensor::Shape;

use crate::group_norm::GroupNormParams;
use crate::roi_align::RoiAlignParams;
use crate::{dynamic_mask_head, group_norm, nearest_color, resample, roi_align};

#[backend_extension(Cube, Fusion)]
pub trait KernelOps: Backend {
    /// [`resample::resample_rows`]: `input` `[h, w]`, `starts` `[out_w]`, `weights`
    /// `[out_w · taps]` → `[h, out_w]`.
    #[fusion(meta = |input, starts, _weights, _taps| TensorSpec::new(
        Shape::new([input.shape[0], starts.shape[0]]), input.dtype))]
    fn resample_rows(
        input: FloatTensor<Self>,
        starts: FloatTensor<Self>,
        weights: FloatTensor<Self>,
        taps: u32,
    ) -> FloatTensor<Self>;

    /// [`nearest_color::nearest_color`]: `pixels` `[n, 3]`, `colors` `[k, 3]` → `[n]`.
    #[fusion(meta = |pixels, _colors, _max_d2| TensorSpec::new(
        Shape::new([pixels.shape[0]]), pixels.dtype))]
    fn nearest_color(
        pixels: FloatTensor<Self>,
        colors: FloatTensor<Self>,
        max_d2: f32,
    ) -> FloatTensor<Self>;

    /// [`roi_align::roi_align`]: `features` `[N, C, H, W]`, `boxes` `[R · 5]` →
    /// `[R, C, out, out]`.
    #[fusion(meta = |features, boxes, params| TensorSpec::new(
        Shape::new([boxes.shape[0] / 5, features.shape[1], params.output_size,
            params.output_size]), features.dtype))]
    fn roi_align(
        features: FloatTensor<Self>,
        boxes: FloatTensor<Self>,
        params: RoiAlignParams,
    ) -> FloatTensor<Self>;

    /// [`dynamic_mask_head::dynamic_mask_head`]: `features` `[8, H·W]`, `kernels` `[K · 153]`
    /// → `[K, H·W]`.
    #[fusion(meta = |features, kernels| TensorSpec::new(
        Shape::new([kernels.shape[0] / dynamic_mask_head::PARAMS, features.shape[1]]),
        features.dtype))]
    fn dynamic_mask_head(
        features: FloatTensor<Self>,
        kernels: FloatTensor<Self>,
    ) -> FloatTensor<Self>;

    /// [`group_norm::group_norm`]: `input` `[B, C, ...]`, `gamma`, `beta` `[C]` →
    /// `[B, C, ...]`.
    #[fusion(meta = |input, _gamma, _beta, _params| TensorSpec::new(
        input.shape.clone(), input.dtype))]
    fn group_norm(
        input: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        params: GroupNormParams,
    ) -> FloatTensor<Self>;
}

impl KernelOps for CubeBackend {
    fn resample_rows(
        input: FloatTensor<Self>,
        starts: FloatTensor<Self>,
        weights: FloatTensor<Self>,
        taps: u32,
    ) -> FloatTensor<Self> {
        resample::launch(input, starts, weights, taps)
    }

    fn nearest_color(
        pixels: FloatTensor<Self>,
        colors: FloatTensor<Self>,
        max_d2: f32,
    ) -> FloatTensor<Self> {
        nearest_color::launch(pixels, colors, max_d2)
    }

    fn roi_align(
        features: FloatTensor<Self>,
        boxes: FloatTensor<Self>,
        params: RoiAlignParams,
    ) -> FloatTensor<Self> {
        roi_align::launch(features, boxes, params)
    }

    fn dynamic_mask_head(
        features: FloatTensor<Self>,
        kernels: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        dynamic_mask_head::launch(features, kernels)
    }

    fn group_norm(
        input: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        params: GroupNormParams,
    ) -> FloatTensor<Self> {
        group_norm::launch(input, gamma, beta, params)
    }
}
