//! diffusers' GEGLU gate, `hidden · gelu(gate)` with `hidden, gate = proj.chunk(2, -1)`, in
//! one pass over f32 data. burn's flex backend evaluates `erf` with scalar libm calls and
//! materialises both halves and the GELU.

use super::group_norm::exp;
use super::parallel::for_each_chunk_mut;
use super::simd::multiversion;

/// Rows per task.
const ROWS_PER_TASK: usize = 16;

/// `x[.., :inner] · gelu(x[.., inner:])` with the exact (erf) GELU.
///
/// # Shapes
/// `x`: `[rows, 2·inner]` → `[rows, inner]`
///
/// # Panics
/// If `x.len()` is not a multiple of `2·inner`.
pub fn geglu(x: &[f32], inner: usize) -> Vec<f32> {
    assert!(
        inner > 0 && x.len().is_multiple_of(2 * inner),
        "geglu: input length"
    );
    let mut out = vec![0.0f32; x.len() / 2];
    for_each_chunk_mut(&mut out, inner * ROWS_PER_TASK, |i, dst| {
        let src = &x[i * 2 * inner * ROWS_PER_TASK..][..2 * dst.len()];
        geglu_rows(dst, src, inner);
    });
    out
}

multiversion! {
    /// Rows of `2·inner` inputs gated into rows of `inner` outputs.
    fn geglu_rows(dst: &mut [f32], src: &[f32], inner: usize) {
        for (d, row) in dst.chunks_mut(inner).zip(src.chunks(2 * inner)) {
            let (hidden, gate) = row.split_at(inner);
            for ((d, &h), &g) in d.iter_mut().zip(hidden).zip(gate) {
                *d = h * gelu(g);
            }
        }
    }
}

/// `0.5·x·(1 + erf(x/√2))`.
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
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
        assert_eq!(gelu(-20.0), 0.0);
    }

    #[test]
    fn gates_the_first_half_with_the_second() {
        let inner = 3;
        let x = [
            1.0, 2.0, -1.0, 0.0, 1.0, -2.0, 0.5, 0.5, 0.5, 3.0, -3.0, 0.1,
        ];
        let got = geglu(&x, inner);
        let want: Vec<f32> = x
            .chunks(2 * inner)
            .flat_map(|r| (0..inner).map(move |j| r[j] * gelu(r[inner + j])))
            .collect();
        assert_eq!(got, want);
        assert_eq!(got[1], 2.0 * gelu(1.0));
    }
}
