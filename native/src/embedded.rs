//! The model built into the binary, used when `--model` is left out: a small Stable Diffusion
//! 1.5-layout pipeline (`native/models/shapes/`, fp16) trained with `maskforge train` on the
//! shapes world; README's "The shapes model" gives its commands and state. It draws single
//! shapes in the world's colours on low-colour backgrounds, so the masks of a quick start can
//! be judged against their images. Its MosaicFusion settings (`mosaic.json`: 64×64 regions,
//! 25 steps, the attention resolutions of its 4× VAE) replace Stable Diffusion's where neither
//! `--config` nor a flag sets them.

use anyhow::{Context, Result};
use burn::tensor::{DType, Device};
use maskforge_core::arch::Arch;
use maskforge_core::pipelines::StableDiffusion;

/// How the embedded model is named in logs and manifests.
pub const NAME: &str = "embedded:shapes";

/// The model's files, by their paths in a diffusers folder. The tokenizer is CLIP's, which the
/// architecture's configs hold, with the model's own `tokenizer_config.json` (it pads prompts
/// to fewer tokens than Stable Diffusion's 77).
const FILES: [(&str, &[u8]); 9] = [
    (
        "tokenizer/tokenizer_config.json",
        include_bytes!("../models/shapes/tokenizer/tokenizer_config.json"),
    ),
    (
        "model_index.json",
        include_bytes!("../models/shapes/model_index.json"),
    ),
    (
        "scheduler/scheduler_config.json",
        include_bytes!("../models/shapes/scheduler/scheduler_config.json"),
    ),
    (
        "unet/config.json",
        include_bytes!("../models/shapes/unet/config.json"),
    ),
    (
        "unet/diffusion_pytorch_model.safetensors",
        include_bytes!("../models/shapes/unet/diffusion_pytorch_model.safetensors"),
    ),
    (
        "vae/config.json",
        include_bytes!("../models/shapes/vae/config.json"),
    ),
    (
        "vae/diffusion_pytorch_model.safetensors",
        include_bytes!("../models/shapes/vae/diffusion_pytorch_model.safetensors"),
    ),
    (
        "text_encoder/config.json",
        include_bytes!("../models/shapes/text_encoder/config.json"),
    ),
    (
        "text_encoder/model.safetensors",
        include_bytes!("../models/shapes/text_encoder/model.safetensors"),
    ),
];

/// Loads the embedded model.
pub fn load(device: &Device, dtype: DType) -> Result<StableDiffusion> {
    let mut source = Arch::Sd15.configs();
    for (path, bytes) in FILES {
        source.insert(path, bytes.to_vec());
    }
    StableDiffusion::load(&source, device, dtype).context("loading the embedded model")
}

/// The embedded model's own `generate` settings (its folder's `mosaic.json`), as run-file
/// keys.
pub fn mosaic_defaults() -> serde_json::Map<String, serde_json::Value> {
    serde_json::from_slice(include_bytes!("../models/shapes/mosaic.json"))
        .expect("the embedded model's mosaic.json is a JSON object")
}

#[cfg(test)]
mod tests {
    use super::*;
    use maskforge_core::mosaic::MosaicOptions;

    #[test]
    fn the_settings_are_valid_options() {
        let options: MosaicOptions = serde_json::from_value(mosaic_defaults().into()).unwrap();
        assert_eq!(options.region_size, (64, 64));
        options.config(NAME.into()).expect("valid settings");
    }

    #[test]
    fn the_model_loads_with_its_own_tokenizer_settings() {
        let sd = load(&Device::flex(), DType::F32).unwrap();
        let config: serde_json::Value = serde_json::from_slice(FILES[0].1).unwrap();
        let own = config["model_max_length"].as_u64().unwrap() as usize;
        assert_eq!(sd.tokenizer.max_length(), own);
        let context = sd.encode_prompts(&["a photo of a single star"], None);
        assert_eq!(context.dims(), [1, own, sd.unet_config.cross_attention_dim]);
    }
}
