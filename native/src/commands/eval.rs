//! `maskforge eval`: COCO (pycocotools) or LVIS (lvis-api) evaluation of a results file
//! against a ground truth, with `hotcoco`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use hotcoco::{COCO, COCOeval, EvalMode, IouType, Segmentation};

/// Arguments of `maskforge eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Ground truth: a COCO or LVIS annotation file. A file whose categories carry LVIS's
    /// `frequency` is evaluated as lvis-api does (federated, 300 detections per image,
    /// APr/APc/APf); any other as pycocotools does.
    #[arg(long)]
    pub gt: PathBuf,
    /// Detections: a COCO results list (`image_id`, `category_id`, `bbox` [x,y,w,h],
    /// `score`, and `segmentation` as compressed RLE for masks).
    #[arg(long)]
    pub results: PathBuf,
    /// What to match: `segm` when the results have masks, else `bbox`.
    #[arg(long, value_enum)]
    pub iou_type: Option<EvalIouType>,
    /// Print the stats as one JSON object (`{"AP": …, "AP50": …}`) instead of the
    /// summary lines.
    #[arg(long)]
    pub json: bool,
}

/// `--iou-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EvalIouType {
    Bbox,
    Segm,
}

/// Runs `eval`: prints the summary (pycocotools' or lvis-api's layout) or `--json`.
pub fn run(args: EvalArgs) -> Result<()> {
    let (keys, stats, lines) = evaluate(&args)?;
    if args.json {
        let mut out = String::from("{");
        for (i, (key, value)) in keys.iter().zip(&stats).enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(
                out,
                "{sep}{}: {}",
                serde_json::to_string(key)?,
                json_f64(*value)
            )?;
        }
        println!("{out}}}");
    } else {
        for line in lines {
            println!("{line}");
        }
    }
    Ok(())
}

/// A stat as JSON (they are finite; `-1` marks one that could not be computed).
fn json_f64(v: f64) -> String {
    serde_json::Number::from_f64(v).map_or_else(|| "null".into(), |n| n.to_string())
}

/// Metric keys, values and summary lines.
fn evaluate(args: &EvalArgs) -> Result<(Vec<&'static str>, Vec<f64>, Vec<String>)> {
    let gt = COCO::new(&args.gt)
        .with_context(|| format!("reading ground truth {}", args.gt.display()))?;
    if gt.dataset.images.is_empty() {
        bail!("ground truth {} has no images", args.gt.display());
    }
    let dt = load_results(&gt, &args.results)?;
    let has_masks = !matches!(
        dt.dataset.annotations[0].segmentation,
        None | Some(Segmentation::Rect(_))
    );
    let iou_type = match args.iou_type {
        Some(EvalIouType::Bbox) => IouType::Bbox,
        Some(EvalIouType::Segm) if !has_masks => bail!(
            "results {} have no `segmentation` masks; use --iou-type bbox",
            args.results.display()
        ),
        Some(EvalIouType::Segm) => IouType::Segm,
        None if has_masks => IouType::Segm,
        None => IouType::Bbox,
    };
    if iou_type == IouType::Segm {
        check_mask_sizes(&gt, &gt, &args.gt, "annotation")?;
        check_mask_sizes(&gt, &dt, &args.results, "detection")?;
    }
    let lvis = gt.dataset.categories.iter().any(|c| c.frequency.is_some());
    let mut ev = if lvis {
        COCOeval::new_lvis(gt, dt, iou_type)
    } else {
        COCOeval::new(gt, dt, iou_type)
    };
    ev.evaluate().with_context(|| {
        format!(
            "evaluating {} against {}",
            args.results.display(),
            args.gt.display()
        )
    })?;
    ev.accumulate();
    ev.summarize_lines();
    let stats = ev.stats().context("no stats after summarize")?.to_vec();
    let defs = ev.metric_defs();
    let lines = defs
        .iter()
        .zip(&stats)
        .map(|(m, &v)| summary_line(m, v, ev.eval_mode))
        .collect();
    Ok((defs.iter().map(|m| m.name).collect(), stats, lines))
}

/// The results, refusing an empty list and detections on images or categories the ground
/// truth does not have (pycocotools and lvis-api refuse unknown images; an unknown category
/// would silently count as nothing).
fn load_results(gt: &COCO, path: &Path) -> Result<COCO> {
    let dt = gt
        .load_res(path)
        .with_context(|| format!("reading results {}", path.display()))?;
    let anns = &dt.dataset.annotations;
    if anns.is_empty() {
        bail!("results {} hold no detections", path.display());
    }
    for (i, a) in anns.iter().enumerate() {
        if gt.get_img(a.image_id).is_none() {
            bail!(
                "results {}: detection {i} has image_id {}, which is not in the ground truth",
                path.display(),
                a.image_id
            );
        }
        if gt.get_cat(a.category_id).is_none() {
            bail!(
                "results {}: detection {i} has category_id {}, which is not in the ground truth",
                path.display(),
                a.category_id
            );
        }
        if a.score.is_none_or(|s| !s.is_finite()) {
            bail!(
                "results {}: detection {i} has no finite `score`",
                path.display()
            );
        }
    }
    Ok(dt)
}

/// Every RLE mask in `coco` has its image's size (pycocotools refuses masks of other sizes).
fn check_mask_sizes(gt: &COCO, coco: &COCO, path: &Path, what: &str) -> Result<()> {
    for (i, a) in coco.dataset.annotations.iter().enumerate() {
        let size = match &a.segmentation {
            Some(Segmentation::CompressedRle { size, .. })
            | Some(Segmentation::UncompressedRle { size, .. }) => *size,
            _ => continue,
        };
        if let Some(img) = gt.get_img(a.image_id)
            && size != [img.height, img.width]
        {
            bail!(
                "{}: {what} {i} has a {}×{} mask on image {} of {}×{}",
                path.display(),
                size[0],
                size[1],
                a.image_id,
                img.height,
                img.width
            );
        }
    }
    Ok(())
}

/// One line as pycocotools' `summarize()` or lvis-api's `print_results()` prints it.
fn summary_line(m: &hotcoco::MetricDef, value: f64, mode: EvalMode) -> String {
    let (title, kind) = if m.ap {
        ("Average Precision", "(AP)")
    } else {
        ("Average Recall", "(AR)")
    };
    let iou = m
        .iou_thr
        .map_or_else(|| "0.50:0.95".to_string(), |t| format!("{t:.2}"));
    let head = format!(" {title:<18} {kind} @[ IoU={iou:<9} | area=");
    if mode == EvalMode::Lvis {
        // lvis-api names the size ranges by their first letter and the frequency groups as
        // `catIds`.
        let area = if m.area_lbl == "all" {
            "all"
        } else {
            &m.area_lbl[..1]
        };
        let group = match m.freq_group {
            Some(hotcoco::FreqGroup::Rare) => "r",
            Some(hotcoco::FreqGroup::Common) => "c",
            Some(hotcoco::FreqGroup::Frequent) => "f",
            None => "all",
        };
        format!(
            "{head}{area:>6} | maxDets={:>3} catIds={group:>3}] = {value:.3}",
            m.max_det
        )
    } else {
        format!(
            "{head}{:>6} | maxDets={:>3} ] = {value:.3}",
            m.area_lbl, m.max_det
        )
    }
}
