//! The VAE's single-head spatial self-attention and its mid block (`UNetMidBlock2D`).

use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;

use crate::error::Result;
use crate::models::diffusion::resnet_block_2d::{ResnetBlock2D, ResnetConfig};
use crate::nn::{GroupNorm, Linear, group_norm, linear};
use crate::weights::VarBuilder;

/// One-head self-attention over all pixels with a residual connection. Older checkpoints name
/// the projections `query`, `key`, `value`, `proj_attn`; single-file ones store them as 1×1 convs.
#[derive(Module, Debug)]
struct VaeAttention {
    group_norm: GroupNorm,
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out_0: Linear,
}

impl VaeAttention {
    fn load(vb: &VarBuilder, channels: usize, groups: usize) -> Result<Self> {
        let legacy = !vb.contains("to_q.weight") && vb.contains("query.weight");
        let name = |new: &str, old: &str| vb.pp(if legacy { old } else { new });
        Ok(Self {
            group_norm: group_norm(&vb.pp("group_norm"), groups, channels, 1e-6)?,
            to_q: linear(&name("to_q", "query"), channels, channels, true)?,
            to_k: linear(&name("to_k", "key"), channels, channels, true)?,
            to_v: linear(&name("to_v", "value"), channels, channels, true)?,
            to_out_0: linear(&name("to_out.0", "proj_attn"), channels, channels, true)?,
        })
    }

    /// # Shapes
    /// `[B, C, H, W]` → `[B, C, H, W]`
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let tokens = self
            .group_norm
            .forward(x.clone())
            .reshape([b, c, h * w])
            .swap_dims(1, 2);
        let heads = |t: Tensor<3>| t.unsqueeze_dim::<4>(1);
        let out = attention(
            heads(self.to_q.forward(tokens.clone())),
            heads(self.to_k.forward(tokens.clone())),
            heads(self.to_v.forward(tokens)),
            None,
            None,
            AttentionModuleOptions::default(),
        );
        let out = self.to_out_0.forward(out.squeeze_dim::<3>(1));
        out.swap_dims(1, 2).reshape([b, c, h, w]) + x
    }
}

/// `UNetMidBlock2D` without time embedding: resnet, attention, resnet.
#[derive(Module, Debug)]
pub struct VaeMidBlock {
    resnets: Vec<ResnetBlock2D>,
    attentions_0: Option<VaeAttention>,
}

impl VaeMidBlock {
    pub fn load(
        vb: &VarBuilder,
        channels: usize,
        groups: usize,
        add_attention: bool,
    ) -> Result<Self> {
        let resnet = |i: usize| {
            ResnetBlock2D::load(
                &vb.pp("resnets").pp(i),
                resnet_config(channels, channels, groups),
            )
        };
        Ok(Self {
            resnets: vec![resnet(0)?, resnet(1)?],
            attentions_0: add_attention
                .then(|| VaeAttention::load(&vb.pp("attentions.0"), channels, groups))
                .transpose()?,
        })
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut x = self.resnets[0].forward(x, None);
        if let Some(attn) = &self.attentions_0 {
            x = attn.forward(x);
        }
        self.resnets[1].forward(x, None)
    }
}

/// The VAE's resnets: no time embedding, eps 1e-6.
pub fn resnet_config(in_channels: usize, out_channels: usize, groups: usize) -> ResnetConfig {
    ResnetConfig {
        in_channels,
        out_channels,
        temb_channels: None,
        groups,
        eps: 1e-6,
        output_scale_factor: 1.0,
    }
}
