//! MosaicFusion's part of a sample's manifest record.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::dataset::{Annotated, AnnotationRecord, ImageRecord, SampleRecord};

/// A MosaicFusion sample's manifest line.
pub type MosaicRecord = SampleRecord<MosaicDetails>;

/// MosaicFusion's fields of the record: guidance, mask settings, the canvas and its regions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MosaicDetails {
    pub guidance: f64,
    /// Mask settings: threshold rule, refinement, filters, component policy.
    pub settings: Value,
    pub canvas: [usize; 2],
    pub layout: Value,
    pub main_category_id: u64,
    pub regions: Vec<RegionRecord>,
    /// The image, when kept.
    pub image: Option<ImageRecord>,
    /// Annotations (ids are given when the dataset is assembled).
    pub annotations: Vec<AnnotationRecord>,
}

impl Annotated for MosaicDetails {
    fn image_record(&self, _id: u64) -> Option<ImageRecord> {
        self.image.clone()
    }

    fn annotations(&self) -> &[AnnotationRecord] {
        &self.annotations
    }
}

/// One region of a sample, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegionRecord {
    pub category_id: u64,
    pub category_name: String,
    pub prompt: String,
    pub token_index: usize,
    /// `[y1, y2, x1, x2]` on the canvas, in pixels.
    #[serde(rename = "box")]
    pub bbox: [usize; 4],
    /// Attention resolutions averaged (8 = 1/8 of the region, …).
    pub attention_resolutions: Vec<usize>,
    /// The 8-bit threshold applied to the attention map.
    pub threshold: u8,
    /// Components in the final mask, those passing the filters, and instances kept.
    pub components: usize,
    pub passed: usize,
    pub kept: usize,
}
