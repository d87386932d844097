//! Which files may hold the weights of one component folder (`unet/`, `text_encoder/`, a
//! ControlNet's root): plain or `.fp16.` variant, single file or sharded, in the order to try
//! them. A plan only; native and web loaders each look the files up their own way.

use std::collections::BTreeSet;

use crate::error::{Error, Result};

/// The library that saved a component, which decides its weight files' base name; the other
/// library's name is tried after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Library {
    /// `diffusion_pytorch_model.safetensors` (UNet, VAE, ControlNet).
    Diffusers,
    /// `model.safetensors` (text encoders).
    Transformers,
}

impl Library {
    fn base_names(self) -> [&'static str; 2] {
        match self {
            Library::Diffusers => ["diffusion_pytorch_model", "model"],
            Library::Transformers => ["model", "diffusion_pytorch_model"],
        }
    }
}

/// One way a component's weights may be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WeightFile {
    /// One `.safetensors` file.
    Single(String),
    /// A `.safetensors.index.json` whose `weight_map` names the shards (see [`shard_paths`]).
    Sharded(String),
}

impl WeightFile {
    /// The file to look for.
    pub fn path(&self) -> &str {
        match self {
            WeightFile::Single(p) | WeightFile::Sharded(p) => p,
        }
    }
}

/// The weight files of one component folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentFiles {
    /// The folder (`unet`), empty for the root of the source (a ControlNet folder).
    pub dir: String,
    /// Where the weights may be, best first: the first one present is used.
    pub candidates: Vec<WeightFile>,
    /// PyTorch `.bin` files, which are not read: named in the error when only they are there.
    pub unsupported: Vec<String>,
}

impl ComponentFiles {
    /// The candidates of folder `dir` saved by `library`: with `prefer_fp16` the `.fp16.`
    /// variant first, otherwise last; for each variant both base names, each as a single file
    /// then as a sharded index.
    pub fn new(dir: &str, library: Library, prefer_fp16: bool) -> Self {
        let variants = if prefer_fp16 {
            [".fp16", ""]
        } else {
            ["", ".fp16"]
        };
        let bases = library.base_names();
        let candidates = variants
            .into_iter()
            .flat_map(|ext| {
                bases.into_iter().flat_map(move |base| {
                    [
                        WeightFile::Single(join(dir, &format!("{base}{ext}.safetensors"))),
                        WeightFile::Sharded(join(
                            dir,
                            &format!("{base}.safetensors.index{ext}.json"),
                        )),
                    ]
                })
            })
            .collect();
        Self {
            dir: dir.to_string(),
            candidates,
            unsupported: bases
                .iter()
                .map(|b| join(dir, &format!("{b}.bin")))
                .collect(),
        }
    }

    /// The error when no candidate is there, for the folder shown as `file`; `only_unsupported`
    /// when one of [`unsupported`](Self::unsupported) is.
    pub fn not_found(&self, file: String, only_unsupported: bool) -> Error {
        let message = if only_unsupported {
            "only PyTorch .bin weights found; MaskForge reads safetensors (convert the folder \
             with diffusers' save_pretrained(safe_serialization=True))"
                .to_string()
        } else {
            let singles: Vec<&str> = self
                .candidates
                .iter()
                .filter(|c| matches!(c, WeightFile::Single(_)))
                .map(WeightFile::path)
                .collect();
            format!("no weights found (looked for {})", singles.join(", "))
        };
        Error::MissingFile { file, message }
    }
}

/// The shard files a sharded index at `index` names in its `weight_map`, sorted and each once,
/// as paths beside the index; `file` names the index in errors.
pub fn shard_paths(index: &str, bytes: &[u8], file: &str) -> Result<Vec<String>> {
    let json: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| Error::bad_file(file, format!("invalid JSON: {e}")))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| Error::bad_file(file, "no `weight_map` object"))?;
    let dir = index.rsplit_once('/').map_or("", |(dir, _)| dir);
    let shards: BTreeSet<&str> = map.values().filter_map(|v| v.as_str()).collect();
    Ok(shards.into_iter().map(|s| join(dir, s)).collect())
}

