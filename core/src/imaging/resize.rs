//! Pillow's `Image.resize` for 8-bit images, step for step (separable convolution, fixed-point
//! coefficients, horizontal pass first, each pass rounded to 8 bits), so attention masks match
//! MosaicFusion's and control images match diffusers' image processor to the pixel.

/// Fixed-point precision of Pillow's 8-bit resampling coefficients.
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// A Pillow resampling filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// `Image.BILINEAR` (triangle), support 1: detectron2's `ResizeTransform`.
    Bilinear,
    /// `Image.BICUBIC` (`a = -0.5`), support 2.
    Bicubic,
    /// `Image.LANCZOS` (3 lobes), support 3: diffusers' default for control images.
    Lanczos,
}

impl Filter {
    fn support(self) -> f64 {
        match self {
            Filter::Bilinear => 1.0,
            Filter::Bicubic => 2.0,
            Filter::Lanczos => 3.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        match self {
            Filter::Bilinear => (1.0 - x.abs()).max(0.0),
            Filter::Bicubic => {
                let a = -0.5;
                let x = x.abs();
                if x < 1.0 {
                    ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * a
                } else {
                    0.0
                }
            }
            Filter::Lanczos => {
                if (-3.0..3.0).contains(&x) {
                    sinc(x) * sinc(x / 3.0)
                } else {
                    0.0
                }
            }
        }
    }

    /// For each output pixel: first input pixel and normalised weights (Pillow's
    /// `precompute_coeffs`).
    pub fn taps(self, in_size: usize, out_size: usize) -> Vec<(usize, Vec<f64>)> {
        let scale = in_size as f64 / out_size as f64;
        let filter_scale = scale.max(1.0);
        let support = self.support() * filter_scale;
        // Pillow multiplies by the reciprocal; dividing can differ in the last bit.
        let inv_scale = 1.0 / filter_scale;
        (0..out_size)
            .map(|xx| {
                let center = (xx as f64 + 0.5) * scale;
                let xmin = ((center - support + 0.5) as i64).max(0) as usize;
                let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
                let weights: Vec<f64> = (xmin..xmax)
                    .map(|x| self.weight((x as f64 - center + 0.5) * inv_scale))
                    .collect();
                let total: f64 = weights.iter().sum();
                let weights = weights
                    .iter()
                    .map(|&w| if total != 0.0 { w / total } else { w })
                    .collect();
                (xmin, weights)
            })
            .collect()
    }

    /// The taps in Pillow's fixed point (`normalize_coeffs_8bpc`).
    fn coefficients(self, in_size: usize, out_size: usize) -> Vec<(usize, Vec<i32>)> {
        self.taps(in_size, out_size)
            .into_iter()
            .map(|(start, weights)| {
                let fixed = weights
                    .iter()
                    .map(|&w| {
                        let v = w * (1u64 << PRECISION_BITS) as f64;
                        (if w < 0.0 { v - 0.5 } else { v + 0.5 }) as i32
                    })
                    .collect();
                (start, fixed)
            })
            .collect()
    }
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let px = x * std::f64::consts::PI;
        px.sin() / px
    }
}

fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// The size of an interleaved 8-bit image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    pub height: usize,
    pub width: usize,
    /// Interleaved channels per pixel (1 for masks, 3 for RGB).
    pub channels: usize,
}

/// Resizes an interleaved row-major image to `out_height × out_width` with `filter`.
///
/// Pillow 13 runs the vertical pass first when it shrinks the image by a larger factor than
/// the horizontal pass; older Pillow always ran the horizontal pass first. The passes round to
/// 8 bits in between, so the order shows in the result.
pub fn resize(
    pixels: &[u8],
    size: Size,
    out_height: usize,
    out_width: usize,
    filter: Filter,
) -> Vec<u8> {
    let Size {
        height,
        width,
        channels,
    } = size;
    let vertical_first = out_height < height && out_height * width < height * out_width;
    if vertical_first {
        let tmp = vertical_pass(pixels, height, width * channels, out_height, filter);
        horizontal_pass(&tmp, out_height, width, channels, out_width, filter)
    } else {
        let tmp = horizontal_pass(pixels, height, width, channels, out_width, filter);
        vertical_pass(&tmp, height, out_width * channels, out_height, filter)
    }
}

