//! `maskforge train controlnet`: diffusers' `train_controlnet` on burn. The ControlNet
//! starts as `ControlNetModel.from_unet` of `--model`'s UNet (or from `--controlnet`), the
//! UNet, VAE and text encoder stay frozen.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use burn::tensor::{DType, Device, Tensor};
use clap::Args;
use maskforge_core::models::diffusion::controlnet::{ControlNetConfig, ControlNetModel};
use maskforge_core::pipelines::{PipelineFiles, StableDiffusion};
use maskforge_core::training::{ConsistencyReward, controlnet_from_unet, controlnet_loss};
use maskforge_core::weights::{HostTensor, VarBuilder, Weights, load_component_weights};
use serde::Serialize;

use super::TrainOptions;
use super::data::{TrainingData, load_images};
use super::run::{Task, train};
use super::unet::{Conditioning, check_fits, noising, unet_weights, write_component};
use crate::source::DirSource;

/// Arguments of `maskforge train controlnet`.
#[derive(Debug, Args, Serialize)]
pub struct ControlNetArgs {
    /// The diffusers folder whose UNet the ControlNet steers (frozen, as its text encoder and
    /// VAE).
    #[arg(long)]
    pub model: PathBuf,
    /// Continue from this ControlNet folder instead of starting from the UNet.
    #[arg(long)]
    pub controlnet: Option<PathBuf>,
    /// Path field of the captions file that holds the conditioning image.
    #[arg(long, default_value = "colors")]
    pub conditioning_field: String,
    /// Channels of the conditioning encoder's blocks (each after the first halves the size):
    /// their number sets the downsampling, which must equal the VAE's. Default: diffusers'
    /// 16,32,96,256, cut to the VAE's number of levels (16,32,96 for a VAE that downsamples
    /// by 4).
    #[arg(long, value_delimiter = ',')]
    pub conditioning_channels: Option<Vec<usize>>,
    /// The training objective; default: the scheduler config's `prediction_type`.
    #[arg(long, value_parser = ["epsilon", "v_prediction"])]
    pub objective: Option<String>,
    /// Weight of ControlNet++'s consistency reward, with the shapes world's saturation rule as
    /// its segmenter: the colour map's labelled pixels should come out saturated, the rest
    /// not (0: off, as diffusers' `train_controlnet`).
    #[arg(long, default_value_t = 0.0)]
    #[serde(skip_serializing_if = "super::is_zero")]
    pub consistency_weight: f64,
    /// The highest timestep whose items the consistency reward scores (ControlNet++'s 200).
    #[arg(long, default_value_t = MAX_TIMESTEP)]
    #[serde(skip_serializing_if = "is_default_max")]
    pub consistency_max_timestep: usize,
    #[command(flatten)]
    pub options: TrainOptions,
}

/// ControlNet++'s rewarded timesteps: 0..=200 of 1000.
const MAX_TIMESTEP: usize = 200;

/// Keeps runs from before `--consistency-max-timestep` resumable: their identity lacks it.
fn is_default_max(t: &usize) -> bool {
    *t == MAX_TIMESTEP
}

struct ControlNetTask {
    cond: Conditioning,
    /// `--consistency-weight` and `--consistency-max-timestep`, when the weight is not 0.
    reward: Option<(f64, usize)>,
    config: ControlNetConfig,
    config_json: Vec<u8>,
    start: Arc<dyn Weights>,
}

impl Task for ControlNetTask {
    type Model = ControlNetModel;

    fn build(&self, vb: &VarBuilder) -> maskforge_core::Result<Self::Model> {
        ControlNetModel::load(vb, &self.config, "controlnet/config.json")
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
        let batch = self.cond.batch(indices, k, |e| &e.image, None)?;
        let paths: Vec<&Path> = indices
            .iter()
            .map(|&i| {
                self.cond.examples[i]
                    .conditioning
                    .as_deref()
                    .expect("read with a conditioning field")
            })
            .collect();
        let image = load_images(&paths, &self.cond.sd.device, 0.0, 1.0)?;
        let sd = &self.cond.sd;
        let reward = self.reward.map(|(weight, max_timestep)| ConsistencyReward {
            vae: &sd.vae,
            scaling_factor: sd.vae_config.scaling_factor,
            shift_factor: sd.vae_config.shift_factor,
            vae_dtype: sd.vae_dtype,
            weight: weight as f32,
            max_timestep,
        });
        Ok(controlnet_loss(
            &sd.unet,
            model,
            &image,
            &self.cond.noising,
            &batch,
            reward.as_ref(),
        ))
    }

    fn save(&self, out: &Path, weights: &[(String, HostTensor)]) -> Result<()> {
        write_component(out, ".", &self.config_json, weights)
    }
}

/// The keys of diffusers' `ControlNetModel` config that come from the UNet's.
const FROM_UNET: &[&str] = &[
    "act_fn",
    "addition_embed_type",
    "addition_embed_type_num_heads",
    "addition_time_embed_dim",
    "attention_head_dim",
    "block_out_channels",
    "class_embed_type",
    "cross_attention_dim",
    "down_block_types",
    "downsample_padding",
    "encoder_hid_dim",
    "encoder_hid_dim_type",
    "flip_sin_to_cos",
    "freq_shift",
    "in_channels",
    "layers_per_block",
    "mid_block_scale_factor",
    "mid_block_type",
    "norm_eps",
    "norm_num_groups",
    "num_attention_heads",
    "num_class_embeds",
    "only_cross_attention",
    "projection_class_embeddings_input_dim",
    "resnet_time_scale_shift",
    "transformer_layers_per_block",
    "upcast_attention",
    "use_linear_projection",
];

