//! The whole `UNet2DConditionModel`: time embedding, down path, mid block, up path.

use burn::module::Module;
use burn::tensor::Tensor;

use super::blocks::{BlockCommon, BlockConfig, DownBlock, MidBlock, UpBlock, load_down_path};
use super::config::UNet2DConditionConfig;
use super::embeddings::{AddedCond, ConditioningEmbedding};
use super::probe::{CrossAttentionProbe, UNetLocation};
use crate::error::Result;
use crate::nn::{Conv2d, GroupNorm, conv2d, group_norm};
use crate::weights::VarBuilder;

/// ControlNet outputs added to the UNet: one residual per skip connection (in the order of
/// [`UNet2DConditionConfig::skip_channels`]) and one for the mid block's output.
#[derive(Debug, Clone)]
pub struct ControlResiduals {
    pub down: Vec<Tensor<4>>,
    pub mid: Tensor<4>,
}

/// The element-wise sum of two ControlNets' residuals (diffusers' `MultiControlNetModel`).
impl std::ops::Add for ControlResiduals {
    type Output = ControlResiduals;

    fn add(self, other: ControlResiduals) -> ControlResiduals {
        ControlResiduals {
            down: self
                .down
                .into_iter()
                .zip(other.down)
                .map(|(a, b)| a + b)
                .collect(),
            mid: self.mid + other.mid,
        }
    }
}

/// Intermediate tensors of one call, for parity tests against diffusers' forward hooks.
#[derive(Debug, Default)]
pub struct UNetTrace {
    pub time_emb: Option<Tensor<2>>,
    pub conv_in: Option<Tensor<4>>,
    pub down: Vec<Tensor<4>>,
    pub mid: Option<Tensor<4>>,
    pub up: Vec<Tensor<4>>,
}

/// What one UNet call does besides predicting: residuals to add, tensors to record.
#[derive(Debug, Default)]
pub struct UNetHooks<'a> {
    /// ControlNet residuals added to the skip connections and the mid block's output.
    pub control: Option<&'a ControlResiduals>,
    /// Records intermediate tensors.
    pub trace: Option<&'a mut UNetTrace>,
    /// Records cross-attention probabilities.
    pub probe: Option<&'a mut CrossAttentionProbe>,
}

