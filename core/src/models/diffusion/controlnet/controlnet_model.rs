//! The whole `ControlNetModel`: conditioning embedding, the UNet's down path and mid block, and
//! the 1×1 convs (`controlnet_down_blocks`, `controlnet_mid_block`) that emit the residuals.

use burn::module::Module;
use burn::tensor::Tensor;

use super::conditioning_embedding::ControlNetConditioningEmbedding;
use super::config::ControlNetConfig;
use crate::error::Result;
use crate::models::diffusion::unet::blocks::{DownBlock, MidBlock, load_down_path};
use crate::models::diffusion::unet::{AddedCond, ConditioningEmbedding, ControlResiduals};
use crate::nn::{Conv2d, conv2d};
use crate::weights::VarBuilder;

/// `ControlNetModel`, weights named as in `diffusion_pytorch_model.safetensors`.
#[derive(Module, Debug)]
pub struct ControlNetModel {
    embedding: ConditioningEmbedding,
    conv_in: Conv2d,
    controlnet_cond_embedding: ControlNetConditioningEmbedding,
    down_blocks: Vec<DownBlock>,
    mid_block: MidBlock,
    controlnet_down_blocks: Vec<Conv2d>,
    controlnet_mid_block: Conv2d,
    bgr: bool,
    global_pool: bool,
}

impl ControlNetModel {
    /// Builds the ControlNet of `config` (parsed from `file`) from `vb`.
    pub fn load(vb: &VarBuilder, config: &ControlNetConfig, file: &str) -> Result<Self> {
        let c = &config.unet;
        let sizes = c.block_sizes(file)?;
        let ch = &c.block_out_channels;
        let (down_blocks, mid_block) = load_down_path(vb, c, &sizes)?;
        let controlnet_down_blocks = c
            .skip_channels(file)?
            .into_iter()
            .enumerate()
            .map(|(i, n)| conv2d(&vb.pp("controlnet_down_blocks").pp(i), n, n, 1, 1, 0))
            .collect::<Result<_>>()?;
        let last = ch[ch.len() - 1];
        Ok(Self {
            embedding: ConditioningEmbedding::load(vb, c)?,
            conv_in: conv2d(&vb.pp("conv_in"), c.in_channels, ch[0], 3, 1, 1)?,
            controlnet_cond_embedding: ControlNetConditioningEmbedding::load(
                &vb.pp("controlnet_cond_embedding"),
                config.conditioning_channels,
                &config.conditioning_embedding_out_channels,
                ch[0],
            )?,
            down_blocks,
            mid_block,
            controlnet_down_blocks,
            controlnet_mid_block: conv2d(&vb.pp("controlnet_mid_block"), last, last, 1, 1, 0)?,
            bgr: config.controlnet_conditioning_channel_order == "bgr",
            global_pool: config.global_pool_conditions,
        })
    }

    /// The residuals for a UNet call on `sample`, scaled by `scale` (diffusers'
    /// `controlnet_conditioning_scale`; guess mode off).
    ///
    /// # Shapes
    /// `sample`: `[B, C_in, h, w]`, `context`: `[B, 77, D]`, `image`: `[1 or B, 3, h·f, w·f]` in
    /// [0, 1] → one `[B, C_k, h_k, w_k]` per skip connection and the mid block's
    pub fn forward(
        &self,
        sample: Tensor<4>,
        timestep: f32,
        context: &Tensor<3>,
        added: Option<&AddedCond>,
        image: &Tensor<4>,
        scale: f32,
    ) -> ControlResiduals {
        let b = sample.dims()[0];
        self.forward_per_sample(sample, &vec![timestep; b], context, added, image, scale)
    }

    /// [`forward`](Self::forward) with each batch item at its own timestep (training).
    ///
    /// # Shapes
    /// `timesteps`: `[B]`, the rest as [`forward`](Self::forward)
    pub fn forward_per_sample(
        &self,
        sample: Tensor<4>,
        timesteps: &[f32],
        context: &Tensor<3>,
        added: Option<&AddedCond>,
        image: &Tensor<4>,
        scale: f32,
    ) -> ControlResiduals {
        let [b, _, _, _] = sample.dims();
        let device = sample.device();
        let dtype = sample.dtype();
        let temb = self
            .embedding
            .forward(timesteps, context, added, &device, dtype);
        let mut image = image.clone().cast(dtype);
        if self.bgr {
            image = image.flip([1]);
        }
        if image.dims()[0] != b {
            image = image.repeat_dim(0, b);
        }
        let mut x = self.conv_in.forward(sample) + self.controlnet_cond_embedding.forward(image);
        let mut skips = vec![x.clone()];
        for block in &self.down_blocks {
            x = block.forward(x, &temb, context, &mut skips, None);
        }
        x = self.mid_block.forward(x, &temb, context, None);
        let emit = |conv: &Conv2d, t: Tensor<4>| {
            let r = conv.forward(t) * scale;
            if self.global_pool {
                r.mean_dim(2).mean_dim(3)
            } else {
                r
            }
        };
        ControlResiduals {
            down: skips
                .into_iter()
                .zip(&self.controlnet_down_blocks)
                .map(|(s, conv)| emit(conv, s))
                .collect(),
            mid: emit(&self.controlnet_mid_block, x),
        }
    }
}
