//! detectron2's `ROIPooler` with ROIAlign: each box is pooled from one FPN level, chosen by
//! `assign_boxes_to_levels` (a 224-pixel box on level 4, one level per doubling of
//! `sqrt(area)`, clamped to the pooler's levels).

use burn::tensor::{Int, Tensor, TensorData};

use super::roi_align::{RoiAlignParams, roi_align};
use crate::diffusioninst::{PoolerConfig, PoolerType};
use crate::error::{Error, Result};

/// detectron2's canonical box size (pixels) and its level.
const CANONICAL_BOX_SIZE: f32 = 224.0;
const CANONICAL_LEVEL: f32 = 4.0;

/// Pools boxes from the FPN levels `p<min_level>`…`p<max_level>` (strides `2^level`).
#[derive(Debug, Clone, PartialEq)]
pub struct RoiPooler {
    pub min_level: usize,
    pub max_level: usize,
    pub output_size: usize,
    pub sampling_ratio: usize,
    pub aligned: bool,
}

impl RoiPooler {
    /// The pooler of `MODEL.ROI_HEADS.IN_FEATURES` (`p2`…, contiguous) and `ROI_BOX_HEAD.POOLER_*`.
    pub fn new(config: &PoolerConfig) -> Result<Self> {
        let levels = config
            .in_features
            .iter()
            .map(|f| f.strip_prefix('p').and_then(|l| l.parse::<usize>().ok()))
            .collect::<Option<Vec<_>>>()
            .filter(|l| !l.is_empty() && l.windows(2).all(|w| w[1] == w[0] + 1))
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "ROI pooler features must be contiguous FPN levels p2, p3, …; found {:?}",
                    config.in_features
                ))
            })?;
        Ok(Self {
            min_level: levels[0],
            max_level: levels[levels.len() - 1],
            output_size: config.resolution,
            sampling_ratio: config.sampling_ratio,
            aligned: config.pooler_type == PoolerType::RoiAlignV2,
        })
    }

    /// Each box's level as an index into the pooler's levels (0 for `p<min_level>`), computed
    /// in f32 as detectron2 does; `None` for a box of negative area (detectron2 pools nothing
    /// for it, leaving zeros).
    ///
    /// # Shapes
    /// `boxes`: `[R, 5]` rows `(batch index, x1, y1, x2, y2)` → `R`
    pub fn levels(&self, boxes: &[[f32; 5]]) -> Vec<Option<usize>> {
        let (min, max) = (self.min_level as f32, self.max_level as f32);
        boxes
            .iter()
            .map(|b| {
                let size = ((b[3] - b[1]) * (b[4] - b[2])).sqrt();
                let level = (CANONICAL_LEVEL
                    + (size / CANONICAL_BOX_SIZE + f64::EPSILON as f32).log2())
                .floor();
                (!level.is_nan()).then(|| (level.clamp(min, max) - min) as usize)
            })
            .collect()
    }

    /// Pools every box from its level of `features` (`p<min_level>` first), in box order.
    ///
    /// # Shapes
    /// `features`: one `[N, C, H_l, W_l]` per level, `boxes`: `[R, 5]` rows `(batch index, x1,
    /// y1, x2, y2)` in image coordinates → `[R, C, out, out]`
    pub fn forward(&self, features: &[Tensor<4>], boxes: &[[f32; 5]]) -> Tensor<4> {
        assert_eq!(
            features.len(),
            self.max_level - self.min_level + 1,
            "one feature map per pooler level"
        );
        let levels = self.levels(boxes);
        let mut order = Vec::with_capacity(boxes.len());
        let mut parts = Vec::new();
        for (index, map) in features.iter().enumerate() {
            let (rows, picked): (Vec<usize>, Vec<[f32; 5]>) = (levels.iter().enumerate())
                .filter(|(_, l)| **l == Some(index))
                .map(|(i, _)| (i, boxes[i]))
                .unzip();
            if picked.is_empty() {
                continue;
            }
            let params = RoiAlignParams {
                output_size: self.output_size,
                spatial_scale: 1.0 / (1u32 << (self.min_level + index)) as f32,
                sampling_ratio: self.sampling_ratio,
                aligned: self.aligned,
            };
            parts.push(roi_align(map.clone(), &picked, params));
            order.extend(rows);
        }
        let unassigned: Vec<usize> = (0..boxes.len()).filter(|&i| levels[i].is_none()).collect();
        if !unassigned.is_empty() || parts.is_empty() {
            let [_, c, _, _] = features[0].dims();
            let out = self.output_size;
            let zeros = Tensor::<4>::zeros([unassigned.len(), c, out, out], &features[0].device());
            parts.push(zeros.cast(features[0].dtype()));
            order.extend(unassigned);
        }
        let pooled = Tensor::cat(parts, 0);
        if order.iter().enumerate().all(|(i, &o)| i == o) {
            return pooled;
        }
        // `position[i]`: where box `i` landed in the concatenation.
        let mut position = vec![0i64; order.len()];
        for (at, &i) in order.iter().enumerate() {
            position[i] = at as i64;
        }
        let position =
            Tensor::<1, Int>::from_data(TensorData::new(position, [order.len()]), &pooled.device());
        pooled.select(0, position)
    }
}
