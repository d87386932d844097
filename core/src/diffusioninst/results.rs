//! Detections as a COCO results file (what detectron2's `instances_to_coco_json` writes):
//! `image_id`, `category_id`, `bbox` `[x, y, w, h]`, `score` and, for mask models,
//! `segmentation` as compressed RLE.

use serde::{Deserialize, Serialize};

use super::Detection;
use crate::dataset::RleRecord;
use crate::error::{Error, Result};

/// COCO's 80 category ids in the order of detectron2's contiguous classes (1–90 with gaps).
pub const COCO_CATEGORY_IDS: [u64; 80] = [
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28,
    31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55,
    56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84,
    85, 86, 87, 88, 89, 90,
];
/// Classes of an LVIS v1 model; its category ids are `1…1203` in class order.
pub const LVIS_CLASSES: usize = 1203;

/// The dataset category id of each class of a `num_classes` model without a ground-truth
/// file: COCO's ids for 80 classes, else `class + 1` (LVIS's ids for 1203).
pub fn default_category_ids(num_classes: usize) -> Vec<u64> {
    if num_classes == COCO_CATEGORY_IDS.len() {
        COCO_CATEGORY_IDS.to_vec()
    } else {
        (1..=num_classes as u64).collect()
    }
}

/// One entry of a COCO results file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultRecord {
    pub image_id: u64,
    pub category_id: u64,
    /// `[x, y, width, height]`
    pub bbox: [f64; 4],
    pub score: f64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub segmentation: Option<RleRecord>,
}

/// The results of one image (`height × width`), classes mapped through `category_ids`.
pub fn coco_results(
    detections: &[Detection],
    image_id: u64,
    (height, width): (usize, usize),
    category_ids: &[u64],
) -> Result<Vec<ResultRecord>> {
    detections
        .iter()
        .map(|d| {
            let category_id = *category_ids.get(d.label).ok_or_else(|| {
                Error::Invalid(format!(
                    "class {} has no category id ({} categories)",
                    d.label,
                    category_ids.len()
                ))
            })?;
            let [x1, y1, x2, y2] = d.bbox.map(f64::from);
            Ok(ResultRecord {
                image_id,
                category_id,
                bbox: [x1, y1, x2 - x1, y2 - y1],
                score: f64::from(d.score),
                segmentation: d
                    .mask
                    .as_ref()
                    .map(|m| RleRecord::from_mask(m, height, width))
                    .transpose()?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coco_ids_skip_coco_gaps() {
        let ids = default_category_ids(80);
        assert_eq!((ids[0], ids[11], ids[79]), (1, 13, 90));
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(default_category_ids(LVIS_CLASSES)[1202], 1203);
    }

    #[test]
    fn records_are_xywh_with_rle() {
        let mut mask = vec![false; 4 * 5];
        mask[5 + 1] = true;
        let d = Detection {
            bbox: [1.0, 1.0, 3.5, 2.0],
            score: 0.25,
            label: 11,
            mask: Some(mask),
        };
        let r = coco_results(std::slice::from_ref(&d), 7, (4, 5), &COCO_CATEGORY_IDS).unwrap();
        assert_eq!((r[0].image_id, r[0].category_id), (7, 13));
        assert_eq!(r[0].bbox, [1.0, 1.0, 2.5, 1.0]);
        let rle = r[0].segmentation.as_ref().unwrap();
        assert_eq!(rle.size, [4, 5]);
        // Column-major runs 5 zeros (column 0, row 0 of column 1), a one, 14 zeros, in
        // pycocotools' string encoding.
        assert_eq!(rle.counts, "51>");
        let bad = Detection { label: 80, ..d };
        assert!(coco_results(&[bad], 7, (4, 5), &COCO_CATEGORY_IDS).is_err());
    }
}
