//! `maskforge txt2img`: one image from a prompt.

use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{Context, Result, bail};
use burn::tensor::{Tensor, TensorData};
use clap::Args;
use maskforge_core::pipelines::{Txt2ImgParams, image_to_rgb8};
use maskforge_core::schedulers::SchedulerKind;

use crate::device::{self, DTypeArg, DeviceArg};
use crate::{model, npy};

/// Arguments of `maskforge txt2img`.
#[derive(Debug, Args)]
pub struct Txt2ImgArgs {
    /// Diffusers folder, single-file .safetensors checkpoint, or Hugging Face repo id.
    #[arg(long)]
    pub model: String,
    /// Diffusers folder whose configs and tokenizer a single-file checkpoint uses.
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[arg(long)]
    pub prompt: String,
    #[arg(long)]
    pub negative_prompt: Option<String>,
    #[arg(long, default_value_t = 512)]
    pub height: usize,
    #[arg(long, default_value_t = 512)]
    pub width: usize,
    #[arg(long, default_value_t = 50)]
    pub steps: usize,
    #[arg(long, default_value_t = 7.5)]
    pub guidance: f64,
    /// ddim, pndm, euler, euler-a, dpmpp-2m, lms or heun; default: the model's own.
    #[arg(long, value_parser = SchedulerKind::from_str)]
    pub scheduler: Option<SchedulerKind>,
    /// Karras sigmas (diffusers' use_karras_sigmas=True) with euler, dpmpp-2m, lms or heun.
    #[arg(long)]
    pub karras_sigmas: bool,
    /// Seed of the torch-compatible noise generator (initial noise unless --latents, and the
    /// noise of ancestral schedulers).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Initial noise: float32 .npy of shape [1,4,H/8,W/8] (diffusers' `latents=`).
    #[arg(long)]
    pub latents: Option<PathBuf>,
    /// Writes the final latents (before VAE decoding) as float32 .npy.
    #[arg(long)]
    pub save_latents: Option<PathBuf>,
    /// Use the hidden state this many layers before the last (diffusers' `clip_skip`).
    #[arg(long)]
    pub clip_skip: Option<usize>,
    /// A ControlNet: diffusers folder or single .safetensors file (repeat for several).
    #[arg(long)]
    pub controlnet: Vec<PathBuf>,
    /// The conditioning image of each --controlnet (PNG or JPEG, resized to HxW).
    #[arg(long)]
    pub control_image: Vec<PathBuf>,
    /// Conditioning scale: one for all ControlNets, or one per ControlNet (default 1.0).
    #[arg(long)]
    pub control_scale: Vec<f32>,
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,
    #[arg(long, value_enum, default_value_t = DTypeArg::F32)]
    pub dtype: DTypeArg,
}

/// Runs `txt2img`.
pub fn run(args: Txt2ImgArgs) -> Result<()> {
    if args.height == 0 || args.width == 0 || args.height % 8 != 0 || args.width % 8 != 0 {
        bail!(
            "--height and --width must be positive multiples of 8, got {}x{}",
            args.height,
            args.width
        );
    }
    let selected = device::select(args.device, args.dtype)?;
    let latents = match &args.latents {
        Some(path) => {
            let (shape, data) = npy::read_f32(path)?;
            let expected = [1, 4, args.height / 8, args.width / 8];
            if shape != expected {
                bail!(
                    "{}: shape {shape:?}, expected {expected:?} for {}x{}",
                    path.display(),
                    args.height,
                    args.width
                );
            }
            Some(Tensor::<4>::from_data(
                TensorData::new(data, expected),
                &selected.device,
            ))
        }
        None => None,
    };
    let sd = model::load_logged(
        &args.model,
        args.config.as_deref(),
        &selected.device,
        selected.dtype,
    )?;
    let controls = crate::control::load_controls(
        &sd,
        &args.controlnet,
        &args.control_image,
        &args.control_scale,
        args.height,
        args.width,
    )?;
    let params = Txt2ImgParams {
        prompt: args.prompt,
        negative_prompt: args.negative_prompt,
        height: args.height,
        width: args.width,
        steps: args.steps,
        guidance: args.guidance,
        scheduler: args.scheduler,
        karras_sigmas: args.karras_sigmas,
        seed: args.seed,
        latents,
        clip_skip: args.clip_skip,
        controls,
    };
    let bar = indicatif::ProgressBar::new(args.steps as u64).with_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} steps {elapsed} (eta {eta})")
            .expect("static template"),
    );
    let out = sd.txt2img(&params, |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();

    if let Some(path) = &args.save_latents {
        let shape = out.latents.dims();
        let data = out
            .latents
            .clone()
            .cast(burn::tensor::DType::F32)
            .into_data()
            .try_into_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("reading latents back: {e:?}"))?;
        npy::write_f32(path, &shape, &data)?;
    }
    let rgb = image_to_rgb8(out.image)?;
    let img = image::RgbImage::from_raw(args.width as u32, args.height as u32, rgb)
        .context("image buffer has the wrong size")?;
    crate::write_atomically(&args.out, |tmp| {
        img.save_with_format(tmp, image::ImageFormat::Png)
            .with_context(|| format!("{}: cannot write PNG", args.out.display()))
    })?;
    tracing::info!("wrote {}", args.out.display());
    Ok(())
}
