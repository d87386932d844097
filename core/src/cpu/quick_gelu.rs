//! CLIP's `quick_gelu`, `x · sigmoid(1.702·x)`, in one pass over f32 data. burn's flex
//! backend runs it as three tensor operations and evaluates the sigmoid with scalar `expf`.

use super::group_norm::exp;
use super::parallel::map_elementwise;
use super::simd::multiversion;

/// `x · sigmoid(1.702·x)` elementwise.
///
/// # Shapes
/// `x`: any → same
pub fn quick_gelu(x: &[f32]) -> Vec<f32> {
    map_elementwise(x, quick_gelu_into)
}

multiversion! {
    fn quick_gelu_into(dst: &mut [f32], src: &[f32]) {
        for (d, &v) in dst.iter_mut().zip(src) {
            *d = v / (1.0 + exp(-1.702 * v));
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn matches_the_definition() {
        let x: Vec<f32> = (-400..=400).map(|i| i as f32 * 0.05).collect();
        for (g, &v) in super::quick_gelu(&x).iter().zip(&x) {
            let want = v as f64 / (1.0 + (-1.702 * v as f64).exp());
            assert!(
                (*g as f64 - want).abs() < 1e-6 * want.abs().max(1.0),
                "{v}: {g} vs {want}"
            );
        }
    }
}
