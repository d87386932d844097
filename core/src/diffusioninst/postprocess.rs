//! DiffusionInst's `detector_postprocess`: boxes scaled from the resized image to the original
//! and clipped; each mask upsampled from stride 4 with `aligned_bilinear`, cropped to the
//! resized image, resized bilinearly to the original size, thresholded at 0.5 and cleared
//! outside its (truncated) box; detections with an empty box dropped. On the host, in f32 with
//! PyTorch's bilinear arithmetic.

use super::boxes::Xyxy;
use super::sampler::Candidates;

/// Mask probabilities above this are foreground.
const MASK_THRESHOLD: f32 = 0.5;
/// The mask features' stride.
const MASK_STRIDE: usize = 4;

/// One detection in the original image.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    /// Pixels of the original image.
    pub bbox: Xyxy,
    pub score: f32,
    /// 0-based class index.
    pub label: usize,
    /// Row-major `height × width` of the original image, for mask models.
    pub mask: Option<Vec<bool>>,
}

/// The sizes involved in mapping one image's detections back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageGeometry {
    /// `(height, width)` of the image as given.
    pub original: (usize, usize),
    /// `(height, width)` after `ResizeShortestEdge`, before padding.
    pub resized: (usize, usize),
}

/// Maps `candidates` (with `mask_prob`, `[K, h, w]` row-major at stride 4 of the padded
/// image, when the model predicts masks) back to the original image.
pub fn postprocess(
    candidates: &Candidates,
    mask_prob: Option<(&[f32], usize, usize)>,
    geometry: ImageGeometry,
) -> Vec<Detection> {
    let (out_h, out_w) = geometry.original;
    let (mid_h, mid_w) = geometry.resized;
    let scale_x = (out_w as f64 / mid_w as f64) as f32;
    let scale_y = (out_h as f64 / mid_h as f64) as f32;
    let (max_x, max_y) = (out_w as f32, out_h as f32);
    let mut out = Vec::with_capacity(candidates.boxes.len());
    for (i, b) in candidates.boxes.iter().enumerate() {
        let bbox = [
            (b[0] * scale_x).clamp(0.0, max_x),
            (b[1] * scale_y).clamp(0.0, max_y),
            (b[2] * scale_x).clamp(0.0, max_x),
            (b[3] * scale_y).clamp(0.0, max_y),
        ];
        if !(bbox[2] - bbox[0] > 0.0 && bbox[3] - bbox[1] > 0.0) {
            continue;
        }
        let mask = mask_prob.map(|(probs, h, w)| {
            let plane = &probs[i * h * w..(i + 1) * h * w];
            let full = upsample_mask(plane, h, w, geometry);
            let [x1, y1, x2, y2] = bbox.map(|v| v as usize);
            (0..out_h * out_w)
                .map(|p| {
                    let (y, x) = (p / out_w, p % out_w);
                    full[p] > MASK_THRESHOLD && (y1..y2).contains(&y) && (x1..x2).contains(&x)
                })
                .collect()
        });
        out.push(Detection {
            bbox,
            score: candidates.scores[i],
            label: candidates.labels[i],
            mask,
        });
    }
    out
}

/// One mask's probabilities at the original size: `aligned_bilinear(·, 4)`, cropped to the
/// resized image, then `F.interpolate(bilinear, align_corners=False)`.
fn upsample_mask(plane: &[f32], h: usize, w: usize, geometry: ImageGeometry) -> Vec<f32> {
    let (mid_h, mid_w) = geometry.resized;
    let (out_h, out_w) = geometry.original;
    let f = MASK_STRIDE;
    // Edge-padded by one on the right and bottom, then resized with aligned corners.
    let padded = |y: usize, x: usize| plane[y.min(h - 1) * w + x.min(w - 1)];
    let rows = Axis::aligned_corners(h + 1, f * h + 1);
    let cols = Axis::aligned_corners(w + 1, f * w + 1);
    // Then edge-padded by f/2 on the left and top and cropped: output pixel y reads
    // interpolated row `y − f/2` (clamped at 0).
    let mut mid = vec![0f32; mid_h * mid_w];
    for y in 0..mid_h {
        let ry = &rows[y.saturating_sub(f / 2)];
        for x in 0..mid_w {
            let rx = &cols[x.saturating_sub(f / 2)];
            mid[y * mid_w + x] = ry.mix(rx, padded);
        }
    }
    let rows = Axis::half_pixel(mid_h, out_h);
    let cols = Axis::half_pixel(mid_w, out_w);
    let mut out = vec![0f32; out_h * out_w];
    for (y, ry) in rows.iter().enumerate() {
        for (x, rx) in cols.iter().enumerate() {
            out[y * out_w + x] = ry.mix(rx, |yy, xx| mid[yy * mid_w + xx]);
        }
    }
    out
}

