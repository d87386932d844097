//! Sinusoidal timestep features (`Timesteps`), their MLP (`TimestepEmbedding`) and the
//! conditioning vector built from them (`ConditioningEmbedding`).

use burn::module::Module;
use burn::tensor::activation::silu;
use burn::tensor::{DType, Device, Tensor, TensorData};

use super::config::UNet2DConditionConfig;
use super::text_time_embedding::TextTimeEmbedding;
use crate::error::Result;
use crate::nn::{Linear, linear};
use crate::weights::VarBuilder;

/// diffusers' `get_timestep_embedding`, computed in f32 on the host exactly as PyTorch does.
///
/// # Shapes
/// `timesteps`: `[B]` → `[B, dim]`
pub fn timestep_features(
    timesteps: &[f32],
    dim: usize,
    flip_sin_to_cos: bool,
    freq_shift: f64,
    device: &Device,
    dtype: DType,
) -> Tensor<2> {
    let half = dim / 2;
    let ln = -(10000f64.ln()) as f32;
    let freqs: Vec<f32> = (0..half)
        .map(|i| ((ln * i as f32) / (half as f32 - freq_shift as f32)).exp())
        .collect();
    let mut data = Vec::with_capacity(timesteps.len() * dim);
    for &t in timesteps {
        let args: Vec<f32> = freqs.iter().map(|f| t * f).collect();
        let sin = args.iter().map(|a| a.sin());
        let cos = args.iter().map(|a| a.cos());
        if flip_sin_to_cos {
            data.extend(cos.chain(sin));
        } else {
            data.extend(sin.chain(cos));
        }
        if dim % 2 == 1 {
            data.push(0.0);
        }
    }
    Tensor::from_data(
        TensorData::new(data, [timesteps.len(), dim]),
        (device, dtype),
    )
}

/// `TimestepEmbedding`: `linear_1`, SiLU, `linear_2`.
#[derive(Module, Debug)]
pub struct TimestepEmbedding {
    linear_1: Linear,
    linear_2: Linear,
}

impl TimestepEmbedding {
    /// Reads `linear_1` (`d_in → d_out`) and `linear_2` (`d_out → d_out`).
    pub fn load(vb: &VarBuilder, d_in: usize, d_out: usize) -> Result<Self> {
        Ok(Self {
            linear_1: linear(&vb.pp("linear_1"), d_in, d_out, true)?,
            linear_2: linear(&vb.pp("linear_2"), d_out, d_out, true)?,
        })
    }

    /// # Shapes
    /// `[B, d_in]` → `[B, d_out]`
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.linear_2.forward(silu(self.linear_1.forward(x)))
    }
}

/// SDXL's extra conditioning (`addition_embed_type: "text_time"`).
#[derive(Debug, Clone)]
pub struct AddedCond {
    /// Pooled text embeddings of the second text encoder: `[B, P]`.
    pub text_embeds: Tensor<2>,
    /// `(original_size, crops_coords_top_left, target_size)` per batch item: `[B, 6]` values.
    pub time_ids: Vec<[f32; 6]>,
}

/// The extra term of the conditioning vector, by `addition_embed_type`.
#[derive(Module, Debug)]
pub enum AdditionEmbedding {
    /// `"text"`: the prompt's hidden states pooled by attention.
    Text(TextTimeEmbedding),
    /// `"text_time"` (SDXL): the pooled text embeddings and the time ids.
    TextTime(TimestepEmbedding),
}

/// The conditioning vector of the UNet and the ControlNet: `time_embedding` of the sinusoidal
/// timestep features, plus `add_embedding` where the config has one: of the pooled prompt
/// (`"text"`), or (SDXL, `"text_time"`) of the pooled text embeddings and the time ids.
#[derive(Module, Debug)]
pub struct ConditioningEmbedding {
    time_embedding: TimestepEmbedding,
    add_embedding: Option<AdditionEmbedding>,
    time_proj_dim: usize,
    add_time_proj_dim: usize,
    flip_sin_to_cos: bool,
    freq_shift: f64,
}

impl ConditioningEmbedding {
    /// Reads `time_embedding` and (for `text` and `text_time` configs) `add_embedding` below
    /// `vb`.
    pub fn load(vb: &VarBuilder, c: &UNet2DConditionConfig) -> Result<Self> {
        let ch0 = c.block_out_channels[0];
        let temb = c.time_embed_dim();
        let vb_add = vb.pp("add_embedding");
        let add_embedding = match (
            c.addition_embed_type.as_deref(),
            c.projection_class_embeddings_input_dim,
        ) {
            (Some("text"), _) => Some(AdditionEmbedding::Text(TextTimeEmbedding::load(
                &vb_add,
                c.cross_attention_dim,
                temb,
                c.text_pooling_heads(),
            )?)),
            (Some("text_time"), Some(d_in)) => Some(AdditionEmbedding::TextTime(
                TimestepEmbedding::load(&vb_add, d_in, temb)?,
            )),
            _ => None,
        };
        Ok(Self {
            time_embedding: TimestepEmbedding::load(&vb.pp("time_embedding"), ch0, temb)?,
            add_embedding,
            time_proj_dim: ch0,
            add_time_proj_dim: c.addition_time_embed_dim.unwrap_or(0),
            flip_sin_to_cos: c.flip_sin_to_cos,
            freq_shift: c.freq_shift,
        })
    }

    /// Whether the model needs [`AddedCond`] (SDXL).
    pub fn needs_added_cond(&self) -> bool {
        matches!(self.add_embedding, Some(AdditionEmbedding::TextTime(_)))
    }

    /// The conditioning of each batch item at its own timestep.
    ///
    /// # Shapes
    /// `timesteps`: `[B]`, `context`: `[B, L, cross_attention_dim]` →
    /// `[B, 4 × block_out_channels[0]]`
    pub fn forward(
        &self,
        timesteps: &[f32],
        context: &Tensor<3>,
        added: Option<&AddedCond>,
        device: &Device,
        dtype: DType,
    ) -> Tensor<2> {
        let batch = timesteps.len();
        let t_features = timestep_features(
            timesteps,
            self.time_proj_dim,
            self.flip_sin_to_cos,
            self.freq_shift,
            device,
            dtype,
        );
        let temb = self.time_embedding.forward(t_features);
        let (add, cond) = match (&self.add_embedding, added) {
            (Some(AdditionEmbedding::Text(text)), _) => {
                let pooled = text.forward(context.clone().cast(dtype));
                // One prompt for the whole batch.
                let pooled = if pooled.dims()[0] == 1 {
                    pooled.repeat_dim(0, batch)
                } else {
                    pooled
                };
                return temb + pooled;
            }
            (Some(AdditionEmbedding::TextTime(add)), Some(cond)) => (add, cond),
            _ => return temb,
        };
        let ids: Vec<f32> = cond.time_ids.iter().flatten().copied().collect();
        let time_features = timestep_features(
            &ids,
            self.add_time_proj_dim,
            self.flip_sin_to_cos,
            self.freq_shift,
            device,
            dtype,
        )
        .reshape([batch, 6 * self.add_time_proj_dim]);
        temb + add.forward(Tensor::cat(
            vec![cond.text_embeds.clone().cast(dtype), time_features],
            1,
        ))
    }
}
