//! `ControlNetConditioningEmbedding`: the small conv net that brings the control image down to
//! the latent resolution.

use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::activation::silu;

use crate::error::Result;
use crate::nn::{Conv2d, conv2d};
use crate::weights::VarBuilder;

/// `conv_in`, then pairs of 3×3 convs (`blocks.{2i}` keeps the width, `blocks.{2i+1}` widens and
/// halves the size), then `conv_out`; SiLU after every conv but the last.
#[derive(Module, Debug)]
pub struct ControlNetConditioningEmbedding {
    conv_in: Conv2d,
    blocks: Vec<Conv2d>,
    conv_out: Conv2d,
}

impl ControlNetConditioningEmbedding {
    /// Reads the encoder from `image_channels` through `widths` to `out_channels`.
    pub fn load(
        vb: &VarBuilder,
        image_channels: usize,
        widths: &[usize],
        out_channels: usize,
    ) -> Result<Self> {
        let mut blocks = Vec::new();
        for (i, pair) in widths.windows(2).enumerate() {
            let vb_blocks = vb.pp("blocks");
            blocks.push(conv2d(&vb_blocks.pp(2 * i), pair[0], pair[0], 3, 1, 1)?);
            blocks.push(conv2d(&vb_blocks.pp(2 * i + 1), pair[0], pair[1], 3, 2, 1)?);
        }
        let last = widths[widths.len() - 1];
        Ok(Self {
            conv_in: conv2d(&vb.pp("conv_in"), image_channels, widths[0], 3, 1, 1)?,
            blocks,
            conv_out: conv2d(&vb.pp("conv_out"), last, out_channels, 3, 1, 1)?,
        })
    }

    /// # Shapes
    /// `[B, image_channels, H, W]` → `[B, out_channels, H / 2^(len(widths)-1), …]`
    pub fn forward(&self, image: Tensor<4>) -> Tensor<4> {
        let mut x = silu(self.conv_in.forward(image));
        for block in &self.blocks {
            x = silu(block.forward(x));
        }
        self.conv_out.forward(x)
    }
}
