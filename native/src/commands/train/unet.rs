//! `maskforge train unet`: diffusers' `train_text_to_image` on burn.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use burn::tensor::{DType, Device, Tensor};
use clap::Args;
use maskforge_core::models::diffusion::unet::{UNet2DConditionConfig, UNet2DConditionModel};
use maskforge_core::mosaic::plan::attention_token_index;
use maskforge_core::pipelines::{MODEL_INDEX, ModelIndex, PipelineFiles, StableDiffusion};
use maskforge_core::rng::TorchRng;
use maskforge_core::schedulers::{PredictionType, SchedulerConfig};
use maskforge_core::text::clip::{ClipTextConfig, ClipTextModel};
use maskforge_core::training::checkpoint::safetensors_bytes;
use maskforge_core::training::{
    DenoisingBatch, GroundingTargets, Noising, ParamNames, TextToImage, unet_from_model, unet_loss,
};
use maskforge_core::weights::{
    FileSource, HostTensor, MemorySource, PrefixedWeights, SafetensorsWeights, VarBuilder, Weights,
    load_component_weights,
};
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::data::{TrainingData, load_images};
use super::run::{Task, train};
use super::{TrainOptions, copy_component};
use crate::source::{DirSource, Overlay};

/// Arguments of `maskforge train unet`.
#[derive(Debug, Args, Serialize)]
pub struct UNetArgs {
    /// The diffusers folder whose tokenizer, text encoder, VAE and scheduler are used (and
    /// whose UNet is fine-tuned unless `--unet-config` is given).
    #[arg(long)]
    pub model: PathBuf,
    /// Train a new UNet of this `config.json` from scratch instead of fine-tuning.
    #[arg(long)]
    pub unet_config: Option<PathBuf>,
    /// With `--unet-config`: start every layer `--model`'s UNet has from its weights (same
    /// names and shapes), so that only the layers the config adds are new, such as
    /// `"addition_embed_type": "text"` (the prompt pooled into the time embedding, which
    /// starts at zero).
    #[arg(long, requires = "unet_config")]
    pub grow: bool,
    /// The training objective; default: the scheduler config's `prediction_type`.
    #[arg(long, value_parser = ["epsilon", "v_prediction"])]
    pub objective: Option<String>,
    /// Train the text encoder with the UNet (one optimiser, clipped together); it is
    /// written to the result's `text_encoder/`.
    #[arg(long)]
    pub train_text_encoder: bool,
    /// Add token grounding (TokenCompose) with this weight: the cross-attention of each
    /// caption's object name is trained onto the object's pixels in the data's label maps
    /// (the shapes world's `labels`), the maps MosaicFusion reads as masks.
    #[arg(long, value_name = "WEIGHT")]
    pub grounding_loss: Option<f32>,
    #[command(flatten)]
    pub options: TrainOptions,
}

/// Everything a UNet's loss needs beside the UNet.
pub(super) struct Conditioning {
    pub sd: StableDiffusion,
    pub noising: Noising,
    pub examples: Vec<super::data::Example>,
    pub seed: u64,
    /// Share of captions replaced by the empty prompt.
    pub proportion_empty_prompts: f64,
    /// Weight of the token grounding loss, when trained with it.
    pub grounding: Option<f32>,
}

impl Conditioning {
    /// The VAE latents, text embeddings, noise and timesteps of micro-batch `k`, drawn from
    /// the seed and `k` only.
    /// With `text_encoder` (trained), the captions are encoded by it instead of the frozen one.
    pub fn batch(
        &self,
        indices: &[usize],
        k: u64,
        image: impl Fn(&super::data::Example) -> &Path,
        text_encoder: Option<&ClipTextModel>,
    ) -> Result<DenoisingBatch> {
        let sd = &self.sd;
        let mix = self.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ k;
        let mut rng = TorchRng::new(mix);
        let paths: Vec<&Path> = indices.iter().map(|&i| image(&self.examples[i])).collect();
        let pixels = load_images(&paths, &sd.device, -1.0, 1.0)?.cast(sd.vae_dtype);
        let dist = sd.vae.encode(pixels);
        let sample = dist.mean.clone() + dist.std.clone() * rng.randn_like(&dist.mean);
        let latents = (sample * sd.vae_config.scaling_factor).cast(DType::F32);
        let mut pick = rand_chacha::ChaCha8Rng::seed_from_u64(mix ^ 0x5eed);
        let captions: Vec<&str> = indices
            .iter()
            .map(|&i| {
                pick_caption(
                    &self.examples[i].captions,
                    self.proportion_empty_prompts,
                    &mut pick,
                )
            })
            .collect();
        let context = match text_encoder {
            Some(te) => {
                let ids: Vec<Vec<u32>> = captions
                    .iter()
                    .map(|c| sd.tokenizer.encode_padded(c))
                    .collect();
                te.forward(&ids).last_hidden_state
            }
            None => sd.encode_prompts(&captions, None).cast(DType::F32),
        };
        let grounding = self
            .grounding
            .map(|weight| self.grounding_targets(indices, &captions, weight))
            .transpose()?;
        let noise = rng.randn_like(&latents);
        let mut uniform = rand_chacha::ChaCha8Rng::seed_from_u64(mix);
        let timesteps = indices
            .iter()
            .map(|_| uniform.random_range(0..self.noising.num_timesteps()))
            .collect();
        Ok(DenoisingBatch {
            latents,
            context,
            noise,
            timesteps,
            grounding,
        })
    }

