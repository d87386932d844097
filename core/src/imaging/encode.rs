//! Encoding images: RGB as PNG or JPEG, and any pixel layout as PNG.

use image::{ExtendedColorType, ImageEncoder, codecs::png::PngEncoder};

use crate::error::{Error, Result};

/// Interleaved RGB encoded as PNG, or JPEG for a `.jpg` file name.
pub fn encode_image(rgb: Vec<u8>, width: usize, height: usize, file_name: &str) -> Result<Vec<u8>> {
    let img = image::RgbImage::from_raw(width as u32, height as u32, rgb)
        .ok_or_else(|| Error::Invalid(format!("{file_name}: image buffer has the wrong size")))?;
    let format = if file_name.ends_with(".jpg") {
        image::ImageFormat::Jpeg
    } else {
        image::ImageFormat::Png
    };
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, format)
        .map_err(|e| Error::Invalid(format!("{file_name}: cannot encode the image: {e}")))?;
    Ok(out.into_inner())
}

/// Encodes `height × width` pixels of `color` (row-major, interleaved) as PNG; `file` names the
/// image in errors.
pub fn encode_png(
    file: &str,
    pixels: &[u8],
    width: usize,
    height: usize,
    color: ExtendedColorType,
) -> Result<Vec<u8>> {
    let expected = width * height * color.bits_per_pixel() as usize / 8;
    if pixels.len() != expected {
        return Err(Error::Invalid(format!(
            "{file}: {} bytes for a {width}x{height} image of {color:?}, expected {expected}",
            pixels.len()
        )));
    }
    let mut png = Vec::new();
    PngEncoder::new(&mut png)
        .write_image(pixels, width as u32, height as u32, color)
        .map_err(|e| Error::Invalid(format!("{file}: cannot encode PNG: {e}")))?;
    Ok(png)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixels_must_fill_the_image() {
        let png = encode_png("c.png", &[1; 12], 2, 2, ExtendedColorType::Rgb8).unwrap();
        let back = image::load_from_memory(&png).unwrap().to_rgb8();
        assert_eq!(back.into_raw(), vec![1; 12]);
        let e = encode_png("c.png", &[1; 11], 2, 2, ExtendedColorType::Rgb8).unwrap_err();
        assert!(e.to_string().starts_with("c.png: 11 bytes"), "{e}");
    }
}
