//! Truth for generated images of the shapes world: object colours are saturated, backgrounds
//! are not, so the saturated pixels of a generated region are where its object is. Used by
//! `bench --truth` to score generated masks against their own images, and which colour a
//! model drew against the one its prompt named.

use serde::Serialize;

use super::colors::{OBJECT_COLORS, saturation_value};

/// Pixels at or above this HSV saturation count as object (object colours have ≥ 0.6,
/// backgrounds ≤ 0.2).
pub const TRUTH_SATURATION: f64 = 0.4;

/// The saturated pixels of interleaved RGB `rgb`, row-major.
pub fn saturation_truth(rgb: &[u8]) -> Vec<bool> {
    rgb.chunks_exact(3)
        .map(|p| saturation_value([p[0], p[1], p[2]]).0 >= TRUTH_SATURATION)
        .collect()
}

/// The object colour drawn in interleaved RGB `rgb`: the index in [`OBJECT_COLORS`] of the
/// named colour nearest (squared RGB distance) to the mean of the saturated pixels; `None`
/// when no pixel is saturated.
pub fn drawn_color(rgb: &[u8]) -> Option<usize> {
    let (mut sum, mut n) = ([0.0f64; 3], 0usize);
    for p in rgb.chunks_exact(3) {
        if saturation_value([p[0], p[1], p[2]]).0 >= TRUTH_SATURATION {
            for c in 0..3 {
                sum[c] += f64::from(p[c]);
            }
            n += 1;
        }
    }
    if n == 0 {
        return None;
    }
    let mean = sum.map(|s| s / n as f64);
    let distance =
        |rgb: [u8; 3]| -> f64 { (0..3).map(|c| (f64::from(rgb[c]) - mean[c]).powi(2)).sum() };
    (0..OBJECT_COLORS.len())
        .min_by(|&a, &b| distance(OBJECT_COLORS[a].rgb).total_cmp(&distance(OBJECT_COLORS[b].rgb)))
}

/// Intersection over union of two masks of the same size; 1 when both are empty.
pub fn mask_iou(a: &[bool], b: &[bool]) -> f64 {
    let (mut inter, mut union) = (0usize, 0usize);
    for (&x, &y) in a.iter().zip(b) {
        inter += (x && y) as usize;
        union += (x || y) as usize;
    }
    if union == 0 {
        1.0
    } else {
        inter as f64 / union as f64
    }
}

/// Where a drawn foreground and the saturation truth agree and differ, in pixels. A pixel is
/// on the drawn foreground's edge when a 4-neighbour inside the image lies on its other side:
/// the edge is a band one pixel wide on each side of the outline.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TruthPixels {
    /// Drawn and saturated.
    pub agree: usize,
    /// Drawn, not saturated, on the edge.
    pub missed_edge: usize,
    /// Drawn, not saturated, away from the edge (inside the drawn foreground).
    pub missed_inside: usize,
    /// Saturated, not drawn, on the edge.
    pub extra_edge: usize,
    /// Saturated, not drawn, away from the edge (outside the drawn foreground).
    pub extra_outside: usize,
}

impl TruthPixels {
    /// Counts `drawn` against `truth`, row-major masks `width` pixels wide.
    pub fn count(drawn: &[bool], truth: &[bool], width: usize) -> Self {
        assert_eq!(drawn.len(), truth.len(), "masks of one size");
        let height = drawn.len() / width.max(1);
        let mut out = Self::default();
        for (i, (&d, &t)) in drawn.iter().zip(truth).enumerate() {
            let (y, x) = (i / width, i % width);
            let differs = |j: usize| drawn[j] != d;
            let edge = (x > 0 && differs(i - 1))
                || (x + 1 < width && differs(i + 1))
                || (y > 0 && differs(i - width))
                || (y + 1 < height && differs(i + width));
            let slot = match (d, t, edge) {
                (true, true, _) => &mut out.agree,
                (true, false, true) => &mut out.missed_edge,
                (true, false, false) => &mut out.missed_inside,
                (false, true, true) => &mut out.extra_edge,
                (false, true, false) => &mut out.extra_outside,
                (false, false, _) => continue,
            };
            *slot += 1;
        }
        out
    }

