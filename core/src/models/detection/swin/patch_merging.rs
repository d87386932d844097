//! Swin's `PatchMerging`: every 2×2 group of tokens concatenated, normalised and projected to
//! twice the channels.

use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::ops::PadMode;

use crate::error::Result;
use crate::nn::{LayerNorm, Linear, linear};
use crate::weights::VarBuilder;

/// `norm` over `4·dim` channels and `reduction` (`4·dim → 2·dim`, no bias). Odd sizes are
/// zero-padded on the right/bottom first.
#[derive(Module, Debug)]
pub struct PatchMerging {
    pub reduction: Linear,
    pub norm: LayerNorm,
}

impl PatchMerging {
    /// Reads `reduction.weight` and `norm.*` for `dim` input channels.
    pub fn load(vb: &VarBuilder, dim: usize) -> Result<Self> {
        Ok(Self {
            reduction: linear(&vb.pp("reduction"), 4 * dim, 2 * dim, false)?,
            norm: LayerNorm::load(&vb.pp("norm"), 4 * dim, 1e-5)?,
        })
    }

    /// The original's `cat([x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2], x[1::2, 1::2]])` over
    /// channels, then `norm` and `reduction`.
    ///
    /// # Shapes
    /// `[B, H, W, C]` → `[B, ⌈H/2⌉, ⌈W/2⌉, 2C]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, h, w, c] = x.dims();
        let x = if h % 2 == 1 || w % 2 == 1 {
            x.pad([(0, h % 2), (0, w % 2), (0, 0)], PadMode::Constant(0.0))
        } else {
            x
        };
        let (h2, w2) = (h.div_ceil(2), w.div_ceil(2));
        // [B, H/2, dy, W/2, dx, C] → [B, H/2, W/2, dx, dy, C]: channel block dx·2 + dy.
        let x: Tensor<6> = x.reshape([b, h2, 2, w2, 2, c]);
        let x = x.permute([0, 1, 3, 4, 2, 5]).reshape([b, h2, w2, 4 * c]);
        self.reduction.forward(self.norm.forward(x))
    }
}