/// One output coordinate of PyTorch's bilinear resize: the two source indices and weights.
struct Axis {
    i0: usize,
    i1: usize,
    l0: f32,
    l1: f32,
}

impl Axis {
    /// `align_corners=True`: source `dst · (in − 1)/(out − 1)`.
    fn aligned_corners(input: usize, output: usize) -> Vec<Axis> {
        let scale = if output > 1 {
            (input - 1) as f32 / (output - 1) as f32
        } else {
            0.0
        };
        (0..output)
            .map(|d| Self::at(scale * d as f32, input))
            .collect()
    }

    /// `align_corners=False`: source `(dst + ½) · in/out − ½`, clamped at 0.
    fn half_pixel(input: usize, output: usize) -> Vec<Axis> {
        let scale = input as f32 / output as f32;
        (0..output)
            .map(|d| Self::at((scale * (d as f32 + 0.5) - 0.5).max(0.0), input))
            .collect()
    }

    fn at(src: f32, input: usize) -> Axis {
        let i0 = (src as usize).min(input - 1);
        let i1 = i0 + usize::from(i0 < input - 1);
        let l1 = (src - i0 as f32).clamp(0.0, 1.0);
        Axis {
            i0,
            i1,
            l0: 1.0 - l1,
            l1,
        }
    }

    /// `l0ʸ·(l0ˣ·v00 + l1ˣ·v01) + l1ʸ·(l0ˣ·v10 + l1ˣ·v11)`, with `self` the row axis.
    fn mix(&self, x: &Axis, v: impl Fn(usize, usize) -> f32) -> f32 {
        self.l0 * (x.l0 * v(self.i0, x.i0) + x.l1 * v(self.i0, x.i1))
            + self.l1 * (x.l0 * v(self.i1, x.i0) + x.l1 * v(self.i1, x.i1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes_scale_clip_and_empty_ones_drop() {
        let candidates = Candidates {
            boxes: vec![[-4.0, 2.0, 20.0, 10.0], [30.0, 5.0, 30.0, 9.0]],
            scores: vec![0.9, 0.8],
            labels: vec![3, 4],
            kernels: Vec::new(),
        };
        let geometry = ImageGeometry {
            original: (20, 30),
            resized: (10, 15),
        };
        let out = postprocess(&candidates, None, geometry);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].bbox, [0.0, 4.0, 30.0, 20.0]);
        assert_eq!((out[0].label, out[0].mask.is_none()), (3, true));
    }

    #[test]
    fn a_constant_mask_fills_exactly_its_box() {
        let candidates = Candidates {
            boxes: vec![[2.5, 1.0, 9.9, 6.0]],
            scores: vec![0.5],
            labels: vec![0],
            kernels: Vec::new(),
        };
        let geometry = ImageGeometry {
            original: (8, 12),
            resized: (8, 12),
        };
        let probs = vec![0.9f32; 2 * 3];
        let out = postprocess(&candidates, Some((&probs, 2, 3)), geometry);
        let mask = out[0].mask.as_ref().unwrap();
        for y in 0..8 {
            for x in 0..12 {
                assert_eq!(
                    mask[y * 12 + x],
                    (1..6).contains(&y) && (2..9).contains(&x),
                    "{y},{x}"
                );
            }
        }
    }
}
