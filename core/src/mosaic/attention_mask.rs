//! From captured cross-attention to a binary region mask, as MosaicFusion's
//! `get_cross_attention_mask`: each resolution normalised by its maximum to 8 bits, resized
//! bicubically to the region, averaged, rescaled to 8 bits and thresholded (Otsu by default).

use serde::Serialize;

use super::denoise::{AttentionMap, PendingMap};
use crate::error::{Error, Result};
use crate::imaging::resize::resize_bicubic;
use crate::masks::{otsu_threshold, threshold};

/// How the averaged attention map becomes a mask.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Threshold {
    /// Otsu's threshold on the 8-bit map (OpenCV's `THRESH_OTSU`).
    Otsu,
    /// `map / 255 > value` (MosaicFusion's `simple` mode uses 0.3).
    Fixed { value: f64 },
}

/// The mask of one region and how it was found.
#[derive(Debug, Clone)]
pub struct AttentionMask {
    /// The averaged 8-bit attention map, row-major region size.
    pub map: Vec<u8>,
    /// Resolutions (denominators) that were averaged.
    pub resolutions: Vec<usize>,
    /// The 8-bit threshold: pixels above it are foreground.
    pub threshold: u8,
    pub mask: Vec<bool>,
}

/// `maps` at the resolutions in `denominators` (8 = 1/8 of the region, …), averaged into a
/// `height × width` map and thresholded. Resolutions the model has no maps for are skipped;
/// none at all is an error.
pub fn attention_mask(
    maps: &[AttentionMap],
    denominators: &[usize],
    height: usize,
    width: usize,
    rule: Threshold,
) -> Result<AttentionMask> {
    let chosen = choose(maps, denominators)?;
    let map = aggregate(&chosen, height, width);
    Ok(threshold_map(
        map,
        chosen.iter().map(|m| m.denominator).collect(),
        rule,
    ))
}

/// A captured map's resolution, on the host or on the device.
pub trait Resolution {
    /// 8 for 1/8 of the region, 16, 32, 64.
    fn denominator(&self) -> usize;
}

impl Resolution for AttentionMap {
    fn denominator(&self) -> usize {
        self.denominator
    }
}

impl Resolution for PendingMap {
    fn denominator(&self) -> usize {
        self.denominator
    }
}

/// The maps at `denominators`; an error when there are none.
pub fn choose<'a, M: Resolution>(maps: &'a [M], denominators: &[usize]) -> Result<Vec<&'a M>> {
    let chosen: Vec<&M> = maps
        .iter()
        .filter(|m| denominators.contains(&m.denominator()))
        .collect();
    if chosen.is_empty() {
        return Err(Error::Invalid(format!(
            "the model has no cross-attention at resolutions {denominators:?} of the region \
             (it has {:?})",
            maps.iter().map(Resolution::denominator).collect::<Vec<_>>()
        )));
    }
    Ok(chosen)
}

/// The 8-bit average of `chosen` at `height × width` (on the host).
pub fn aggregate(chosen: &[&AttentionMap], height: usize, width: usize) -> Vec<u8> {
    let mut average = vec![0f64; height * width];
    for m in chosen {
        let max = m.values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        // In single precision, as the original's torch float32 maps.
        let bytes: Vec<u8> = m
            .values
            .iter()
            .map(|&v| to_byte((255.0 * v / max) as f64))
            .collect();
        let resized = resize_bicubic(&bytes, m.height, m.width, height, width);
        for (a, &p) in average.iter_mut().zip(&resized) {
            *a += p as f64 / 255.0;
        }
    }
    for a in &mut average {
        *a /= chosen.len() as f64;
    }
    let max = average.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    average.iter().map(|&a| to_byte(255.0 * a / max)).collect()
}

/// `x.astype(uint8)` of `x = 255 · v / max` as numpy: truncation, and NaN (an all-zero map) → 0.
fn to_byte(x: f64) -> u8 {
    if x.is_finite() {
        x.clamp(0.0, 255.0) as u8
    } else {
        0
    }
}

/// Thresholds an aggregated 8-bit map.
pub fn threshold_map(map: Vec<u8>, resolutions: Vec<usize>, rule: Threshold) -> AttentionMask {
    let (t, mask) = match rule {
        Threshold::Otsu => {
            let t = otsu_threshold(&map);
            (t, threshold(&map, t))
        }
        Threshold::Fixed { value } => {
            let mask: Vec<bool> = map.iter().map(|&p| p as f64 / 255.0 > value).collect();
            // The smallest 8-bit value that passes, minus one.
            let t = (0..=255u8)
                .find(|&p| p as f64 / 255.0 > value)
                .map_or(255, |p| p.saturating_sub(1));
            (t, mask)
        }
    };
    AttentionMask {
        map,
        resolutions,
        threshold: t,
        mask,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(denominator: usize, h: usize, w: usize, values: Vec<f32>) -> AttentionMap {
        AttentionMap {
            denominator,
            height: h,
            width: w,
            values,
        }
    }

    /// A handcrafted case: a bright 2×2 block in a 4×4 map at 1/8 and the same object at 1/16,
    /// on a 16×16 region (a 2× and a 4× bicubic upsampling).
    #[test]
    fn aggregates_a_handcrafted_case() {
        let mut fine = vec![0.01f32; 16];
        for i in [5, 6, 9, 10] {
            fine[i] = 0.4;
        }
        let coarse = vec![0.02, 0.02, 0.02, 0.3];
        let maps = [
            map(8, 4, 4, fine),
            map(16, 2, 2, coarse),
            map(32, 1, 1, vec![1.0]),
        ];
        let m = attention_mask(&maps, &[8, 16], 16, 16, Threshold::Otsu).unwrap();
        assert_eq!(m.resolutions, vec![8, 16]);
        assert_eq!(m.map.iter().copied().max(), Some(255));
        // The fine block covers rows/cols 4..12; the coarse one the bottom-right quadrant:
        // the centre-right is foreground, the top-left corner is not.
        assert!(m.mask[9 * 16 + 9]);
        assert!(!m.mask[0]);
        assert!(!m.mask[15 * 16]);
        let fixed =
            attention_mask(&maps, &[8, 16], 16, 16, Threshold::Fixed { value: 0.3 }).unwrap();
        for (p, &b) in fixed.map.iter().zip(&fixed.mask) {
            assert_eq!(b, *p as f64 / 255.0 > 0.3);
        }
        let err = attention_mask(&maps, &[64], 16, 16, Threshold::Otsu).unwrap_err();
        assert!(err.to_string().contains("[8, 16, 32]"), "{err}");
    }
}