/// `UNet2DConditionModel`, weights named as in `unet/diffusion_pytorch_model.safetensors`.
#[derive(Module, Debug)]
pub struct UNet2DConditionModel {
    embedding: ConditioningEmbedding,
    conv_in: Conv2d,
    down_blocks: Vec<DownBlock>,
    mid_block: MidBlock,
    up_blocks: Vec<UpBlock>,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl UNet2DConditionModel {
    /// Builds the UNet of `config` (parsed from `file`) from `vb`.
    pub fn load(vb: &VarBuilder, config: &UNet2DConditionConfig, file: &str) -> Result<Self> {
        let c = config;
        let sizes = c.block_sizes(file)?;
        let ch = &c.block_out_channels;
        let n = ch.len();
        let common = BlockCommon::from_config(c);
        let (down_blocks, mid_block) = load_down_path(vb, c, &sizes)?;
        let has_attn = |t: &str| t.starts_with("CrossAttn");

        let mut up_blocks = Vec::with_capacity(n);
        let mut out_channels = ch[n - 1];
        for (i, kind) in c.up_block_types.iter().enumerate() {
            let r = n - 1 - i;
            let prev = out_channels;
            out_channels = ch[r];
            up_blocks.push(UpBlock::load(
                &vb.pp("up_blocks").pp(i),
                &common,
                BlockConfig {
                    in_channels: ch[r.saturating_sub(1)],
                    out_channels,
                    prev_out_channels: prev,
                    layers: sizes.layers[r] + 1,
                    heads: has_attn(kind).then_some(sizes.heads[r]),
                    transformer_layers: sizes.transformer_layers[r],
                    resample: i + 1 < n,
                },
            )?);
        }

        Ok(Self {
            embedding: ConditioningEmbedding::load(vb, c)?,
            conv_in: conv2d(&vb.pp("conv_in"), c.in_channels, ch[0], 3, 1, 1)?,
            down_blocks,
            mid_block,
            up_blocks,
            conv_norm_out: group_norm(
                &vb.pp("conv_norm_out"),
                c.norm_num_groups,
                ch[0],
                c.norm_eps,
            )?,
            conv_out: conv2d(&vb.pp("conv_out"), ch[0], c.out_channels, 3, 1, 1)?,
        })
    }

    /// Predicts the noise (or v) of `sample` at `timestep`, conditioned on the text.
    ///
    /// # Shapes
    /// `sample`: `[B, C_in, H, W]`, `context`: `[B, 77, cross_attention_dim]` → `[B, C_out, H, W]`
    pub fn forward(
        &self,
        sample: Tensor<4>,
        timestep: f32,
        context: &Tensor<3>,
        added: Option<&AddedCond>,
    ) -> Tensor<4> {
        self.forward_with(sample, timestep, context, added, UNetHooks::default())
    }

    /// Whether [`forward`](Self::forward) needs [`AddedCond`] (SDXL).
    pub fn needs_added_cond(&self) -> bool {
        self.embedding.needs_added_cond()
    }

    /// [`forward`](Self::forward) with the residuals and recorders of `hooks`.
    ///
    /// # Shapes
    /// As [`forward`](Self::forward).
    pub fn forward_with(
        &self,
        sample: Tensor<4>,
        timestep: f32,
        context: &Tensor<3>,
        added: Option<&AddedCond>,
        hooks: UNetHooks,
    ) -> Tensor<4> {
        let b = sample.dims()[0];
        self.forward_per_sample(sample, &vec![timestep; b], context, added, hooks)
    }

    /// [`forward_with`](Self::forward_with) with each batch item at its own timestep
    /// (training).
    ///
    /// # Shapes
    /// `timesteps`: `[B]`, the rest as [`forward`](Self::forward)
    pub fn forward_per_sample(
        &self,
        sample: Tensor<4>,
        timesteps: &[f32],
        context: &Tensor<3>,
        added: Option<&AddedCond>,
        hooks: UNetHooks,
    ) -> Tensor<4> {
        let UNetHooks {
            control,
            mut trace,
            mut probe,
        } = hooks;
        let device = sample.device();
        let dtype = sample.dtype();
        let temb = self
            .embedding
            .forward(timesteps, context, added, &device, dtype);
        if let Some(t) = trace.as_deref_mut() {
            t.time_emb = Some(temb.clone());
        }

        let mut x = self.conv_in.forward(sample);
        if let Some(t) = trace.as_deref_mut() {
            t.conv_in = Some(x.clone());
        }
        let mut skips = vec![x.clone()];
        if let Some(p) = probe.as_deref_mut() {
            p.location = UNetLocation::Down;
        }
        for block in &self.down_blocks {
            x = block.forward(x, &temb, context, &mut skips, probe.as_deref_mut());
            if let Some(t) = trace.as_deref_mut() {
                t.down.push(x.clone());
            }
        }
        if let Some(control) = control {
            for (skip, residual) in skips.iter_mut().zip(&control.down) {
                *skip = skip.clone() + residual.clone();
            }
        }
        if let Some(p) = probe.as_deref_mut() {
            p.location = UNetLocation::Mid;
        }
        x = self
            .mid_block
            .forward(x, &temb, context, probe.as_deref_mut());
        if let Some(control) = control {
            x = x + control.mid.clone();
        }
        if let Some(p) = probe.as_deref_mut() {
            p.location = UNetLocation::Up;
        }
        if let Some(t) = trace.as_deref_mut() {
            t.mid = Some(x.clone());
        }
        for block in &self.up_blocks {
            let block_skips = skips.split_off(skips.len() - block.num_skips());
            let upsample_size = skips.last().map(|s| {
                let [_, _, h, w] = s.dims();
                [h, w]
            });
            x = block.forward(
                x,
                block_skips,
                &temb,
                context,
                upsample_size,
                probe.as_deref_mut(),
            );
            if let Some(t) = trace.as_deref_mut() {
                t.up.push(x.clone());
            }
        }
        self.conv_out.forward(self.conv_norm_out.forward_silu(x))
    }
}
