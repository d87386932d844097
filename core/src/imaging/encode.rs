//! Encoding images: RGB as PNG or JPEG, 8-bit label maps as grayscale PNG.

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

/// One byte per pixel (a label map of class ids) as an 8-bit grayscale PNG.
pub fn encode_gray_png(
    values: &[u8],
    width: usize,
    height: usize,
    file_name: &str,
) -> Result<Vec<u8>> {
    let mut png = Vec::new();
    PngEncoder::new(&mut png)
        .write_image(values, width as u32, height as u32, ExtendedColorType::L8)
        .map_err(|e| Error::Invalid(format!("{file_name}: cannot encode the PNG: {e}")))?;
    Ok(png)
}
