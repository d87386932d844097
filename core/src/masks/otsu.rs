//! Otsu's threshold of an 8-bit image, bit for bit as OpenCV's
//! `cv2.threshold(img, 0, 1, THRESH_BINARY + THRESH_OTSU)` (`getThreshVal_Otsu_8u`).

/// The Otsu threshold of `pixels`: the grey level `t` maximising the between-class variance of
/// `{p <= t}` and `{p > t}`. Computed in f64 in OpenCV's order, so ties and rounding pick the same
/// level; an empty or constant image gives 0, like OpenCV.
pub fn otsu_threshold(pixels: &[u8]) -> u8 {
    let mut hist = [0u64; 256];
    for &p in pixels {
        hist[p as usize] += 1;
    }
    let scale = 1.0 / pixels.len() as f64;
    let mu = hist
        .iter()
        .enumerate()
        .fold(0.0, |acc, (i, &h)| acc + i as f64 * h as f64)
        * scale;
    let eps = f32::EPSILON as f64;
    let (mut mu1, mut q1) = (0.0f64, 0.0f64);
    let (mut max_sigma, mut max_val) = (0.0f64, 0u8);
    for (i, &h) in hist.iter().enumerate() {
        let p_i = h as f64 * scale;
        mu1 *= q1;
        q1 += p_i;
        let q2 = 1.0 - q1;
        if q1.min(q2) < eps || q1.max(q2) > 1.0 - eps {
            continue;
        }
        mu1 = (mu1 + i as f64 * p_i) / q1;
        let mu2 = (mu - q1 * mu1) / q2;
        let sigma = q1 * q2 * (mu1 - mu2) * (mu1 - mu2);
        if sigma > max_sigma {
            max_sigma = sigma;
            max_val = i as u8;
        }
    }
    max_val
}

/// Binary threshold (`THRESH_BINARY`): `pixel > t`.
pub fn threshold(pixels: &[u8], t: u8) -> Vec<bool> {
    pixels.iter().map(|&p| p > t).collect()
}
