//! `bench --truth N`: how well generated masks match their own images on models of the
//! shapes world, where objects are saturated and backgrounds are not (see
//! `maskforge_core::shapes::truth`). MosaicFusion: each annotation of the dataset (and each
//! region's final mask) against the saturated pixels of its region's image. MaskSyn: the
//! foreground Text2Mask drew against the saturated pixels of Mask2Img's image; ImgSyn: the
//! same for Mask2Img alone, on the world's own label maps. Each reported as a mean IoU.
//! Prompt following: whether text-to-image draws the colour and the shape its prompt names.

use std::sync::Arc;

use anyhow::Result;
use maskforge_core::Error;
use maskforge_core::dataset::SampleId;
use maskforge_core::dataset::categories::parse_categories;
use maskforge_core::mosaic::MosaicFusion;
use maskforge_core::mosaic::MosaicOptions;
use maskforge_core::mosaic::plan::plan_sample;
use maskforge_core::mosaic::sample::crop_rgb;
use maskforge_core::pipelines::{ControlNet, StableDiffusion, Txt2ImgParams, image_to_rgb8};
use maskforge_core::readback::{Readback, now};
use maskforge_core::seggen::options::ControlNetSettings;
use maskforge_core::seggen::{ImgSyn, ImgSynPrompt, LabelMap, MaskSyn, SynthesisOptions};
use maskforge_core::shapes::ShapeClass;
use maskforge_core::shapes::captions::single_caption;
use maskforge_core::shapes::classes::palette as shapes_palette;
use maskforge_core::shapes::colors::OBJECT_COLORS;
use maskforge_core::shapes::drawn_shape::drawn_shape;
use maskforge_core::shapes::render::render;
use maskforge_core::shapes::scene::{MAX_OBJECTS, sample_scene};
use maskforge_core::shapes::truth::{TruthPixels, drawn_color, mask_iou, saturation_truth};

