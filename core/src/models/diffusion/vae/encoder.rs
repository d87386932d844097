//! The VAE encoder: image → latent moments (`encoder.*`).

use burn::module::Module;
use burn::tensor::Tensor;

use super::blocks::{VaeMidBlock, resnet_config};
use super::config::AutoencoderKLConfig;
use crate::error::Result;
use crate::models::diffusion::resnet_block_2d::{Downsample2D, ResnetBlock2D};
use crate::nn::{Conv2d, GroupNorm, conv2d, group_norm};
use crate::weights::VarBuilder;

/// `DownEncoderBlock2D`: resnets, then a bottom/right-padded strided convolution.
#[derive(Module, Debug)]
struct DownEncoderBlock2D {
    resnets: Vec<ResnetBlock2D>,
    downsamplers_0: Option<Downsample2D>,
}

/// diffusers' `Encoder` with `double_z`: outputs mean and log-variance channels.
#[derive(Module, Debug)]
pub struct Encoder {
    conv_in: Conv2d,
    down_blocks: Vec<DownEncoderBlock2D>,
    mid_block: VaeMidBlock,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl Encoder {
    pub fn load(vb: &VarBuilder, c: &AutoencoderKLConfig) -> Result<Self> {
        let ch = &c.block_out_channels;
        let g = c.norm_num_groups;
        let mut down_blocks = Vec::with_capacity(ch.len());
        for (i, &out) in ch.iter().enumerate() {
            let vb = vb.pp("down_blocks").pp(i);
            let cin = if i == 0 { ch[0] } else { ch[i - 1] };
            let resnets = (0..c.layers_per_block)
                .map(|j| {
                    let cin = if j == 0 { cin } else { out };
                    ResnetBlock2D::load(&vb.pp("resnets").pp(j), resnet_config(cin, out, g))
                })
                .collect::<Result<_>>()?;
            let downsamplers_0 = (i + 1 < ch.len())
                .then(|| Downsample2D::load(&vb.pp("downsamplers.0"), out, false))
                .transpose()?;
            down_blocks.push(DownEncoderBlock2D {
                resnets,
                downsamplers_0,
            });
        }
        let last = ch[ch.len() - 1];
        Ok(Self {
            conv_in: conv2d(&vb.pp("conv_in"), c.in_channels, ch[0], 3, 1, 1)?,
            down_blocks,
            mid_block: VaeMidBlock::load(&vb.pp("mid_block"), last, g, c.mid_block_add_attention)?,
            conv_norm_out: group_norm(&vb.pp("conv_norm_out"), g, last, 1e-6)?,
            conv_out: conv2d(&vb.pp("conv_out"), last, 2 * c.latent_channels, 3, 1, 1)?,
        })
    }

    /// # Shapes
    /// `[B, 3, H, W]` → `[B, 2·latent_channels, H/f, W/f]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut x = self.conv_in.forward(x);
        for block in &self.down_blocks {
            for resnet in &block.resnets {
                x = resnet.forward(x, None);
            }
            if let Some(down) = &block.downsamplers_0 {
                x = down.forward(x);
            }
        }
        let x = self.mid_block.forward(x);
        self.conv_out.forward(self.conv_norm_out.forward_silu(x))
    }
}
