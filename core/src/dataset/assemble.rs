//! `annotations.json` (LVIS/COCO) assembled from the sample records of a run.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use super::categories::Category;
use super::sample_record::{Annotated, SampleRecord};
use crate::error::{Error, Result};

/// `annotations.json` (LVIS/COCO) of the kept samples in `records` (sorted by index here):
/// images, annotations numbered from 1, and every category of `categories` with its
/// `image_count` and `instance_count` in this dataset. `description` goes into `info`.
pub fn assemble_annotations<D: Annotated>(
    categories: &[Category],
    records: &[SampleRecord<D>],
    description: &str,
) -> Result<Value> {
    let mut records: Vec<&SampleRecord<D>> = records.iter().filter(|r| r.kept).collect();
    records.sort_by_key(|r| r.index);
    if let Some(w) = records.windows(2).find(|w| w[0].index == w[1].index) {
        return Err(Error::Invalid(format!(
            "sample {} is recorded twice",
            w[0].index
        )));
    }
    let known: BTreeSet<u64> = categories.iter().map(|c| c.id).collect();
    let mut images = Vec::new();
    let mut annotations = Vec::new();
    let mut image_sets: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    let mut instance_counts: BTreeMap<u64, u64> = BTreeMap::new();
    for r in records {
        let image = r.details.image_record(r.id).ok_or_else(|| {
            Error::Invalid(format!("kept sample {} has no image record", r.index))
        })?;
        images.push(serde_json::to_value(image).expect("records serialise"));
        for a in r.details.annotations() {
            if !known.contains(&a.category_id) {
                return Err(Error::Invalid(format!(
                    "sample {} has category {} that is not in the category file",
                    r.index, a.category_id
                )));
            }
            let mut a = a.clone();
            a.id = annotations.len() as u64 + 1;
            image_sets
                .entry(a.category_id)
                .or_default()
                .insert(a.image_id);
            *instance_counts.entry(a.category_id).or_default() += 1;
            annotations.push(serde_json::to_value(a).expect("records serialise"));
        }
    }
    let categories: Vec<Value> = categories
        .iter()
        .map(|c| {
            let mut o: Map<String, Value> = c.source.clone();
            let images = image_sets.get(&c.id).map_or(0, BTreeSet::len);
            o.insert("image_count".into(), images.into());
            o.insert(
                "instance_count".into(),
                instance_counts.get(&c.id).copied().unwrap_or(0).into(),
            );
            Value::Object(o)
        })
        .collect();
    Ok(json!({
        "info": {
            "description": description,
            "version": env!("CARGO_PKG_VERSION"),
        },
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }))
}
