//! A loaded Stable Diffusion 1.x/2.x pipeline: tokenizer, text encoder, UNet, VAE and the
//! model's scheduler configuration.

use std::sync::Arc;

use burn::tensor::{DType, Device, Tensor};

use super::model_index::ModelIndex;
use crate::error::{Error, Result};
use crate::models::unet::{UNet2DConditionConfig, UNet2DConditionModel};
use crate::models::vae::{AutoencoderKL, AutoencoderKLConfig};
use crate::schedulers::{SchedulerConfig, SchedulerKind};
use crate::text::clip::{ClipTextConfig, ClipTextModel};
use crate::text::tokenizer::ClipTokenizer;
use crate::weights::ldm::{LdmComponent, LdmLayout};
use crate::weights::{
    FileSource, SafetensorsFile, SafetensorsWeights, VarBuilder, Weights, load_component_weights,
};

/// Everything needed to turn a prompt into an image.
pub struct StableDiffusion {
    pub tokenizer: ClipTokenizer,
    pub text_encoder: ClipTextModel,
    pub text_config: ClipTextConfig,
    pub unet: UNet2DConditionModel,
    pub unet_config: UNet2DConditionConfig,
    pub vae: AutoencoderKL,
    pub vae_config: AutoencoderKLConfig,
    pub scheduler_config: SchedulerConfig,
    /// The scheduler the model ships with.
    pub default_scheduler: SchedulerKind,
    pub device: Device,
    pub dtype: DType,
}

/// Reads and parses a JSON file of `source`, naming it in errors.
pub fn load_json<T: serde::de::DeserializeOwned>(source: &dyn FileSource, path: &str) -> Result<T> {
    let bytes = source.read(path)?;
    serde_json::from_slice((*bytes).as_ref())
        .map_err(|e| Error::bad_file(source.display(path), format!("invalid JSON: {e}")))
}

/// The configs and tokenizer of a pipeline, without weights.
struct Configs {
    tokenizer: ClipTokenizer,
    text: ClipTextConfig,
    unet: UNet2DConditionConfig,
    vae: AutoencoderKLConfig,
    scheduler: SchedulerConfig,
    default_scheduler: SchedulerKind,
}

impl Configs {
    fn read(source: &dyn FileSource) -> Result<Self> {
        let index_path = "model_index.json";
        let index = ModelIndex::from_json(
            (*source.read(index_path)?).as_ref(),
            &source.display(index_path),
        )?;
        let bytes = |p: &str| source.read(p);
        let optional = |p: &str| source.exists(p).then(|| source.read(p)).transpose();

        let tok_special = optional("tokenizer/special_tokens_map.json")?;
        let tok_config = optional("tokenizer/tokenizer_config.json")?;
        let tokenizer = ClipTokenizer::from_folder_files(
            (*bytes("tokenizer/vocab.json")?).as_ref(),
            (*bytes("tokenizer/merges.txt")?).as_ref(),
            tok_special.as_deref().map(|b| b.as_ref()),
            tok_config.as_deref().map(|b| b.as_ref()),
        )
        .map_err(|e| Error::bad_file(source.display("tokenizer"), e))?;

        let cfg = |p: &str| -> Result<(Vec<u8>, String)> {
            Ok(((*bytes(p)?).as_ref().to_vec(), source.display(p)))
        };
        let (b, f) = cfg("text_encoder/config.json")?;
        let text = ClipTextConfig::from_json(&b, &f)?;
        let (b, f) = cfg("unet/config.json")?;
        let unet = UNet2DConditionConfig::from_json(&b, &f)?;
        let (b, f) = cfg("vae/config.json")?;
        let vae = AutoencoderKLConfig::from_json(&b, &f)?;
        let (b, f) = cfg("scheduler/scheduler_config.json")?;
        let scheduler = SchedulerConfig::from_json(&b).map_err(|e| Error::bad_file(&f, e))?;
        let class = index
            .class_of("scheduler")
            .or(scheduler.class_name.as_deref())
            .unwrap_or("PNDMScheduler");
        let default_scheduler = SchedulerKind::from_class_name(class).ok_or_else(|| {
            Error::config(
                source.display("model_index.json"),
                format!("unsupported scheduler `{class}`"),
            )
        })?;
        Ok(Self {
            tokenizer,
            text,
            unet,
            vae,
            scheduler,
            default_scheduler,
        })
    }
}

