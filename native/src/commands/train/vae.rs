//! `maskforge train vae`: an `AutoencoderKL` trained on reconstruction plus a weighted KL
//! divergence, from a diffusers config (from scratch) or fine-tuning a pipeline's VAE, whole
//! or its decoder only.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Tensor};
use clap::Args;
use maskforge_core::models::diffusion::vae::{AutoencoderKL, AutoencoderKLConfig};
use maskforge_core::rng::TorchRng;
use maskforge_core::training::{ParamNames, vae_loss};
use maskforge_core::weights::{
    ComponentFiles, HostTensor, Library, VarBuilder, Weights, load_component_weights,
};
use serde::Serialize;

use super::TrainOptions;
use super::data::{Example, TrainingData, load_images};
use super::run::{Task, train};
use super::unet::write_component;
use crate::source::DirSource;

/// Arguments of `maskforge train vae`.
#[derive(Debug, Args, Serialize)]
pub struct VaeArgs {
    /// Train a new VAE of this `config.json` from scratch.
    #[arg(long, conflicts_with = "model")]
    pub config: Option<PathBuf>,
    /// Fine-tune the VAE of this diffusers folder (its `vae/`) or VAE folder.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Weight of the KL term.
    #[arg(long, default_value_t = 1e-6)]
    pub kl_weight: f64,
    /// Train the decoder (and `post_quant_conv`) only: the encoder stays as it is, so the
    /// latents, and a UNet trained on them, stay valid.
    #[arg(long)]
    pub decoder_only: bool,
    #[command(flatten)]
    pub options: TrainOptions,
}

struct VaeTask {
    config: AutoencoderKLConfig,
    config_json: Vec<u8>,
    /// The VAE to fine-tune, or a new one's weights.
    start: Arc<dyn Weights>,
    examples: Vec<Example>,
    kl_weight: f64,
    decoder_only: bool,
    seed: u64,
}

impl Task for VaeTask {
    type Model = AutoencoderKL;

    fn build(&self, vb: &VarBuilder) -> maskforge_core::Result<Self::Model> {
        let vae = AutoencoderKL::load(vb, &self.config)?;
        Ok(if self.decoder_only {
            vae.freeze_encoder()
        } else {
            vae
        })
    }

    fn start(&self) -> Arc<dyn Weights> {
        self.start.clone()
    }

    fn loss(
        &self,
        model: &Self::Model,
        indices: &[usize],
        k: u64,
        device: &Device,
    ) -> Result<Tensor<1>> {
        let paths: Vec<&Path> = indices
            .iter()
            .map(|&i| self.examples[i].image.as_path())
            .collect();
        let plain = device.clone().inner();
        let image = load_images(&paths, &plain, -1.0, 1.0)?;
        let [b, _, h, w] = image.dims();
        let f = 1 << (self.config.block_out_channels.len() - 1);
        let mut rng = TorchRng::new(self.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ k);
        let eps = rng.randn_tensor([b, self.config.latent_channels, h / f, w / f], &plain);
        Ok(vae_loss(model, image, eps, self.kl_weight).total)
    }

    fn save(&self, out: &Path, weights: &[(String, HostTensor)]) -> Result<()> {
        write_component(out, ".", &self.config_json, weights)
    }
}

/// Runs `train vae`.
pub fn run(args: VaeArgs) -> Result<()> {
    let o = &args.options;
    o.check()?;
    let data = TrainingData::open_images(&o.data, &o.image_field)?;
    let device = super::device(o)?;
    let (config_path, base) = match (&args.config, &args.model) {
        (Some(_), None) if args.decoder_only => {
            bail!("--decoder-only fine-tunes an existing VAE: give --model, not --config")
        }
        (Some(config), None) => (config.clone(), None),
        (None, Some(model)) => {
            let dir = if model.join("vae/config.json").is_file() {
                model.join("vae")
            } else {
                model.clone()
            };
            let source = DirSource::new(&dir)?;
            let files = ComponentFiles::new("", Library::Diffusers, false);
            let weights = load_component_weights(&source, &files)?;
            (
                dir.join("config.json"),
                Some(Arc::new(weights) as Arc<dyn Weights>),
            )
        }
        _ => bail!("give --config (a new VAE) or --model (fine-tune a VAE)"),
    };
    let config_json = std::fs::read(&config_path)
        .with_context(|| format!("{}: cannot read", config_path.display()))?;
    let config = AutoencoderKLConfig::from_json(&config_json, &config_path.display().to_string())?;
    let f = 1u32 << (config.block_out_channels.len() - 1);
    let (w, h) = data.size;
    if !w.is_multiple_of(f) || !h.is_multiple_of(f) {
        bail!(
            "the images are {w}×{h}: both sides must be multiples of {f}, the VAE's downsampling"
        );
    }
    let start = match base {
        Some(weights) => weights,
        None => {
            let names = ParamNames::of(|vb| AutoencoderKL::load(vb, &config))?;
            let origin = format!("a new VAE of {}", config_path.display());
            Arc::new(names.init_weights(o.seed, origin))
        }
    };
    let task = VaeTask {
        config,
        config_json,
        start,
        examples: data.examples.clone(),
        kl_weight: args.kl_weight,
        decoder_only: args.decoder_only,
        seed: o.seed,
    };
    let identity = serde_json::json!({ "train": "vae", "args": args });
    train(&task, o, identity, &data, &device)
}
