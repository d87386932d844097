//! Assembling a SegGen dataset after its samples are finished: `manifest.jsonl`, and where the
//! masks were drawn (MaskSyn) COCO panoptic's `panoptic.json` and COCO instances'
//! `instances.json`. The images and label maps are already in place (ADE20K layout).

use serde_json::{Map, Value, json};

use super::Palette;
use super::record::SegGenRecord;
use crate::Result;
use crate::dataset::run::MANIFEST_FILE;
use crate::dataset::{Category, Storage, assemble_annotations, finished_records, manifest_jsonl};

pub const PANOPTIC_FILE: &str = "panoptic.json";
pub const INSTANCES_FILE: &str = "instances.json";

/// The palette as the run's categories: `id`, `name`, `color` and `isthing` where known.
pub fn palette_categories(palette: &Palette) -> Vec<Map<String, Value>> {
    palette
        .entries()
        .iter()
        .map(|e| {
            let mut o = Map::new();
            o.insert("id".into(), e.id.into());
            o.insert("name".into(), e.name.clone().into());
            o.insert("color".into(), json!(e.color));
            if let Some(thing) = e.isthing {
                o.insert("isthing".into(), (thing as u8).into());
            }
            o
        })
        .collect()
}

/// Writes the dataset files of `records` (every sample of the run).
pub fn write_seggen_outputs(
    storage: &dyn Storage,
    categories: &[Category],
    records: &[SegGenRecord],
    description: &str,
) -> Result<()> {
    storage.write(MANIFEST_FILE, &manifest_jsonl(records))?;
    if records.is_empty() || records.iter().any(|r| r.details.panoptic.is_none()) {
        return Ok(());
    }
    let mut sorted: Vec<&SegGenRecord> = records.iter().collect();
    sorted.sort_by_key(|r| r.index);
    let images: Vec<Value> = sorted
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "file_name": r.details.file_name(),
                "width": r.details.width,
                "height": r.details.height,
            })
        })
        .collect();
    let annotations: Vec<Value> = sorted
        .iter()
        .map(|r| {
            let png = r.details.panoptic.as_deref().unwrap_or_default();
            json!({
                "image_id": r.id,
                "file_name": png.rsplit('/').next().unwrap_or(png),
                "segments_info": r.details.segments,
            })
        })
        .collect();
    let panoptic = json!({
        "info": {"description": description, "version": env!("CARGO_PKG_VERSION")},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": categories.iter().map(|c| Value::Object(c.source.clone())).collect::<Vec<_>>(),
    });
    storage.write(
        PANOPTIC_FILE,
        &serde_json::to_vec(&panoptic).expect("JSON values serialise"),
    )?;
    let instances = assemble_annotations(categories, records, description)?;
    storage.write(
        INSTANCES_FILE,
        &serde_json::to_vec(&instances).expect("JSON values serialise"),
    )
}

/// `collect` for SegGen runs: checks that every sample is finished and writes the dataset files.
pub fn collect_seggen(storage: &dyn Storage, description: &str) -> Result<Vec<SegGenRecord>> {
    let (categories, records) = finished_records(storage)?;
    write_seggen_outputs(storage, &categories, &records, description)?;
    Ok(records)
}
