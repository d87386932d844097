//! `nn.LayerNorm` over the last dimension in two passes per row of f32 data. burn's flex
//! backend runs it as about eight tensor operations, each a pass over memory.

use super::parallel::for_each_chunk_mut;
use super::simd::{mean_and_variance, multiversion};

/// Rows per task: text-encoder rows (768 floats) are too short to split one by one.
const ROWS_PER_TASK: usize = 16;

/// `torch.nn.functional.layer_norm(x, [d], weight, bias, eps)` (biased variance, statistics
/// in f64).
///
/// # Shapes
/// `x`: `[rows, d]`, `weight`, `bias`: `[d]` → `[rows, d]`
///
/// # Panics
/// If `x.len()` is not a multiple of `d` or the affine slices are not of length `d`.
pub fn layer_norm(x: &[f32], weight: &[f32], bias: &[f32], eps: f64) -> Vec<f32> {
    let d = weight.len();
    assert!(
        d > 0 && bias.len() == d && x.len().is_multiple_of(d),
        "layer_norm: lengths"
    );
    let mut out = vec![0.0f32; x.len()];
    for_each_chunk_mut(&mut out, d * ROWS_PER_TASK, |i, dst| {
        let src = &x[i * d * ROWS_PER_TASK..][..dst.len()];
        normalize_rows(dst, src, weight, bias, eps);
    });
    out
}

multiversion! {
    /// Rows of `weight.len()` elements normalised, scaled and shifted.
    fn normalize_rows(dst: &mut [f32], src: &[f32], weight: &[f32], bias: &[f32], eps: f64) {
        let d = weight.len();
        for (dst, src) in dst.chunks_mut(d).zip(src.chunks(d)) {
            let (mean, var) = mean_and_variance(src);
            let rstd = (1.0 / (var + eps).sqrt()) as f32;
            let mean = mean as f32;
            for (((o, &v), &w), &b) in dst.iter_mut().zip(src).zip(weight).zip(bias) {
                *o = (v - mean) * rstd * w + b;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_definition() {
        let (rows, d) = (37, 11);
        let x: Vec<f32> = (0..rows * d)
            .map(|i| ((i * 29) % 23) as f32 / 4.0 - 2.0)
            .collect();
        let w: Vec<f32> = (0..d).map(|i| 0.5 + i as f32 * 0.1).collect();
        let b: Vec<f32> = (0..d).map(|i| i as f32 * 0.2 - 0.4).collect();
        let got = layer_norm(&x, &w, &b, 1e-5);
        for (r, row) in x.chunks(d).enumerate() {
            let mean = row.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
            let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / d as f64;
            for j in 0..d {
                let want = (row[j] as f64 - mean) / (var + 1e-5).sqrt() * w[j] as f64 + b[j] as f64;
                let g = got[r * d + j] as f64;
                assert!((g - want).abs() < 1e-5, "[{r}, {j}] {g} vs {want}");
            }
        }
    }
}
