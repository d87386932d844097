//! `model_index.json`: which pipeline a diffusers folder holds, and its components.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::error::{Error, Result};

/// The pipeline classes MaskForge runs. The ControlNet pipelines
/// (`StableDiffusionControlNetPipeline`, `StableDiffusionXLControlNetPipeline`) are their base
/// pipelines with a `controlnet` folder beside the components.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PipelineKind {
    /// `StableDiffusionPipeline` (SD 1.x and 2.x).
    StableDiffusion,
    /// `StableDiffusionXLPipeline`: two text encoders and `text_time` conditioning.
    StableDiffusionXL,
}

/// A parsed `model_index.json`.
#[derive(Debug, Clone)]
pub struct ModelIndex {
    /// The pipeline class.
    pub kind: PipelineKind,
    /// Component name → `[library, class]` (null entries for absent optional components dropped).
    pub components: BTreeMap<String, (String, String)>,
    /// SDXL: a missing negative prompt means zero embeddings, not the empty prompt's.
    pub force_zeros_for_empty_prompt: bool,
}

impl ModelIndex {
    /// Parses `model_index.json` (named `file` in errors).
    pub fn from_json(bytes: &[u8], file: &str) -> Result<Self> {
        let json: Value = serde_json::from_slice(bytes)
            .map_err(|e| Error::bad_file(file, format!("invalid JSON: {e}")))?;
        let class = json
            .get("_class_name")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::bad_file(file, "no `_class_name`"))?;
        let kind = match class {
            "StableDiffusionPipeline" | "StableDiffusionControlNetPipeline" => {
                PipelineKind::StableDiffusion
            }
            "StableDiffusionXLPipeline" | "StableDiffusionXLControlNetPipeline" => {
                PipelineKind::StableDiffusionXL
            }
            other => {
                return Err(Error::config(
                    file,
                    format!(
                        "unsupported pipeline `{other}` (supported: StableDiffusionPipeline, \
                         StableDiffusionXLPipeline and their ControlNet pipelines)"
                    ),
                ));
            }
        };
        let force_zeros_for_empty_prompt = kind == PipelineKind::StableDiffusionXL
            && json
                .get("force_zeros_for_empty_prompt")
                .and_then(Value::as_bool)
                .unwrap_or(true);
        let components = json
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| !k.starts_with('_'))
            .filter_map(|(k, v)| {
                let pair = v.as_array()?;
                Some((
                    k.clone(),
                    (
                        pair.first()?.as_str()?.to_string(),
                        pair.get(1)?.as_str()?.to_string(),
                    ),
                ))
            })
            .collect();
        Ok(Self {
            kind,
            components,
            force_zeros_for_empty_prompt,
        })
    }

    /// The class of component `name` (`"PNDMScheduler"`), if present.
    pub fn class_of(&self, name: &str) -> Option<&str> {
        self.components.get(name).map(|(_, c)| c.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controlnet_pipelines_are_their_base_pipelines() {
        let json = br#"{"_class_name": "StableDiffusionControlNetPipeline",
            "controlnet": ["diffusers", "ControlNetModel"], "unet": ["diffusers", "UNet2DConditionModel"],
            "safety_checker": [null, null]}"#;
        let index = ModelIndex::from_json(json, "model_index.json").unwrap();
        assert_eq!(index.kind, PipelineKind::StableDiffusion);
        assert_eq!(index.class_of("controlnet"), Some("ControlNetModel"));
        assert_eq!(index.class_of("safety_checker"), None);
        let json = br#"{"_class_name": "StableDiffusionXLControlNetPipeline"}"#;
        let index = ModelIndex::from_json(json, "model_index.json").unwrap();
        assert_eq!(index.kind, PipelineKind::StableDiffusionXL);
        assert!(index.force_zeros_for_empty_prompt);
        let json = br#"{"_class_name": "StableDiffusionInpaintPipeline"}"#;
        let err = ModelIndex::from_json(json, "model_index.json").unwrap_err();
        assert!(
            err.to_string().contains("StableDiffusionInpaintPipeline"),
            "{err}"
        );
    }
}
