//! The UNet's transformer: `Attention`, `FeedForward` (GEGLU), `BasicTransformerBlock` and
//! `Transformer2DModel`, as in diffusers.

use burn::module::Module;
use burn::tensor::activation::{gelu, softmax};
use burn::tensor::{DType, Tensor};

use super::probe::CrossAttentionProbe;
use crate::error::Result;
use crate::nn::{Conv2d, GroupNorm, LayerNorm, Linear, attention, conv2d, group_norm, linear};
use crate::weights::VarBuilder;

/// diffusers' `Attention` (`to_q`, `to_k`, `to_v`, `to_out.0`) over tokens.
#[derive(Module, Debug)]
pub struct Attention {
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out_0: Linear,
    heads: usize,
    /// `upcast_attention`: scores and softmax in f32 even when the model runs in f16.
    upcast: bool,
}

impl Attention {
    /// `query_dim` tokens attend to `context_dim` tokens with `heads × head_dim` channels.
    pub fn load(
        vb: &VarBuilder,
        query_dim: usize,
        context_dim: usize,
        heads: usize,
        head_dim: usize,
        upcast: bool,
    ) -> Result<Self> {
        let inner = heads * head_dim;
        Ok(Self {
            to_q: linear(&vb.pp("to_q"), query_dim, inner, false)?,
            to_k: linear(&vb.pp("to_k"), context_dim, inner, false)?,
            to_v: linear(&vb.pp("to_v"), context_dim, inner, false)?,
            to_out_0: linear(&vb.pp("to_out.0"), inner, query_dim, true)?,
            heads,
            upcast,
        })
    }

    /// Attends from `x` to `context` (to `x` itself when `None`).
    ///
    /// # Shapes
    /// `x`: `[B, N, query_dim]`, `context`: `[B, M, context_dim]` → `[B, N, query_dim]`
    pub fn forward(&self, x: Tensor<3>, context: Option<&Tensor<3>>) -> Tensor<3> {
        let context = context.cloned().unwrap_or_else(|| x.clone());
        let q = self.to_q.forward(x);
        let k = self.to_k.forward(context.clone());
        let v = self.to_v.forward(context);
        self.to_out_0
            .forward(attention(q, k, v, self.heads, false, self.upcast))
    }

    /// Cross-attention that computes `softmax(QKᵀ·scale)` explicitly and also returns, for
    /// each item `(b, token)` of `probe`, that token's probabilities averaged over heads.
    ///
    /// # Shapes
    /// `x`: `[B, N, query_dim]`, `context`: `[B, M, context_dim]` →
    /// (`[B, N, query_dim]`, `[items, N]` in f32)
    pub fn forward_probed(
        &self,
        x: Tensor<3>,
        context: &Tensor<3>,
        probe: &CrossAttentionProbe,
    ) -> (Tensor<3>, Tensor<2>) {
        let q = self.split_heads(self.to_q.forward(x));
        let k = self.split_heads(self.to_k.forward(context.clone()));
        let v = self.split_heads(self.to_v.forward(context.clone()));
        let [b, h, n, d] = q.dims();
        let dtype = q.dtype();
        let scale = 1.0 / (d as f64).sqrt();
        let compute = if self.upcast { DType::F32 } else { dtype };
        let scores = q.cast(compute).matmul(k.cast(compute).swap_dims(2, 3)) * scale;
        let probs = softmax(scores, 3);
        let out = probs.clone().matmul(v.cast(compute)).cast(dtype);
        let columns: Vec<Tensor<2>> = probe
            .items()
            .map(|(item, token)| {
                probs
                    .clone()
                    .slice([item..item + 1, 0..h, 0..n, token..token + 1])
                    .cast(DType::F32)
                    .mean_dim(1)
                    .reshape([1, n])
            })
            .collect();
        let out = self
            .to_out_0
            .forward(out.swap_dims(1, 2).reshape([b, n, h * d]));
        (out, Tensor::cat(columns, 0))
    }

    /// `[B, N, heads·d]` → `[B, heads, N, d]`
    fn split_heads(&self, x: Tensor<3>) -> Tensor<4> {
        let [b, n, c] = x.dims();
        x.reshape([b, n, self.heads, c / self.heads])
            .swap_dims(1, 2)
    }
}

/// diffusers' `GEGLU`: `proj` to twice the width, the first half gated by GELU of the second.
#[derive(Module, Debug)]
struct Geglu {
    proj: Linear,
}

impl Geglu {
    fn load(vb: &VarBuilder, dim_in: usize, dim_out: usize) -> Result<Self> {
        Ok(Self {
            proj: linear(&vb.pp("proj"), dim_in, 2 * dim_out, true)?,
        })
    }

    /// # Shapes
    /// `x`: `[B, N, dim_in]` → `[B, N, dim_out]`
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let h = self.proj.forward(x);
        #[cfg(all(feature = "native", not(target_arch = "wasm32")))]
        if let Some(gated) = crate::cpu::geglu(&h) {
            return gated;
        }
        let [hidden, gate] = h
            .chunk(2, 2)
            .try_into()
            .expect("GEGLU projection splits in two");
        hidden * gelu(gate)
    }
}

/// `FeedForward` with GEGLU: `net.0` to 4× the width, `net.2` back (`net.1` is dropout).
#[derive(Module, Debug)]
struct FeedForward {
    net_0: Geglu,
    net_2: Linear,
}

