//! diffusers' `TextTimeEmbedding` (`addition_embed_type: "text"`): the prompt's hidden states
//! pooled by attention into one vector that is added to the time embedding, so every resnet
//! block sees the prompt, not only the cross-attention layers.

use burn::module::{Module, Param};
use burn::tensor::Tensor;

use crate::error::Result;
use crate::nn::{LayerNorm, Linear, attention, linear};
use crate::weights::VarBuilder;

/// `AttentionPooling`: a class token (the tokens' mean plus `positional_embedding`) attends
/// over itself and the tokens, with `num_heads` heads and no output projection.
#[derive(Module, Debug)]
pub struct AttentionPooling {
    /// `[1, d]`
    positional_embedding: Param<Tensor<2>>,
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    num_heads: usize,
}

impl AttentionPooling {
    /// Reads `positional_embedding` and the `q_proj`, `k_proj`, `v_proj` linears (`d → d`).
    pub fn load(vb: &VarBuilder, d: usize, num_heads: usize) -> Result<Self> {
        Ok(Self {
            positional_embedding: Param::from_tensor(vb.get("positional_embedding", [1, d])?),
            q_proj: linear(&vb.pp("q_proj"), d, d, true)?,
            k_proj: linear(&vb.pp("k_proj"), d, d, true)?,
            v_proj: linear(&vb.pp("v_proj"), d, d, true)?,
            num_heads,
        })
    }

    /// # Shapes
    /// `[B, L, d]` → `[B, d]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<2> {
        let [b, _, d] = x.dims();
        let position = self.positional_embedding.val().cast(x.dtype()).unsqueeze();
        let class_token = x.clone().mean_dim(1) + position;
        let tokens = Tensor::cat(vec![class_token.clone(), x], 1);
        let q = self.q_proj.forward(class_token);
        let k = self.k_proj.forward(tokens.clone());
        let v = self.v_proj.forward(tokens);
        attention(q, k, v, self.num_heads, false, true).reshape([b, d])
    }
}

/// `TextTimeEmbedding`: `norm1`, `pool`, `proj` (`d_text → d_time`), `norm2`.
#[derive(Module, Debug)]
pub struct TextTimeEmbedding {
    norm1: LayerNorm,
    pool: AttentionPooling,
    proj: Linear,
    norm2: LayerNorm,
}

impl TextTimeEmbedding {
    /// Reads the four layers below `vb` for prompts of width `d_text` and a time embedding of
    /// width `d_time`.
    pub fn load(vb: &VarBuilder, d_text: usize, d_time: usize, num_heads: usize) -> Result<Self> {
        Ok(Self {
            norm1: LayerNorm::load(&vb.pp("norm1"), d_text, 1e-5)?,
            pool: AttentionPooling::load(&vb.pp("pool"), d_text, num_heads)?,
            proj: linear(&vb.pp("proj"), d_text, d_time, true)?,
            norm2: LayerNorm::load(&vb.pp("norm2"), d_time, 1e-5)?,
        })
    }

    /// # Shapes
    /// `context`: `[B, L, d_text]` → `[B, d_time]`
    pub fn forward(&self, context: Tensor<3>) -> Tensor<2> {
        let pooled = self.pool.forward(self.norm1.forward(context));
        self.norm2.forward(self.proj.forward(pooled))
    }
}
