//! Finding the weight files of one diffusers component folder (`unet/`, `vae/`, `text_encoder/`):
//! plain or `.fp16.` variant, single or sharded with a `.safetensors.index.json`.

use std::collections::BTreeSet;

use super::file_source::FileSource;
use super::safetensors_file::{SafetensorsFile, SafetensorsWeights};
use crate::error::{Error, Result};

/// The file names diffusers and transformers give a component's weights.
const BASE_NAMES: [&str; 2] = ["diffusion_pytorch_model", "model"];

/// Loads the weights of the component in folder `dir` of `source`. With `prefer_fp16`, the
/// `.fp16.` variant is tried first, otherwise last; either is used if it is the only one.
pub fn load_component_weights(
    source: &dyn FileSource,
    dir: &str,
    prefer_fp16: bool,
) -> Result<SafetensorsWeights> {
    let variants: [Option<&str>; 2] = if prefer_fp16 {
        [Some("fp16"), None]
    } else {
        [None, Some("fp16")]
    };
    let mut tried = Vec::new();
    for variant in variants {
        for base in BASE_NAMES {
            let ext = variant.map(|v| format!(".{v}")).unwrap_or_default();
            let single = join(dir, &format!("{base}{ext}.safetensors"));
            if source.exists(&single) {
                let file = SafetensorsFile::parse(source.display(&single), source.read(&single)?)?;
                return SafetensorsWeights::new(vec![file]);
            }
            let index = join(dir, &format!("{base}.safetensors.index{ext}.json"));
            if source.exists(&index) {
                return load_sharded(source, dir, &index);
            }
            tried.push(single);
        }
    }
    let message = if BASE_NAMES
        .iter()
        .any(|b| source.exists(&join(dir, &format!("{b}.bin"))))
    {
        "only PyTorch .bin weights found; MaskForge reads safetensors (convert the folder with diffusers' save_pretrained(safe_serialization=True))".to_string()
    } else {
        format!("no weights found (looked for {})", tried.join(", "))
    };
    Err(Error::MissingFile {
        file: source.display(dir),
        message,
    })
}

/// `dir/name`, or `name` for the source's root (`dir` empty).
fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

fn load_sharded(source: &dyn FileSource, dir: &str, index: &str) -> Result<SafetensorsWeights> {
    let name = source.display(index);
    let bytes = source.read(index)?;
    let json: serde_json::Value = serde_json::from_slice((*bytes).as_ref())
        .map_err(|e| Error::bad_file(&name, format!("invalid JSON: {e}")))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| Error::bad_file(&name, "no `weight_map` object"))?;
    let shards: BTreeSet<&str> = map.values().filter_map(|v| v.as_str()).collect();
    let files = shards
        .into_iter()
        .map(|shard| {
            let path = join(dir, shard);
            SafetensorsFile::parse(source.display(&path), source.read(&path)?)
        })
        .collect::<Result<Vec<_>>>()?;
    SafetensorsWeights::new(files)
}
