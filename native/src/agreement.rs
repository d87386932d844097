//! The detector-agreement scores of a dataset (`maskforge score`) on disk, and their use:
//! `scores/<image id>.json` per image, written as each image is scored; `collect` copies them
//! into `annotations.json` as each annotation's `agreement` and `category_agreement` and, with
//! `--min-agreement F`, drops annotations scoring below `F`.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::write_bytes_atomically;

/// The folder of the per-image score records.
pub const SCORES_DIR: &str = "scores";

/// The scores of one image's annotations, in `annotations.json` order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreRecord {
    pub image_id: u64,
    /// Detections the detector made on the image.
    pub detections: usize,
    pub agreement: Vec<f64>,
    /// `null` where the detector does not know the annotation's category.
    pub category_agreement: Vec<Option<f64>>,
}

/// The instance annotation file of a dataset folder: `annotations.json` (MosaicFusion, the
/// shapes world), else SegGen's `instances.json`.
pub fn instance_file(dataset: &Path) -> std::path::PathBuf {
    let annotations = dataset.join("annotations.json");
    let instances = dataset.join("instances.json");
    if !annotations.exists() && instances.exists() {
        instances
    } else {
        annotations
    }
}

/// Where image `image_id`'s record lives below the dataset folder.
pub fn record_path(image_id: u64) -> String {
    format!("{SCORES_DIR}/{image_id:012}.json")
}

/// Reads image `image_id`'s record in `dataset`, if it was scored.
pub fn read_record(dataset: &Path, image_id: u64) -> Result<Option<ScoreRecord>> {
    let path = dataset.join(record_path(image_id));
    match std::fs::read(&path) {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{}: unreadable score record (delete it to score the image again)",
                path.display()
            )
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("{}: cannot read", path.display())),
    }
}

/// Adds the scores to the dataset's [`instance_file`] (written atomically) and drops annotations
/// whose `agreement` is below `min`. Without a `scores/` folder and without `min` it does
/// nothing; with `min` every image must have been scored. Returns `(kept, dropped)`.
pub fn apply(dataset: &Path, min: Option<f64>) -> Result<Option<(usize, usize)>> {
    if !dataset.join(SCORES_DIR).is_dir() {
        if min.is_some() {
            bail!(
                "{}: no detector scores; run `maskforge score` on it first",
                dataset.display()
            );
        }
        return Ok(None);
    }
    let path = instance_file(dataset);
    let name = path.display().to_string();
    let bytes = std::fs::read(&path).with_context(|| format!("{name}: cannot read"))?;
    let mut top: Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("{name}: not a COCO annotation file"))?;
    let annotations = top
        .get_mut("annotations")
        .and_then(Value::as_array_mut)
        .with_context(|| format!("{name}: no `annotations` array"))?;
    let mut records: HashMap<u64, Option<ScoreRecord>> = HashMap::new();
    let mut seen: HashMap<u64, usize> = HashMap::new();
    let mut unscored = 0;
    let mut kept = Vec::with_capacity(annotations.len());
    let mut dropped = 0;
    for (i, mut ann) in std::mem::take(annotations).into_iter().enumerate() {
        let image_id = ann["image_id"]
            .as_u64()
            .with_context(|| format!("{name}: annotations[{i}] has no image_id"))?;
        let record = match records.get(&image_id) {
            Some(r) => r.clone(),
            None => {
                let r = read_record(dataset, image_id)?;
                records.insert(image_id, r.clone());
                r
            }
        };
        let at = seen.entry(image_id).or_insert(0);
        let index = *at;
        *at += 1;
        let Some(record) = record else {
            unscored += 1;
            kept.push(ann);
            continue;
        };
        let (Some(&agreement), Some(category)) = (
            record.agreement.get(index),
            record.category_agreement.get(index),
        ) else {
            bail!(
                "{}: scores {} annotations of image {image_id}, annotations.json has more; \
                 delete scores/ and score again",
                dataset.display(),
                record.agreement.len()
            );
        };
        if min.is_some_and(|m| agreement < m) {
            dropped += 1;
            continue;
        }
        ann["agreement"] = agreement.into();
        ann["category_agreement"] = category.map_or(Value::Null, Value::from);
        kept.push(ann);
    }
    if min.is_some() && unscored > 0 {
        bail!(
            "{}: {unscored} annotations are on images not scored yet; finish `maskforge score` first",
            dataset.display()
        );
    }
    let count = kept.len();
    top["annotations"] = Value::Array(kept);
    write_bytes_atomically(&path, &serde_json::to_vec(&top)?)?;
    Ok(Some((count, dropped)))
}
