//! MaskSyn: new masks and their images from captions. Line i of the prompt file gives a
//! caption; its j-th sample is `i·N + j` (seed = base + i·N + j): Text2Mask draws a colour map,
//! which is decoded (nearest colour, small segments absorbed when asked, instances by the edge
//! colour), coloured again and given to
//! Mask2Img. Both stages use the sample's seed.

use std::sync::Arc;

use super::mask2img::mask_control;
use super::options::{SynthesisOptions, default_size};
use super::prompts::MaskSynPrompt;
use super::record::SegGenDetails;
use super::sample::SegGenSample;
use super::text2mask::{DrawnMask, text2mask};
use super::{DecodeOptions, LabelMap, Palette};
use crate::dataset::{HostWork, SampleGenerator, SampleId};
use crate::pipelines::{ControlNet, StableDiffusion, image_to_rgb8};
use crate::readback::{Readback, now};
use crate::{Error, Result};

/// The MaskSyn generator.
pub struct MaskSyn<'a> {
    /// Text2Mask: draws colour maps.
    pub text2mask: &'a StableDiffusion,
    /// Mask2Img's base model, with `controlnet`.
    pub sd: &'a StableDiffusion,
    pub controlnet: Arc<ControlNet>,
    pub palette: Arc<Palette>,
    pub prompts: &'a [MaskSynPrompt],
    /// Samples per caption (N).
    pub per_prompt: u64,
    pub options: &'a SynthesisOptions,
    /// How the models are named in records.
    pub model: String,
    pub text2mask_model: String,
    pub controlnet_name: String,
}

/// A planned MaskSyn sample.
pub struct MaskSynPlan {
    sample: SampleId,
    caption: String,
}

impl MaskSyn<'_> {
    /// The number of samples: N per line.
    pub fn num_images(&self) -> u64 {
        self.prompts.len() as u64 * self.per_prompt
    }

    /// `[height, width]` of every sample.
    pub fn size(&self) -> Result<[usize; 2]> {
        let size = match (self.options.height, self.options.width) {
            (Some(h), Some(w)) => [h, w],
            _ => default_size(self.sd),
        };
        self.text2mask.check_size(size[0], size[1])?;
        self.sd.check_size(size[0], size[1])?;
        Ok(size)
    }
}

impl MaskSyn<'_> {
    /// One sample of `caption` at `seed`: Text2Mask's drawing, the labels read from it, and
    /// Mask2Img's image of them (interleaved RGB).
    pub fn draw(
        &self,
        caption: &str,
        seed: u64,
        on_step: &mut dyn FnMut(usize, usize),
    ) -> Result<(DrawnMask, LabelMap, Vec<u8>)> {
        let o = self.options;
        let size = self.size()?;
        let decode = DecodeOptions {
            max_distance: o.max_distance,
            min_area: o.min_area,
            ..DecodeOptions::for_palette(&self.palette)
        };
        let mask_params = o.params(caption, size, o.mask_steps, seed, vec![]);
        let drawn = now(text2mask(
            self.text2mask,
            &mask_params,
            &self.palette,
            &decode,
            Readback::Blocking,
            &mut *on_step,
        ))?;
        let labels = drawn.labels();
        let (control, _) = mask_control(
            self.controlnet.clone(),
            &self.palette,
            &labels,
            o.control_scale,
            &self.sd.device,
        )?;
        let params = o.params(caption, size, o.steps, seed, vec![control]);
        let out = self.sd.txt2img(&params, &mut *on_step)?;
        Ok((drawn, labels, image_to_rgb8(out.image)?))
    }
}

impl SampleGenerator for MaskSyn<'_> {
    type Details = SegGenDetails;
    type Plan = MaskSynPlan;
    const DESCRIPTION: &'static str = "MaskForge MaskSyn (SegGen)";

    fn plan(&self, sample: SampleId) -> Result<MaskSynPlan> {
        let line = (sample.index / self.per_prompt.max(1)) as usize;
        let prompt = self.prompts.get(line).ok_or_else(|| {
            Error::Invalid(format!("sample {} is past the prompt file", sample.index))
        })?;
        Ok(MaskSynPlan {
            sample,
            caption: prompt.caption.clone(),
        })
    }

    fn run(
        &self,
        plan: MaskSynPlan,
        on_step: &mut dyn FnMut(usize, usize),
    ) -> Result<HostWork<SegGenDetails>> {
        let o = self.options;
        let size = self.size()?;
        let (drawn, labels, rgb) = self.draw(&plan.caption, plan.sample.seed, on_step)?;
        let mut details = SegGenDetails::new(
            "masksyn",
            &plan.caption,
            o,
            &self.controlnet_name,
            &self.palette.name,
            size,
        );
        details.text2mask_model = Some(self.text2mask_model.clone());
        details.text2mask_steps = Some(o.mask_steps);
        let sample = SegGenSample {
            sample: plan.sample,
            model: self.model.clone(),
            scheduler: o.scheduler_of(self.sd),
            steps: o.steps,
            details,
            rgb,
            labels,
            drawn: Some(drawn),
        };
        let palette = self.palette.clone();
        Ok(Box::new(move || sample.into_output(&palette)))
    }
}
