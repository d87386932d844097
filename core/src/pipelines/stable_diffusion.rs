//! A loaded Stable Diffusion pipeline (SD 1.x/2.x or SDXL): tokenizers, text encoders, UNet,
//! VAE and the model's scheduler configuration.

use std::sync::Arc;

use burn::tensor::{DType, Device};

use super::files::{MODEL_INDEX, PipelineFiles, SCHEDULER_CONFIG, TokenizerFiles, config_path};
use super::model_index::{ModelIndex, PipelineKind};
use crate::error::{Error, Result};
use crate::models::diffusion::unet::{UNet2DConditionConfig, UNet2DConditionModel};
use crate::models::diffusion::vae::{AutoencoderKL, AutoencoderKLConfig};
use crate::schedulers::{SchedulerConfig, SchedulerKind};
use crate::text::clip::{ClipTextConfig, ClipTextModel};
use crate::text::tokenizer::ClipTokenizer;
use crate::weights::ldm::{LdmComponent, LdmLayout};
use crate::weights::{
    FileSource, SafetensorsFile, SafetensorsWeights, VarBuilder, Weights, load_component_weights,
};

/// A CLIP text encoder with its tokenizer and config.
pub struct TextEncoder {
    pub tokenizer: ClipTokenizer,
    pub model: ClipTextModel,
    pub config: ClipTextConfig,
}

