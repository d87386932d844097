//! `detect --vis`: an image with its detections drawn for a person to look at — each mask
//! tinted and each box outlined in its category's colour, the category id written at the
//! box's top-left corner.

use anyhow::Result;
use image::ImageEncoder;
use maskforge_core::diffusioninst::Detection;
use maskforge_core::diffusioninst::preprocess::RgbImage;

/// Digits 0–9 as 3×5 bitmaps, rows top to bottom, bit 2 the left column.
const DIGITS: [[u8; 5]; 10] = [
    [7, 5, 5, 5, 7],
    [2, 6, 2, 2, 7],
    [7, 1, 7, 4, 7],
    [7, 1, 7, 1, 7],
    [5, 5, 7, 1, 1],
    [7, 4, 7, 1, 7],
    [7, 4, 7, 5, 7],
    [7, 1, 1, 1, 1],
    [7, 5, 7, 5, 7],
    [7, 5, 7, 1, 7],
];
/// Pixels per font pixel.
const FONT_SCALE: usize = 2;
/// Weight of the category colour in a tinted mask pixel.
const TINT: f32 = 0.5;

/// A distinct, saturated colour per category id (golden-angle hues).
fn colour(id: u64) -> [u8; 3] {
    let hue = (id as f32 * 137.508) % 360.0;
    let f = |n: f32| {
        let k = (n + hue / 60.0) % 6.0;
        (255.0 * (1.0 - (k.min(4.0 - k).clamp(0.0, 1.0)))) as u8
    };
    [f(5.0), f(3.0), f(1.0)]
}

/// The PNG of `image` with `detections` drawn, highest score on top.
pub fn draw(image: &RgbImage, detections: &[Detection], category_ids: &[u64]) -> Result<Vec<u8>> {
    let (h, w) = (image.height, image.width);
    let mut px = image.pixels.to_vec();
    let put = |px: &mut [u8], x: usize, y: usize, c: [u8; 3]| {
        if x < w && y < h {
            px[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&c);
        }
    };
    for d in detections.iter().rev() {
        let id = category_ids.get(d.label).copied().unwrap_or(d.label as u64);
        let c = colour(id);
        if let Some(mask) = &d.mask {
            for (i, _) in mask.iter().enumerate().filter(|(_, m)| **m) {
                for k in 0..3 {
                    let v = px[i * 3 + k] as f32 * (1.0 - TINT) + c[k] as f32 * TINT;
                    px[i * 3 + k] = v as u8;
                }
            }
        }
        let [x1, y1, x2, y2] = d.bbox.map(|v| v as usize);
        for x in x1..=x2.min(w.saturating_sub(1)) {
            put(&mut px, x, y1, c);
            put(&mut px, x, y2, c);
        }
        for y in y1..=y2.min(h.saturating_sub(1)) {
            put(&mut px, x1, y, c);
            put(&mut px, x2, y, c);
        }
        for (n, digit) in id.to_string().bytes().enumerate() {
            let glyph = DIGITS[(digit - b'0') as usize];
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..3 {
                    if bits & (4 >> col) == 0 {
                        continue;
                    }
                    for (dy, dx) in
                        (0..FONT_SCALE).flat_map(|a| (0..FONT_SCALE).map(move |b| (a, b)))
                    {
                        let x = x1 + 1 + (n * 4 + col) * FONT_SCALE + dx;
                        let y = y1 + 1 + row * FONT_SCALE + dy;
                        put(&mut px, x, y, c);
                    }
                }
            }
        }
    }
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png).write_image(
        &px,
        w as u32,
        h as u32,
        image::ExtendedColorType::Rgb8,
    )?;
    Ok(png)
}
