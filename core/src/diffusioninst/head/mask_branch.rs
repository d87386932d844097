//! DiffusionInst's mask branch (`head.mask_refine`, `head.mask_head`): p2–p4 refined to 128
//! channels, summed at stride 4 with `aligned_bilinear` upsampling, then a conv tower down to
//! the 8 channels the per-instance dynamic mask head reads.

use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::activation::relu;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions, PadMode};

use crate::error::{Error, Result};
use crate::models::detection::FrozenBatchNorm2d;
use crate::nn::{Conv2d, Conv2dOptions, conv2d_with};
use crate::weights::VarBuilder;

/// Channels of the refined features and of the tower.
const BRANCH_CHANNELS: usize = 128;
/// Channels of the mask features (the dynamic mask head's input).
pub const MASK_CHANNELS: usize = 8;
/// FPN levels refined: p2, p3, p4.
const REFINED_LEVELS: usize = 3;
/// 3×3 conv + BN + ReLU blocks in the tower.
const TOWER_DEPTH: usize = 4;

/// `Conv2d(3×3, bias=False)` (`{i}.0`) + `BatchNorm2d` in eval mode (`{i}.1`) + ReLU.
#[derive(Module, Debug)]
pub struct ConvBnRelu {
    conv: Conv2d,
    norm: FrozenBatchNorm2d,
}

impl ConvBnRelu {
    fn load(vb: &VarBuilder, c_in: usize, c_out: usize) -> Result<Self> {
        let options = Conv2dOptions {
            padding: 1,
            bias: false,
            ..Conv2dOptions::default()
        };
        Ok(Self {
            conv: conv2d_with(&vb.pp("0"), c_in, c_out, 3, options)?,
            norm: FrozenBatchNorm2d::load(&vb.pp("1"), c_out)?,
        })
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        relu(self.norm.forward(self.conv.forward(x)))
    }
}

/// `head.mask_refine.{0,1,2}` and `head.mask_head.{0..3}` (conv blocks) + `mask_head.4`
/// (1×1 conv to 8 channels, with bias).
#[derive(Module, Debug)]
pub struct MaskBranch {
    mask_refine: Vec<ConvBnRelu>,
    mask_head: Vec<ConvBnRelu>,
    /// `mask_head.4`
    mask_out: Conv2d,
}

impl MaskBranch {
    /// Reads the branch below `vb` (the checkpoint's `head.`) for `hidden`-channel features.
    pub fn load(vb: &VarBuilder, hidden: usize) -> Result<Self> {
        let refine = vb.pp("mask_refine");
        let head = vb.pp("mask_head");
        Ok(Self {
            mask_refine: (0..REFINED_LEVELS)
                .map(|i| ConvBnRelu::load(&refine.pp(i), hidden, BRANCH_CHANNELS))
                .collect::<Result<_>>()?,
            mask_head: (0..TOWER_DEPTH)
                .map(|i| ConvBnRelu::load(&head.pp(i), BRANCH_CHANNELS, BRANCH_CHANNELS))
                .collect::<Result<_>>()?,
            mask_out: conv2d_with(
                &head.pp(TOWER_DEPTH),
                BRANCH_CHANNELS,
                MASK_CHANNELS,
                1,
                Conv2dOptions::default(),
            )?,
        })
    }

    /// The mask features of the images `features` (the pyramid, p2 first).
    ///
    /// # Shapes
    /// `[B, hidden, H/4, W/4]`, `[B, hidden, H/8, W/8]`, `[B, hidden, H/16, W/16]`, … →
    /// `[B, 8, H/4, W/4]`
    pub fn forward(&self, features: &[Tensor<4>]) -> Result<Tensor<4>> {
        if features.len() < REFINED_LEVELS {
            return Err(Error::Invalid(format!(
                "the mask branch needs p2, p3 and p4; got {} feature maps",
                features.len()
            )));
        }
        let mut sum = self.mask_refine[0].forward(features[0].clone());
        let [_, _, target_h, target_w] = sum.dims();
        for (refine, x) in self.mask_refine.iter().zip(features).skip(1) {
            let x = refine.forward(x.clone());
            let [_, _, h, w] = x.dims();
            let factor = target_h / h;
            if factor * h != target_h || factor * w != target_w {
                return Err(Error::Invalid(format!(
                    "feature map {h}×{w} does not divide the mask features' {target_h}×{target_w}"
                )));
            }
            sum = sum + aligned_bilinear(x, factor);
        }
        let x = self.mask_head.iter().fold(sum, |x, block| block.forward(x));
        Ok(self.mask_out.forward(x))
    }
}

/// AdelaiDet's `aligned_bilinear`: upsamples by an integer `factor` so that output pixel
/// centres line up with the input's at stride `factor` (edge-pad right and bottom by 1,
/// bilinear with corners aligned to `factor·size + 1`, edge-pad left and top by `factor/2`,
/// crop to `factor·size`).
///
/// # Shapes
/// `[B, C, H, W]` → `[B, C, factor·H, factor·W]`
pub fn aligned_bilinear(x: Tensor<4>, factor: usize) -> Tensor<4> {
    if factor == 1 {
        return x;
    }
    let [b, c, h, w] = x.dims();
    let x = x.pad((0, 1, 0, 1), PadMode::Edge);
    let x = interpolate(
        x,
        InterpolateOptions::new(InterpolateMode::Bilinear)
            .with_align_corners(true)
            .with_output_size([factor * h + 1, factor * w + 1]),
    );
    let half = factor / 2;
    let x = x.pad((half, 0, half, 0), PadMode::Edge);
    x.slice([0..b, 0..c, 0..factor * h, 0..factor * w])
}
