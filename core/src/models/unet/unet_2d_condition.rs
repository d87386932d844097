//! The whole `UNet2DConditionModel`: time embedding, down path, mid block, up path.

use burn::module::Module;
use burn::nn::GroupNorm;
use burn::nn::conv::Conv2d;
use burn::tensor::Tensor;
use burn::tensor::activation::silu;

use super::blocks::{BlockCommon, BlockConfig, DownBlock, MidBlock, UpBlock};
use super::config::UNet2DConditionConfig;
use super::embeddings::{TimestepEmbedding, timestep_features};
use super::probe::{CrossAttentionProbe, UNetLocation};
use crate::error::Result;
use crate::nn::{conv2d, group_norm};
use crate::weights::VarBuilder;

/// SDXL's extra conditioning (`addition_embed_type: "text_time"`).
#[derive(Debug, Clone)]
pub struct AddedCond {
    /// Pooled text embeddings of the second text encoder: `[B, P]`.
    pub text_embeds: Tensor<2>,
    /// `(original_size, crops_coords_top_left, target_size)` per batch item: `[B, 6]` values.
    pub time_ids: Vec<[f32; 6]>,
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

/// `UNet2DConditionModel`, weights named as in `unet/diffusion_pytorch_model.safetensors`.
#[derive(Module, Debug)]
pub struct UNet2DConditionModel {
    time_embedding: TimestepEmbedding,
    add_embedding: Option<TimestepEmbedding>,
    conv_in: Conv2d,
    down_blocks: Vec<DownBlock>,
    mid_block: MidBlock,
    up_blocks: Vec<UpBlock>,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
    time_proj_dim: usize,
    add_time_proj_dim: usize,
    flip_sin_to_cos: bool,
    freq_shift: f64,
}

impl UNet2DConditionModel {
    /// Builds the UNet of `config` (parsed from `file`) from `vb`.
    pub fn load(vb: &VarBuilder, config: &UNet2DConditionConfig, file: &str) -> Result<Self> {
        let c = config;
        let sizes = c.block_sizes(file)?;
        let ch = &c.block_out_channels;
        let n = ch.len();
        let temb = c.time_embed_dim();
        let common = BlockCommon {
            temb_channels: temb,
            groups: c.norm_num_groups,
            eps: c.norm_eps,
            context_dim: c.cross_attention_dim,
            linear_projection: c.use_linear_projection,
            upcast_attention: c.upcast_attention,
        };
        let has_attn = |t: &str| t.starts_with("CrossAttn");

        let mut down_blocks = Vec::with_capacity(n);
        for (i, kind) in c.down_block_types.iter().enumerate() {
            down_blocks.push(DownBlock::load(
                &vb.pp("down_blocks").pp(i),
                &common,
                BlockConfig {
                    in_channels: if i == 0 { ch[0] } else { ch[i - 1] },
                    out_channels: ch[i],
                    prev_out_channels: 0,
                    layers: sizes.layers[i],
                    heads: has_attn(kind).then_some(sizes.heads[i]),
                    transformer_layers: sizes.transformer_layers[i],
                    resample: i + 1 < n,
                },
            )?);
        }

        let mid_block = MidBlock::load(
            &vb.pp("mid_block"),
            &common,
            ch[n - 1],
            sizes.heads[n - 1],
            sizes.transformer_layers[n - 1],
            c.mid_block_scale_factor,
        )?;

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

        let add_embedding = match (
            c.addition_embed_type.as_deref(),
            c.projection_class_embeddings_input_dim,
        ) {
            (Some("text_time"), Some(d_in)) => Some(TimestepEmbedding::load(
                &vb.pp("add_embedding"),
                d_in,
                temb,
            )?),
            _ => None,
        };

        Ok(Self {
            time_embedding: TimestepEmbedding::load(&vb.pp("time_embedding"), ch[0], temb)?,
            add_embedding,
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
            time_proj_dim: ch[0],
            add_time_proj_dim: c.addition_time_embed_dim.unwrap_or(0),
            flip_sin_to_cos: c.flip_sin_to_cos,
            freq_shift: c.freq_shift,
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
        self.forward_traced(sample, timestep, context, added, None, None)
    }

    /// [`forward`](Self::forward), recording intermediate tensors into `trace` and
    /// cross-attention probabilities into `probe` when given.
    pub fn forward_traced(
        &self,
        sample: Tensor<4>,
        timestep: f32,
        context: &Tensor<3>,
        added: Option<&AddedCond>,
        mut trace: Option<&mut UNetTrace>,
        mut probe: Option<&mut CrossAttentionProbe>,
    ) -> Tensor<4> {
        let [b, _, _, _] = sample.dims();
        let device = sample.device();
        let dtype = sample.dtype();
        let t_features = timestep_features(
            &vec![timestep; b],
            self.time_proj_dim,
            self.flip_sin_to_cos,
            self.freq_shift,
            &device,
            dtype,
        );
        let mut temb = self.time_embedding.forward(t_features);
        if let (Some(add), Some(cond)) = (&self.add_embedding, added) {
            let ids: Vec<f32> = cond.time_ids.iter().flatten().copied().collect();
            let time_features = timestep_features(
                &ids,
                self.add_time_proj_dim,
                self.flip_sin_to_cos,
                self.freq_shift,
                &device,
                dtype,
            )
            .reshape([b, 6 * self.add_time_proj_dim]);
            temb = temb
                + add.forward(Tensor::cat(
                    vec![cond.text_embeds.clone(), time_features],
                    1,
                ));
        }
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
        if let Some(p) = probe.as_deref_mut() {
            p.location = UNetLocation::Mid;
        }
        x = self
            .mid_block
            .forward(x, &temb, context, probe.as_deref_mut());
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
        self.conv_out.forward(silu(self.conv_norm_out.forward(x)))
    }
}
