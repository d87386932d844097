//! The training loop shared by `train unet|controlnet|vae`: micro-batches, gradient
//! accumulation, the optimiser, checkpoints, resume, the loss log and its curve.
//!
//! A run folder holds `train.json` (the arguments; a resume must match them),
//! `checkpoints/step-NNNNNNNN/` (`weights.safetensors` and `train_state.safetensors`, each
//! checkpoint written to a temporary folder and renamed, the last two kept), `logs/loss.csv`
//! (one row per optimiser step) and `logs/loss.png`; the trained model is written beside them
//! when the run ends. `--export` writes a checkpoint's model the same way, elsewhere.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::tensor::{DType, Device, Tensor};
use maskforge_core::training::checkpoint::{restore_state, safetensors_bytes, state_bytes};
use maskforge_core::training::{AdamW, AdamWConfig, LrSchedule, ModelOptimizer, ParamNames};
use maskforge_core::weights::{
    HostTensor, SafetensorsFile, SafetensorsWeights, VarBuilder, Weights,
};

use super::TrainOptions;
use super::curve::write_loss_curve;
use super::data::TrainingData;
use crate::source::map_file;
use crate::write_atomically;

/// What one kind of training trains and how it scores a micro-batch.
pub trait Task {
    type Model: Module;
    /// Builds the model from `vb` (its weights, or a tagged builder for its names).
    fn build(&self, vb: &VarBuilder) -> maskforge_core::Result<Self::Model>;
    /// The weights training starts from (the base model's, or a new model's).
    fn start(&self) -> Arc<dyn Weights>;
    /// The loss of micro-batch `k` (examples `indices`), before dividing by the accumulation.
    fn loss(
        &self,
        model: &Self::Model,
        indices: &[usize],
        k: u64,
        device: &Device,
    ) -> Result<Tensor<1>>;
    /// Writes the trained model (`weights` under their stored keys) into `out`.
    fn save(&self, out: &Path, weights: &[(String, HostTensor)]) -> Result<()>;
}

const CHECKPOINTS: &str = "checkpoints";
const KEEP_CHECKPOINTS: usize = 2;

/// Runs (or resumes) `task` on `data` into `options.out`; `args` is the run's identity in
/// `train.json`.
pub fn train<T: Task>(
    task: &T,
    options: &TrainOptions,
    args: serde_json::Value,
    data: &TrainingData,
    device: &Device,
) -> Result<()> {
    let out = options.out.as_path();
    if let Some(to) = &options.export {
        return export(task, options, &args, to, device);
    }
    let examples = data.examples.len();
    std::fs::create_dir_all(out.join("logs"))
        .with_context(|| format!("{}: cannot create", out.display()))?;
    check_identity(out, &args)?;
    let device = device.clone().autodiff();
    let latest = latest_checkpoint(out)?;
    let (mut model, mut optimizer, n) = restore(task, options, latest.as_ref(), &device)?;
    if let Some((step, _)) = &latest {
        tracing::info!("resuming {} at step {step}", out.display());
    }
    let (log, seconds_before) = LossLog::open(out, optimizer.adamw.step)?;
    let bar = bar(options.steps, optimizer.adamw.step, options.quiet);
    let start = Instant::now();
    let first = optimizer.adamw.step;
    tracing::info!(
        "training {n} parameter tensors on {examples} examples: {} steps of {} × {}",
        options.steps,
        options.grad_accum,
        options.batch
    );
    while optimizer.adamw.step < options.steps {
        let step = optimizer.adamw.step;
        let mut loss_sum = 0.0;
        for j in 0..options.grad_accum {
            let k = (step * options.grad_accum + j) as u64;
            let indices = data.batch_indices(options.seed, k as usize, options.batch);
            let loss = task.loss(&model, &indices, k, &device)?;
            let scaled = if options.grad_accum > 1 {
                loss.clone() / options.grad_accum as f32
            } else {
                loss.clone()
            };
            loss_sum += loss.into_scalar::<f32>() as f64;
            optimizer.accumulate(&model, scaled.backward());
        }
        let loss = loss_sum / options.grad_accum as f64;
        if !loss.is_finite() {
            bail!("the loss is {loss} at step {}: lower --lr", step + 1);
        }
        let (updated, lr) = optimizer.step(model);
        model = updated;
        let grad_norm = optimizer.last_grad_norm;
        let done = optimizer.adamw.step;
        let seconds = seconds_before + start.elapsed().as_secs_f64();
        log.append(done, loss, lr, grad_norm, seconds)?;
        bar.set_position(done as u64);
        let rate = (done - first) as f64 / start.elapsed().as_secs_f64().max(1e-9);
        bar.set_message(format!("loss {loss:.4} {rate:.2} steps/s"));
        if done % options.checkpoint_every == 0 || done == options.steps {
            save_checkpoint(out, done, &optimizer, &model)?;
            write_loss_curve(&log.path, &out.join("logs/loss.png"))?;
        }
    }
    bar.finish();
    task.save(out, &result_weights(&optimizer, &model))?;
    write_loss_curve(&log.path, &out.join("logs/loss.png"))?;
    tracing::info!("trained model written to {}", out.display());
    Ok(())
}

