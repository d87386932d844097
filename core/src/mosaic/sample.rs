//! One MosaicFusion sample end to end: denoise the plan, masks from attention, optional
//! bilateral refinement, instances, and the manifest record.

use serde::Serialize;
use serde_json::json;

use super::attention_mask::{Threshold, attention_mask, threshold_map};
use super::denoise::{AttentionMap, MosaicParams};
use super::instances::{ComponentPolicy, InstanceFilter, extract_instances};
use super::plan::{PlanConfig, SamplePlan};
use super::record::{MosaicDetails, MosaicRecord, RegionRecord};
use crate::dataset::{AnnotationRecord, ImageRecord, SampleOutput, SampleRecord, image_file_name};
use crate::error::Result;
pub use crate::imaging::encode::encode_image;
use crate::masks::{BilateralSolverParams, refine_mask};

/// Edge-aware refinement of the attention masks.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Refine {
    None,
    /// The fast bilateral solver against the region's image, `times` passes, each
    /// thresholded at `threshold` of its maximum (MosaicFusion: 2 passes, 0.5).
    Bilateral {
        params: BilateralSolverParams,
        times: usize,
        threshold: f64,
    },
}

impl Refine {
    /// MosaicFusion's refinement.
    pub fn bilateral() -> Self {
        Self::Bilateral {
            params: BilateralSolverParams::default(),
            times: 2,
            threshold: 0.5,
        }
    }
}

/// Everything that decides a dataset, besides the model and the categories.
#[derive(Debug, Clone)]
pub struct GenerateConfig {
    pub plan: PlanConfig,
    pub denoise: MosaicParams,
    /// Attention resolutions to average (8 = 1/8 of the region); MosaicFusion: 32, 16, 8.
    pub resolutions: Vec<usize>,
    pub threshold: Threshold,
    pub refine: Refine,
    pub filter: InstanceFilter,
    pub policy: ComponentPolicy,
    /// `png` or `jpg`: image files only; masks are always lossless RLE.
    pub image_extension: String,
    /// Recorded in the manifest.
    pub model_name: String,
}

impl Default for GenerateConfig {
    fn default() -> Self {
        Self {
            plan: PlanConfig::default(),
            denoise: MosaicParams::default(),
            resolutions: vec![32, 16, 8],
            threshold: Threshold::Otsu,
            refine: Refine::bilateral(),
            filter: InstanceFilter::default(),
            policy: ComponentPolicy::Largest,
            image_extension: "png".into(),
            model_name: String::new(),
        }
    }
}

impl GenerateConfig {
    pub fn validate(&self) -> Result<()> {
        self.plan.validate()?;
        self.filter.validate()
    }
}

/// A generated sample.
#[derive(Debug, Clone)]
pub struct Sample {
    pub record: MosaicRecord,
    /// Interleaved RGB of the canvas.
    pub rgb: Vec<u8>,
    pub height: usize,
    pub width: usize,
    /// Final region masks (region-local, row-major), for previews.
    pub region_masks: Vec<Vec<bool>>,
    /// The region of each of the record's annotations, in their order.
    pub annotation_regions: Vec<usize>,
}

/// Interleaved RGB of `rgb`'s box `y1..y2 × x1..x2`.
pub fn crop_rgb(rgb: &[u8], width: usize, [y1, y2, x1, x2]: [usize; 4]) -> Vec<u8> {
    (y1..y2)
        .flat_map(|y| {
            rgb[(y * width + x1) * 3..(y * width + x2) * 3]
                .iter()
                .copied()
        })
        .collect()
}

impl Sample {
    /// The record and the encoded image (kept samples) as the dataset stores them.
    pub fn into_output(self) -> Result<SampleOutput<MosaicDetails>> {
        let mut files = Vec::new();
        if let Some(image) = &self.record.details.image {
            let bytes = encode_image(self.rgb, self.width, self.height, &image.file_name)?;
            files.push((format!("images/{}", image.file_name), bytes));
        }
        Ok(SampleOutput {
            record: self.record,
            files,
        })
    }
}

/// The device's part of a sample: the decoded canvas and each region's attention, on the host.
#[derive(Debug, Clone)]
pub struct Denoised {
    /// Interleaved RGB of the canvas.
    pub rgb: Vec<u8>,
    /// Per region, what its mask is made from.
    pub attention: Vec<RegionAttention>,
    /// Time spent in UNet calls.
    pub unet_time: std::time::Duration,
    /// Tensors read back from the device for this sample (the image included).
    pub reads: usize,
}