impl FeedForward {
    fn load(vb: &VarBuilder, dim: usize) -> Result<Self> {
        let inner = 4 * dim;
        Ok(Self {
            net_0: Geglu::load(&vb.pp("net.0"), dim, inner)?,
            net_2: linear(&vb.pp("net.2"), inner, dim, true)?,
        })
    }

    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.net_2.forward(self.net_0.forward(x))
    }
}

/// `BasicTransformerBlock`: self-attention, cross-attention, feed-forward, each pre-norm.
#[derive(Module, Debug)]
pub struct BasicTransformerBlock {
    norm1: LayerNorm,
    attn1: Attention,
    norm2: LayerNorm,
    attn2: Attention,
    norm3: LayerNorm,
    ff: FeedForward,
}

impl BasicTransformerBlock {
    fn load(
        vb: &VarBuilder,
        dim: usize,
        context_dim: usize,
        heads: usize,
        upcast: bool,
    ) -> Result<Self> {
        let head_dim = dim / heads;
        Ok(Self {
            norm1: LayerNorm::load(&vb.pp("norm1"), dim, 1e-5)?,
            attn1: Attention::load(&vb.pp("attn1"), dim, dim, heads, head_dim, upcast)?,
            norm2: LayerNorm::load(&vb.pp("norm2"), dim, 1e-5)?,
            attn2: Attention::load(&vb.pp("attn2"), dim, context_dim, heads, head_dim, upcast)?,
            norm3: LayerNorm::load(&vb.pp("norm3"), dim, 1e-5)?,
            ff: FeedForward::load(&vb.pp("ff"), dim)?,
        })
    }

    /// `hw` is the token grid, for the probe's records.
    fn forward(
        &self,
        x: Tensor<3>,
        context: &Tensor<3>,
        probe: Option<&mut CrossAttentionProbe>,
        hw: [usize; 2],
    ) -> Tensor<3> {
        let x = x.clone() + self.attn1.forward(self.norm1.forward(x), None);
        let cross = match probe {
            Some(probe) if probe.items().next().is_some() => {
                let (out, probs) =
                    self.attn2
                        .forward_probed(self.norm2.forward(x.clone()), context, probe);
                probe.record(hw[0], hw[1], probs);
                out
            }
            _ => self
                .attn2
                .forward(self.norm2.forward(x.clone()), Some(context)),
        };
        let x = x + cross;
        x.clone() + self.ff.forward(self.norm3.forward(x))
    }
}

/// Sizes of a [`Transformer2DModel`].
#[derive(Debug, Clone, Copy)]
pub struct Transformer2DConfig {
    pub channels: usize,
    pub heads: usize,
    pub layers: usize,
    pub context_dim: usize,
    pub groups: usize,
    /// `use_linear_projection`: `proj_in`/`proj_out` are linear layers (SD2, SDXL), else 1×1 convs.
    pub linear_projection: bool,
    pub upcast_attention: bool,
}

#[derive(Module, Debug)]
enum Projection {
    Conv(Conv2d),
    Linear(Linear),
}

/// `Transformer2DModel`: group norm, `proj_in`, transformer blocks over the H·W tokens,
/// `proj_out`, residual.
#[derive(Module, Debug)]
pub struct Transformer2DModel {
    norm: GroupNorm,
    proj_in: Projection,
    transformer_blocks: Vec<BasicTransformerBlock>,
    proj_out: Projection,
}

impl Transformer2DModel {
    /// Reads `norm`, `proj_in`, `transformer_blocks.{i}`, `proj_out`.
    pub fn load(vb: &VarBuilder, c: Transformer2DConfig) -> Result<Self> {
        let ch = c.channels;
        let projection = |name: &str| -> Result<Projection> {
            Ok(if c.linear_projection {
                Projection::Linear(linear(&vb.pp(name), ch, ch, true)?)
            } else {
                Projection::Conv(conv2d(&vb.pp(name), ch, ch, 1, 1, 0)?)
            })
        };
        Ok(Self {
            norm: group_norm(&vb.pp("norm"), c.groups, ch, 1e-6)?,
            proj_in: projection("proj_in")?,
            transformer_blocks: (0..c.layers)
                .map(|i| {
                    BasicTransformerBlock::load(
                        &vb.pp("transformer_blocks").pp(i),
                        ch,
                        c.context_dim,
                        c.heads,
                        c.upcast_attention,
                    )
                })
                .collect::<Result<_>>()?,
            proj_out: projection("proj_out")?,
        })
    }

    /// Runs the model; `probe`, when given, records each block's cross-attention.
    ///
    /// # Shapes
    /// `x`: `[B, C, H, W]`, `context`: `[B, M, context_dim]` → `[B, C, H, W]`
    pub fn forward(
        &self,
        x: Tensor<4>,
        context: &Tensor<3>,
        mut probe: Option<&mut CrossAttentionProbe>,
    ) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let residual = x.clone();
        let x = self.norm.forward(x);
        let to_tokens = |x: Tensor<4>| x.permute([0, 2, 3, 1]).reshape([b, h * w, c]);
        let mut tokens = match &self.proj_in {
            Projection::Conv(conv) => to_tokens(conv.forward(x)),
            Projection::Linear(lin) => lin.forward(to_tokens(x)),
        };
        for block in &self.transformer_blocks {
            tokens = block.forward(tokens, context, probe.as_deref_mut(), [h, w]);
        }
        let to_map = |t: Tensor<3>| t.reshape([b, h, w, c]).permute([0, 3, 1, 2]);
        let out = match &self.proj_out {
            Projection::Conv(conv) => conv.forward(to_map(tokens)),
            Projection::Linear(lin) => to_map(lin.forward(tokens)),
        };
        out + residual
    }
}
