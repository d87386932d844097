//! The two buffers of the conversion: colour maps and label maps.

use image::{DynamicImage, ExtendedColorType};

use crate::imaging::encode::encode_png;
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

impl LabelMap {
    /// A label map as a grayscale PNG: 8-bit when every id fits (the ADE20K layout), else 16-bit.
    pub fn to_png(&self, file: &str) -> Result<Vec<u8>> {
        let (w, h) = (self.width, self.height);
        if self.ids.iter().all(|&v| v <= 255) {
            let bytes: Vec<u8> = self.ids.iter().map(|&v| v as u8).collect();
            encode_png(file, &bytes, w, h, ExtendedColorType::L8)
        } else {
            let bytes: Vec<u8> = self.ids.iter().flat_map(|v| v.to_ne_bytes()).collect();
            encode_png(file, &bytes, w, h, ExtendedColorType::L16)
        }
    }

    /// Reads an 8- or 16-bit grayscale PNG of class ids; `file` names it in errors.
    pub fn from_png(file: &str, bytes: &[u8]) -> Result<LabelMap> {
        let image = image::load_from_memory(bytes)
            .map_err(|e| Error::bad_file(file, format!("not a readable image ({e})")))?;
        let (w, h, ids) = match image {
            DynamicImage::ImageLuma8(img) => {
                let (w, h) = img.dimensions();
                (w, h, img.into_raw().into_iter().map(u16::from).collect())
            }
            DynamicImage::ImageLuma16(img) => {
                let (w, h) = img.dimensions();
                (w, h, img.into_raw())
            }
            other => {
                return Err(Error::bad_file(
                    file,
                    format!(
                        "a label map must be an 8- or 16-bit grayscale PNG of class ids, not {:?}",
                        other.color()
                    ),
                ));
            }
        };
        LabelMap::new(w as usize, h as usize, ids)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_maps_round_trip_through_png_in_8_and_16_bits() {
        for ids in [vec![0, 7, 150, 255], vec![0, 7, 256, 1000]] {
            let labels = LabelMap::new(2, 2, ids).unwrap();
            let png = labels.to_png("l.png").unwrap();
            assert_eq!(LabelMap::from_png("l.png", &png).unwrap(), labels);
        }
        let rgb = encode_png("c.png", &[1; 12], 2, 2, ExtendedColorType::Rgb8).unwrap();
        let e = LabelMap::from_png("c.png", &rgb).unwrap_err().to_string();
        assert!(e.starts_with("c.png: a label map must be"), "{e}");
        let e = LabelMap::from_png("g.png", b"garbage")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("g.png: not a readable image"), "{e}");
    }
}
