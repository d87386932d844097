//! `maskforge detect`: DiffusionInst (or DiffusionDet) from its original detectron2 config and
//! checkpoint over images, written as a COCO results file; optionally drawn for a person to
//! look at (`--vis`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::DType;
use clap::Args;
use maskforge_core::diffusioninst::preprocess::RgbImage;
use maskforge_core::diffusioninst::results::{ResultRecord, coco_results, default_category_ids};
use maskforge_core::diffusioninst::{DetectOptions, DiffusionInst, DiffusionInstConfig};
use maskforge_core::readback::{Readback, now};
use maskforge_core::weights::checkpoint_weights;

use super::detect_vis::draw;
use super::palette::read_image;
use crate::device::{self, DTypeArg, DeviceArg};
use crate::npy;
use crate::source::map_file;
use crate::write_bytes_atomically;

/// Arguments of `maskforge detect`.
#[derive(Debug, Args)]
pub struct DetectArgs {
    /// The checkpoint: detectron2's `.pth` (read without running pickle code) or `.safetensors`.
    #[arg(long)]
    pub model: PathBuf,
    /// The detectron2 YAML config (its `_BASE_` files are read next to it).
    #[arg(long)]
    pub config: PathBuf,
    /// Image files, or folders (every PNG/JPEG/BMP/WebP in them, sorted by name).
    #[arg(long, num_args = 1.., required = true)]
    pub images: Vec<PathBuf>,
    /// The COCO results file to write.
    #[arg(long)]
    pub out: PathBuf,
    /// DDIM steps (default: the config's `SAMPLE_STEP`).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Seeds every image's box noise as `torch.manual_seed(S)` does for the original.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The initial box noise, a float32 `.npy` of shape `[1, N, 4]` (instead of the seed's).
    #[arg(long)]
    pub boxes_noise: Option<PathBuf>,
    /// Boxes per image (default: the config's `NUM_PROPOSALS`).
    #[arg(long)]
    pub num_proposals: Option<usize>,
    /// Drop detections scoring below this.
    #[arg(long, default_value_t = 0.0)]
    pub score_threshold: f32,
    /// IoU of the class-aware NMS (default 0.5 when the config's `USE_NMS`, else none).
    #[arg(long)]
    pub nms: Option<f32>,
    /// Also ensemble the last step's detections (the original leaves them out).
    #[arg(long)]
    pub ensemble_last_step: bool,
    /// Images per call to the detector.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// A COCO/LVIS ground truth: category ids from its categories (in id order, as detectron2
    /// maps classes) and image ids by file name.
    #[arg(long)]
    pub annotations: Option<PathBuf>,
    /// Write each image with its boxes, masks and category ids drawn, as PNG, here.
    #[arg(long)]
    pub vis: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,
    #[arg(long, value_enum, default_value_t = DTypeArg::F32)]
    pub dtype: DTypeArg,
}