/// A region's attention as it reached the host.
#[derive(Debug, Clone)]
pub enum RegionAttention {
    /// The captured maps at the chosen resolutions; the host aggregates them (as the reference).
    Maps(Vec<AttentionMap>),
    /// The aggregated 8-bit map, computed where the attention was captured, and the
    /// resolutions it averages.
    Aggregated {
        map: Vec<u8>,
        resolutions: Vec<usize>,
    },
}

/// The host work of a sample (no device needed, so it can overlap the next sample's
/// denoising): masks from attention, refinement, instances, RLE, the record.
/// `default_scheduler` names the scheduler when `config` leaves it to the model.
pub fn finish_sample(
    plan: &SamplePlan,
    config: &GenerateConfig,
    default_scheduler: &crate::schedulers::SchedulerKind,
    denoised: Denoised,
) -> Result<Sample> {
    let Denoised { rgb, attention, .. } = denoised;
    let (height, width) = (plan.layout.canvas_height, plan.layout.canvas_width);

    let mut masks = Vec::new();
    let mut thresholds = Vec::new();
    let mut resolutions = Vec::new();
    for (region, attention) in plan.regions.iter().zip(attention) {
        let b = region.bbox;
        let (h, w) = (b.height(), b.width());
        let m = match attention {
            RegionAttention::Aggregated { map, resolutions } => {
                threshold_map(map, resolutions, config.threshold)
            }
            RegionAttention::Maps(maps) => {
                attention_mask(&maps, &config.resolutions, h, w, config.threshold)?
            }
        };
        let mask = match config.refine {
            Refine::None => m.mask,
            Refine::Bilateral {
                params,
                times,
                threshold,
            } => {
                let crop = crop_rgb(&rgb, width, [b.y1, b.y2, b.x1, b.x2]);
                refine_mask(&crop, h, w, &m.mask, &params, times, threshold)?
            }
        };
        masks.push(mask);
        thresholds.push(m.threshold);
        resolutions.push(m.resolutions);
    }

    let boxes: Vec<_> = plan.regions.iter().map(|r| r.bbox).collect();
    let found = extract_instances(&masks, &boxes, height, width, &config.filter, config.policy)?;
    let annotation_regions = found.instances.iter().map(|i| i.region).collect();
    let id = plan.index + 1;
    let kept = found.dropped.is_none();
    let image = kept.then(|| {
        let file_name = image_file_name(id, &config.image_extension);
        ImageRecord {
            id,
            coco_url: format!("images/{file_name}"),
            file_name,
            width,
            height,
            neg_category_ids: vec![],
            not_exhaustive_category_ids: vec![],
        }
    });
    let annotations = found
        .instances
        .iter()
        .map(|i| {
            AnnotationRecord::from_mask(
                &i.mask,
                height,
                width,
                id,
                plan.regions[i.region].category_id,
            )
        })
        .collect::<Result<Vec<_>>>()?;
    let regions = plan
        .regions
        .iter()
        .zip(&found.regions)
        .enumerate()
        .map(|(r, (p, o))| RegionRecord {
            category_id: p.category_id,
            category_name: p.category_name.clone(),
            prompt: p.prompt.clone(),
            token_index: p.token_index,
            bbox: [p.bbox.y1, p.bbox.y2, p.bbox.x1, p.bbox.x2],
            attention_resolutions: resolutions[r].clone(),
            threshold: thresholds[r],
            components: o.components,
            passed: o.passed,
            kept: o.kept,
        })
        .collect();
    let scheduler = config
        .denoise
        .scheduler
        .unwrap_or(*default_scheduler)
        .cli_name()
        .to_string();
    let mut settings = json!({
        "resolutions": config.resolutions,
        "threshold": config.threshold,
        "refine": config.refine,
        "filter": config.filter,
        "component_policy": config.policy,
        "attention_steps": [config.denoise.start_step, config.denoise.end_step.unwrap_or(config.denoise.steps)],
    });
    // Only when set: records from before the option stay as they were.
    if config.denoise.karras_sigmas {
        settings["karras_sigmas"] = true.into();
    }
    let details = MosaicDetails {
        guidance: config.denoise.guidance,
        settings,
        canvas: [height, width],
        layout: serde_json::to_value(plan.draws).expect("draws serialise"),
        main_category_id: plan.main_category_id,
        regions,
        image,
        annotations,
    };
    let record = SampleRecord {
        id,
        index: plan.index,
        seed: plan.seed,
        kept,
        reason: found.dropped,
        model: config.model_name.clone(),
        scheduler,
        steps: config.denoise.steps,
        details,
    };
    Ok(Sample {
        record,
        rgb,
        height,
        width,
        region_masks: masks,
        annotation_regions,
    })
}
