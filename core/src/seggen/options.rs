//! The settings of ImgSyn and MaskSyn runs, with SegGen's defaults (40 Mask2Img steps, 200
//! Text2Mask steps, as the paper samples).

use serde::{Serialize, Serializer};

use crate::pipelines::{Control, StableDiffusion, Txt2ImgParams};
use crate::schedulers::SchedulerKind;
use crate::{Error, Result};

/// Mask2Img's steps by default.
pub const MASK2IMG_STEPS: usize = 40;
/// Text2Mask's steps by default.
pub const TEXT2MASK_STEPS: usize = 200;
pub const GUIDANCE: f64 = 7.5;

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
            control_scale: 1.0,
            max_distance: None,
        }
    }
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
