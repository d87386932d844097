//! detectron2's `FPN` with the `LastLevelMaxPool` top block of `build_resnet_fpn_backbone`.

use std::collections::HashMap;

use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::module::{interpolate, max_pool2d};
use burn::tensor::ops::{InterpolateMode, InterpolateOptions, MaxPoolOptions};

use super::ConvNorm;
use crate::diffusioninst::{FpnConfig, FuseType, Norm};
use crate::error::{Error, Result};
use crate::nn::Conv2dOptions;
use crate::weights::VarBuilder;

/// One input of the [`Fpn`]: a bottom-up feature, its channels and its stride.
#[derive(Debug, Clone)]
pub struct FpnInput {
    pub name: String,
    pub channels: usize,
    pub stride: usize,
}

/// detectron2's `FPN`: for each input (finest first) a 1×1 `fpn_lateral{l}` and a 3×3
/// `fpn_output{l}` convolution, `l = log2(stride)`; top-down, the coarser merged map is
/// upsampled ×2 (nearest) and summed (or averaged) with the lateral one; then `p{l+1}` is the
/// coarsest output max-pooled with kernel 1 and stride 2 (`LastLevelMaxPool`).
#[derive(Module, Debug)]
pub struct Fpn {
    /// Finest first.
    lateral: Vec<ConvNorm>,
    output: Vec<ConvNorm>,
    #[module(skip)]
    in_features: Vec<String>,
    #[module(skip)]
    levels: Vec<usize>,
    #[module(skip)]
    average: bool,
}

impl Fpn {
    /// Reads `fpn_lateral{l}` and `fpn_output{l}` below `vb` (the backbone's root). The
    /// convolutions have a bias exactly when the FPN has no norm.
    pub fn load(vb: &VarBuilder, c: &FpnConfig, inputs: &[FpnInput]) -> Result<Self> {
        let mut lateral = Vec::new();
        let mut output = Vec::new();
        let mut levels = Vec::new();
        let bias = c.norm == Norm::None;
        for input in inputs {
            if !input.stride.is_power_of_two() {
                return Err(Error::Invalid(format!(
                    "FPN input {} has stride {}, not a power of two",
                    input.name, input.stride
                )));
            }
            let level = input.stride.trailing_zeros() as usize;
            let o = c.out_channels;
            let lat = Conv2dOptions {
                bias,
                ..Conv2dOptions::default()
            };
            let out = Conv2dOptions { padding: 1, ..lat };
            let (lvb, ovb) = (
                vb.pp(format!("fpn_lateral{level}")),
                vb.pp(format!("fpn_output{level}")),
            );
            lateral.push(ConvNorm::load(&lvb, input.channels, o, 1, lat, c.norm)?);
            output.push(ConvNorm::load(&ovb, o, o, 3, out, c.norm)?);
            levels.push(level);
        }
        Ok(Self {
            lateral,
            output,
            in_features: inputs.iter().map(|i| i.name.clone()).collect(),
            levels,
            average: c.fuse_type == FuseType::Avg,
        })
    }

    /// Names of the outputs, finest first: `p{l}` per input, then the max-pooled level.
    pub fn out_features(&self) -> Vec<String> {
        let mut names: Vec<String> = self.levels.iter().map(|l| format!("p{l}")).collect();
        if let Some(last) = self.levels.last() {
            names.push(format!("p{}", last + 1));
        }
        names
    }

    /// The pyramid in [`Self::out_features`] order, from the bottom-up features by name.
    ///
    /// # Shapes
    /// input `k`: `[B, C_k, H/s_k, W/s_k]` → `[B, out_channels, H/s_k, W/s_k]` per input, then
    /// `[B, out_channels, ⌈H/2s⌉, ⌈W/2s⌉]` for the coarsest stride `s`
    pub fn forward(&self, features: &HashMap<String, Tensor<4>>) -> Vec<Tensor<4>> {
        let feature = |i: usize| {
            features
                .get(&self.in_features[i])
                .unwrap_or_else(|| panic!("FPN input {} missing", self.in_features[i]))
                .clone()
        };
        let n = self.lateral.len();
        let mut prev = self.lateral[n - 1].forward(feature(n - 1));
        let mut results = vec![self.output[n - 1].forward(prev.clone())];
        for i in (0..n - 1).rev() {
            let [_, _, h, w] = prev.dims();
            let top_down = interpolate(
                prev,
                InterpolateOptions::new(InterpolateMode::Nearest).with_output_size([2 * h, 2 * w]),
            );
            prev = self.lateral[i].forward(feature(i)) + top_down;
            if self.average {
                prev = prev / 2.0;
            }
            results.push(self.output[i].forward(prev.clone()));
        }
        results.reverse();
        let top = max_pool2d(
            results[n - 1].clone(),
            MaxPoolOptions::new([1, 1]).with_stride([2, 2]),
        );
        results.push(top);
        results
    }
}