/// `ControlNetModel.from_unet`'s config for the UNet config `unet` (JSON).
fn config_from_unet(unet: &[u8], file: &str, conditioning: &[usize]) -> Result<Vec<u8>> {
    let unet: serde_json::Value =
        serde_json::from_slice(unet).with_context(|| format!("{file}: invalid JSON"))?;
    let mut config = serde_json::Map::new();
    config.insert("_class_name".into(), "ControlNetModel".into());
    for key in FROM_UNET {
        if let Some(v) = unet.get(*key) {
            config.insert((*key).into(), v.clone());
        }
    }
    config.insert("conditioning_channels".into(), 3.into());
    config.insert(
        "conditioning_embedding_out_channels".into(),
        conditioning.into(),
    );
    config.insert("controlnet_conditioning_channel_order".into(), "rgb".into());
    config.insert("global_pool_conditions".into(), false.into());
    Ok(serde_json::to_vec_pretty(&config)?)
}

/// diffusers' conditioning encoder widths (16, 32, 96, 256) for a VAE of `levels` levels:
/// one block per level, so that both downsample alike.
fn default_conditioning_channels(levels: usize) -> Vec<usize> {
    let mut widths = vec![16, 32, 96, 256];
    while widths.len() < levels {
        widths.push(256);
    }
    widths.truncate(levels.max(1));
    widths
}

/// Runs `train controlnet`.
pub fn run(args: ControlNetArgs) -> Result<()> {
    let o = &args.options;
    o.check()?;
    if !(args.consistency_weight >= 0.0 && args.consistency_weight.is_finite()) {
        bail!("--consistency-weight must be a finite number ≥ 0");
    }
    if !args.model.join("model_index.json").is_file() {
        bail!(
            "--model {}: not a diffusers folder (no model_index.json)",
            args.model.display()
        );
    }
    let data = TrainingData::open(
        &o.data,
        &o.image_field,
        &o.caption_field,
        Some(&args.conditioning_field),
    )?;
    let device = super::device(o)?;
    let source = DirSource::new(&args.model)?;
    let sd = StableDiffusion::load(&source, &device, DType::F32)?;
    check_fits(&sd, &sd.unet_config, &sd.unet_origin, &data)?;
    let (config_json, config_name, start): (Vec<u8>, String, Arc<dyn Weights>) = match &args
        .controlnet
    {
        Some(dir) => {
            let cn = DirSource::new(dir)?;
            let path = dir.join("config.json");
            let json =
                std::fs::read(&path).with_context(|| format!("{}: cannot read", path.display()))?;
            let weights =
                load_component_weights(&cn, PipelineFiles::controlnet(false).component("")?)?;
            (json, path.display().to_string(), Arc::new(weights))
        }
        None => {
            let path = args.model.join("unet/config.json");
            let unet_json =
                std::fs::read(&path).with_context(|| format!("{}: cannot read", path.display()))?;
            let levels = sd.vae_config.block_out_channels.len();
            let conditioning = args
                .conditioning_channels
                .clone()
                .unwrap_or_else(|| default_conditioning_channels(levels));
            let json = config_from_unet(&unet_json, &path.display().to_string(), &conditioning)?;
            let config = ControlNetConfig::from_json(&json, "controlnet/config.json")?;
            let unet = unet_weights(&source)?;
            let start = controlnet_from_unet(&config, &unet, o.seed)?;
            (
                json,
                "the ControlNet made from the UNet".into(),
                Arc::new(start),
            )
        }
    };
    let config = ControlNetConfig::from_json(&config_json, &config_name)?;
    let factor = 1usize << (config.conditioning_embedding_out_channels.len() - 1);
    let vae_factor = 1usize << (sd.vae_config.block_out_channels.len() - 1);
    if factor != vae_factor {
        bail!(
            "{config_name}: the conditioning encoder downsamples by {factor} (conditioning_embedding_out_channels, set by --conditioning-channels), the VAE by {vae_factor}"
        );
    }
    let (noising, _) = noising(&sd, args.objective.as_deref())?;
    let reward = (args.consistency_weight > 0.0)
        .then_some((args.consistency_weight, args.consistency_max_timestep));
    let task = ControlNetTask {
        reward,
        cond: Conditioning {
            sd,
            noising,
            examples: data.examples.clone(),
            seed: o.seed,
            proportion_empty_prompts: o.proportion_empty_prompts,
            grounding: None,
        },
        config,
        config_json,
        start,
    };
    let identity = serde_json::json!({ "train": "controlnet", "args": args });
    train(&task, o, identity, &data, &device)
}

#[cfg(test)]
mod tests {
    use super::default_conditioning_channels;

    #[test]
    fn the_default_encoder_downsamples_as_the_vae() {
        assert_eq!(default_conditioning_channels(4), [16, 32, 96, 256]);
        assert_eq!(default_conditioning_channels(3), [16, 32, 96]);
        assert_eq!(default_conditioning_channels(1), [16]);
        assert_eq!(default_conditioning_channels(5), [16, 32, 96, 256, 256]);
    }
}
