//! CLIP text encoder as in transformers' `CLIPTextModel` and `CLIPTextModelWithProjection`.

use burn::module::{Module, Param};
use burn::tensor::{Int, Tensor, TensorData};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::nn::{LayerNorm, Linear, attention, gelu, linear, quick_gelu};
use crate::weights::VarBuilder;

/// transformers' `CLIPTextConfig` (`text_encoder/config.json`); unknown keys are ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct ClipTextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: usize,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default = "default_ln_eps")]
    pub layer_norm_eps: f64,
    /// Output size of `text_projection` (CLIPTextModelWithProjection only).
    #[serde(default)]
    pub projection_dim: Option<usize>,
    #[serde(default = "default_eos")]
    pub eos_token_id: u32,
    #[serde(default)]
    pub architectures: Vec<String>,
}

fn default_max_positions() -> usize {
    77
}
fn default_act() -> String {
    "quick_gelu".into()
}
fn default_ln_eps() -> f64 {
    1e-5
}
fn default_eos() -> u32 {
    49407
}

impl ClipTextConfig {
    /// Parses `config.json` (named `file` in errors).
    pub fn from_json(bytes: &[u8], file: &str) -> Result<Self> {
        let config: Self = serde_json::from_slice(bytes)
            .map_err(|e| Error::bad_file(file, format!("invalid text encoder config: {e}")))?;
        if config.num_attention_heads == 0 || config.hidden_size % config.num_attention_heads != 0 {
            return Err(Error::config(
                file,
                "hidden_size must be a multiple of num_attention_heads",
            ));
        }
        if !matches!(config.hidden_act.as_str(), "quick_gelu" | "gelu") {
            return Err(Error::config(
                file,
                format!("unsupported hidden_act `{}`", config.hidden_act),
            ));
        }
        Ok(config)
    }

    /// Whether the checkpoint is a `CLIPTextModelWithProjection`.
    pub fn with_projection(&self) -> bool {
        self.architectures
            .iter()
            .any(|a| a == "CLIPTextModelWithProjection")
    }
}

/// Multi-head self-attention with a causal mask (`self_attn`).
#[derive(Module, Debug)]
struct ClipAttention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    heads: usize,
}

impl ClipAttention {
    fn load(vb: &VarBuilder, c: &ClipTextConfig) -> Result<Self> {
        let d = c.hidden_size;
        Ok(Self {
            q_proj: linear(&vb.pp("q_proj"), d, d, true)?,
            k_proj: linear(&vb.pp("k_proj"), d, d, true)?,
            v_proj: linear(&vb.pp("v_proj"), d, d, true)?,
            out_proj: linear(&vb.pp("out_proj"), d, d, true)?,
            heads: c.num_attention_heads,
        })
    }

    /// # Shapes
    /// `[B, L, D]` → `[B, L, D]`
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let q = self.q_proj.forward(x.clone());
        let k = self.k_proj.forward(x.clone());
        let v = self.v_proj.forward(x);
        self.out_proj
            .forward(attention(q, k, v, self.heads, true, false))
    }
}

/// One pre-norm transformer layer (`encoder.layers.{i}`).
#[derive(Module, Debug)]
struct ClipEncoderLayer {
    self_attn: ClipAttention,
    layer_norm1: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    layer_norm2: LayerNorm,
    quick_gelu: bool,
}

impl ClipEncoderLayer {
    fn load(vb: &VarBuilder, c: &ClipTextConfig) -> Result<Self> {
        let (d, i) = (c.hidden_size, c.intermediate_size);
        Ok(Self {
            self_attn: ClipAttention::load(&vb.pp("self_attn"), c)?,
            layer_norm1: LayerNorm::load(&vb.pp("layer_norm1"), d, c.layer_norm_eps)?,
            fc1: linear(&vb.pp("mlp.fc1"), d, i, true)?,
            fc2: linear(&vb.pp("mlp.fc2"), i, d, true)?,
            layer_norm2: LayerNorm::load(&vb.pp("layer_norm2"), d, c.layer_norm_eps)?,
            quick_gelu: c.hidden_act == "quick_gelu",
        })
    }

    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let x = x.clone() + self.self_attn.forward(self.layer_norm1.forward(x));
        let h = self.fc1.forward(self.layer_norm2.forward(x.clone()));
        let h = if self.quick_gelu {
            quick_gelu(h)
        } else {
            gelu(h)
        };
        x + self.fc2.forward(h)
    }
}

