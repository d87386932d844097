//! Truth for generated images of the shapes world: object colours are saturated, backgrounds
//! are not, so the saturated pixels of a generated region are where its object is. Used by
//! `bench --truth` to score generated masks against their own images, and which colour a
//! model drew against the one its prompt named.

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
    fn iou() {
        assert_eq!(
            mask_iou(&[true, true, false, false], &[true, false, true, false]),
            1.0 / 3.0
        );
        assert_eq!(mask_iou(&[false; 4], &[false; 4]), 1.0);
        assert_eq!(mask_iou(&[true; 4], &[false; 4]), 0.0);
    }
}
