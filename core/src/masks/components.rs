//! 4-connected components of a binary mask, labelled like OpenCV's
//! `connectedComponentsWithStats(mask, connectivity=4)`.

use crate::error::{Error, Result};

/// One connected component and its statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Component {
    /// Its label in the label image (1-based).
    pub label: u32,
    /// Number of pixels.
    pub area: u64,
    /// Bounding box `[x, y, w, h]` (column, row, width, height), as OpenCV's stats.
    pub bbox: [u32; 4],
}

/// Labels the 4-connected components of the row-major `height`×`width` `mask`.
///
/// Returns the label image (0 = background; components numbered from 1 in raster order of their
/// first pixel, as OpenCV) and one [`Component`] per label, in label order. Iterative flood fill,
/// so large masks cannot overflow the stack.
pub fn connected_components(
    mask: &[bool],
    height: usize,
    width: usize,
) -> Result<(Vec<u32>, Vec<Component>)> {
    let n = height
        .checked_mul(width)
        .ok_or_else(|| Error::Invalid(format!("mask size {height}x{width} overflows")))?;
    if mask.len() != n {
        return Err(Error::Invalid(format!(
            "mask has {} pixels, expected {height}x{width} = {n}",
            mask.len()
        )));
    }
    if u32::try_from(height).is_err() || u32::try_from(width).is_err() {
        return Err(Error::Invalid(format!(
            "mask size {height}x{width} exceeds u32"
        )));
    }
    let mut labels = vec![0u32; n];
    let mut components = Vec::new();
    let mut stack = Vec::new();
    for start in 0..n {
        if !mask[start] || labels[start] != 0 {
            continue;
        }
        let label = u32::try_from(components.len() + 1)
            .map_err(|_| Error::Invalid("more than u32::MAX components".into()))?;
        labels[start] = label;
        stack.push(start);
        let (mut area, mut x0, mut y0, mut x1, mut y1) = (0u64, width, height, 0, 0);
        while let Some(i) = stack.pop() {
            let (y, x) = (i / width, i % width);
            area += 1;
            (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
            let mut visit = |j: usize| {
                if mask[j] && labels[j] == 0 {
                    labels[j] = label;
                    stack.push(j);
                }
            };
            if x > 0 {
                visit(i - 1);
            }
            if x + 1 < width {
                visit(i + 1);
            }
            if y > 0 {
                visit(i - width);
            }
            if y + 1 < height {
                visit(i + width);
            }
        }
        // Coordinates fit in u32: both sides were checked above.
        components.push(Component {
            label,
            area,
            bbox: [x0, y0, x1 - x0 + 1, y1 - y0 + 1].map(|v| v as u32),
        });
    }
    Ok((labels, components))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_mismatch_is_an_error() {
        assert!(matches!(
            connected_components(&[true; 5], 2, 3),
            Err(Error::Invalid(_))
        ));
    }

    #[test]
    fn four_connectivity_and_raster_order() {
        // Diagonal neighbours are separate components under 4-connectivity.
        #[rustfmt::skip]
        let mask = [
            false, true,  false, true,
            true,  false, false, true,
            false, false, true,  true,
        ];
        let (labels, comps) = connected_components(&mask, 3, 4).unwrap();
        assert_eq!(labels, [0, 1, 0, 2, 3, 0, 0, 2, 0, 0, 2, 2]);
        let areas: Vec<u64> = comps.iter().map(|c| c.area).collect();
        assert_eq!(areas, [1, 4, 1]);
        assert_eq!(comps[1].bbox, [2, 0, 2, 3]);
    }

    #[test]
    fn empty_mask_has_no_components() {
        let (labels, comps) = connected_components(&[], 0, 7).unwrap();
        assert!(labels.is_empty() && comps.is_empty());
    }
}