/// What one text-encoder call returns.
#[derive(Debug, Clone)]
pub struct ClipTextOutput {
    /// Output of the last layer after `final_layer_norm`: `[B, L, D]`.
    pub last_hidden_state: Tensor<3>,
    /// transformers' `hidden_states`: the embeddings, then each layer's output (no final norm):
    /// `num_hidden_layers + 1` tensors of `[B, L, D]`.
    pub hidden_states: Vec<Tensor<3>>,
    /// `last_hidden_state` at each sequence's first end-of-text token: `[B, D]`.
    pub pooled: Tensor<2>,
    /// `text_projection(pooled)` for `CLIPTextModelWithProjection`: `[B, P]`.
    pub text_embeds: Option<Tensor<2>>,
}

/// `CLIPTextModel` / `CLIPTextModelWithProjection`, weights under `text_model.*`
/// (and `text_projection.weight`).
#[derive(Module, Debug)]
pub struct ClipTextModel {
    token_embedding: Param<Tensor<2>>,
    position_embedding: Param<Tensor<2>>,
    layers: Vec<ClipEncoderLayer>,
    final_layer_norm: LayerNorm,
    text_projection: Option<Linear>,
    eos_token_id: u32,
}

impl ClipTextModel {
    /// Builds the model of `config` from `vb` (rooted at the component folder's keys).
    pub fn load(vb: &VarBuilder, config: &ClipTextConfig) -> Result<Self> {
        let tm = vb.pp("text_model");
        let d = config.hidden_size;
        let layers = (0..config.num_hidden_layers)
            .map(|i| ClipEncoderLayer::load(&tm.pp("encoder.layers").pp(i), config))
            .collect::<Result<Vec<_>>>()?;
        let text_projection = match (config.with_projection(), config.projection_dim) {
            (true, Some(p)) => Some(linear(&vb.pp("text_projection"), d, p, false)?),
            _ => None,
        };
        Ok(Self {
            token_embedding: Param::from_tensor(
                tm.get("embeddings.token_embedding.weight", [config.vocab_size, d])?,
            ),
            position_embedding: Param::from_tensor(tm.get(
                "embeddings.position_embedding.weight",
                [config.max_position_embeddings, d],
            )?),
            layers,
            final_layer_norm: LayerNorm::load(
                &tm.pp("final_layer_norm"),
                d,
                config.layer_norm_eps,
            )?,
            text_projection,
            eos_token_id: config.eos_token_id,
        })
    }

    /// Encodes token ids.
    ///
    /// # Shapes
    /// `ids`: `[B][L]` with `L ≤ max_position_embeddings`.
    pub fn forward(&self, ids: &[Vec<u32>]) -> ClipTextOutput {
        let device = self.token_embedding.val().device();
        let (b, l) = (ids.len(), ids[0].len());
        let flat: Vec<i32> = ids.iter().flatten().map(|&t| t as i32).collect();
        let index = Tensor::<1, Int>::from_data(TensorData::new(flat, [b * l]), &device);
        let d = self.token_embedding.val().dims()[1];
        let tokens = self
            .token_embedding
            .val()
            .select(0, index)
            .reshape([b, l, d]);
        let positions = self.position_embedding.val().slice(0..l).unsqueeze::<3>();
        let mut x = tokens + positions;
        let mut hidden_states = vec![x.clone()];
        for layer in &self.layers {
            x = layer.forward(x);
            hidden_states.push(x.clone());
        }
        let last_hidden_state = self.final_layer_norm.forward(x);
        let pooled = Tensor::cat(
            ids.iter()
                .enumerate()
                .map(|(i, seq)| {
                    let pos = self.pooled_position(seq);
                    last_hidden_state
                        .clone()
                        .slice([i..i + 1, pos..pos + 1])
                        .reshape([1, d])
                })
                .collect(),
            0,
        );
        let text_embeds = self
            .text_projection
            .as_ref()
            .map(|p| p.forward(pooled.clone()));
        ClipTextOutput {
            last_hidden_state,
            hidden_states,
            pooled,
            text_embeds,
        }
    }

    /// Applies `final_layer_norm` (diffusers' clip-skip takes an earlier hidden state through it).
    pub fn final_layer_norm(&self, x: Tensor<3>) -> Tensor<3> {
        self.final_layer_norm.forward(x)
    }

    /// transformers pools at the first end-of-text token; configs with the legacy `eos_token_id`
    /// 2 pool at the first largest id instead, which is the same token for CLIP's vocabulary.
    fn pooled_position(&self, seq: &[u32]) -> usize {
        if self.eos_token_id == 2 {
            let max = seq.iter().copied().max().unwrap_or(0);
            seq.iter().position(|&t| t == max).unwrap_or(0)
        } else {
            seq.iter()
                .position(|&t| t == self.eos_token_id)
                .unwrap_or(0)
        }
    }
}