/// The model and optimiser of a run at `checkpoint` (a step and its folder), or at its start,
/// and the number of parameter tensors.
fn restore<T: Task>(
    task: &T,
    options: &TrainOptions,
    checkpoint: Option<&(usize, PathBuf)>,
    device: &Device,
) -> Result<(T::Model, ModelOptimizer, usize)> {
    let names = ParamNames::of(|vb| task.build(vb))?;
    let n = names.params().len();
    let schedule = LrSchedule {
        kind: options.lr_schedule,
        base: options.lr,
        warmup: options.warmup,
        total: options.steps,
    };
    let adamw = AdamWConfig {
        weight_decay: options.weight_decay,
        ..AdamWConfig::default()
    };
    let weights = match checkpoint {
        Some((_, dir)) => open_weights(&dir.join("weights.safetensors"))?,
        None => task.start(),
    };
    let model = task.build(&VarBuilder::from_weights(weights, device, DType::F32))?;
    let mut optimizer = ModelOptimizer::new(
        names,
        &model,
        AdamW::new(adamw, n),
        schedule,
        options.max_grad_norm(),
        options.ema.then_some(options.ema_decay),
    )?;
    if let Some((step, dir)) = checkpoint {
        let state = dir.join("train_state.safetensors");
        let bytes =
            std::fs::read(&state).with_context(|| format!("{}: cannot read", state.display()))?;
        restore_state(
            &mut optimizer,
            &bytes,
            &state.display().to_string(),
            &device.clone().inner(),
        )?;
        if optimizer.adamw.step != *step {
            bail!(
                "{}: holds step {}, its folder says {step}",
                state.display(),
                optimizer.adamw.step
            );
        }
    }
    Ok((model, optimizer, n))
}

/// What a run writes as its model: the EMA when it keeps one, else the weights.
fn result_weights<M: Module>(optimizer: &ModelOptimizer, model: &M) -> Vec<(String, HostTensor)> {
    optimizer
        .ema_weights()
        .unwrap_or_else(|| optimizer.weights(model))
}

/// `--export TO`: the model of the run's checkpoint at `--export-step` (default: its newest)
/// written to `to` as the run's end would write it, without training. Only reads the run
/// folder, so it may run beside the training.
fn export<T: Task>(
    task: &T,
    options: &TrainOptions,
    args: &serde_json::Value,
    to: &Path,
    device: &Device,
) -> Result<()> {
    let out = options.out.as_path();
    let identity = out.join("train.json");
    if !identity.exists() {
        bail!("{}: not a training run (no train.json)", out.display());
    }
    check_identity(out, args)?;
    let all = checkpoints(out)?;
    let steps: Vec<String> = all.iter().map(|(s, _)| s.to_string()).collect();
    let checkpoint = match options.export_step {
        Some(step) => all.iter().find(|(s, _)| *s == step).with_context(|| {
            format!(
                "{}: no checkpoint at step {step} (there are: {})",
                out.display(),
                if steps.is_empty() {
                    "none".to_string()
                } else {
                    steps.join(", ")
                }
            )
        })?,
        None => all
            .last()
            .with_context(|| format!("{}: no checkpoint yet", out.display()))?,
    };
    let device = device.clone().autodiff();
    let (model, optimizer, _) = restore(task, options, Some(checkpoint), &device)?;
    std::fs::create_dir_all(to).with_context(|| format!("{}: cannot create", to.display()))?;
    task.save(to, &result_weights(&optimizer, &model))?;
    tracing::info!(
        "step {} of {} written to {}",
        checkpoint.0,
        out.display(),
        to.display()
    );
    Ok(())
}

fn bar(total: usize, at: usize, quiet: bool) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total as u64).with_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} steps {elapsed} (eta {eta}) {msg}",
        )
        .expect("static template"),
    );
    bar.set_position(at as u64);
    bar
}

