//! Pillow's `Image.resize(…, BICUBIC)` for 8-bit single-channel images, step for step
//! (separable convolution, fixed-point coefficients, horizontal pass first, each pass rounded
//! to 8 bits), so masks from attention match MosaicFusion's to the pixel.

/// Fixed-point precision of Pillow's 8-bit resampling coefficients.
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Pillow's bicubic kernel (`a = -0.5`); support 2.
fn bicubic(x: f64) -> f64 {
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

/// For each output pixel: first input pixel and normalised weights (Pillow's
/// `precompute_coeffs`).
pub fn bicubic_taps(in_size: usize, out_size: usize) -> Vec<(usize, Vec<f64>)> {
    let scale = in_size as f64 / out_size as f64;
    let filter_scale = scale.max(1.0);
    let support = 2.0 * filter_scale;
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let weights: Vec<f64> = (xmin..xmax)
                .map(|x| bicubic((x as f64 - center + 0.5) / filter_scale))
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
fn coefficients(in_size: usize, out_size: usize) -> Vec<(usize, Vec<i32>)> {
    bicubic_taps(in_size, out_size)
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

fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes a row-major `height × width` image to `out_height × out_width`.
pub fn resize_bicubic(
    pixels: &[u8],
    height: usize,
    width: usize,
    out_height: usize,
    out_width: usize,
) -> Vec<u8> {
    let round = 1i32 << (PRECISION_BITS - 1);
    let horizontal = if out_width != width {
        let coeffs = coefficients(width, out_width);
        let mut out = vec![0u8; height * out_width];
        for y in 0..height {
            let row = &pixels[y * width..(y + 1) * width];
            for (x, (start, k)) in coeffs.iter().enumerate() {
                let acc = k
                    .iter()
                    .enumerate()
                    .fold(round, |acc, (i, &w)| acc + row[start + i] as i32 * w);
                out[y * out_width + x] = clip8(acc);
            }
        }
        out
    } else {
        pixels.to_vec()
    };
    if out_height == height {
        return horizontal;
    }
    let coeffs = coefficients(height, out_height);
    let mut out = vec![0u8; out_height * out_width];
    for (y, (start, k)) in coeffs.iter().enumerate() {
        for x in 0..out_width {
            let acc = k.iter().enumerate().fold(round, |acc, (i, &w)| {
                acc + horizontal[(start + i) * out_width + x] as i32 * w
            });
            out[y * out_width + x] = clip8(acc);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_images_stay_constant_and_sizes_match() {
        let out = resize_bicubic(&[200; 6], 2, 3, 5, 7);
        assert_eq!(out, vec![200; 35]);
        assert_eq!(resize_bicubic(&[1, 2, 3, 4], 2, 2, 2, 2), vec![1, 2, 3, 4]);
    }

    #[test]
    fn upsampling_a_step_is_monotone_and_clamped() {
        let out = resize_bicubic(&[0, 255], 1, 2, 1, 4);
        assert_eq!(out[0], 0);
        assert_eq!(out[3], 255);
        assert!(out[1] < out[2]);
    }
}
