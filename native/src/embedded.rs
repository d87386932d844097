//! The model built into the binary, used when `--model` is left out: `tests/fixtures/tiny-sd15`,
//! a tiny Stable Diffusion 1.5-layout pipeline with *random* weights (UNet 32/64/64 channels,
//! 32-wide CLIP text encoder, real CLIP vocabulary, PNDM scheduler), stored as one fp16
//! single-file checkpoint (9 MB). Its images are noise: it exists so that every command runs
//! on a fresh machine with nothing downloaded. Real work needs `--model`.

use anyhow::{Context, Result};
use burn::tensor::{DType, Device};
use maskforge_core::arch::Arch;
use maskforge_core::pipelines::StableDiffusion;
use maskforge_core::weights::Bytes;
use std::sync::Arc;

/// How the embedded model is named in logs and manifests.
pub const NAME: &str = "embedded:tiny-sd15 (random weights)";

const CHECKPOINT: &[u8] = include_bytes!("../../tests/fixtures/tiny-sd15.safetensors");

/// Loads the embedded model.
pub fn load(device: &Device, dtype: DType) -> Result<StableDiffusion> {
    let mut configs = Arch::Sd15.configs();
    let files: [(&str, &[u8]); 5] = [
        (
            "model_index.json",
            include_bytes!("../../tests/fixtures/tiny-sd15/model_index.json"),
        ),
        (
            "unet/config.json",
            include_bytes!("../../tests/fixtures/tiny-sd15/unet/config.json"),
        ),
        (
            "vae/config.json",
            include_bytes!("../../tests/fixtures/tiny-sd15/vae/config.json"),
        ),
        (
            "text_encoder/config.json",
            include_bytes!("../../tests/fixtures/tiny-sd15/text_encoder/config.json"),
        ),
        (
            "scheduler/scheduler_config.json",
            include_bytes!("../../tests/fixtures/tiny-sd15/scheduler/scheduler_config.json"),
        ),
    ];
    for (path, bytes) in files {
        configs.insert(path, bytes.to_vec());
    }
    let bytes: Bytes = Arc::new(CHECKPOINT);
    StableDiffusion::load_single_file(NAME, bytes, &configs, device, dtype)
        .context("loading the embedded model")
}