    /// For each example of a micro-batch, the first of its objects whose name is in its
    /// caption: that name's token and the object's pixels in the label map.
    fn grounding_targets(
        &self,
        indices: &[usize],
        captions: &[&str],
        weight: f32,
    ) -> Result<GroundingTargets> {
        let mut tokens = Vec::new();
        let mut masks = Vec::new();
        let mut size = (0, 0);
        for (&i, caption) in indices.iter().zip(captions) {
            let example = &self.examples[i];
            let labels = example
                .objects
                .as_ref()
                .with_context(|| format!("{}: no label map", example.image.display()))?;
            let found = labels.objects.iter().find_map(|(name, id)| {
                let token = attention_token_index(&self.sd.tokenizer, caption, name).ok()?;
                Some((token, *id))
            });
            let Some((token, id)) = found.filter(|_| !caption.is_empty()) else {
                tokens.push(None);
                continue;
            };
            let map = image::open(&labels.labels)
                .with_context(|| format!("{}: cannot read the label map", labels.labels.display()))?
                .to_luma8();
            size = (map.height() as usize, map.width() as usize);
            tokens.push(Some(token));
            masks.push(
                map.pixels()
                    .map(|p| if u32::from(p.0[0]) == id { 1.0 } else { 0.0 })
                    .collect(),
            );
        }
        Ok(GroundingTargets {
            tokens,
            masks,
            height: size.0,
            width: size.1,
            weight,
        })
    }
}

/// One of an example's captions, or the empty prompt with probability `empty`.
fn pick_caption<'a>(captions: &'a [String], empty: f64, rng: &mut impl Rng) -> &'a str {
    if empty > 0.0 && rng.random::<f64>() < empty {
        return "";
    }
    captions[rng.random_range(0..captions.len())].as_str()
}

/// Reads `--objective` into the scheduler config, or takes the config's.
pub(super) fn noising(
    sd: &StableDiffusion,
    objective: Option<&str>,
) -> Result<(Noising, SchedulerConfig)> {
    let mut config = sd.scheduler_config.clone();
    match objective {
        Some("v_prediction") => config.prediction_type = PredictionType::VPrediction,
        Some(_) => config.prediction_type = PredictionType::Epsilon,
        None => {}
    }
    let noising = Noising::new(&config, "scheduler/scheduler_config.json")?;
    Ok((noising, config))
}

struct UNetTask {
    cond: Conditioning,
    config: UNet2DConditionConfig,
    config_json: Vec<u8>,
    /// The text encoder's config when it is trained too.
    text_config: Option<ClipTextConfig>,
    /// The starting weights, `unet.*` (and `text_encoder.*`).
    start: Arc<dyn Weights>,
    model_dir: PathBuf,
    objective: Option<String>,
}

impl Task for UNetTask {
    type Model = TextToImage;

    fn build(&self, vb: &VarBuilder) -> maskforge_core::Result<Self::Model> {
        TextToImage::load(
            vb,
            &self.config,
            self.text_config.as_ref(),
            "unet/config.json",
        )
    }

    fn start(&self) -> Arc<dyn Weights> {
        self.start.clone()
    }

    fn loss(
        &self,
        model: &Self::Model,
        indices: &[usize],
        k: u64,
        _: &Device,
    ) -> Result<Tensor<1>> {
        let batch = self
            .cond
            .batch(indices, k, |e| &e.image, model.text_encoder.as_ref())?;
        Ok(unet_loss(&model.unet, &self.cond.noising, &batch))
    }

