//! ControlNet conditioning images, prepared as diffusers' control image processor does
//! (`VaeImageProcessor(do_convert_rgb=True, do_normalize=False)`): resized to the output size
//! with Pillow's Lanczos filter in the image's own mode, then converted to RGB, values in [0, 1].

use burn::tensor::{Device, Tensor, TensorData};

use super::resize::{Filter, Size, resize, resize_nearest};
use crate::error::{Error, Result};

/// The Pillow mode a decoded image would have, which decides how diffusers resizes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageMode {
    /// RGB or grayscale, given as RGB: Lanczos per channel.
    Rgb,
    /// With alpha, given as RGBA: Pillow resizes premultiplied alpha, then the RGB conversion
    /// drops alpha.
    Rgba,
    /// Palette or 1-bit, given as RGB: Pillow resizes these with NEAREST.
    Indexed,
}

impl ImageMode {
    fn channels(self) -> usize {
        match self {
            ImageMode::Rgba => 4,
            ImageMode::Rgb | ImageMode::Indexed => 3,
        }
    }
}

/// Decodes an encoded image (PNG or JPEG, any colour type; `file` names it in errors) and
/// prepares it at the output size as diffusers' control image processor does with the image
/// Pillow would open: palette and 1-bit PNGs are resized nearest, RGBA premultiplied.
///
/// # Shapes
/// → `[1, 3, out_height, out_width]` f32 in [0, 1]
pub fn decode_control_image(
    bytes: &[u8],
    file: &str,
    out_height: usize,
    out_width: usize,
    device: &Device,
) -> Result<Tensor<4>> {
    let image = image::load_from_memory(bytes)
        .map_err(|e| Error::bad_file(file, format!("not a readable PNG or JPEG image ({e})")))?;
    let mode = if png_is_indexed(bytes) {
        ImageMode::Indexed
    } else if image.color().has_alpha() {
        ImageMode::Rgba
    } else {
        ImageMode::Rgb
    };
    let (w, h) = (image.width() as usize, image.height() as usize);
    let pixels = match mode {
        ImageMode::Rgba => image.to_rgba8().into_raw(),
        ImageMode::Rgb | ImageMode::Indexed => image.to_rgb8().into_raw(),
    };
    control_image_tensor(&pixels, mode, h, w, out_height, out_width, device)
        .map_err(|e| Error::bad_file(file, e))
}

/// Whether a PNG holds palette indices or 1-bit gray (Pillow's `P` and `1` modes), from its
/// IHDR chunk (bit depth at byte 24, color type at byte 25).
fn png_is_indexed(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\x89PNG\r\n\x1a\n")
        && bytes.len() > 25
        && (bytes[25] == 3 || (bytes[25] == 0 && bytes[24] == 1))
}

/// Turns interleaved pixels of `height × width` (RGB, or RGBA for [`ImageMode::Rgba`]) into the
/// ControlNet input.
///
/// # Shapes
/// `pixels`: `height·width·channels` bytes → `[1, 3, out_height, out_width]` f32 in [0, 1]
pub fn control_image_tensor(
    pixels: &[u8],
    mode: ImageMode,
    height: usize,
    width: usize,
    out_height: usize,
    out_width: usize,
    device: &Device,
) -> Result<Tensor<4>> {
    let channels = mode.channels();
    if height == 0 || width == 0 || pixels.len() != height * width * channels {
        return Err(Error::Invalid(format!(
            "control image: {} bytes do not hold {height}x{width} pixels of {channels} channels",
            pixels.len()
        )));
    }
    let size = Size {
        height,
        width,
        channels,
    };
    let rgb: Vec<u8> = match mode {
        ImageMode::Rgb => resize(pixels, size, out_height, out_width, Filter::Lanczos),
        ImageMode::Indexed => resize_nearest(pixels, size, out_height, out_width),
        ImageMode::Rgba => {
            let premultiplied = premultiply(pixels);
            let resized = resize(&premultiplied, size, out_height, out_width, Filter::Lanczos);
            resized.chunks_exact(4).flat_map(unpremultiply).collect()
        }
    };
    let values: Vec<f32> = rgb.iter().map(|&v| v as f32 / 255.0).collect();
    let hwc = Tensor::<3>::from_data(TensorData::new(values, [out_height, out_width, 3]), device);
    Ok(hwc.permute([2, 0, 1]).unsqueeze::<4>())
}

/// Pillow's RGBA → RGBa conversion (`MULDIV255`).
fn premultiply(rgba: &[u8]) -> Vec<u8> {
    let muldiv255 = |a: u32, b: u32| {
        let t = a * b + 128;
        (((t >> 8) + t) >> 8) as u8
    };
    rgba.chunks_exact(4)
        .flat_map(|p| {
            let alpha = p[3] as u32;
            [
                muldiv255(p[0] as u32, alpha),
                muldiv255(p[1] as u32, alpha),
                muldiv255(p[2] as u32, alpha),
                p[3],
            ]
        })
        .collect()
}

/// Pillow's RGBa → RGBA conversion, alpha then dropped.
fn unpremultiply(p: &[u8]) -> [u8; 3] {
    let alpha = p[3] as u32;
    if alpha == 0 || alpha == 255 {
        return [p[0], p[1], p[2]];
    }
    let un = |v: u8| ((255 * v as u32) / alpha).min(255) as u8;
    [un(p[0]), un(p[1]), un(p[2])]
}
