//! Resolving `--model`: a diffusers folder, a single-file checkpoint, or a Hugging Face repo id.

use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::tensor::{DType, Device};
use maskforge_core::arch::Arch;
use maskforge_core::mosaic::options::MODEL_SETTINGS;
use maskforge_core::pipelines::StableDiffusion;
use maskforge_core::weights::{FileSource, SafetensorsFile};

use crate::source::{DirSource, HubSource, map_file};

/// A model's own MosaicFusion settings (run-file keys, which `--config` and the flags
/// override): the embedded model's without `model`, else those of the [`MODEL_SETTINGS`]
/// file a model folder may hold (none for other models).
pub fn mosaic_settings(model: Option<&str>) -> Result<serde_json::Map<String, serde_json::Value>> {
    let Some(model) = model else {
        return Ok(crate::embedded::mosaic_defaults());
    };
    let path = Path::new(model).join(MODEL_SETTINGS);
    if !path.is_file() {
        return Ok(serde_json::Map::new());
    }
    let bytes = std::fs::read(&path).with_context(|| format!("{}: cannot read", path.display()))?;
    serde_json::from_slice(&bytes)
        .with_context(|| format!("{}: not a JSON object of settings", path.display()))
}

/// Loads the pipeline named by `--model`, with `--config` for single files.
pub fn load(
    model: &str,
    config: Option<&Path>,
    device: &Device,
    dtype: DType,
) -> Result<StableDiffusion> {
    let path = Path::new(model);
    if path.is_dir() {
        let source = DirSource::new(path)?;
        return Ok(StableDiffusion::load(&source, device, dtype)?);
    }
    if path.is_file() {
        return load_single_file(path, config, device, dtype);
    }
    if looks_like_repo_id(model) {
        let source = HubSource::new(model);
        return Ok(StableDiffusion::load(&source, device, dtype)?);
    }
    bail!("--model {model}: no such folder or file, and not a Hugging Face repo id (org/name)")
}

fn load_single_file(
    path: &Path,
    config: Option<&Path>,
    device: &Device,
    dtype: DType,
) -> Result<StableDiffusion> {
    if path.extension().and_then(|e| e.to_str()) != Some("safetensors") {
        bail!(
            "{}: single-file checkpoints must be .safetensors (convert .ckpt files first)",
            path.display()
        );
    }
    let name = path.display().to_string();
    let bytes = map_file(path)?;
    let configs: Box<dyn FileSource> = match config {
        Some(dir) => Box::new(DirSource::new(dir)?),
        None => {
            let arch = detect_arch(&name, bytes.clone())?;
            tracing::info!(
                "{name}: using the embedded {arch:?} configs (pass --config DIR to override)"
            );
            Box::new(arch.configs())
        }
    };
    Ok(
        StableDiffusion::load_single_file(&name, bytes, configs.as_ref(), device, dtype)
            .with_context(|| format!("loading {name}"))?,
    )
}

/// SD 2.x checkpoints carry an OpenCLIP text encoder, SDXL a `conditioner`, SD 1.x neither.
fn detect_arch(name: &str, bytes: maskforge_core::weights::Bytes) -> Result<Arch> {
    let file = SafetensorsFile::parse(name, bytes)?;
    let has_prefix = |p: &str| file.keys().any(|k| k.starts_with(p));
    Ok(if has_prefix("conditioner.") {
        Arch::Sdxl
    } else if has_prefix("cond_stage_model.model.") {
        Arch::Sd21
    } else {
        Arch::Sd15
    })
}

fn looks_like_repo_id(s: &str) -> bool {
    let mut parts = s.split('/');
    matches!((parts.next(), parts.next(), parts.next()), (Some(a), Some(b), None)
        if !a.is_empty() && !b.is_empty() && !a.starts_with('.'))
}

/// Shared by the commands: a model loaded with timing in the log.
pub fn load_logged(
    model: &str,
    config: Option<&Path>,
    device: &Device,
    dtype: DType,
) -> Result<StableDiffusion> {
    let start = std::time::Instant::now();
    let sd = load(model, config, device, dtype)?;
    tracing::info!("loaded {model} in {:.2}s", start.elapsed().as_secs_f64());
    Ok(sd)
}