    fn save(&self, out: &Path, weights: &[(String, HostTensor)]) -> Result<()> {
        let part = |prefix: &str| -> Vec<(String, HostTensor)> {
            weights
                .iter()
                .filter_map(|(k, t)| Some((k.strip_prefix(prefix)?.to_string(), t.clone())))
                .collect()
        };
        write_component(out, "unet", &self.config_json, &part("unet."))?;
        if self.text_config.is_some() {
            let config = std::fs::read(self.model_dir.join("text_encoder/config.json"))
                .with_context(|| {
                    format!(
                        "{}: cannot read",
                        self.model_dir.join("text_encoder/config.json").display()
                    )
                })?;
            write_weights(
                out,
                "text_encoder",
                "model.safetensors",
                &config,
                &part("text_encoder."),
            )?;
        }
        write_pipeline_rest(&self.model_dir, out, self.objective.as_deref())
    }
}

/// Writes `out/<dir>/{config.json, diffusion_pytorch_model.safetensors}`.
pub(super) fn write_component(
    out: &Path,
    dir: &str,
    config: &[u8],
    weights: &[(String, HostTensor)],
) -> Result<()> {
    write_weights(
        out,
        dir,
        "diffusion_pytorch_model.safetensors",
        config,
        weights,
    )
}

/// Writes `out/<dir>/{config.json, <file>}`.
fn write_weights(
    out: &Path,
    dir: &str,
    file: &str,
    config: &[u8],
    weights: &[(String, HostTensor)],
) -> Result<()> {
    let dir = out.join(dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let bytes = safetensors_bytes(weights, None, false)?;
    crate::write_atomically(&dir.join(file), |tmp| Ok(std::fs::write(tmp, &bytes)?))?;
    crate::write_atomically(&dir.join("config.json"), |tmp| {
        Ok(std::fs::write(tmp, config)?)
    })
}

/// Copies the frozen components of `model` beside the trained UNet, and its MosaicFusion
/// settings (`mosaic.json`) when it has them, with the scheduler's `prediction_type` set to the
/// objective trained.
fn write_pipeline_rest(model: &Path, out: &Path, objective: Option<&str>) -> Result<()> {
    for name in [
        "model_index.json",
        "text_encoder",
        "tokenizer",
        "vae",
        "feature_extractor",
        "mosaic.json",
    ] {
        copy_component(model, out, name)?;
    }
    let src = model.join("scheduler/scheduler_config.json");
    let text = std::fs::read(&src).with_context(|| format!("{}: cannot read", src.display()))?;
    let mut config: serde_json::Value = serde_json::from_slice(&text)
        .with_context(|| format!("{}: invalid JSON", src.display()))?;
    if let (Some(objective), Some(map)) = (objective, config.as_object_mut()) {
        map.insert("prediction_type".into(), objective.into());
    }
    let dst = out.join("scheduler");
    std::fs::create_dir_all(&dst).with_context(|| format!("{}: cannot create", dst.display()))?;
    crate::write_atomically(&dst.join("scheduler_config.json"), |tmp| {
        Ok(std::fs::write(tmp, serde_json::to_vec_pretty(&config)?)?)
    })
}

/// Runs `train unet`.
pub fn run(args: UNetArgs) -> Result<()> {
    let o = &args.options;
    o.check()?;
    if !args.model.join("model_index.json").is_file() {
        bail!(
            "--model {}: not a diffusers folder (no model_index.json)",
            args.model.display()
        );
    }
    let data = TrainingData::open(&o.data, &o.image_field, &o.caption_field, None)?;
    let device = super::device(o)?;
    let source = DirSource::new(&args.model)?;
    let (config_json, config_name) = match &args.unet_config {
        Some(path) => (
            std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?,
            path.display().to_string(),
        ),
        None => {
            let path = args.model.join("unet/config.json");
            let json =
                std::fs::read(&path).with_context(|| format!("{}: cannot read", path.display()))?;
            (json, path.display().to_string())
        }
    };
    let config = UNet2DConditionConfig::from_json(&config_json, &config_name)?;
    // A new UNet: the pipeline is loaded with its starting weights in place of the folder's.
    let mut top = MemorySource::new(args.model.display().to_string());
    let unet_start: Arc<dyn Weights> = match &args.unet_config {
        Some(_) => {
            let init = if args.grow {
                unet_from_model(&config, &config_name, &unet_weights(&source)?, o.seed)?
            } else {
                let names =
                    ParamNames::of(|vb| UNet2DConditionModel::load(vb, &config, &config_name))?;
                names.init_weights(o.seed, format!("a new UNet of {config_name}"))
            };
            let tensors: Vec<(String, HostTensor)> = init.tensors.clone().into_iter().collect();
            top.insert("unet/config.json", config_json.clone());
            top.insert(
                "unet/diffusion_pytorch_model.safetensors",
                safetensors_bytes(&tensors, None, false)?,
            );
            Arc::new(init)
        }
        None => Arc::new(unet_weights(&source)?),
    };
    let sd = StableDiffusion::load(&Overlay { top, base: &source }, &device, DType::F32)?;
    check_fits(&sd, &config, &config_name, &data)?;
    if args.grounding_loss.is_some() {
        check_label_maps(&data)?;
    }
    let (noising, _) = noising(&sd, args.objective.as_deref())?;
    let mut start = vec![("unet.".to_string(), unet_start)];
    if args.train_text_encoder {
        start.push((
            "text_encoder.".to_string(),
            Arc::new(component_weights(&source, "text_encoder")?),
        ));
    }
    let task = UNetTask {
        text_config: args.train_text_encoder.then(|| sd.text_config.clone()),
        start: Arc::new(PrefixedWeights(start)),
        cond: Conditioning {
            sd,
            noising,
            examples: data.examples.clone(),
            seed: o.seed,
            proportion_empty_prompts: o.proportion_empty_prompts,
            grounding: args.grounding_loss,
        },
        config,
        config_json,
        model_dir: args.model.clone(),
        objective: args.objective.clone(),
    };
    let identity = serde_json::json!({ "train": "unet", "args": args });
    train(&task, o, identity, &data, &device)
}

/// Token grounding needs every example's label map, of the images' size.
fn check_label_maps(data: &TrainingData) -> Result<()> {
    for example in &data.examples {
        let labels = example.objects.as_ref().with_context(|| {
            format!(
                "{}: --grounding-loss needs a `labels` map and `objects` for every example \
                 (as `maskforge shapes` writes); this one has none",
                example.image.display()
            )
        })?;
        let dims = image::image_dimensions(&labels.labels)
            .with_context(|| format!("{}: cannot read the label map", labels.labels.display()))?;
        if dims != data.size {
            bail!(
                "{}: the label map is {}×{}, the images {}×{}",
                labels.labels.display(),
                dims.0,
                dims.1,
                data.size.0,
                data.size.1
            );
        }
    }
    Ok(())
}

/// The weights of a diffusers folder's UNet.
pub(super) fn unet_weights(source: &DirSource) -> Result<SafetensorsWeights> {
    component_weights(source, "unet")
}

/// The weights of component folder `dir` of a diffusers folder.
fn component_weights(source: &DirSource, dir: &str) -> Result<SafetensorsWeights> {
    let index = source.read(MODEL_INDEX)?;
    let index = ModelIndex::from_json((*index).as_ref(), &source.display(MODEL_INDEX))?;
    let files = PipelineFiles::pipeline(&index, false);
    Ok(load_component_weights(source, files.component(dir)?)?)
}

/// A UNet must take the VAE's latents and the text encoder's width, and the images must
/// divide into latents.
pub(super) fn check_fits(
    sd: &StableDiffusion,
    unet: &UNet2DConditionConfig,
    file: &str,
    data: &TrainingData,
) -> Result<()> {
    let latent = sd.vae_config.latent_channels;
    if unet.in_channels != latent || unet.out_channels != latent {
        bail!(
            "{file}: in_channels {} / out_channels {} do not match the VAE's {latent} latent channels",
            unet.in_channels,
            unet.out_channels
        );
    }
    if unet.cross_attention_dim != sd.text_config.hidden_size {
        bail!(
            "{file}: cross_attention_dim {} does not match the text encoder's hidden size {}",
            unet.cross_attention_dim,
            sd.text_config.hidden_size
        );
    }
    let f = (1 << (sd.vae_config.block_out_channels.len() - 1)) * unet.downsample_factor();
    let (w, h) = data.size;
    if !(w as usize).is_multiple_of(f) || !(h as usize).is_multiple_of(f) {
        bail!("the images are {w}×{h}: both sides must be multiples of {f} for this VAE and UNet");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_prompts_come_in_their_proportion() {
        let captions = vec!["a red star".to_string(), "a star".to_string()];
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let draws: Vec<&str> = (0..2000)
            .map(|_| pick_caption(&captions, 0.1, &mut rng))
            .collect();
        let empty = draws.iter().filter(|c| c.is_empty()).count();
        assert!((150..250).contains(&empty), "{empty} empty of 2000");
        assert!(draws.contains(&"a red star") && draws.contains(&"a star"));
        let never = (0..500).all(|_| !pick_caption(&captions, 0.0, &mut rng).is_empty());
        assert!(never);
        let always = (0..50).all(|_| pick_caption(&captions, 1.0, &mut rng).is_empty());
        assert!(always);
    }
}
