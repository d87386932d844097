//! SegGen's part of a sample's manifest record: what was drawn from what, and the paths of the
//! sample's files relative to the dataset folder.

use serde::{Deserialize, Serialize};

use super::options::SynthesisOptions;
use crate::dataset::{Annotated, AnnotationRecord, ImageRecord, SampleRecord};

/// A SegGen sample's manifest line.
pub type SegGenRecord = SampleRecord<SegGenDetails>;

/// SegGen's fields of the record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegGenDetails {
    /// `imgsyn` or `masksyn`.
    pub method: String,
    pub prompt: String,
    pub negative_prompt: Option<String>,
    /// ImgSyn: the label map the images are drawn for, as the prompt file names it.
    pub source_mask: Option<String>,
    /// MaskSyn: the Text2Mask model and its steps (`model` and `steps` are Mask2Img's).
    pub text2mask_model: Option<String>,
    pub text2mask_steps: Option<usize>,
    pub controlnet: String,
    pub palette: String,
    pub guidance: f64,
    pub control_scale: f32,
    pub height: usize,
    pub width: usize,
    /// The image (`images/<stem>.png`).
    pub image: String,
    /// The label map (`annotations/<stem>.png`, ids of the palette).
    pub labels: String,
    /// MaskSyn: the colour map as Text2Mask drew it (`colors/<stem>.png`).
    pub color: Option<String>,
    /// MaskSyn: the panoptic PNG (`panoptic/<stem>.png`) and its segments.
    pub panoptic: Option<String>,
    pub segments: Vec<SegmentInfo>,
    /// MaskSyn: instances of thing classes (ids are given when the dataset is assembled).
    pub annotations: Vec<AnnotationRecord>,
}

/// A COCO panoptic `segments_info` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentInfo {
    pub id: u32,
    pub category_id: u64,
    pub area: u64,
    /// `[x, y, width, height]`
    pub bbox: [u64; 4],
    pub iscrowd: u8,
}

impl SegGenDetails {
    /// The details of a `method` sample of `prompt` at `[height, width]`, before its files are
    /// known.
    pub fn new(
        method: &str,
        prompt: &str,
        options: &SynthesisOptions,
        controlnet: &str,
        palette: &str,
        [height, width]: [usize; 2],
    ) -> Self {
        Self {
            method: method.into(),
            prompt: prompt.into(),
            negative_prompt: options.negative_prompt.clone(),
            source_mask: None,
            text2mask_model: None,
            text2mask_steps: None,
            controlnet: controlnet.into(),
            palette: palette.into(),
            guidance: options.guidance,
            control_scale: options.control_scale,
            height,
            width,
            image: String::new(),
            labels: String::new(),
            color: None,
            panoptic: None,
            segments: vec![],
            annotations: vec![],
        }
    }

    /// The image's file name (without its folder).
    pub fn file_name(&self) -> &str {
        self.image.rsplit('/').next().unwrap_or(&self.image)
    }
}

impl Annotated for SegGenDetails {
    fn image_record(&self, id: u64) -> Option<ImageRecord> {
        Some(ImageRecord {
            id,
            file_name: self.file_name().to_string(),
            coco_url: self.image.clone(),
            width: self.width,
            height: self.height,
            neg_category_ids: vec![],
            not_exhaustive_category_ids: vec![],
        })
    }

    fn annotations(&self) -> &[AnnotationRecord] {
        &self.annotations
    }
}
