//! The shapes world's part of a sample's manifest record.

use serde::{Deserialize, Serialize};

use super::scene::Background;
use crate::dataset::{Annotated, AnnotationRecord, ImageRecord, SampleRecord};

/// A shapes-world sample's manifest line.
pub type ShapesRecord = SampleRecord<ShapesDetails>;

/// The shapes world's fields of the record: the files beside the image, the captions, and
/// everything the scene was drawn with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShapesDetails {
    /// Width and height of the image.
    pub size: usize,
    /// The label map (class ids), relative to the dataset folder.
    pub labels: String,
    /// The colour map (the palette's colours), relative to the dataset folder.
    pub colors: String,
    /// The scene caption: "a red star and a blue ring".
    pub caption: String,
    pub background: Background,
    /// Back to front.
    pub objects: Vec<ObjectRecord>,
    pub image: Option<ImageRecord>,
    /// The true instance masks (ids are given when the dataset is assembled).
    pub annotations: Vec<AnnotationRecord>,
}

impl Annotated for ShapesDetails {
    fn image_record(&self, _id: u64) -> Option<ImageRecord> {
        self.image.clone()
    }

    fn annotations(&self) -> &[AnnotationRecord] {
        &self.annotations
    }
}

/// One object as drawn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectRecord {
    pub category_id: u64,
    pub name: String,
    /// Its named colour and that colour's RGB.
    pub color: String,
    pub rgb: [u8; 3],
    /// Centre `[x, y]` and circumradius, pixels.
    pub center: [f64; 2],
    pub radius: f64,
    /// Counter-clockwise, degrees.
    pub rotation: f64,
    /// Visible pixels, and the pixels it would cover alone.
    pub area: usize,
    pub full_area: usize,
    /// "a photo of a single red star"
    pub caption: String,
    /// "a photo of a single star"
    pub caption_plain: String,
}
