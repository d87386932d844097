//! Which files a diffusers pipeline folder or ControlNet folder needs, decided once for every
//! loader: the native one finds them on disk, the browser fetches them.

use super::model_index::{ModelIndex, PipelineKind};
use crate::error::{Error, Result};
use crate::weights::{ComponentFiles, Library};

/// A pipeline folder's index, read first: it decides the rest.
pub const MODEL_INDEX: &str = "model_index.json";

/// The scheduler's config in a pipeline folder.
pub const SCHEDULER_CONFIG: &str = "scheduler/scheduler_config.json";

/// The config of the component in folder `dir` (empty: the root, as in a ControlNet folder).
pub fn config_path(dir: &str) -> String {
    if dir.is_empty() {
        "config.json".into()
    } else {
        format!("{dir}/config.json")
    }
}

/// The files of a CLIP tokenizer folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizerFiles {
    pub vocab: String,
    pub merges: String,
    /// Optional.
    pub special_tokens_map: String,
    /// Optional.
    pub tokenizer_config: String,
}

impl TokenizerFiles {
    /// The files of folder `dir` (`tokenizer`, `tokenizer_2`).
    pub fn new(dir: &str) -> Self {
        Self {
            vocab: format!("{dir}/vocab.json"),
            merges: format!("{dir}/merges.txt"),
            special_tokens_map: format!("{dir}/special_tokens_map.json"),
            tokenizer_config: format!("{dir}/tokenizer_config.json"),
        }
    }
}

/// Every file a pipeline needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineFiles {
    /// Configs and tokenizer files that must be there (`model_index.json` or a ControlNet's
    /// `config.json` first).
    pub required: Vec<String>,
    /// Files read when there: the tokenizers' special tokens and configs.
    pub optional: Vec<String>,
    /// The weighted components, each with its candidate weight files.
    pub components: Vec<ComponentFiles>,
}

impl PipelineFiles {
    /// The files of the diffusers folder with `model_index.json` `index`; with `prefer_fp16`
    /// the `.fp16.` variant's weights first.
    pub fn pipeline(index: &ModelIndex, prefer_fp16: bool) -> Self {
        let tokenizers: &[&str] = match index.kind {
            PipelineKind::StableDiffusion => &["tokenizer"],
            PipelineKind::StableDiffusionXL => &["tokenizer", "tokenizer_2"],
        };
        let weighted: &[(&str, Library)] = match index.kind {
            PipelineKind::StableDiffusion => &[
                ("text_encoder", Library::Transformers),
                ("unet", Library::Diffusers),
                ("vae", Library::Diffusers),
            ],
            PipelineKind::StableDiffusionXL => &[
                ("text_encoder", Library::Transformers),
                ("text_encoder_2", Library::Transformers),
                ("unet", Library::Diffusers),
                ("vae", Library::Diffusers),
            ],
        };
        let mut files = Self {
            required: vec![MODEL_INDEX.into(), SCHEDULER_CONFIG.into()],
            optional: Vec::new(),
            components: Vec::new(),
        };
        for dir in tokenizers {
            let t = TokenizerFiles::new(dir);
            files.required.extend([t.vocab, t.merges]);
            files
                .optional
                .extend([t.special_tokens_map, t.tokenizer_config]);
        }
        for &(dir, library) in weighted {
            files.required.push(config_path(dir));
            files
                .components
                .push(ComponentFiles::new(dir, library, prefer_fp16));
        }
        files
    }

    /// The files of a diffusers `ControlNetModel` folder: `config.json` and its weights.
    pub fn controlnet(prefer_fp16: bool) -> Self {
        Self {
            required: vec![config_path("")],
            optional: Vec::new(),
            components: vec![ComponentFiles::new("", Library::Diffusers, prefer_fp16)],
        }
    }

