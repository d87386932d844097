//! `maskforge train unet|controlnet|vae`: training on burn's autodiff, on the CPU or wgpu.
//! The result is a diffusers folder the other commands and the browser load unchanged.

mod controlnet;
mod curve;
mod data;
mod run;
mod unet;
mod vae;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use maskforge_core::training::LrScheduleKind;
use serde::Serialize;

use crate::device::{DTypeArg, DeviceArg, select};

pub use controlnet::ControlNetArgs;
pub use unet::UNetArgs;
pub use vae::VaeArgs;

/// Arguments of `maskforge train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    #[command(subcommand)]
    pub what: TrainCommand,
}

/// What to train.
#[derive(Debug, Subcommand)]
pub enum TrainCommand {
    /// A text-to-image UNet, from scratch (`--unet-config`) or fine-tuning `--model`'s; the
    /// VAE and text encoder stay frozen. On colour maps (`--image-field colors`) this is
    /// SegGen's Text2Mask.
    Unet(UNetArgs),
    /// A ControlNet initialised from `--model`'s UNet, the UNet frozen: on colour maps
    /// (`--conditioning-field colors`, the default) this is SegGen's Mask2Img.
    Controlnet(ControlNetArgs),
    /// An `AutoencoderKL` (reconstruction + KL), from a config or fine-tuning `--model`'s;
    /// the data folder may be plain images.
    Vae(VaeArgs),
}

/// Options shared by every kind of training.
#[derive(Debug, Clone, Args, Serialize)]
pub struct TrainOptions {
    /// Data folder: images with `captions.jsonl` (`maskforge shapes`) or `metadata.jsonl`.
    #[arg(long)]
    pub data: PathBuf,
    /// Run folder: checkpoints, logs, and the trained model at the end. A run started there
    /// before resumes from its last checkpoint.
    #[arg(long)]
    pub out: PathBuf,
    /// Optimiser steps.
    #[arg(long, default_value_t = 1000)]
    pub steps: usize,
    /// Examples per micro-batch.
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    /// Micro-batches per optimiser step (gradient accumulation).
    #[arg(long, default_value_t = 1)]
    pub grad_accum: usize,
    /// Peak learning rate (AdamW).
    #[arg(long, default_value_t = 1e-4)]
    pub lr: f64,
    /// Learning-rate schedule: constant, constant_with_warmup, linear or cosine.
    #[arg(long, default_value = "constant")]
    pub lr_schedule: LrScheduleKind,
    /// Warm-up steps of the schedule.
    #[arg(long, default_value_t = 0)]
    pub warmup: usize,
    /// AdamW's decoupled weight decay.
    #[arg(long, default_value_t = 1e-2)]
    pub weight_decay: f64,
    /// Clip the gradients' total 2-norm to this (diffusers' `--max_grad_norm`).
    #[arg(long, default_value_t = 1.0)]
    pub max_grad_norm: f64,
    /// Keep an exponential moving average of the weights and save it as the result.
    #[arg(long)]
    pub ema: bool,
    /// The EMA's decay.
    #[arg(long, default_value_t = 0.9999)]
    pub ema_decay: f64,
    /// Seed of the data order, the noise, the timesteps and a fresh model's weights.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Path field of the captions file that holds the training image.
    #[arg(long, default_value = "image")]
    pub image_field: String,
    /// The caption fields of the captions file, comma-separated: names or JSON pointers
    /// (`/objects/0/caption,/objects/0/caption_plain`); each use of an example draws one.
    /// Default: `caption`, else `text`.
    #[arg(long, value_delimiter = ',')]
    pub caption_field: Vec<String>,
    /// Share of captions replaced by the empty prompt, so that the model also learns the
    /// unconditional prediction classifier-free guidance needs (diffusers'
    /// `--proportion_empty_prompts`).
    #[arg(long, default_value_t = 0.0)]
    #[serde(skip_serializing_if = "is_zero")]
    pub proportion_empty_prompts: f64,
    /// Write a checkpoint every this many steps (and at the end).
    #[arg(long, default_value_t = 100)]
    #[serde(skip)]
    pub checkpoint_every: usize,
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    #[serde(skip)]
    pub device: DeviceArg,
    /// No progress bar.
    #[arg(long)]
    #[serde(skip)]
    pub quiet: bool,
    /// Do not train: write the model of the run's newest checkpoint (or `--export-step`'s) to
    /// this folder as the run's end writes it (the EMA with `--ema`), to sample or score it
    /// while the run goes on. The other arguments are the run's.
    #[arg(long, value_name = "DIR")]
    #[serde(skip)]
    pub export: Option<PathBuf>,
    /// With `--export`: the checkpoint's step.
    #[arg(long, requires = "export")]
    #[serde(skip)]
    pub export_step: Option<usize>,
}

impl TrainOptions {
    fn check(&self) -> Result<()> {
        let positive = [
            ("--steps", self.steps),
            ("--batch", self.batch),
            ("--grad-accum", self.grad_accum),
            ("--checkpoint-every", self.checkpoint_every),
        ];
        for (flag, v) in positive {
            anyhow::ensure!(v > 0, "{flag} must be at least 1");
        }
        anyhow::ensure!(
            self.lr > 0.0 && self.lr.is_finite(),
            "--lr must be positive"
        );
        anyhow::ensure!(
            (0.0..1.0).contains(&self.ema_decay),
            "--ema-decay must be in [0, 1)"
        );
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.proportion_empty_prompts),
            "--proportion-empty-prompts must be in [0, 1]"
        );
        Ok(())
    }

    fn max_grad_norm(&self) -> Option<f64> {
        (self.max_grad_norm > 0.0).then_some(self.max_grad_norm)
    }
}

/// Keeps runs from before an option resumable (`--proportion-empty-prompts`,
/// `--consistency-weight`): their identity lacks it.
fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

/// Runs `train`.
pub fn run(args: TrainArgs) -> Result<()> {
    match args.what {
        TrainCommand::Unet(a) => unet::run(a),
        TrainCommand::Controlnet(a) => controlnet::run(a),
        TrainCommand::Vae(a) => vae::run(a),
    }
}

fn device(options: &TrainOptions) -> Result<burn::tensor::Device> {
    Ok(select(options.device, DTypeArg::F32)?.device)
}

/// Copies file or folder `name` of `from` into `to` unless it is there.
fn copy_component(from: &Path, to: &Path, name: &str) -> Result<()> {
    let (src, dst) = (from.join(name), to.join(name));
    if dst.exists() || !src.exists() {
        return Ok(());
    }
    if src.is_file() {
        std::fs::copy(&src, &dst).with_context(|| format!("{}: cannot copy", dst.display()))?;
        return Ok(());
    }
    std::fs::create_dir_all(&dst).with_context(|| format!("{}: cannot create", dst.display()))?;
    for entry in
        std::fs::read_dir(&src).with_context(|| format!("{}: cannot list", src.display()))?
    {
        let entry = entry?;
        let name = entry.file_name();
        copy_component(&src, &dst, &name.to_string_lossy())?;
    }
    Ok(())
}
