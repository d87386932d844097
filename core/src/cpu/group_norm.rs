//! `nn.GroupNorm`, optionally followed by SiLU, in two passes over f32 data: statistics, then
//! normalise, scale, shift and activate. burn's flex backend runs it as about ten tensor
//! operations and evaluates SiLU with scalar `expf` calls.

use super::parallel::for_each_chunk_mut;
use super::simd::{mean_and_variance, multiversion};

/// `silu(group_norm(x))` when `silu`, else `group_norm(x)`, as `torch.nn.GroupNorm(groups, C,
/// eps)` with affine `gamma`/`beta` (biased variance, statistics in f64).
///
/// # Shapes
/// `x`: `[B, C, S]` (S: all trailing dimensions), `gamma`, `beta`: `[C]` → `[B, C, S]`
///
/// # Panics
/// If the slices do not match the shapes or `groups` does not divide `C`.
pub fn group_norm(
    x: &[f32],
    [b, c, s]: [usize; 3],
    groups: usize,
    gamma: &[f32],
    beta: &[f32],
    eps: f64,
    silu: bool,
) -> Vec<f32> {
    assert_eq!(x.len(), b * c * s, "group_norm: input length");
    assert!(
        groups > 0 && c % groups == 0,
        "group_norm: groups must divide channels"
    );
    assert!(
        gamma.len() == c && beta.len() == c,
        "group_norm: affine length"
    );
    let per_group = c / groups;
    let mut out = vec![0.0f32; x.len()];
    for_each_chunk_mut(&mut out, per_group * s, |i, dst| {
        let src = &x[i * per_group * s..][..dst.len()];
        let channels = (i % groups) * per_group..(i % groups + 1) * per_group;
        normalize_group(
            dst,
            src,
            &gamma[channels.clone()],
            &beta[channels],
            eps,
            silu,
        );
    });
    out
}

multiversion! {
    /// One group's channels (`src` and `dst`: `[channels, S]`) normalised, scaled and
    /// shifted per channel, then SiLU when `silu`.
    fn normalize_group(
        dst: &mut [f32],
        src: &[f32],
        gamma: &[f32],
        beta: &[f32],
        eps: f64,
        silu: bool,
    ) {
        let (mean, var) = mean_and_variance(src);
        let rstd = 1.0 / (var + eps).sqrt();
        let s = src.len() / gamma.len();
        let rows = dst.chunks_mut(s).zip(src.chunks(s));
        for ((d, x), (&g, &b)) in rows.zip(gamma.iter().zip(beta)) {
            let scale = (g as f64 * rstd) as f32;
            let shift = (b as f64 - mean * g as f64 * rstd) as f32;
            if silu {
                d.iter_mut()
                    .zip(x)
                    .for_each(|(d, &x)| *d = silu_f32(x * scale + shift));
            } else {
                d.iter_mut()
                    .zip(x)
                    .for_each(|(d, &x)| *d = x * scale + shift);
            }
        }
    }
}

/// `x · sigmoid(x)` with [`exp`], branch-free so loops over it vectorise.
#[inline(always)]
pub fn silu_f32(x: f32) -> f32 {
    x / (1.0 + exp(-x))
}

/// `eˣ` to about 2 ulp for |x| < 87 (0 and ∞ beyond), branch-free: `x = k·ln 2 + r` with
/// `|r| ≤ ln 2 / 2`, a degree-6 Taylor polynomial for `eʳ` (error < 1.3e-7), and `2ᵏ` built
/// in the exponent bits.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding and subtracting 1.5·2²³ rounds to the nearest integer without a rounding
    // instruction (SSE2 has none).
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let rounded = x * LOG2E + ROUND;
    let k = rounded - ROUND;
    let r = x - k * LN2_HI - k * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r / 720.0)))));
    // `rounded`'s bits are ROUND's plus k: 2ᵏ's exponent field without a float-to-int
    // conversion, which Rust saturates lane by lane and so keeps the loop from vectorising.
    let two_k = (rounded
        .to_bits()
        .wrapping_sub(ROUND.to_bits())
        .wrapping_add(127))
        << 23;
    p * f32::from_bits(two_k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_accurate() {
        for i in -8700..=8800 {
            let x = i as f32 * 0.01;
            let (got, want) = (exp(x), (x as f64).exp());
            let rel = ((got as f64 - want) / want).abs();
            assert!(rel < 5e-7, "exp({x}) = {got}, want {want}");
        }
        assert_eq!(exp(-200.0), exp(-87.0));
        assert!(exp(f32::NAN).is_nan());
        assert!(silu_f32(-200.0).abs() < 1e-30 && silu_f32(200.0) == 200.0);
    }

    #[test]
    fn matches_the_definition() {
        let (b, c, s, groups) = (2, 6, 5, 3);
        let x: Vec<f32> = (0..b * c * s)
            .map(|i| ((i * 29) % 23) as f32 / 4.0 - 2.0)
            .collect();
        let gamma: Vec<f32> = (0..c).map(|i| 0.5 + i as f32 * 0.1).collect();
        let beta: Vec<f32> = (0..c).map(|i| i as f32 * 0.2 - 0.4).collect();
        for silu in [false, true] {
            let got = group_norm(&x, [b, c, s], groups, &gamma, &beta, 1e-6, silu);
            for (i, g) in got.iter().enumerate() {
                let (bi, ch) = (i / (c * s), i / s % c);
                let g0 = ch / (c / groups) * (c / groups);
                let group: Vec<f64> = (g0..g0 + c / groups)
                    .flat_map(|k| (0..s).map(move |p| (bi * c + k) * s + p))
                    .map(|j| x[j] as f64)
                    .collect();
                let mean = group.iter().sum::<f64>() / group.len() as f64;
                let var =
                    group.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / group.len() as f64;
                let mut want =
                    (x[i] as f64 - mean) / (var + 1e-6).sqrt() * gamma[ch] as f64 + beta[ch] as f64;
                if silu {
                    want /= 1.0 + (-want).exp();
                }
                assert!(
                    (*g as f64 - want).abs() < 1e-5,
                    "[{i}] {g} vs {want} (silu {silu})"
                );
            }
        }
    }
}