    /// The weight files of folder `dir`.
    pub fn component(&self, dir: &str) -> Result<&ComponentFiles> {
        self.components
            .iter()
            .find(|c| c.dir == dir)
            .ok_or_else(|| Error::Invalid(format!("the pipeline has no weighted `{dir}` folder")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::{WeightFile, shard_paths};

    fn index(class: &str) -> ModelIndex {
        let json = format!(
            r#"{{"_class_name": "{class}", "unet": ["diffusers", "UNet2DConditionModel"]}}"#
        );
        ModelIndex::from_json(json.as_bytes(), "model_index.json").unwrap()
    }

    fn first_candidates(files: &PipelineFiles) -> Vec<(&str, &str)> {
        files
            .components
            .iter()
            .map(|c| (c.dir.as_str(), c.candidates[0].path()))
            .collect()
    }

    #[test]
    fn sd15_folder() {
        let files = PipelineFiles::pipeline(&index("StableDiffusionPipeline"), false);
        assert_eq!(
            files.required,
            [
                "model_index.json",
                "scheduler/scheduler_config.json",
                "tokenizer/vocab.json",
                "tokenizer/merges.txt",
                "text_encoder/config.json",
                "unet/config.json",
                "vae/config.json",
            ]
        );
        assert_eq!(
            files.optional,
            [
                "tokenizer/special_tokens_map.json",
                "tokenizer/tokenizer_config.json"
            ]
        );
        assert_eq!(
            first_candidates(&files),
            [
                ("text_encoder", "text_encoder/model.safetensors"),
                ("unet", "unet/diffusion_pytorch_model.safetensors"),
                ("vae", "vae/diffusion_pytorch_model.safetensors"),
            ]
        );
        assert!(files.component("text_encoder_2").is_err());
    }

    #[test]
    fn sdxl_folder_has_the_second_tokenizer_and_text_encoder() {
        let files = PipelineFiles::pipeline(&index("StableDiffusionXLPipeline"), true);
        for path in [
            "tokenizer_2/vocab.json",
            "tokenizer_2/merges.txt",
            "text_encoder_2/config.json",
        ] {
            assert!(files.required.iter().any(|p| p == path), "{path}");
        }
        assert!(
            files
                .optional
                .iter()
                .any(|p| p == "tokenizer_2/special_tokens_map.json")
        );
        assert_eq!(
            first_candidates(&files),
            [
                ("text_encoder", "text_encoder/model.fp16.safetensors"),
                ("text_encoder_2", "text_encoder_2/model.fp16.safetensors"),
                ("unet", "unet/diffusion_pytorch_model.fp16.safetensors"),
                ("vae", "vae/diffusion_pytorch_model.fp16.safetensors"),
            ]
        );
    }

    #[test]
    fn variant_preference_orders_the_candidates() {
        let sd = index("StableDiffusionPipeline");
        let paths = |fp16: bool| -> Vec<String> {
            let files = PipelineFiles::pipeline(&sd, fp16);
            let unet = files.component("unet").unwrap();
            unet.candidates
                .iter()
                .filter(|c| matches!(c, WeightFile::Single(_)))
                .map(|c| c.path().to_string())
                .collect()
        };
        assert_eq!(
            paths(true),
            [
                "unet/diffusion_pytorch_model.fp16.safetensors",
                "unet/model.fp16.safetensors",
                "unet/diffusion_pytorch_model.safetensors",
                "unet/model.safetensors",
            ]
        );
        assert_eq!(
            paths(false),
            [
                "unet/diffusion_pytorch_model.safetensors",
                "unet/model.safetensors",
                "unet/diffusion_pytorch_model.fp16.safetensors",
                "unet/model.fp16.safetensors",
            ]
        );
    }

    #[test]
    fn sharded_unet_shards_come_from_its_index() {
        let files = PipelineFiles::pipeline(&index("StableDiffusionPipeline"), false);
        let unet = files.component("unet").unwrap();
        let WeightFile::Sharded(index) = &unet.candidates[1] else {
            panic!("{:?}", unet.candidates[1]);
        };
        assert_eq!(index, "unet/diffusion_pytorch_model.safetensors.index.json");
        let json = br#"{"weight_map": {"conv_in.weight": "diffusion_pytorch_model-00001-of-00002.safetensors",
            "conv_out.weight": "diffusion_pytorch_model-00002-of-00002.safetensors"}}"#;
        assert_eq!(
            shard_paths(index, json, index).unwrap(),
            [
                "unet/diffusion_pytorch_model-00001-of-00002.safetensors",
                "unet/diffusion_pytorch_model-00002-of-00002.safetensors",
            ]
        );
    }

    #[test]
    fn controlnet_folder() {
        let files = PipelineFiles::controlnet(true);
        assert_eq!(files.required, ["config.json"]);
        assert!(files.optional.is_empty());
        let weights = files.component("").unwrap();
        assert_eq!(
            weights.candidates[0],
            WeightFile::Single("diffusion_pytorch_model.fp16.safetensors".into())
        );
        assert_eq!(
            weights.candidates[4].path(),
            "diffusion_pytorch_model.safetensors"
        );
    }
}