/// `dir/name`, or `name` for the source's root (`dir` empty).
fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(files: &ComponentFiles) -> Vec<&str> {
        files.candidates.iter().map(WeightFile::path).collect()
    }

    #[test]
    fn fp16_first_tries_the_variant_then_plain_files() {
        let files = ComponentFiles::new("unet", Library::Diffusers, true);
        assert_eq!(
            paths(&files),
            [
                "unet/diffusion_pytorch_model.fp16.safetensors",
                "unet/diffusion_pytorch_model.safetensors.index.fp16.json",
                "unet/model.fp16.safetensors",
                "unet/model.safetensors.index.fp16.json",
                "unet/diffusion_pytorch_model.safetensors",
                "unet/diffusion_pytorch_model.safetensors.index.json",
                "unet/model.safetensors",
                "unet/model.safetensors.index.json",
            ]
        );
        assert!(matches!(files.candidates[1], WeightFile::Sharded(_)));
        assert_eq!(
            files.unsupported,
            ["unet/diffusion_pytorch_model.bin", "unet/model.bin"]
        );
    }

    #[test]
    fn fp32_first_tries_plain_files_then_the_variant() {
        let files = ComponentFiles::new("text_encoder", Library::Transformers, false);
        assert_eq!(
            paths(&files),
            [
                "text_encoder/model.safetensors",
                "text_encoder/model.safetensors.index.json",
                "text_encoder/diffusion_pytorch_model.safetensors",
                "text_encoder/diffusion_pytorch_model.safetensors.index.json",
                "text_encoder/model.fp16.safetensors",
                "text_encoder/model.safetensors.index.fp16.json",
                "text_encoder/diffusion_pytorch_model.fp16.safetensors",
                "text_encoder/diffusion_pytorch_model.safetensors.index.fp16.json",
            ]
        );
    }

    #[test]
    fn a_root_folder_has_bare_names() {
        let files = ComponentFiles::new("", Library::Diffusers, false);
        assert_eq!(paths(&files)[0], "diffusion_pytorch_model.safetensors");
        let err = files.not_found("net".into(), false).to_string();
        assert!(
            err.starts_with("net: missing (no weights found (looked for diffusion_pytorch_model.safetensors, model.safetensors, diffusion_pytorch_model.fp16.safetensors"),
            "{err}"
        );
        assert!(
            files
                .not_found("net".into(), true)
                .to_string()
                .contains(".bin")
        );
    }

    #[test]
    fn shards_come_from_the_weight_map_sorted_and_once() {
        let index = br#"{"metadata": {}, "weight_map": {
            "b": "diffusion_pytorch_model-00002-of-00002.safetensors",
            "a": "diffusion_pytorch_model-00001-of-00002.safetensors",
            "c": "diffusion_pytorch_model-00002-of-00002.safetensors"}}"#;
        let path = "unet/diffusion_pytorch_model.safetensors.index.json";
        assert_eq!(
            shard_paths(path, index, path).unwrap(),
            [
                "unet/diffusion_pytorch_model-00001-of-00002.safetensors",
                "unet/diffusion_pytorch_model-00002-of-00002.safetensors",
            ]
        );
        let root = shard_paths("model.safetensors.index.json", index, "x").unwrap();
        assert_eq!(
            root[0],
            "diffusion_pytorch_model-00001-of-00002.safetensors"
        );
    }

    #[test]
    fn a_bad_index_names_the_file() {
        let file = "https://host/m/unet/diffusion_pytorch_model.safetensors.index.json";
        let err = shard_paths("unet/x.json", b"{not json", file).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("{file}: invalid JSON")),
            "{err}"
        );
        let err = shard_paths("unet/x.json", br#"{"metadata": {}}"#, file).unwrap_err();
        assert_eq!(err.to_string(), format!("{file}: no `weight_map` object"));
    }
}
