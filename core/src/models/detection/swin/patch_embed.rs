//! Swin's `PatchEmbed`: a 4×4 convolution with stride 4, then a LayerNorm over the channels.

use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::ops::PadMode;

use crate::error::Result;
use crate::nn::{Conv2d, LayerNorm, conv2d};
use crate::weights::VarBuilder;

/// `proj` (`patch × patch` convolution with stride `patch`, with bias) and `norm` (`patch_norm`
/// is always on in the original). The input is zero-padded on the right and bottom to a
/// multiple of the patch size first.
#[derive(Module, Debug)]
pub struct PatchEmbed {
    pub proj: Conv2d,
    pub norm: LayerNorm,
    #[module(skip)]
    patch: usize,
}

impl PatchEmbed {
    /// Reads `proj.{weight,bias}` and `norm.{weight,bias}`.
    pub fn load(vb: &VarBuilder, c_in: usize, embed_dim: usize, patch: usize) -> Result<Self> {
        Ok(Self {
            proj: conv2d(&vb.pp("proj"), c_in, embed_dim, patch, patch, 0)?,
            norm: LayerNorm::load(&vb.pp("norm"), embed_dim, 1e-5)?,
            patch,
        })
    }

    /// The patch tokens, channels last.
    ///
    /// # Shapes
    /// `[B, C_in, H, W]` → `[B, ⌈H/p⌉, ⌈W/p⌉, embed_dim]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [_, _, h, w] = x.dims();
        let p = self.patch;
        let (pad_b, pad_r) = ((p - h % p) % p, (p - w % p) % p);
        let x = if pad_b + pad_r > 0 {
            x.pad([(0, pad_b), (0, pad_r)], PadMode::Constant(0.0))
        } else {
            x
        };
        self.norm
            .forward(self.proj.forward(x).permute([0, 2, 3, 1]))
    }
}
