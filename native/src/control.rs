//! `--controlnet`, `--control-image`, `--control-scale`: ControlNets and their conditioning
//! images, read from disk and checked against the loaded pipeline. A ControlNet is a diffusers
//! `ControlNetModel` folder, a single `.safetensors` file, or a diffusers ControlNet pipeline
//! (`model_index.json` with a `controlnet` component, as `StableDiffusionControlNetPipeline`
//! saves it): its `controlnet/` folder is the net, and its other components the base model
//! SegGen runs it on when `--model` is not given.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use maskforge_core::imaging::control_image::decode_control_image;
use maskforge_core::pipelines::{Control, ControlNet, MODEL_INDEX, ModelIndex, StableDiffusion};
use maskforge_core::seggen::options::{CONTROLNET_SETTINGS, ControlNetSettings};

use crate::source::{DirSource, map_file};

/// Loads each ControlNet (a diffusers folder or a single `.safetensors` file) with its image
/// and scale. One scale applies to every ControlNet; otherwise there must be one per net.
pub fn load_controls(
    sd: &StableDiffusion,
    nets: &[PathBuf],
    images: &[PathBuf],
    scales: &[f32],
    height: usize,
    width: usize,
) -> Result<Vec<Control>> {
    if nets.len() != images.len() {
        bail!(
            "{} --controlnet but {} --control-image: give one image per ControlNet",
            nets.len(),
            images.len()
        );
    }
    if scales.len() > 1 && scales.len() != nets.len() {
        bail!(
            "{} --control-scale for {} --controlnet: give one scale, or one per ControlNet",
            scales.len(),
            nets.len()
        );
    }
    nets.iter()
        .zip(images)
        .enumerate()
        .map(|(i, (net, image))| {
            let net = load_controlnet(sd, net)?;
            sd.check_controlnet(&net)?;
            let image = read_control_image(image, height, width, &sd.device)?;
            let scale = scales.get(i).or(scales.first()).copied().unwrap_or(1.0);
            Ok(Control {
                net: Arc::new(net),
                image,
                scale,
            })
        })
        .collect()
}

/// The SegGen settings a ControlNet folder holds in its [`CONTROLNET_SETTINGS`] file (none for
/// single files and folders without one).
pub fn controlnet_settings(path: &Path) -> Result<ControlNetSettings> {
    let file = path.join(CONTROLNET_SETTINGS);
    if !path.is_dir() || !file.is_file() {
        return Ok(ControlNetSettings::default());
    }
    let bytes = std::fs::read(&file).with_context(|| format!("{}: cannot read", file.display()))?;
    Ok(ControlNetSettings::parse(
        &file.display().to_string(),
        &bytes,
    )?)
}

/// Whether `path` is a diffusers ControlNet pipeline folder; a pipeline folder without a
/// `controlnet` component is an error.
pub fn is_controlnet_pipeline(path: &Path) -> Result<bool> {
    let file = path.join(MODEL_INDEX);
    if !path.is_dir() || !file.is_file() {
        return Ok(false);
    }
    let bytes = std::fs::read(&file).with_context(|| format!("{}: cannot read", file.display()))?;
    let index = ModelIndex::from_json(&bytes, &file.display().to_string())?;
    if index.class_of("controlnet").is_none() {
        bail!(
            "{}: a pipeline without a `controlnet` component; --controlnet takes a ControlNet \
             folder or .safetensors file, or a ControlNet pipeline folder",
            file.display()
        );
    }
    Ok(true)
}

/// The base model a ControlNet brings: the pipeline itself when `path` is a ControlNet
/// pipeline folder, else `None`.
pub fn controlnet_base(path: &Path) -> Result<Option<String>> {
    Ok(is_controlnet_pipeline(path)?.then(|| path.display().to_string()))
}

pub fn load_controlnet(sd: &StableDiffusion, path: &Path) -> Result<ControlNet> {
    let net;
    let path = if is_controlnet_pipeline(path)? {
        net = path.join("controlnet");
        &net
    } else {
        path
    };
    if path.is_dir() {
        return Ok(ControlNet::load(
            &DirSource::new(path)?,
            &sd.device,
            sd.dtype,
        )?);
    }
    if !path.is_file() {
        bail!("--controlnet {}: no such folder or file", path.display());
    }
    if path.extension().and_then(|e| e.to_str()) != Some("safetensors") {
        bail!(
            "{}: single-file ControlNets must be .safetensors",
            path.display()
        );
    }
    let name = path.display().to_string();
    Ok(ControlNet::load_single_file(
        &name,
        map_file(path)?,
        &sd.unet_config,
        &sd.device,
        sd.dtype,
    )?)
}

/// Reads `path` and prepares it at the output size (see [`decode_control_image`]).
fn read_control_image(
    path: &Path,
    height: usize,
    width: usize,
    device: &burn::tensor::Device,
) -> Result<burn::tensor::Tensor<4>> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("{}: cannot read control image", path.display()))?;
    Ok(decode_control_image(
        &bytes,
        &path.display().to_string(),
        height,
        width,
        device,
    )?)
}
