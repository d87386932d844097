//! The two buffers of the conversion: colour maps and label maps.

use crate::{Error, Result};

/// An RGB image, `rgb: [height, width, 3]` row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColorMap {
    pub width: usize,
    pub height: usize,
    pub rgb: Vec<u8>,
}

impl ColorMap {
    /// Checks that `rgb` holds `height * width * 3` bytes.
    pub fn new(width: usize, height: usize, rgb: Vec<u8>) -> Result<Self> {
        if rgb.len() != width * height * 3 {
            return Err(Error::Invalid(format!(
                "colour map of {width}x{height} needs {} bytes, got {}",
                width * height * 3,
                rgb.len()
            )));
        }
        Ok(Self { width, height, rgb })
    }

    /// The colour of pixel `i` (row-major).
    pub fn pixel(&self, i: usize) -> [u8; 3] {
        [self.rgb[3 * i], self.rgb[3 * i + 1], self.rgb[3 * i + 2]]
    }
}

/// Class ids, `ids: [height, width]` row-major; 0 is unlabelled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelMap {
    pub width: usize,
    pub height: usize,
    pub ids: Vec<u16>,
}

impl LabelMap {
    /// Checks that `ids` holds `height * width` values.
    pub fn new(width: usize, height: usize, ids: Vec<u16>) -> Result<Self> {
        if ids.len() != width * height {
            return Err(Error::Invalid(format!(
                "label map of {width}x{height} needs {} ids, got {}",
                width * height,
                ids.len()
            )));
        }
        Ok(Self { width, height, ids })
    }
}

/// The in-image 4-neighbours of pixel `i` of a `width × height` grid.
pub(crate) fn neighbours4(i: usize, width: usize, height: usize) -> impl Iterator<Item = usize> {
    let (x, y) = (i % width, i / width);
    [
        (x > 0).then(|| i - 1),
        (x + 1 < width).then(|| i + 1),
        (y > 0).then(|| i - width),
        (y + 1 < height).then(|| i + width),
    ]
    .into_iter()
    .flatten()
}
