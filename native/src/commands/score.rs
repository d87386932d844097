//! `maskforge score`: runs DiffusionInst over a generated dataset (`annotations.json`, or
//! SegGen's `instances.json`, and `images/`) and records, per annotation, its agreement with the detector (see
//! `maskforge_core::diffusioninst::agreement`). Sharded and resumable: each image's scores are
//! one atomically written record in `scores/`; a rerun skips scored images.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use maskforge_core::dataset::{RleRecord, Shard};
use maskforge_core::diffusioninst::DetectOptions;
use maskforge_core::diffusioninst::agreement::{COCO_NAMES, agreement, normalise_name};
use maskforge_core::diffusioninst::preprocess::RgbImage;
use maskforge_core::readback::{Readback, now};
use serde::Deserialize;

use super::detect::{load_detector, read_config};
use crate::agreement::{SCORES_DIR, ScoreRecord, read_record, record_path};
use crate::device::{self, DTypeArg, DeviceArg};
use crate::write_bytes_atomically;

/// Arguments of `maskforge score`.
#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// The dataset folder: `annotations.json` (COCO/LVIS with RLE masks) and `images/`.
    pub dataset: PathBuf,
    /// The detector's checkpoint (`.pth` or `.safetensors`).
    #[arg(long)]
    pub model: PathBuf,
    /// The detector's detectron2 YAML config.
    #[arg(long)]
    pub config: PathBuf,
    /// A COCO/LVIS file whose categories, sorted by id, name the detector's classes (for
    /// `category_agreement`); 80-class models default to COCO's names.
    #[arg(long)]
    pub categories: Option<PathBuf>,
    /// DDIM steps (default: the config's).
    #[arg(long)]
    pub steps: Option<usize>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Ignore detections scoring below this.
    #[arg(long, default_value_t = 0.0)]
    pub score_threshold: f32,
    /// Score only images k (in id order) with k mod N = I (`I/N`); shards share the folder.
    #[arg(long)]
    pub shard: Option<String>,
    #[arg(long)]
    pub quiet: bool,
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,
}

#[derive(Deserialize)]
struct Dataset {
    images: Vec<Image>,
    annotations: Vec<Annotation>,
    categories: Vec<Category>,
}

#[derive(Deserialize)]
struct Image {
    id: u64,
    file_name: String,
    height: usize,
    width: usize,
}

#[derive(Deserialize)]
struct Annotation {
    image_id: u64,
    category_id: u64,
    segmentation: RleRecord,
}

#[derive(Deserialize)]
struct Category {
    id: u64,
    name: String,
}