/// Everything needed to turn a prompt into an image.
pub struct StableDiffusion {
    pub kind: PipelineKind,
    pub tokenizer: ClipTokenizer,
    pub text_encoder: ClipTextModel,
    pub text_config: ClipTextConfig,
    /// SDXL's second encoder (`text_encoder_2`, `CLIPTextModelWithProjection`).
    pub text_encoder_2: Option<TextEncoder>,
    /// SDXL: no negative prompt means zero embeddings (diffusers' `force_zeros_for_empty_prompt`).
    pub force_zeros_for_empty_prompt: bool,
    pub unet: UNet2DConditionModel,
    pub unet_config: UNet2DConditionConfig,
    /// Where the UNet config came from, for errors.
    pub unet_origin: String,
    pub vae: AutoencoderKL,
    pub vae_config: AutoencoderKLConfig,
    /// F32 where the VAE is upcast, else the pipeline's dtype.
    pub vae_dtype: DType,
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

/// The configs and tokenizers of a pipeline, without weights.
struct Configs {
    index: ModelIndex,
    tokenizer: ClipTokenizer,
    text: ClipTextConfig,
    /// SDXL: `tokenizer_2` and `text_encoder_2/config.json`.
    second: Option<(ClipTokenizer, ClipTextConfig)>,
    unet: UNet2DConditionConfig,
    unet_file: String,
    vae: AutoencoderKLConfig,
    scheduler: SchedulerConfig,
    default_scheduler: SchedulerKind,
}

fn read_tokenizer(source: &dyn FileSource, dir: &str) -> Result<ClipTokenizer> {
    let files = TokenizerFiles::new(dir);
    let optional = |p: &str| source.exists(p).then(|| source.read(p)).transpose();
    let special = optional(&files.special_tokens_map)?;
    let config = optional(&files.tokenizer_config)?;
    ClipTokenizer::from_folder_files(
        (*source.read(&files.vocab)?).as_ref(),
        (*source.read(&files.merges)?).as_ref(),
        special.as_deref().map(|b| b.as_ref()),
        config.as_deref().map(|b| b.as_ref()),
    )
    .map_err(|e| Error::bad_file(source.display(dir), e))
}

impl Configs {
    fn read(source: &dyn FileSource) -> Result<Self> {
        let index = ModelIndex::from_json(
            (*source.read(MODEL_INDEX)?).as_ref(),
            &source.display(MODEL_INDEX),
        )?;
        let cfg = |p: &str| -> Result<(Vec<u8>, String)> {
            Ok(((*source.read(p)?).as_ref().to_vec(), source.display(p)))
        };
        let (b, f) = cfg(&config_path("text_encoder"))?;
        let text = ClipTextConfig::from_json(&b, &f)?;
        let (b, unet_file) = cfg(&config_path("unet"))?;
        let unet = UNet2DConditionConfig::from_json(&b, &unet_file)?;
        let second = match index.kind {
            PipelineKind::StableDiffusion => None,
            PipelineKind::StableDiffusionXL => {
                let (b, f) = cfg(&config_path("text_encoder_2"))?;
                let config = ClipTextConfig::from_json(&b, &f)?;
                check_sdxl_dims(&unet, &unet_file, &text, &config, &f)?;
                Some((read_tokenizer(source, "tokenizer_2")?, config))
            }
        };
        let (b, f) = cfg(&config_path("vae"))?;
        let vae = AutoencoderKLConfig::from_json(&b, &f)?;
        let (b, f) = cfg(SCHEDULER_CONFIG)?;
        let scheduler = SchedulerConfig::from_json(&b).map_err(|e| Error::bad_file(&f, e))?;
        let class = index
            .class_of("scheduler")
            .or(scheduler.class_name.as_deref())
            .unwrap_or("PNDMScheduler");
        let default_scheduler = SchedulerKind::from_class_name(class).ok_or_else(|| {
            Error::config(
                source.display(MODEL_INDEX),
                format!("unsupported scheduler `{class}`"),
            )
        })?;
        Ok(Self {
            tokenizer: read_tokenizer(source, "tokenizer")?,
            index,
            text,
            second,
            unet,
            unet_file,
            vae,
            scheduler,
            default_scheduler,
        })
    }
}

/// SDXL's UNet must take both encoders' widths as context and the pooled projection plus six
/// time ids as its added embedding.
fn check_sdxl_dims(
    unet: &UNet2DConditionConfig,
    unet_file: &str,
    text: &ClipTextConfig,
    text_2: &ClipTextConfig,
    text_2_file: &str,
) -> Result<()> {
    let context = text.hidden_size + text_2.hidden_size;
    if unet.cross_attention_dim != context {
        return Err(Error::config(
            unet_file,
            format!(
                "cross_attention_dim {} does not equal the two text encoders' widths {} + {}",
                unet.cross_attention_dim, text.hidden_size, text_2.hidden_size
            ),
        ));
    }
    let projection = text_2.projection_dim.ok_or_else(|| {
        Error::config(
            text_2_file,
            "SDXL's text_encoder_2 needs projection_dim (CLIPTextModelWithProjection)",
        )
    })?;
    let added = unet.addition_time_embed_dim.unwrap_or(0) * 6 + projection;
    if unet.addition_embed_type.as_deref() != Some("text_time")
        || unet.projection_class_embeddings_input_dim != Some(added)
    {
        return Err(Error::config(
            unet_file,
            format!(
                "an SDXL UNet needs addition_embed_type \"text_time\" with \
                 projection_class_embeddings_input_dim = 6 × addition_time_embed_dim + {projection} = {added}"
            ),
        ));
    }
    Ok(())
}

/// Variable builders of each component.
struct ComponentWeights {
    text: VarBuilder,
    text_2: VarBuilder,
    unet: VarBuilder,
    vae: VarBuilder,
}

impl StableDiffusion {
    /// Loads a diffusers-format folder (`model_index.json`, component folders, safetensors in
    /// fp32, fp16 or `.fp16.` variant). `dtype` F16 prefers `.fp16.` files.
    pub fn load(source: &dyn FileSource, device: &Device, dtype: DType) -> Result<Self> {
        let configs = Configs::read(source)?;
        let files = PipelineFiles::pipeline(&configs.index, dtype == DType::F16);
        let vb = |dir: &str, dtype: DType| -> Result<VarBuilder> {
            let weights = Arc::new(load_component_weights(source, files.component(dir)?)?);
            Ok(VarBuilder::from_weights(weights, device, dtype))
        };
        let text_2 = match configs.second {
            Some(_) => vb("text_encoder_2", dtype)?,
            None => VarBuilder::random(device, dtype),
        };
        let weights = ComponentWeights {
            text: vb("text_encoder", dtype)?,
            text_2,
            unet: vb("unet", dtype)?,
            vae: vb("vae", configs.vae_dtype(dtype))?,
        };
        Self::build(configs, weights)
    }

