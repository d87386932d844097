//! Data-quality scoring: how well a detector agrees with a dataset's annotations. For each
//! annotation, the best mask IoU with any detection (`agreement`) and with a detection of the
//! same category (`category_agreement`, when the detector's classes name the dataset's
//! categories).

use hotcoco::Rle;
use hotcoco::primitives::sim::mask_iou;

use super::Detection;
use crate::dataset::RleRecord;
use crate::dataset::records::mask_rle;
use crate::error::{Error, Result};

/// COCO's 80 category names in class order (detectron2's `COCO_CATEGORIES` things).
pub const COCO_NAMES: [&str; 80] = [
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "airplane",
    "bus",
    "train",
    "truck",
    "boat",
    "traffic light",
    "fire hydrant",
    "stop sign",
    "parking meter",
    "bench",
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "backpack",
    "umbrella",
    "handbag",
    "tie",
    "suitcase",
    "frisbee",
    "skis",
    "snowboard",
    "sports ball",
    "kite",
    "baseball bat",
    "baseball glove",
    "skateboard",
    "surfboard",
    "tennis racket",
    "bottle",
    "wine glass",
    "cup",
    "fork",
    "knife",
    "spoon",
    "bowl",
    "banana",
    "apple",
    "sandwich",
    "orange",
    "broccoli",
    "carrot",
    "hot dog",
    "pizza",
    "donut",
    "cake",
    "chair",
    "couch",
    "potted plant",
    "bed",
    "dining table",
    "toilet",
    "tv",
    "laptop",
    "mouse",
    "remote",
    "keyboard",
    "cell phone",
    "microwave",
    "oven",
    "toaster",
    "sink",
    "refrigerator",
    "book",
    "clock",
    "vase",
    "scissors",
    "teddy bear",
    "hair drier",
    "toothbrush",
];

/// A category name compared loosely: lower case, `_` as a space (LVIS writes `teddy_bear`).
pub fn normalise_name(name: &str) -> String {
    name.trim().to_lowercase().replace('_', " ")
}

/// One annotation's scores.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Agreement {
    /// Best mask IoU with any detection (0 without detections).
    pub any: f64,
    /// Best mask IoU with a detection of its category; `None` when its category is not one
    /// the detector knows.
    pub same_category: Option<f64>,
}

/// Scores the annotations of one `height × width` image: `annotations[i]` is its mask and,
/// when the detector knows its category, that category's detector class.
pub fn agreement(
    detections: &[Detection],
    annotations: &[(Option<usize>, &RleRecord)],
    (height, width): (usize, usize),
) -> Result<Vec<Agreement>> {
    let (h, w) = (height as u32, width as u32);
    let gt: Vec<Rle> = annotations
        .iter()
        .map(|(_, rle)| {
            if rle.size != [h, w] {
                return Err(Error::Invalid(format!(
                    "an annotation mask is {}×{}, its image {height}×{width}",
                    rle.size[0], rle.size[1]
                )));
            }
            hotcoco::mask::rle_from_string(&rle.counts, h, w)
                .map_err(|e| Error::Invalid(format!("an annotation's RLE: {e}")))
        })
        .collect::<Result<_>>()?;
    let dt: Vec<Rle> = detections
        .iter()
        .map(|d| {
            let mask = d.mask.as_ref().ok_or_else(|| {
                Error::Invalid("scoring needs masks: the detector predicts boxes only".into())
            })?;
            mask_rle(mask, height, width)
        })
        .collect::<Result<_>>()?;
    let iou = mask_iou(&dt, &gt, &vec![false; gt.len()]);
    Ok(annotations
        .iter()
        .enumerate()
        .map(|(j, (class, _))| {
            let column = || (0..dt.len()).map(|i| (i, iou[i][j]));
            let best =
                |it: &mut dyn Iterator<Item = (usize, f64)>| it.map(|(_, v)| v).fold(0.0, f64::max);
            Agreement {
                any: best(&mut column()),
                same_category: class
                    .map(|c| best(&mut column().filter(|(i, _)| detections[*i].label == c))),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square(h: usize, w: usize, y0: usize, x0: usize, side: usize) -> Vec<bool> {
        (0..h * w)
            .map(|p| (y0..y0 + side).contains(&(p / w)) && (x0..x0 + side).contains(&(p % w)))
            .collect()
    }

    #[test]
    fn best_iou_overall_and_within_the_category() {
        let (h, w) = (20, 30);
        let gt = RleRecord::from_mask(&square(h, w, 2, 2, 10), h, w).unwrap();
        let detection = |label, y0, x0| Detection {
            bbox: [0.0; 4],
            score: 0.9,
            label,
            mask: Some(square(h, w, y0, x0, 10)),
        };
        // Class 1 covers it exactly; class 0 overlaps half of it (IoU 50/150).
        let found = [detection(0, 2, 7), detection(1, 2, 2)];
        let scores = agreement(&found, &[(Some(0), &gt), (None, &gt)], (h, w)).unwrap();
        assert_eq!(scores[0].any, 1.0);
        assert!((scores[0].same_category.unwrap() - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(scores[1].same_category, None);
        let none = agreement(&[], &[(Some(3), &gt)], (h, w)).unwrap();
        assert_eq!(
            none[0],
            Agreement {
                any: 0.0,
                same_category: Some(0.0)
            }
        );
        let wrong = RleRecord::from_mask(&square(10, 10, 0, 0, 2), 10, 10).unwrap();
        assert!(agreement(&found, &[(None, &wrong)], (h, w)).is_err());
    }
}