/// Runs `detect`; prints one summary line.
pub fn run(args: DetectArgs) -> Result<()> {
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    if args.nms.is_some_and(|iou| !(0.0..=1.0).contains(&iou)) {
        bail!("--nms is an IoU in 0…1");
    }
    let selected = device::select(args.device, args.dtype)?;
    if selected.dtype != DType::F32 {
        bail!("DiffusionInst runs in f32; use --dtype f32");
    }
    let config = read_config(&args.config)?;
    let model = load_detector(&args.model, &args.config, &config, &selected.device)?;

    let paths = image_paths(&args.images)?;
    let (category_ids, image_ids) = match &args.annotations {
        Some(gt) => from_ground_truth(gt, &paths)?,
        None => (
            default_category_ids(config.head.num_classes),
            (1..=paths.len() as u64).collect(),
        ),
    };
    if category_ids.len() != config.head.num_classes {
        bail!(
            "{}: {} categories for a {}-class model",
            args.annotations
                .as_ref()
                .map_or(String::new(), |p| p.display().to_string()),
            category_ids.len(),
            config.head.num_classes
        );
    }
    let initial_noise = args
        .boxes_noise
        .as_ref()
        .map(|path| -> Result<Vec<f32>> {
            let (shape, values) = npy::read_f32(path)?;
            if shape.len() != 3 || shape[0] != 1 || shape[2] != 4 {
                bail!(
                    "{}: box noise must have shape [1, N, 4], not {shape:?}",
                    path.display()
                );
            }
            Ok(values)
        })
        .transpose()?;
    let options = DetectOptions {
        steps: args.steps,
        num_proposals: args.num_proposals,
        seed: args.seed,
        initial_noise,
        ensemble_last_step: args.ensemble_last_step,
        nms_iou: args.nms,
        score_threshold: args.score_threshold,
    };
    if let Some(dir) = &args.vis {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create", dir.display()))?;
    }

    let bar = crate::progress::sample_bar(paths.len(), false);
    let mut records: Vec<ResultRecord> = Vec::new();
    for (chunk, ids) in paths.chunks(args.batch).zip(image_ids.chunks(args.batch)) {
        let decoded = chunk
            .iter()
            .map(|p| Ok(read_image(p)?.to_rgb8()))
            .collect::<Result<Vec<_>>>()?;
        let images: Vec<RgbImage> = decoded
            .iter()
            .map(|img| RgbImage {
                pixels: img.as_raw(),
                height: img.height() as usize,
                width: img.width() as usize,
            })
            .collect();
        let found = now(model.detect(&images, &options, Readback::Blocking))
            .with_context(|| format!("detecting in {}", chunk[0].display()))?;
        for (((detections, image), id), path) in found.iter().zip(&images).zip(ids).zip(chunk) {
            records.extend(coco_results(
                detections,
                *id,
                (image.height, image.width),
                &category_ids,
            )?);
            if let Some(dir) = &args.vis {
                let name = path.file_stem().unwrap_or_default().to_string_lossy();
                let png = draw(image, detections, &category_ids)?;
                write_bytes_atomically(&dir.join(format!("{name}.png")), &png)?;
            }
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    let json = serde_json::to_vec(&records)?;
    write_bytes_atomically(&args.out, &json)?;
    println!(
        "{} detections in {} images → {}",
        records.len(),
        paths.len(),
        args.out.display()
    );
    Ok(())
}

/// Loads a DiffusionInst checkpoint for `config` with its keys checked (a grouped report of
/// missing keys is the error; unused keys are warned about).
pub fn load_detector(
    model: &Path,
    config_path: &Path,
    config: &DiffusionInstConfig,
    device: &burn::tensor::Device,
) -> Result<DiffusionInst> {
    let weights = checkpoint_weights(model.display().to_string(), map_file(model)?)?;
    let (detector, unused) =
        DiffusionInst::load_checked(weights, device, config).with_context(|| {
            format!(
                "{}: does not fit {}",
                model.display(),
                config_path.display()
            )
        })?;
    if let Some(report) = unused {
        tracing::warn!(
            "{}: keys the model does not read:\n{report}",
            model.display()
        );
    }
    Ok(detector)
}

/// Reads a detectron2 YAML config, resolving `_BASE_` files from disk; unknown keys are
/// warned about.
pub fn read_config(path: &Path) -> Result<DiffusionInstConfig> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let resolve = |p: &str| {
        std::fs::read(p).map_err(|e| maskforge_core::error::Error::bad_file(p, e.to_string()))
    };
    let name = path.display().to_string();
    let (config, warnings) = DiffusionInstConfig::from_yaml(&name, &bytes, &resolve)?;
    for w in warnings {
        tracing::warn!("{w}");
    }
    Ok(config)
}

/// The image files named, folders expanded to their images sorted by name.
fn image_paths(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    const EXTENSIONS: [&str; 6] = ["png", "jpg", "jpeg", "bmp", "webp", "gif"];
    let mut out = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(input)
                .with_context(|| format!("{}: cannot list", input.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.is_file()
                        && p.extension().is_some_and(|e| {
                            EXTENSIONS.contains(&e.to_string_lossy().to_lowercase().as_str())
                        })
                })
                .collect();
            files.sort();
            if files.is_empty() {
                bail!("{}: no images in this folder", input.display());
            }
            out.extend(files);
        } else if input.is_file() {
            out.push(input.clone());
        } else {
            bail!("{}: no such file or folder", input.display());
        }
    }
    Ok(out)
}

/// Category ids (the ground truth's, sorted by id) and each image's id, matched by file name.
fn from_ground_truth(path: &Path, images: &[PathBuf]) -> Result<(Vec<u64>, Vec<u64>)> {
    #[derive(serde::Deserialize)]
    struct Gt {
        images: Vec<GtImage>,
        categories: Vec<GtCategory>,
    }
    #[derive(serde::Deserialize)]
    struct GtImage {
        id: u64,
        file_name: String,
    }
    #[derive(serde::Deserialize)]
    struct GtCategory {
        id: u64,
    }
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let gt: Gt = serde_json::from_slice(&bytes)
        .with_context(|| format!("{}: not a COCO annotation file", path.display()))?;
    let mut categories: Vec<u64> = gt.categories.iter().map(|c| c.id).collect();
    categories.sort_unstable();
    let by_name: HashMap<&str, u64> = gt
        .images
        .iter()
        .map(|i| (base_name(&i.file_name), i.id))
        .collect();
    let ids = images
        .iter()
        .map(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            by_name
                .get(name.as_ref())
                .copied()
                .ok_or_else(|| anyhow::anyhow!("{}: no image named {name}", path.display()))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((categories, ids))
}

/// The last path component of a ground truth's `file_name` (LVIS stores COCO URLs).
fn base_name(file_name: &str) -> &str {
    file_name.rsplit(['/', '\\']).next().unwrap_or(file_name)
}
