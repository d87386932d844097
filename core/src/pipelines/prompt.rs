//! Prompt encoding: SD's one text encoder, or SDXL's two (penultimate hidden states
//! concatenated, pooled projection of the second), and the UNet conditioning built from them.

use burn::tensor::Tensor;

use super::model_index::PipelineKind;
use super::stable_diffusion::StableDiffusion;
use crate::models::diffusion::unet::AddedCond;

/// What the UNet is conditioned on for a batch of prompts.
#[derive(Debug, Clone)]
pub struct PromptEmbeds {
    /// `[B, 77, cross_attention_dim]`
    pub context: Tensor<3>,
    /// SDXL: pooled projection of the second encoder, `[B, projection_dim]`.
    pub pooled: Option<Tensor<2>>,
}

impl PromptEmbeds {
    /// Zero embeddings of the same shapes (SDXL's `force_zeros_for_empty_prompt`).
    pub fn zeros_like(&self) -> Self {
        Self {
            context: self.context.zeros_like(),
            pooled: self.pooled.as_ref().map(|p| p.zeros_like()),
        }
    }

    /// Rows `range` of the batch.
    pub fn rows(&self, range: std::ops::Range<usize>) -> Self {
        Self {
            context: self.context.clone().slice([range.clone()]),
            pooled: self.pooled.clone().map(|p| p.slice([range])),
        }
    }

    /// Rows `indices` of the batch, in that order (repeats allowed).
    pub fn select_rows(&self, indices: &[usize]) -> Self {
        let device = self.context.device();
        let ids: Vec<i64> = indices.iter().map(|&i| i as i64).collect();
        let ids = Tensor::<1, burn::tensor::Int>::from_data(
            burn::tensor::TensorData::new(ids, [indices.len()]),
            &device,
        );
        Self {
            context: self.context.clone().select(0, ids.clone()),
            pooled: self.pooled.clone().map(|p| p.select(0, ids)),
        }
    }

    /// The rows of `self` followed by those of `other`.
    pub fn cat(self, other: PromptEmbeds) -> Self {
        Self {
            context: Tensor::cat(vec![self.context, other.context], 0),
            pooled: match (self.pooled, other.pooled) {
                (Some(a), Some(b)) => Some(Tensor::cat(vec![a, b], 0)),
                _ => None,
            },
        }
    }

    /// SDXL's added conditioning for images of `height × width` (original and target size,
    /// crop at the origin, as diffusers' defaults); `None` for SD 1.x/2.x.
    pub fn added_cond(&self, height: usize, width: usize) -> Option<AddedCond> {
        let pooled = self.pooled.clone()?;
        let [b, _] = pooled.dims();
        let (h, w) = (height as f32, width as f32);
        Some(AddedCond {
            text_embeds: pooled,
            time_ids: vec![[h, w, 0.0, 0.0, h, w]; b],
        })
    }
}

impl StableDiffusion {
    /// Text embeddings of `prompts`.
    ///
    /// SD: the last hidden state, or with `clip_skip` the hidden state that many layers earlier
    /// through the final layer norm. SDXL: each encoder's penultimate hidden state (or
    /// `clip_skip` layers before it, no final norm) concatenated, plus the second encoder's
    /// pooled projection. Both exactly as diffusers.
    ///
    /// # Shapes
    /// → context `[len(prompts), 77, cross_attention_dim]`, pooled `[len(prompts), P]`
    pub fn encode_text(&self, prompts: &[&str], clip_skip: Option<usize>) -> PromptEmbeds {
        let ids: Vec<Vec<u32>> = prompts
            .iter()
            .map(|p| self.tokenizer.encode_padded(p))
            .collect();
        let out = self.text_encoder.forward(&ids);
        let skip = clip_skip.unwrap_or(0);
        match (self.kind, &self.text_encoder_2) {
            (PipelineKind::StableDiffusionXL, Some(second)) => {
                let ids_2: Vec<Vec<u32>> = prompts
                    .iter()
                    .map(|p| second.tokenizer.encode_padded(p))
                    .collect();
                let out_2 = second.model.forward(&ids_2);
                let penultimate = |h: &[Tensor<3>]| h[h.len().saturating_sub(skip + 2)].clone();
                PromptEmbeds {
                    context: Tensor::cat(
                        vec![
                            penultimate(&out.hidden_states),
                            penultimate(&out_2.hidden_states),
                        ],
                        2,
                    ),
                    pooled: out_2.text_embeds,
                }
            }
            _ => {
                let context = if skip == 0 {
                    out.last_hidden_state
                } else {
                    let i = out.hidden_states.len().saturating_sub(skip + 1);
                    self.text_encoder
                        .final_layer_norm(out.hidden_states[i].clone())
                };
                PromptEmbeds {
                    context,
                    pooled: None,
                }
            }
        }
    }

    /// Text embeddings of `prompts` for models without pooled conditioning (SD 1.x/2.x).
    ///
    /// # Shapes
    /// → `[len(prompts), 77, hidden]`
    pub fn encode_prompts(&self, prompts: &[&str], clip_skip: Option<usize>) -> Tensor<3> {
        self.encode_text(prompts, clip_skip).context
    }

    /// The negative embeddings for classifier-free guidance: `negative`, the empty prompt, or
    /// zeros where the model asks for them (SDXL with no negative prompt), as diffusers.
    /// diffusers applies clip skip to the prompt only, never to the negative prompt.
    pub fn encode_negative(&self, negative: Option<&str>, positive: &PromptEmbeds) -> PromptEmbeds {
        match negative {
            None if self.force_zeros_for_empty_prompt => positive.zeros_like(),
            _ => self.encode_text(&[negative.unwrap_or("")], None),
        }
    }
}
