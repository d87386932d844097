//! LVIS/COCO records as MaskForge writes them: images, annotations with compressed RLE, and
//! one manifest record per generated sample.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A COCO `image`, with LVIS's `coco_url`, `neg_category_ids` and
/// `not_exhaustive_category_ids` (detectron2's LVIS loader reads the path from `coco_url`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub id: u64,
    pub file_name: String,
    pub coco_url: String,
    pub width: usize,
    pub height: usize,
    pub neg_category_ids: Vec<u64>,
    pub not_exhaustive_category_ids: Vec<u64>,
}

/// COCO compressed RLE: column-major run lengths as pycocotools' string encoding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RleRecord {
    /// `[height, width]`
    pub size: [u32; 2],
    pub counts: String,
}

/// A COCO `annotation`; `id` is assigned when the dataset is assembled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnnotationRecord {
    pub id: u64,
    pub image_id: u64,
    pub category_id: u64,
    pub segmentation: RleRecord,
    pub area: f64,
    /// `[x, y, width, height]`
    pub bbox: [f64; 4],
    pub iscrowd: u8,
}

impl AnnotationRecord {
    /// Encodes a row-major `height × width` mask (id 0 until assembled).
    pub fn from_mask(
        mask: &[bool],
        height: usize,
        width: usize,
        image_id: u64,
        category_id: u64,
    ) -> Result<Self> {
        let (h, w) = (height as u32, width as u32);
        if mask.len() != height * width {
            return Err(Error::Invalid(format!(
                "mask has {} pixels, expected {height}x{width}",
                mask.len()
            )));
        }
        let (counts, area, bbox) = encode_rle(mask, height, width)?;
        Ok(Self {
            id: 0,
            image_id,
            category_id,
            segmentation: RleRecord {
                size: [h, w],
                counts,
            },
            area,
            bbox,
            iscrowd: 0,
        })
    }
}

impl RleRecord {
    /// Encodes a row-major `height × width` mask.
    pub fn from_mask(mask: &[bool], height: usize, width: usize) -> Result<Self> {
        if mask.len() != height * width {
            return Err(Error::Invalid(format!(
                "mask has {} pixels, expected {height}x{width}",
                mask.len()
            )));
        }
        let (counts, _, _) = encode_rle(mask, height, width)?;
        Ok(Self {
            size: [height as u32, width as u32],
            counts,
        })
    }
}

/// hotcoco's RLE of a row-major `height × width` mask (COCO's order is column-major).
pub fn mask_rle(mask: &[bool], height: usize, width: usize) -> Result<hotcoco::Rle> {
    let mut column_major = vec![0u8; mask.len()];
    for y in 0..height {
        for x in 0..width {
            column_major[x * height + y] = mask[y * width + x] as u8;
        }
    }
    hotcoco::mask::encode(&column_major, height as u32, width as u32)
        .map_err(|e| Error::Invalid(format!("RLE encoding: {e}")))
}

/// A row-major mask's compressed RLE string, area and `[x, y, w, h]` bounding box.
fn encode_rle(mask: &[bool], height: usize, width: usize) -> Result<(String, f64, [f64; 4])> {
    let rle = mask_rle(mask, height, width)?;
    Ok((
        hotcoco::mask::rle_to_string(&rle),
        hotcoco::mask::area(&rle) as f64,
        hotcoco::mask::to_bbox(&rle),
    ))
}

/// The file name of image `id`: 12 digits, as COCO and LVIS.
pub fn image_file_name(id: u64, extension: &str) -> String {
    format!("{id:012}.{extension}")
}
