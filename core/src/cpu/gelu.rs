//! The exact (erf) GELU, `0.5·x·(1 + erf(x/√2))`, in one vectorised pass over f32 data, as
//! transformers' `gelu` activation (OpenCLIP ViT-bigG, SDXL's second text encoder). burn's
//! flex backend evaluates `erf` with scalar libm calls.

use super::group_norm::exp;
use super::parallel::map_elementwise;
use super::simd::multiversion;

/// `gelu(x)` elementwise.
///
/// # Shapes
/// `x`: any → same
pub fn gelu(x: &[f32]) -> Vec<f32> {
    map_elementwise(x, gelu_into)
}

multiversion! {
    fn gelu_into(dst: &mut [f32], src: &[f32]) {
        for (d, &v) in dst.iter_mut().zip(src) {
            *d = gelu_f32(v);
        }
    }
}

/// `0.5·x·(1 + erf(x/√2))`.
#[inline(always)]
pub fn gelu_f32(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// `erf(x)` to 1.5e-7 absolute (Abramowitz & Stegun 7.1.26), branch-free.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_7,
        -1.453_152,
        1.061_405_4,
    ];
    let a = x.abs();
    let t = 1.0 / (1.0 + P * a);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    (1.0 - poly * exp(-a * a)).copysign(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gelu_is_accurate() {
        // erf from its Taylor series (converges well for |x| ≤ 3), the reference.
        let erf64 = |x: f64| {
            let (mut term, mut sum) = (x, x);
            for n in 1..80 {
                term *= -x * x / n as f64;
                sum += term / (2 * n + 1) as f64;
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        };
        for i in -400..=400 {
            let x = i as f32 * 0.01;
            let want = erf64(x as f64);
            assert!(
                (erf(x) as f64 - want).abs() < 3e-7,
                "erf({x}) = {}, want {want}",
                erf(x)
            );
        }
        assert_eq!(erf(10.0), 1.0);
        assert_eq!(gelu_f32(-20.0), 0.0);
    }

    #[test]
    fn applies_elementwise() {
        let x: Vec<f32> = (-300..=300).map(|i| i as f32 * 0.02).collect();
        let got = gelu(&x);
        assert!(got.iter().zip(&x).all(|(g, &v)| *g == gelu_f32(v)));
    }
}