/// Runs `score`; prints the shard's mean agreement.
pub fn run(args: ScoreArgs) -> Result<()> {
    let shard = match &args.shard {
        Some(s) => s.parse()?,
        None => Shard::from_env(|k| std::env::var(k).ok())?.unwrap_or(Shard::WHOLE),
    };
    let path = crate::agreement::instance_file(&args.dataset);
    let bytes = std::fs::read(&path).with_context(|| {
        format!(
            "{}: cannot read (run `maskforge collect` first)",
            path.display()
        )
    })?;
    let dataset: Dataset = serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "{}: not a COCO annotation file with RLE masks",
            path.display()
        )
    })?;

    let selected = device::select(args.device, DTypeArg::F32)?;
    let config = read_config(&args.config)?;
    let model = load_detector(&args.model, &args.config, &config, &selected.device)?;
    if !model.has_masks() {
        bail!(
            "{}: a box-only checkpoint cannot score masks",
            args.model.display()
        );
    }
    let class_of = category_classes(&dataset.categories, &args, config.head.num_classes)?;

    let mut by_image: HashMap<u64, Vec<&Annotation>> = HashMap::new();
    for a in &dataset.annotations {
        by_image.entry(a.image_id).or_default().push(a);
    }
    let mut images: Vec<&Image> = dataset.images.iter().collect();
    images.sort_by_key(|i| i.id);
    let mine: Vec<&Image> = (images.into_iter().enumerate())
        .filter(|(k, _)| *k as u64 % shard.count == shard.index)
        .map(|(_, i)| i)
        .collect();
    std::fs::create_dir_all(args.dataset.join(SCORES_DIR))
        .with_context(|| format!("{}: cannot create scores/", args.dataset.display()))?;
    let options = DetectOptions {
        steps: args.steps,
        seed: args.seed,
        score_threshold: args.score_threshold,
        ..DetectOptions::default()
    };

    let bar = crate::progress::sample_bar(mine.len(), args.quiet);
    let (mut scored, mut skipped, mut sum, mut count) = (0, 0, 0.0, 0usize);
    for image in mine {
        bar.inc(1);
        if read_record(&args.dataset, image.id)?.is_some() {
            skipped += 1;
            continue;
        }
        let rgb = read_image(&args.dataset, image)?;
        let input = RgbImage {
            pixels: rgb.as_raw(),
            height: image.height,
            width: image.width,
        };
        let detections = now(model.detect(&[input], &options, Readback::Blocking))
            .with_context(|| format!("detecting in image {}", image.id))?
            .remove(0);
        let annotations: Vec<(Option<usize>, &RleRecord)> = by_image
            .get(&image.id)
            .map(|v| {
                v.iter()
                    .map(|a| (class_of.get(&a.category_id).copied(), &a.segmentation))
                    .collect()
            })
            .unwrap_or_default();
        let scores = agreement(&detections, &annotations, (image.height, image.width))
            .with_context(|| format!("{}: image {}", path.display(), image.id))?;
        sum += scores.iter().map(|s| s.any).sum::<f64>();
        count += scores.len();
        let record = ScoreRecord {
            image_id: image.id,
            detections: detections.len(),
            agreement: scores.iter().map(|s| s.any).collect(),
            category_agreement: scores.iter().map(|s| s.same_category).collect(),
        };
        let out = args.dataset.join(record_path(image.id));
        write_bytes_atomically(&out, &serde_json::to_vec(&record)?)?;
        scored += 1;
    }
    bar.finish_and_clear();
    let mean = if count > 0 {
        sum / count as f64
    } else {
        f64::NAN
    };
    println!(
        "{}: scored {scored} images ({skipped} already scored), mean agreement {mean:.3} over {count} annotations",
        args.dataset.display()
    );
    Ok(())
}

/// The detector class of each dataset category the detector knows, matched by name.
fn category_classes(
    categories: &[Category],
    args: &ScoreArgs,
    num_classes: usize,
) -> Result<HashMap<u64, usize>> {
    let names: Vec<String> = match &args.categories {
        Some(path) => {
            #[derive(Deserialize)]
            struct File {
                categories: Vec<Category>,
            }
            let bytes =
                std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
            let mut file: File = serde_json::from_slice(&bytes).with_context(|| {
                format!("{}: no `categories` with `id` and `name`", path.display())
            })?;
            file.categories.sort_by_key(|c| c.id);
            file.categories.into_iter().map(|c| c.name).collect()
        }
        None if num_classes == COCO_NAMES.len() => {
            COCO_NAMES.iter().map(|s| s.to_string()).collect()
        }
        None => Vec::new(),
    };
    if !names.is_empty() && names.len() != num_classes {
        bail!(
            "{} category names for a {num_classes}-class detector",
            names.len()
        );
    }
    let class: HashMap<String, usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (normalise_name(n), i))
        .collect();
    Ok(categories
        .iter()
        .filter_map(|c| class.get(&normalise_name(&c.name)).map(|&i| (c.id, i)))
        .collect())
}

fn read_image(dataset: &Path, image: &Image) -> Result<image::RgbImage> {
    let path = dataset.join("images").join(&image.file_name);
    let rgb = super::palette::read_image(&path)?.to_rgb8();
    if (rgb.height() as usize, rgb.width() as usize) != (image.height, image.width) {
        bail!(
            "{}: {}×{}, but annotations.json says {}×{}",
            path.display(),
            rgb.width(),
            rgb.height(),
            image.width,
            image.height
        );
    }
    Ok(rgb)
}