    /// Loads a single-file checkpoint in the original LDM (SD) or SGM (SDXL) layout, with the
    /// configs and tokenizers of `configs` (a diffusers folder of the same architecture, weights
    /// not needed).
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
        const SDXL_TEXT: &str = "conditioner.embedders.0.transformer.";
        const SDXL_TEXT_2: &str = "conditioner.embedders.1.model.";
        let is_sdxl = has(&format!(
            "{SDXL_TEXT}text_model.embeddings.token_embedding.weight"
        ));
        if is_sdxl != configs.second.is_some() {
            return Err(Error::bad_file(
                checkpoint_name,
                format!(
                    "the checkpoint is {} but its configs describe {}",
                    if is_sdxl { "SDXL" } else { "not SDXL" },
                    if configs.second.is_some() {
                        "SDXL"
                    } else {
                        "SD 1.x/2.x"
                    }
                ),
            ));
        }
        let text_layout = if is_sdxl {
            LdmLayout::ClipText { prefix: SDXL_TEXT }
        } else if has("cond_stage_model.model.token_embedding.weight") {
            LdmLayout::OpenClipText {
                prefix: "cond_stage_model.model.",
                hidden_size: configs.text.hidden_size,
            }
        } else if has("cond_stage_model.transformer.text_model.embeddings.token_embedding.weight") {
            LdmLayout::ClipText {
                prefix: "cond_stage_model.transformer.",
            }
        } else {
            return Err(Error::bad_file(
                checkpoint_name,
                "no text encoder found (expected cond_stage_model.transformer.*, \
                 cond_stage_model.model.* or conditioner.embedders.*)",
            ));
        };
        let text_2_layout = LdmLayout::OpenClipText {
            prefix: SDXL_TEXT_2,
            hidden_size: configs.second.as_ref().map_or(0, |(_, c)| c.hidden_size),
        };
        let unet_layout = LdmLayout::UNet(configs.unet.ldm_layout(checkpoint_name)?);
        let vae_layout = LdmLayout::Vae {
            num_blocks: configs.vae.block_out_channels.len(),
        };
        let vb = |layout, dtype| {
            let weights: Arc<dyn Weights> = Arc::new(LdmComponent::new(ckpt.clone(), layout));
            VarBuilder::from_weights(weights, device, dtype)
        };
        let weights = ComponentWeights {
            text: vb(text_layout, dtype),
            text_2: vb(text_2_layout, dtype),
            unet: vb(unet_layout, dtype),
            vae: vb(vae_layout, configs.vae_dtype(dtype)),
        };
        Self::build(configs, weights)
    }

    /// The architecture of `configs` (a diffusers folder, weights not needed) with random
    /// weights: real sizes and speed with nothing downloaded.
    pub fn random(configs: &dyn FileSource, device: &Device, dtype: DType) -> Result<Self> {
        let configs = Configs::read(configs)?;
        let vb = VarBuilder::random(device, dtype);
        let weights = ComponentWeights {
            text: vb.clone(),
            text_2: vb.clone(),
            unet: vb,
            vae: VarBuilder::random(device, configs.vae_dtype(dtype)),
        };
        Self::build(configs, weights)
    }

    fn build(c: Configs, w: ComponentWeights) -> Result<Self> {
        let text_encoder_2 = match c.second {
            Some((tokenizer, config)) => Some(TextEncoder {
                model: ClipTextModel::load(&w.text_2, &config)?,
                tokenizer,
                config,
            }),
            None => None,
        };
        Ok(Self {
            kind: c.index.kind,
            text_encoder: ClipTextModel::load(&w.text, &c.text)?,
            text_encoder_2,
            force_zeros_for_empty_prompt: c.index.force_zeros_for_empty_prompt,
            unet: UNet2DConditionModel::load(&w.unet, &c.unet, &c.unet_file)?,
            vae: AutoencoderKL::load(&w.vae, &c.vae)?,
            vae_dtype: w.vae.dtype(),
            tokenizer: c.tokenizer,
            text_config: c.text,
            unet_config: c.unet,
            unet_origin: c.unet_file,
            vae_config: c.vae,
            scheduler_config: c.scheduler,
            default_scheduler: c.default_scheduler,
            device: w.unet.device().clone(),
            dtype: w.unet.dtype(),
        })
    }
}

impl Configs {
    /// SDXL's VAE runs in f32 when its config asks for it (`force_upcast`: it overflows in f16
    /// and decodes black images), as diffusers' SDXL pipeline upcasts it.
    fn vae_dtype(&self, dtype: DType) -> DType {
        let upcast = self.index.kind == PipelineKind::StableDiffusionXL && self.vae.force_upcast;
        if dtype == DType::F16 && upcast {
            DType::F32
        } else {
            dtype
        }
    }
}