/// `train.json`: written by the first run, compared by every resume.
fn check_identity(out: &Path, args: &serde_json::Value) -> Result<()> {
    let path = out.join("train.json");
    match std::fs::read(&path) {
        Ok(bytes) => {
            let saved: serde_json::Value = serde_json::from_slice(&bytes)
                .with_context(|| format!("{}: invalid JSON", path.display()))?;
            if &saved != args {
                bail!(
                    "{}: {} was started with other arguments ({saved}); resume with the same \
                     ones or choose another --out",
                    path.display(),
                    out.display()
                );
            }
            Ok(())
        }
        Err(_) => write_atomically(&path, |tmp| {
            std::fs::write(tmp, serde_json::to_vec_pretty(args)?)?;
            Ok(())
        }),
    }
}

fn open_weights(path: &Path) -> Result<Arc<dyn Weights>> {
    let file = SafetensorsFile::parse(path.display().to_string(), map_file(path)?)?;
    Ok(Arc::new(SafetensorsWeights::new(vec![file])?))
}

/// The newest complete checkpoint: `(step, folder)`.
fn latest_checkpoint(out: &Path) -> Result<Option<(usize, PathBuf)>> {
    Ok(checkpoints(out)?.into_iter().next_back())
}

fn checkpoints(out: &Path) -> Result<Vec<(usize, PathBuf)>> {
    let dir = out.join(CHECKPOINTS);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("{}: cannot list", dir.display()))?;
        let name = entry.file_name().to_string_lossy().to_string();
        if let Some(step) = name.strip_prefix("step-").and_then(|s| s.parse().ok()) {
            found.push((step, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

fn save_checkpoint<M: Module>(
    out: &Path,
    step: usize,
    optimizer: &ModelOptimizer,
    model: &M,
) -> Result<()> {
    let dir = out.join(CHECKPOINTS);
    std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let tmp = dir.join(format!(".step-{step:08}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir(&tmp).with_context(|| format!("{}: cannot create", tmp.display()))?;
    let weights = safetensors_bytes(&optimizer.weights(model), None, false)?;
    std::fs::write(tmp.join("weights.safetensors"), weights)
        .with_context(|| format!("{}: cannot write", tmp.display()))?;
    std::fs::write(tmp.join("train_state.safetensors"), state_bytes(optimizer)?)
        .with_context(|| format!("{}: cannot write", tmp.display()))?;
    let final_dir = dir.join(format!("step-{step:08}"));
    let _ = std::fs::remove_dir_all(&final_dir);
    std::fs::rename(&tmp, &final_dir)
        .with_context(|| format!("{}: cannot write", final_dir.display()))?;
    let all = checkpoints(out)?;
    for (_, old) in all.iter().take(all.len().saturating_sub(KEEP_CHECKPOINTS)) {
        let _ = std::fs::remove_dir_all(old);
    }
    Ok(())
}

/// `logs/loss.csv`: `step,loss,lr,grad_norm,seconds`, one row per optimiser step.
struct LossLog {
    path: PathBuf,
}

impl LossLog {
    /// Opens the log for a run at `step`, dropping rows of later steps (left by a run killed
    /// after its last checkpoint); also returns the training time logged until `step`.
    fn open(out: &Path, step: usize) -> Result<(Self, f64)> {
        let path = out.join("logs/loss.csv");
        let header = "step,loss,lr,grad_norm,seconds";
        let kept: Vec<String> = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .skip(1)
            .filter(|l| {
                l.split(',')
                    .next()
                    .and_then(|s| s.parse::<usize>().ok())
                    .is_some_and(|s| s <= step)
            })
            .map(str::to_string)
            .collect();
        let seconds = kept
            .last()
            .and_then(|l| l.rsplit(',').next()?.parse().ok())
            .unwrap_or(0.0);
        let text: String = std::iter::once(header.to_string())
            .chain(kept)
            .map(|l| l + "\n")
            .collect();
        write_atomically(&path, |tmp| Ok(std::fs::write(tmp, text)?))?;
        Ok((Self { path }, seconds))
    }

    fn append(&self, step: usize, loss: f64, lr: f64, grad_norm: f64, seconds: f64) -> Result<()> {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .with_context(|| format!("{}: cannot append", self.path.display()))?;
        writeln!(f, "{step},{loss},{lr},{grad_norm},{seconds:.3}")
            .with_context(|| format!("{}: cannot append", self.path.display()))
    }
}