/// Mean mask IoU against the saturation truth of `samples` MosaicFusion samples made with
/// `options` (seeds 0, 1, ...), with the shapes world's classes as categories: over the
/// annotations of the dataset they make (`mean_iou`; dropped samples have none), and over
/// every region's final mask, kept or not (`region_mean_iou`).
pub fn mosaic_truth(
    sd: &StableDiffusion,
    options: &MosaicOptions,
    samples: usize,
) -> Result<serde_json::Value> {
    let names: String = ShapeClass::ALL
        .iter()
        .map(|c| format!("{}\n", c.name()))
        .collect();
    let categories = parse_categories(names.as_bytes(), "<shapes world classes>")?;
    let pool: Vec<usize> = (0..categories.len()).collect();
    let config = options.config(String::new())?;
    let mosaic = MosaicFusion::new(sd, config.clone(), &categories, &pool, 0);
    let (mut annotation_ious, mut region_ious) = (Vec::new(), Vec::new());
    for index in 0..samples as u64 {
        let plan = plan_sample(index, 0, &categories, &pool, &config.plan, &sd.tokenizer)?;
        let sample = mosaic.generate(&plan, |_, _| {})?;
        let truths: Vec<Vec<bool>> = plan
            .regions
            .iter()
            .map(|region| {
                let b = region.bbox;
                saturation_truth(&crop_rgb(
                    &sample.rgb,
                    sample.width,
                    [b.y1, b.y2, b.x1, b.x2],
                ))
            })
            .collect();
        for (truth, mask) in truths.iter().zip(&sample.region_masks) {
            region_ious.push(mask_iou(mask, truth));
        }
        let annotations = &sample.record.details.annotations;
        for (annotation, &r) in annotations.iter().zip(&sample.annotation_regions) {
            let b = plan.regions[r].bbox;
            let rle = &annotation.segmentation;
            let canvas = hotcoco::mask::decode(&hotcoco::mask::rle_from_string(
                &rle.counts,
                rle.size[0],
                rle.size[1],
            )?);
            // Column-major canvas → the region's row-major crop.
            let h = rle.size[0] as usize;
            let mask: Vec<bool> = (b.y1..b.y2)
                .flat_map(|y| (b.x1..b.x2).map(move |x| (x, y)))
                .map(|(x, y)| canvas[x * h + y] == 1)
                .collect();
            annotation_ious.push(mask_iou(&mask, &truths[r]));
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    Ok(serde_json::json!({
        "samples": samples,
        "steps": options.steps,
        "region": [options.region_size.0, options.region_size.1],
        "annotations": annotation_ious.len(),
        "mean_iou": mean(&annotation_ious),
        "annotation_ious": annotation_ious,
        "regions": region_ious.len(),
        "region_mean_iou": mean(&region_ious),
        "region_ious": region_ious,
    }))
}

/// Mean IoU between the foreground Text2Mask draws (labels ≠ 0) and the saturated pixels of
/// the image Mask2Img makes of it, with where they differ ([`TruthPixels`], summed and per
/// sample), over `samples` scene captions of the shapes world, at
/// `h × w` with `steps` steps for both stages and the ControlNet's `own` settings (as
/// `masksyn` runs without flags).
pub fn masksyn_truth(
    text2mask: &StableDiffusion,
    sd: &StableDiffusion,
    controlnet: Arc<ControlNet>,
    own: ControlNetSettings,
    [h, w]: [usize; 2],
    steps: usize,
    samples: usize,
) -> Result<serde_json::Value> {
    let (guidance, control_scale) = own.resolve(None, None);
    let options = SynthesisOptions {
        height: Some(h),
        width: Some(w),
        steps,
        mask_steps: steps,
        guidance,
        control_scale,
        min_area: own.min_area.unwrap_or(0),
        ..SynthesisOptions::default()
    };
    let masksyn = MaskSyn {
        text2mask,
        sd,
        controlnet,
        palette: Arc::new(shapes_palette()),
        prompts: &[],
        per_prompt: 1,
        options: &options,
        model: String::new(),
        text2mask_model: String::new(),
        controlnet_name: String::new(),
    };
    let mut pixels = Vec::new();
    for seed in 0..samples as u64 {
        let scene = sample_scene(seed, 64, MAX_OBJECTS);
        let (_, labels, rgb) = masksyn.draw(&scene.caption(), seed, &mut |_, _| {})?;
        let drawn: Vec<bool> = labels.ids.iter().map(|&l| l != 0).collect();
        pixels.push(TruthPixels::count(
            &drawn,
            &saturation_truth(&rgb),
            labels.width,
        ));
    }
    let mut report = pixel_report(&pixels);
    report["size"] = serde_json::json!([h, w]);
    report["min_area"] = options.min_area.into();
    Ok(with_settings(report, samples, steps, &options))
}

/// ImgSyn on the shapes world's own label maps: the same measure as [`masksyn_truth`] for
/// Mask2Img alone, each of `samples` scenes (seeds 0, 1, ...) drawn at `size × size` from its
/// true label map and its scene caption.
pub fn imgsyn_truth(
    sd: &StableDiffusion,
    controlnet: Arc<ControlNet>,
    own: ControlNetSettings,
    size: usize,
    steps: usize,
    samples: usize,
) -> Result<serde_json::Value> {
    let (guidance, control_scale) = own.resolve(None, None);
    let options = SynthesisOptions {
        height: Some(size),
        width: Some(size),
        steps,
        guidance,
        control_scale,
        ..SynthesisOptions::default()
    };
    let imgsyn = ImgSyn {
        sd,
        controlnet,
        palette: Arc::new(shapes_palette()),
        prompts: &[],
        per_mask: 1,
        options: &options,
        model: String::new(),
        controlnet_name: String::new(),
        labels: &|name| Err(Error::Invalid(format!("{name}: only given maps are drawn"))),
    };
    let mut pixels = Vec::new();
    for seed in 0..samples as u64 {
        let scene = sample_scene(seed, size, MAX_OBJECTS);
        let ids = render(&scene).labels.into_iter().map(u16::from).collect();
        let prompt = ImgSynPrompt {
            labels: format!("scene {seed}"),
            caption: scene.caption(),
        };
        let plan = imgsyn.plan_labels(
            SampleId { index: seed, seed },
            prompt,
            LabelMap::new(size, size, ids)?,
        )?;
        let sample = now(imgsyn.draw(plan, Readback::Blocking, |_, _| {}))?;
        let drawn: Vec<bool> = sample.labels.ids.iter().map(|&l| l != 0).collect();
        pixels.push(TruthPixels::count(
            &drawn,
            &saturation_truth(&sample.rgb),
            size,
        ));
    }
    let mut report = pixel_report(&pixels);
    report["size"] = serde_json::json!([size, size]);
    Ok(with_settings(report, samples, steps, &options))
}

/// The mean IoU of per-sample disagreements, the IoUs, and the disagreements summed and per
/// sample.
fn pixel_report(pixels: &[TruthPixels]) -> serde_json::Value {
    let ious: Vec<f64> = pixels.iter().map(TruthPixels::iou).collect();
    let mut total = TruthPixels::default();
    for &p in pixels {
        total += p;
    }
    serde_json::json!({
        "mean_iou": ious.iter().sum::<f64>() / ious.len().max(1) as f64,
        "sample_ious": ious,
        "pixels": total,
        "sample_pixels": pixels,
    })
}

/// `report` with the sample count, steps, guidance and conditioning scale of the run.
fn with_settings(
    mut report: serde_json::Value,
    samples: usize,
    steps: usize,
    options: &SynthesisOptions,
) -> serde_json::Value {
    report["samples"] = samples.into();
    report["steps"] = steps.into();
    report["guidance"] = options.guidance.into();
    report["control_scale"] = options.control_scale.into();
    report
}

/// Prompt following over `samples` text-to-image runs ("a photo of a single {colour}
/// {shape}", seed k, colour k mod 10, the shapes in turn): `color`, the share whose saturated
/// pixels are nearest the prompted colour of the shapes world's ten, and `shape`, the share
/// whose largest saturated component matches the prompted shape best
/// ([`drawn_shape`]) and its mean IoU with that shape (chance for either share: 0.1). A
/// model that ignores its prompt draws one colour per seed whatever the prompt says, and
/// one that draws blobs matches the circle, the heart or the hexagon whatever it asks.
pub fn prompt_following(
    sd: &StableDiffusion,
    [h, w]: [usize; 2],
    steps: usize,
    guidance: f64,
    samples: usize,
) -> Result<[serde_json::Value; 2]> {
    let (mut hits, mut unsaturated, mut drawn) = (0usize, 0usize, Vec::new());
    let (mut shape_hits, mut asked_iou, mut shapes) = (0usize, 0.0f64, Vec::new());
    for k in 0..samples {
        let prompted = k % OBJECT_COLORS.len();
        let color = &OBJECT_COLORS[prompted];
        let class = ShapeClass::ALL[(k + k / OBJECT_COLORS.len()) % ShapeClass::ALL.len()];
        let params = Txt2ImgParams {
            prompt: single_caption(class.name(), Some(color.name)),
            height: h,
            width: w,
            steps,
            guidance,
            seed: k as u64,
            ..Txt2ImgParams::default()
        };
        let rgb = image_to_rgb8(sd.txt2img(&params, |_, _| {})?.image)?;
        let got = drawn_color(&rgb);
        hits += usize::from(got == Some(prompted));
        unsaturated += usize::from(got.is_none());
        drawn.push(got.map(|c| OBJECT_COLORS[c].name));
        let shape = drawn_shape(&rgb, w);
        shape_hits += usize::from(shape.as_ref().is_some_and(|s| s.class == class));
        asked_iou += shape.as_ref().map_or(0.0, |s| s.iou(class));
        shapes.push(shape.map(|s| s.class.name()));
    }
    let share = |n: usize| n as f64 / samples.max(1) as f64;
    Ok([
        serde_json::json!({
            "samples": samples,
            "guidance": guidance,
            "accuracy": share(hits),
            "unsaturated": unsaturated,
            "drawn": drawn,
        }),
        serde_json::json!({
            "samples": samples,
            "guidance": guidance,
            "accuracy": share(shape_hits),
            "asked_iou": asked_iou / samples.max(1) as f64,
            "drawn": shapes,
        }),
    ])
}
