//! `bench --truth N`: how well MosaicFusion's masks match their own images on a model of the
//! shapes world. Each region's final mask is compared with the saturated pixels of the
//! region's generated image (objects are saturated, backgrounds are not: see
//! `maskforge_core::shapes::truth`); the report is the mean IoU over all regions.

use anyhow::Result;
use maskforge_core::dataset::categories::parse_categories;
use maskforge_core::mosaic::MosaicFusion;
use maskforge_core::mosaic::layout::LayoutConfig;
use maskforge_core::mosaic::plan::{PlanConfig, plan_sample};
use maskforge_core::mosaic::sample::{GenerateConfig, crop_rgb};
use maskforge_core::pipelines::StableDiffusion;
use maskforge_core::shapes::ShapeClass;
use maskforge_core::shapes::truth::{mask_iou, saturation_truth};

/// Mean mask IoU against the saturation truth over the regions of `samples` MosaicFusion
/// samples with regions of `h × w` and `steps` denoising steps (seeds 0, 1, ...), with the
/// shapes world's classes as categories.
pub fn mosaic_truth(
    sd: &StableDiffusion,
    h: usize,
    w: usize,
    steps: usize,
    samples: usize,
) -> Result<serde_json::Value> {
    let names: String = ShapeClass::ALL
        .iter()
        .map(|c| format!("{}\n", c.name()))
        .collect();
    let categories = parse_categories(names.as_bytes(), "<shapes world classes>")?;
    let pool: Vec<usize> = (0..categories.len()).collect();
    let layout = LayoutConfig {
        region_height: h,
        region_width: w,
        overlap_height: (h / 8).max(16) / 16 * 16,
        overlap_width: (w / 8).max(16) / 16 * 16,
        ..LayoutConfig::default()
    };
    let mut config = GenerateConfig {
        plan: PlanConfig {
            layout,
            ..PlanConfig::default()
        },
        ..GenerateConfig::default()
    };
    config.plan.validate()?;
    config.denoise.steps = steps;
    let mosaic = MosaicFusion::new(sd, config.clone(), &categories, &pool, 0);
    let mut ious = Vec::new();
    for index in 0..samples as u64 {
        let plan = plan_sample(index, 0, &categories, &pool, &config.plan, &sd.tokenizer)?;
        let sample = mosaic.generate(&plan, |_, _| {})?;
        for (region, mask) in plan.regions.iter().zip(&sample.region_masks) {
            let b = region.bbox;
            let crop = crop_rgb(&sample.rgb, sample.width, [b.y1, b.y2, b.x1, b.x2]);
            ious.push(mask_iou(mask, &saturation_truth(&crop)));
        }
    }
    let mean = ious.iter().sum::<f64>() / ious.len().max(1) as f64;
    Ok(serde_json::json!({
        "samples": samples,
        "regions": ious.len(),
        "steps": steps,
        "region": [h, w],
        "mean_iou": mean,
        "region_ious": ious,
    }))
}