impl StableDiffusion {
    /// Loads a diffusers-format folder (`model_index.json`, component folders, safetensors in
    /// fp32, fp16 or `.fp16.` variant). `dtype` F16 prefers `.fp16.` files.
    pub fn load(source: &dyn FileSource, device: &Device, dtype: DType) -> Result<Self> {
        let configs = Configs::read(source)?;
        let prefer_fp16 = dtype == DType::F16;
        let vb = |dir: &str| -> Result<VarBuilder> {
            let weights = Arc::new(load_component_weights(source, dir, prefer_fp16)?);
            Ok(VarBuilder::from_weights(weights, device, dtype))
        };
        let unet_origin = source.display("unet");
        Self::build(
            configs,
            &vb("text_encoder")?,
            &vb("unet")?,
            &vb("vae")?,
            &unet_origin,
        )
    }

    /// Loads a single-file checkpoint in the original LDM layout, with the configs and tokenizer
    /// of `configs` (a diffusers folder of the same architecture, weights not needed).
    pub fn load_single_file(
        checkpoint_name: &str,
        checkpoint: crate::weights::Bytes,
        configs: &dyn FileSource,
        device: &Device,
        dtype: DType,
    ) -> Result<Self> {
        let configs = Configs::read(configs)?;
        let file = SafetensorsFile::parse(checkpoint_name, checkpoint)?;
        let ckpt = Arc::new(SafetensorsWeights::new(vec![file])?);
        let has = |k: &str| ckpt.keys().any(|key| key == k);
        let text_layout = if has("cond_stage_model.model.token_embedding.weight") {
            LdmLayout::OpenClipText {
                hidden_size: configs.text.hidden_size,
            }
        } else if has("cond_stage_model.transformer.text_model.embeddings.token_embedding.weight") {
            LdmLayout::ClipText
        } else {
            return Err(Error::bad_file(
                checkpoint_name,
                "no text encoder found (expected cond_stage_model.transformer.* or cond_stage_model.model.*)",
            ));
        };
        let sizes = configs.unet.block_sizes(checkpoint_name)?;
        let unet_layout = LdmLayout::UNet {
            layers_per_block: sizes.layers[0],
            up_block_has_attention: configs
                .unet
                .up_block_types
                .iter()
                .map(|t| t.starts_with("CrossAttn"))
                .collect(),
        };
        let vae_layout = LdmLayout::Vae {
            num_blocks: configs.vae.block_out_channels.len(),
        };
        let vb = |layout| {
            let weights: Arc<dyn Weights> = Arc::new(LdmComponent::new(ckpt.clone(), layout));
            VarBuilder::from_weights(weights, device, dtype)
        };
        Self::build(
            configs,
            &vb(text_layout),
            &vb(unet_layout),
            &vb(vae_layout),
            checkpoint_name,
        )
    }

    /// The architecture of `configs` (a diffusers folder, weights not needed) with random
    /// weights: real sizes and speed with nothing downloaded.
    pub fn random(configs: &dyn FileSource, device: &Device, dtype: DType) -> Result<Self> {
        let vb = VarBuilder::random(device, dtype);
        Self::build(Configs::read(configs)?, &vb, &vb, &vb, "random weights")
    }

    fn build(
        c: Configs,
        text: &VarBuilder,
        unet: &VarBuilder,
        vae: &VarBuilder,
        unet_origin: &str,
    ) -> Result<Self> {
        Ok(Self {
            text_encoder: ClipTextModel::load(text, &c.text)?,
            unet: UNet2DConditionModel::load(unet, &c.unet, unet_origin)?,
            vae: AutoencoderKL::load(vae, &c.vae)?,
            tokenizer: c.tokenizer,
            text_config: c.text,
            unet_config: c.unet,
            vae_config: c.vae,
            scheduler_config: c.scheduler,
            default_scheduler: c.default_scheduler,
            device: unet.device().clone(),
            dtype: unet.dtype(),
        })
    }

    /// Text embeddings of `prompts` (last hidden state, or with `clip_skip` the hidden state
    /// that many layers earlier through the final layer norm, as diffusers).
    ///
    /// # Shapes
    /// → `[len(prompts), 77, hidden]`
    pub fn encode_prompts(&self, prompts: &[&str], clip_skip: Option<usize>) -> Tensor<3> {
        let ids: Vec<Vec<u32>> = prompts
            .iter()
            .map(|p| self.tokenizer.encode_padded(p))
            .collect();
        let out = self.text_encoder.forward(&ids);
        match clip_skip {
            None | Some(0) => out.last_hidden_state,
            Some(k) => {
                let i = out.hidden_states.len().saturating_sub(k + 1);
                self.text_encoder
                    .final_layer_norm(out.hidden_states[i].clone())
            }
        }
    }
}
