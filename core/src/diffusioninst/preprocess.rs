//! detectron2's test-time input path: `ResizeShortestEdge` (Pillow bilinear on 8-bit images),
//! channel order, normalisation by pixel mean/std and zero padding to the size divisibility
//! (`ImageList.from_tensors`).

use burn::tensor::{Device, Tensor, TensorData};

use super::{ImageFormat, InputConfig};
use crate::error::{Error, Result};
use crate::imaging::resize::{Filter, Size, resize};

/// An 8-bit RGB image, interleaved, row-major.
#[derive(Debug, Clone, Copy)]
pub struct RgbImage<'a> {
    pub pixels: &'a [u8],
    pub height: usize,
    pub width: usize,
}

/// A batch as the model takes it.
#[derive(Debug, Clone)]
pub struct ImageBatch {
    /// `[B, 3, H, W]`: normalised, in the config's channel order, zero-padded bottom/right to
    /// a multiple of the size divisibility.
    pub images: Tensor<4>,
    /// Each image's `[height, width]` after resizing, before padding.
    pub image_sizes: Vec<[usize; 2]>,
}

/// `ResizeShortestEdge.get_output_shape`: the shorter side to `min_size` unless the longer one
/// would pass `max_size`, sides rounded as `int(x + 0.5)`. `[height, width]`.
pub fn resize_shortest_edge(
    height: usize,
    width: usize,
    min_size: usize,
    max_size: usize,
) -> [usize; 2] {
    let (h, w) = (height as f64, width as f64);
    let size = min_size as f64;
    let scale = size / h.min(w);
    let (mut newh, mut neww) = if h < w {
        (size, scale * w)
    } else {
        (scale * h, size)
    };
    if newh.max(neww) > max_size as f64 {
        let scale = max_size as f64 / newh.max(neww);
        newh *= scale;
        neww *= scale;
    }
    [(newh + 0.5) as usize, (neww + 0.5) as usize]
}

/// Resizes each image as detectron2's test augmentation does (`MIN_SIZE_TEST` 0: unchanged),
/// normalises it and pads the batch to a multiple of `size_divisibility`.
///
/// # Shapes
/// `B` images → `[B, 3, H, W]` with `H`, `W` the largest resized sides rounded up
pub fn preprocess(
    images: &[RgbImage],
    input: &InputConfig,
    size_divisibility: usize,
    device: &Device,
) -> Result<ImageBatch> {
    let mut resized = Vec::with_capacity(images.len());
    for (i, img) in images.iter().enumerate() {
        if img.height == 0 || img.width == 0 || img.pixels.len() != img.height * img.width * 3 {
            return Err(Error::Invalid(format!(
                "image {i}: {} bytes for {}×{} RGB",
                img.pixels.len(),
                img.width,
                img.height
            )));
        }
        if input.min_size_test == 0 {
            resized.push((img.pixels.to_vec(), [img.height, img.width]));
            continue;
        }
        let [h, w] = resize_shortest_edge(
            img.height,
            img.width,
            input.min_size_test,
            input.max_size_test,
        );
        let size = Size {
            height: img.height,
            width: img.width,
            channels: 3,
        };
        resized.push((resize(img.pixels, size, h, w, Filter::Bilinear), [h, w]));
    }
    let d = size_divisibility.max(1);
    let round = |n: usize| n.div_ceil(d) * d;
    let height = round(resized.iter().map(|(_, [h, _])| *h).max().unwrap_or(0));
    let width = round(resized.iter().map(|(_, [_, w])| *w).max().unwrap_or(0));
    let mut data = vec![0f32; images.len() * 3 * height * width];
    for (b, (pixels, [h, w])) in resized.iter().enumerate() {
        for c in 0..3 {
            let src = match input.format {
                ImageFormat::Rgb => c,
                ImageFormat::Bgr => 2 - c,
            };
            let (mean, std) = (input.pixel_mean[c], input.pixel_std[c]);
            let plane = &mut data[(b * 3 + c) * height * width..];
            for y in 0..*h {
                for x in 0..*w {
                    let v = pixels[(y * w + x) * 3 + src] as f32;
                    plane[y * width + x] = (v - mean) / std;
                }
            }
        }
    }
    Ok(ImageBatch {
        images: Tensor::from_data(
            TensorData::new(data, [images.len(), 3, height, width]),
            device,
        ),
        image_sizes: resized.iter().map(|(_, s)| *s).collect(),
    })
}