    /// Their intersection over union; 1 when both are empty.
    pub fn iou(&self) -> f64 {
        let union = self.agree + self.missed() + self.extra();
        if union == 0 {
            1.0
        } else {
            self.agree as f64 / union as f64
        }
    }

    /// Drawn pixels that are not saturated.
    pub fn missed(&self) -> usize {
        self.missed_edge + self.missed_inside
    }

    /// Saturated pixels that are not drawn.
    pub fn extra(&self) -> usize {
        self.extra_edge + self.extra_outside
    }
}

impl std::ops::AddAssign for TruthPixels {
    fn add_assign(&mut self, o: Self) {
        self.agree += o.agree;
        self.missed_edge += o.missed_edge;
        self.missed_inside += o.missed_inside;
        self.extra_edge += o.extra_edge;
        self.extra_outside += o.extra_outside;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shapes::render::render;
    use crate::shapes::scene::{MAX_OBJECTS, sample_scene};

    #[test]
    fn truth_of_a_rendered_scene_is_its_objects() {
        for seed in 0..20 {
            let scene = sample_scene(seed, 64, MAX_OBJECTS);
            let rendered = render(&scene);
            let truth = saturation_truth(&rendered.rgb);
            let objects: Vec<bool> = (0..64 * 64)
                .map(|i| (0..scene.objects.len()).any(|k| rendered.mask(k)[i]))
                .collect();
            assert_eq!(mask_iou(&truth, &objects), 1.0, "seed {seed}");
        }
    }

    #[test]
    fn drawn_color_of_a_rendered_object_is_its_colour() {
        for seed in 0..40 {
            let scene = sample_scene(seed, 64, 1);
            let want = OBJECT_COLORS
                .iter()
                .position(|c| c.name == scene.objects[0].color.name);
            assert_eq!(drawn_color(&render(&scene).rgb), want, "seed {seed}");
        }
        // Grey has no saturated pixel; a brownish orange is nearest brown.
        assert_eq!(drawn_color(&[128; 12]), None);
        let brownish = [150u8, 80, 30].repeat(4);
        assert_eq!(OBJECT_COLORS[drawn_color(&brownish).unwrap()].name, "brown");
    }

    #[test]
    fn truth_pixels_split_by_the_drawn_edge() {
        // A 3×3 square drawn in a 5×5 image; the truth is the square shifted one pixel right.
        let square = |dx: usize| -> Vec<bool> {
            (0..25)
                .map(|i| (1..4).contains(&(i / 5)) && (1 + dx..4 + dx).contains(&(i % 5)))
                .collect()
        };
        let (drawn, truth) = (square(0), square(1));
        let p = TruthPixels::count(&drawn, &truth, 5);
        // Missed: the square's left column, all on its edge. Extra: the column right of it,
        // all next to the square. Only the centre of the square is away from its edge.
        assert_eq!(
            p,
            TruthPixels {
                agree: 6,
                missed_edge: 3,
                missed_inside: 0,
                extra_edge: 3,
                extra_outside: 0,
            }
        );
        assert_eq!(p.iou(), mask_iou(&drawn, &truth));
        // A hole in the middle of the truth is missed inside; a far speck is extra outside.
        let mut truth = drawn.clone();
        truth[12] = false;
        truth[4] = true;
        let p = TruthPixels::count(&drawn, &truth, 5);
        assert_eq!((p.agree, p.missed_inside, p.extra_outside), (8, 1, 1));
        assert_eq!((p.missed_edge, p.extra_edge), (0, 0));
        assert_eq!(p.iou(), mask_iou(&drawn, &truth));
        let mut sum = p;
        sum += p;
        assert_eq!((sum.agree, sum.missed(), sum.extra()), (16, 2, 2));
        assert_eq!(TruthPixels::count(&[false; 4], &[false; 4], 2).iou(), 1.0);
    }

    #[test]
    fn iou() {
        assert_eq!(
            mask_iou(&[true, true, false, false], &[true, false, true, false]),
            1.0 / 3.0
        );
        assert_eq!(mask_iou(&[false; 4], &[false; 4]), 1.0);
        assert_eq!(mask_iou(&[true; 4], &[false; 4]), 0.0);
    }
}