/// Resamples each row from `width` to `out_width` pixels (a copy when they are equal).
fn horizontal_pass(
    pixels: &[u8],
    height: usize,
    width: usize,
    c: usize,
    out_width: usize,
    filter: Filter,
) -> Vec<u8> {
    if out_width == width {
        return pixels.to_vec();
    }
    let round = 1i32 << (PRECISION_BITS - 1);
    let coeffs = filter.coefficients(width, out_width);
    let mut out = vec![0u8; height * out_width * c];
    for y in 0..height {
        let row = &pixels[y * width * c..(y + 1) * width * c];
        for (x, (start, k)) in coeffs.iter().enumerate() {
            for ch in 0..c {
                let acc = k.iter().enumerate().fold(round, |acc, (i, &w)| {
                    acc + row[(start + i) * c + ch] as i32 * w
                });
                out[(y * out_width + x) * c + ch] = clip8(acc);
            }
        }
    }
    out
}

/// Resamples each column of rows `stride` bytes long from `height` to `out_height` rows.
fn vertical_pass(
    pixels: &[u8],
    height: usize,
    stride: usize,
    out_height: usize,
    filter: Filter,
) -> Vec<u8> {
    if out_height == height {
        return pixels.to_vec();
    }
    let round = 1i32 << (PRECISION_BITS - 1);
    let coeffs = filter.coefficients(height, out_height);
    let mut out = vec![0u8; out_height * stride];
    for (y, (start, k)) in coeffs.iter().enumerate() {
        for x in 0..stride {
            let acc = k.iter().enumerate().fold(round, |acc, (i, &w)| {
                acc + pixels[(start + i) * stride + x] as i32 * w
            });
            out[y * stride + x] = clip8(acc);
        }
    }
    out
}

/// Pillow's `Image.resize(…, NEAREST)` (`ImagingScaleAffine`: source coordinates stepped by
/// repeated addition from the first pixel centre), which Pillow uses for palette images.
pub fn resize_nearest(pixels: &[u8], size: Size, out_height: usize, out_width: usize) -> Vec<u8> {
    let index = |n_in: usize, n_out: usize| -> Vec<usize> {
        let scale = n_in as f64 / n_out as f64;
        let mut at = scale * 0.5;
        (0..n_out)
            .map(|_| {
                let i = (at.max(0.0) as usize).min(n_in - 1);
                at += scale;
                i
            })
            .collect()
    };
    let c = size.channels;
    let xs = index(size.width, out_width);
    let mut out = Vec::with_capacity(out_height * out_width * c);
    for y in index(size.height, out_height) {
        let row = &pixels[y * size.width * c..(y + 1) * size.width * c];
        for &x in &xs {
            out.extend_from_slice(&row[x * c..(x + 1) * c]);
        }
    }
    out
}

/// [`resize`] of a single-channel image with Pillow's bicubic filter.
pub fn resize_bicubic(
    pixels: &[u8],
    height: usize,
    width: usize,
    out_height: usize,
    out_width: usize,
) -> Vec<u8> {
    let size = Size {
        height,
        width,
        channels: 1,
    };
    resize(pixels, size, out_height, out_width, Filter::Bicubic)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_images_stay_constant_and_sizes_match() {
        let out = resize_bicubic(&[200; 6], 2, 3, 5, 7);
        assert_eq!(out, vec![200; 35]);
        assert_eq!(resize_bicubic(&[1, 2, 3, 4], 2, 2, 2, 2), vec![1, 2, 3, 4]);
        let rgb = [10, 20, 30].repeat(6);
        let size = Size {
            height: 2,
            width: 3,
            channels: 3,
        };
        assert_eq!(
            resize(&rgb, size, 4, 5, Filter::Lanczos),
            [10, 20, 30].repeat(20)
        );
    }

    #[test]
    fn upsampling_a_step_is_monotone_and_clamped() {
        let out = resize_bicubic(&[0, 255], 1, 2, 1, 4);
        assert_eq!(out[0], 0);
        assert_eq!(out[3], 255);
        assert!(out[1] < out[2]);
    }

    #[test]
    fn lanczos_weights_are_normalised_and_peak_at_the_centre() {
        for (start, w) in Filter::Lanczos.taps(40, 48) {
            assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12, "{start}");
        }
        assert_eq!(Filter::Lanczos.weight(0.0), 1.0);
        assert!(Filter::Lanczos.weight(1.0).abs() < 1e-15);
    }
}
