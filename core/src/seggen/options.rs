//! The settings of ImgSyn and MaskSyn runs, with SegGen's defaults (40 Mask2Img steps, 200
//! Text2Mask steps, as the paper samples), and the settings a ControlNet may bring along.

use serde::{Deserialize, Serialize, Serializer};

use crate::pipelines::{Control, StableDiffusion, Txt2ImgParams};
use crate::schedulers::SchedulerKind;
use crate::{Error, Result};

/// Mask2Img's steps by default.
pub const MASK2IMG_STEPS: usize = 40;
/// Text2Mask's steps by default.
pub const TEXT2MASK_STEPS: usize = 200;
pub const GUIDANCE: f64 = 7.5;
/// The ControlNet conditioning scale by default.
pub const CONTROL_SCALE: f32 = 1.0;

/// The file of a Mask2Img ControlNet's folder that holds the settings it draws best with (a
/// JSON object of [`ControlNetSettings`]), used where the user sets none; the ControlNets
/// of small models trained here need other ones than SegGen's.
pub const CONTROLNET_SETTINGS: &str = "seggen.json";

/// A ControlNet's own settings ([`CONTROLNET_SETTINGS`]); what it leaves out keeps SegGen's
/// default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControlNetSettings {
    /// Classifier-free guidance of both stages (MaskSyn's Text2Mask too).
    pub guidance: Option<f64>,
    pub control_scale: Option<f32>,
    /// MaskSyn: Text2Mask's drawings decoded with this minimum segment area
    /// ([`Decoded::absorb_small_segments`](super::Decoded::absorb_small_segments)).
    pub min_area: Option<usize>,
}

impl ControlNetSettings {
    /// Reads the settings file `file` (named in errors) from its bytes.
    pub fn parse(file: &str, bytes: &[u8]) -> Result<Self> {
        // Through a map: serde would also read a struct from an array.
        serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(bytes)
            .and_then(|object| serde_json::from_value(object.into()))
            .map_err(|e| {
                Error::Invalid(format!("{file}: not a JSON object of SegGen settings: {e}"))
            })
    }

    /// The guidance and conditioning scale to run with: the user's where given, else these,
    /// else SegGen's defaults.
    pub fn resolve(&self, guidance: Option<f64>, control_scale: Option<f32>) -> (f64, f32) {
        (
            guidance.or(self.guidance).unwrap_or(GUIDANCE),
            control_scale
                .or(self.control_scale)
                .unwrap_or(CONTROL_SCALE),
        )
    }
}

/// How samples are drawn; recorded in `run.json`, so a rerun with other settings is refused.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SynthesisOptions {
    pub negative_prompt: Option<String>,
    /// Output size; `None`: each label map's own (ImgSyn) or the model's default (MaskSyn).
    pub height: Option<usize>,
    pub width: Option<usize>,
    /// Mask2Img's steps.
    pub steps: usize,
    /// Text2Mask's steps (MaskSyn).
    pub mask_steps: usize,
    pub guidance: f64,
    /// `None`: each model's own scheduler.
    #[serde(serialize_with = "scheduler_name")]
    pub scheduler: Option<SchedulerKind>,
    /// Karras sigmas (diffusers' `use_karras_sigmas=True`); recorded only when set.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub karras_sigmas: bool,
    pub control_scale: f32,
    /// Decoding: pixels farther than this from every colour stay unlabelled.
    pub max_distance: Option<f64>,
    /// Decoding: segments smaller than this many pixels take their neighbours' class (MaskSyn);
    /// recorded only when set.
    #[serde(skip_serializing_if = "is_zero")]
    pub min_area: usize,
}

impl Default for SynthesisOptions {
    fn default() -> Self {
        Self {
            negative_prompt: None,
            height: None,
            width: None,
            steps: MASK2IMG_STEPS,
            mask_steps: TEXT2MASK_STEPS,
            guidance: GUIDANCE,
            scheduler: None,
            karras_sigmas: false,
            control_scale: CONTROL_SCALE,
            max_distance: None,
            min_area: 0,
        }
    }
}

fn is_zero(v: &usize) -> bool {
    *v == 0
}

fn scheduler_name<S: Serializer>(
    kind: &Option<SchedulerKind>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    kind.map(|k| k.cli_name()).serialize(s)
}

impl SynthesisOptions {
    /// Checks what no model is needed for.
    pub fn check(&self) -> Result<()> {
        if self.steps == 0 || self.mask_steps == 0 {
            return Err(Error::Invalid("steps must be at least 1".into()));
        }
        if self.height.is_some() != self.width.is_some() {
            return Err(Error::Invalid(
                "give both height and width, or neither".into(),
            ));
        }
        if !self.guidance.is_finite() || !self.control_scale.is_finite() {
            return Err(Error::Invalid(
                "guidance and control scale must be finite".into(),
            ));
        }
        Ok(())
    }

    /// The text-to-image arguments of one stage.
    pub fn params(
        &self,
        prompt: &str,
        [height, width]: [usize; 2],
        steps: usize,
        seed: u64,
        controls: Vec<Control>,
    ) -> Txt2ImgParams {
        Txt2ImgParams {
            prompt: prompt.to_string(),
            negative_prompt: self.negative_prompt.clone(),
            height,
            width,
            steps,
            guidance: self.guidance,
            scheduler: self.scheduler,
            karras_sigmas: self.karras_sigmas,
            seed,
            controls,
            ..Default::default()
        }
    }

    /// The scheduler `sd` runs with these options, by its command-line name.
    pub fn scheduler_of(&self, sd: &StableDiffusion) -> String {
        self.scheduler
            .unwrap_or(sd.default_scheduler)
            .cli_name()
            .to_string()
    }
}

/// `sd`'s default output size: the UNet's `sample_size` in pixels (diffusers' default), else 512.
pub fn default_size(sd: &StableDiffusion) -> [usize; 2] {
    let side = sd
        .unet_config
        .sample_size
        .map_or(512, |s| s * sd.vae_config.scale_factor());
    [side, side]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_users_settings_come_before_the_controlnets_and_those_before_seggens() {
        let own =
            ControlNetSettings::parse("seggen.json", br#"{"guidance": 2, "control_scale": 4}"#)
                .unwrap();
        assert_eq!(own.resolve(None, None), (2.0, 4.0));
        assert_eq!(own.resolve(Some(9.0), None), (9.0, 4.0));
        assert_eq!(own.resolve(None, Some(0.5)), (2.0, 0.5));
        let partial = ControlNetSettings::parse("seggen.json", br#"{"control_scale": 3}"#).unwrap();
        assert_eq!(partial.resolve(None, None), (GUIDANCE, 3.0));
        assert_eq!(
            ControlNetSettings::default().resolve(None, None),
            (GUIDANCE, CONTROL_SCALE)
        );
    }

    #[test]
    fn a_bad_settings_file_is_named_in_the_error() {
        for bad in [
            &b"{"[..],
            br#"{"guidance": "high"}"#,
            br#"{"steps": 10}"#,
            b"[1]",
        ] {
            let e = ControlNetSettings::parse("cn/seggen.json", bad)
                .unwrap_err()
                .to_string();
            assert!(e.contains("cn/seggen.json"), "{e}");
        }
    }
}
