//! ImgSyn: new images for existing label maps. Line i of the prompt file gives a label map and
//! a caption; its j-th image is sample `i·N + j` (seed = base + i·N + j), drawn by Mask2Img from
//! the map in the palette's colours.

use std::sync::Arc;

use super::mask2img::mask_control;
use super::options::SynthesisOptions;
use super::prompts::ImgSynPrompt;
use super::record::SegGenDetails;
use super::sample::SegGenSample;
use super::{LabelMap, Palette};
use crate::dataset::{HostWork, SampleGenerator, SampleId};
use crate::pipelines::{ControlNet, StableDiffusion, read_rgb8};
use crate::readback::{Readback, now};
use crate::{Error, Result};

/// Reads a label map by the name the prompt file gives it (the shell's file access).
pub type LabelSource<'a> = &'a (dyn Fn(&str) -> Result<LabelMap> + Sync);

/// The ImgSyn generator.
pub struct ImgSyn<'a> {
    pub sd: &'a StableDiffusion,
    pub controlnet: Arc<ControlNet>,
    pub palette: Arc<Palette>,
    pub prompts: &'a [ImgSynPrompt],
    /// Images per label map (N).
    pub per_mask: u64,
    pub options: &'a SynthesisOptions,
    /// How the model and the ControlNet are named in records.
    pub model: String,
    pub controlnet_name: String,
    pub labels: LabelSource<'a>,
}

/// A planned ImgSyn sample: its line of the prompt file and the label map.
pub struct ImgSynPlan {
    sample: SampleId,
    prompt: ImgSynPrompt,
    labels: LabelMap,
}

impl ImgSyn<'_> {
    /// The number of samples: N per line.
    pub fn num_images(&self) -> u64 {
        self.prompts.len() as u64 * self.per_mask
    }

    /// Plans `sample` of `prompt` with its label map `labels`: checks the map's size against
    /// the options and the model. (`plan` reads the map the prompt file names.)
    pub fn plan_labels(
        &self,
        sample: SampleId,
        prompt: ImgSynPrompt,
        labels: LabelMap,
    ) -> Result<ImgSynPlan> {
        let line = (sample.index / self.per_mask.max(1)) as usize;
        let size = [labels.height, labels.width];
        let wanted = match (self.options.height, self.options.width) {
            (Some(h), Some(w)) => [h, w],
            _ => size,
        };
        if size != wanted {
            return Err(Error::Invalid(format!(
                "label map {} (line {} of the prompts) is {}x{}, not the {}x{} asked for (HxW)",
                prompt.labels,
                line + 1,
                size[0],
                size[1],
                wanted[0],
                wanted[1]
            )));
        }
        self.sd
            .check_size(size[0], size[1])
            .map_err(|e| Error::Invalid(format!("label map {}: {e}", prompt.labels)))?;
        Ok(ImgSynPlan {
            sample,
            prompt,
            labels,
        })
    }

    /// Draws the image of `plan`, read back as `how` says; `on_step(i, n)` after each step.
    pub async fn draw(
        &self,
        plan: ImgSynPlan,
        how: Readback,
        on_step: impl FnMut(usize, usize),
    ) -> Result<SegGenSample> {
        let o = self.options;
        let size = [plan.labels.height, plan.labels.width];
        let (control, _) = mask_control(
            self.controlnet.clone(),
            &self.palette,
            &plan.labels,
            o.control_scale,
            &self.sd.device,
        )
        .map_err(|e| Error::Invalid(format!("label map {}: {e}", plan.prompt.labels)))?;
        let params = o.params(
            &plan.prompt.caption,
            size,
            o.steps,
            plan.sample.seed,
            vec![control],
        );
        let out = self.sd.txt2img(&params, on_step)?;
        let rgb = read_rgb8(out.image, how).await?;
        let mut details = SegGenDetails::new(
            "imgsyn",
            &plan.prompt.caption,
            o,
            &self.controlnet_name,
            &self.palette.name,
            size,
        );
        details.source_mask = Some(plan.prompt.labels);
        Ok(SegGenSample {
            sample: plan.sample,
            model: self.model.clone(),
            scheduler: o.scheduler_of(self.sd),
            steps: o.steps,
            details,
            rgb,
            labels: plan.labels,
            drawn: None,
        })
    }
}

impl SampleGenerator for ImgSyn<'_> {
    type Details = SegGenDetails;
    type Plan = ImgSynPlan;
    const DESCRIPTION: &'static str = "MaskForge ImgSyn (SegGen)";

    fn plan(&self, sample: SampleId) -> Result<ImgSynPlan> {
        let line = (sample.index / self.per_mask.max(1)) as usize;
        let prompt = self.prompts.get(line).cloned().ok_or_else(|| {
            Error::Invalid(format!("sample {} is past the prompt file", sample.index))
        })?;
        let labels = (self.labels)(&prompt.labels)?;
        self.plan_labels(sample, prompt, labels)
    }

    fn run(
        &self,
        plan: ImgSynPlan,
        on_step: &mut dyn FnMut(usize, usize),
    ) -> Result<HostWork<SegGenDetails>> {
        let sample = now(self.draw(plan, Readback::Blocking, on_step))?;
        let palette = self.palette.clone();
        Ok(Box::new(move || sample.into_output(&palette)))
    }
}
