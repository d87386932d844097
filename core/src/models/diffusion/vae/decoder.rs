//! The VAE decoder: latents → image (`decoder.*`).

use burn::module::Module;
use burn::tensor::Tensor;

use super::blocks::{VaeMidBlock, resnet_config};
use super::config::AutoencoderKLConfig;
use crate::error::Result;
use crate::models::diffusion::resnet_block_2d::{ResnetBlock2D, Upsample2D};
use crate::nn::{Conv2d, GroupNorm, conv2d, group_norm};
use crate::weights::VarBuilder;

/// `UpDecoderBlock2D`: `layers_per_block + 1` resnets, then a 2× upsampler (`upsamplers.0`).
#[derive(Module, Debug)]
struct UpDecoderBlock2D {
    resnets: Vec<ResnetBlock2D>,
    upsamplers_0: Option<Upsample2D>,
}

/// diffusers' `Decoder`.
#[derive(Module, Debug)]
pub struct Decoder {
    conv_in: Conv2d,
    mid_block: VaeMidBlock,
    up_blocks: Vec<UpDecoderBlock2D>,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl Decoder {
    pub fn load(vb: &VarBuilder, c: &AutoencoderKLConfig) -> Result<Self> {
        let ch = &c.block_out_channels;
        let g = c.norm_num_groups;
        let n = ch.len();
        let mut up_blocks = Vec::with_capacity(n);
        let mut out = ch[n - 1];
        for i in 0..n {
            let vb = vb.pp("up_blocks").pp(i);
            let prev = out;
            out = ch[n - 1 - i];
            let resnets = (0..c.layers_per_block + 1)
                .map(|j| {
                    let cin = if j == 0 { prev } else { out };
                    ResnetBlock2D::load(&vb.pp("resnets").pp(j), resnet_config(cin, out, g))
                })
                .collect::<Result<_>>()?;
            let upsamplers_0 = (i + 1 < n)
                .then(|| Upsample2D::load(&vb.pp("upsamplers.0"), out))
                .transpose()?;
            up_blocks.push(UpDecoderBlock2D {
                resnets,
                upsamplers_0,
            });
        }
        Ok(Self {
            conv_in: conv2d(&vb.pp("conv_in"), c.latent_channels, ch[n - 1], 3, 1, 1)?,
            mid_block: VaeMidBlock::load(
                &vb.pp("mid_block"),
                ch[n - 1],
                g,
                c.mid_block_add_attention,
            )?,
            up_blocks,
            conv_norm_out: group_norm(&vb.pp("conv_norm_out"), g, ch[0], 1e-6)?,
            conv_out: conv2d(&vb.pp("conv_out"), ch[0], c.out_channels, 3, 1, 1)?,
        })
    }

    /// Decodes, returning the mid-block output too (a parity checkpoint).
    ///
    /// # Shapes
    /// `[B, latent_channels, h, w]` → (`[B, C, h, w]`, `[B, 3, h·f, w·f]`)
    pub fn forward_with_mid(&self, z: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        let mid = self.mid_block.forward(self.conv_in.forward(z));
        let mut x = mid.clone();
        for block in &self.up_blocks {
            for resnet in &block.resnets {
                x = resnet.forward(x, None);
            }
            if let Some(up) = &block.upsamplers_0 {
                x = up.forward(x, None);
            }
        }
        let image = self.conv_out.forward(self.conv_norm_out.forward_silu(x));
        (mid, image)
    }
}
