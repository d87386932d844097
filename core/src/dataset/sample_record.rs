//! One line of `manifest.jsonl`: the fields every generator records, plus its own details.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::records::{AnnotationRecord, ImageRecord};
use super::run::SampleId;

/// The manifest record of one sample: everything needed to reproduce and audit it. `D` holds
/// what only its generator knows (MosaicFusion's regions, mask settings and LVIS image entry,
/// SegGen's file paths, …); its fields follow the common ones in the JSON line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound(serialize = "D: Serialize", deserialize = "D: DeserializeOwned"))]
pub struct SampleRecord<D> {
    /// Image id (`index + 1`).
    pub id: u64,
    /// Position of the sample in the run (0-based); its seed is `base seed + index`.
    pub index: u64,
    pub seed: u64,
    pub kept: bool,
    /// Why the sample was dropped.
    pub reason: Option<String>,
    pub model: String,
    pub scheduler: String,
    pub steps: usize,
    #[serde(flatten)]
    pub details: D,
}

/// What a generator's details give the assembled COCO/LVIS file.
pub trait Annotated {
    /// The COCO image entry of a kept sample with image id `id`.
    fn image_record(&self, id: u64) -> Option<ImageRecord>;
    /// Its instance annotations (ids are given when the dataset is assembled).
    fn annotations(&self) -> &[AnnotationRecord];
}

impl<D> SampleRecord<D> {
    /// The sample this record is of.
    pub fn sample(&self) -> SampleId {
        SampleId {
            index: self.index,
            seed: self.seed,
        }
    }
}

/// `manifest.jsonl`: one JSON line per record, sorted by sample index.
pub fn manifest_jsonl<D: Serialize>(records: &[SampleRecord<D>]) -> Vec<u8> {
    let mut sorted: Vec<&SampleRecord<D>> = records.iter().collect();
    sorted.sort_by_key(|r| r.index);
    let mut manifest = Vec::new();
    for r in sorted {
        serde_json::to_writer(&mut manifest, r).expect("records serialise");
        manifest.push(b'\n');
    }
    manifest
}
