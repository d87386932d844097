//! The box diffusion's noise schedule and sampling times, as DiffusionDet computes them: a
//! cosine schedule over 1000 steps in f64, and the DDIM times from an f32 `linspace`.

/// Training timesteps of the box diffusion.
pub const TIMESTEPS: usize = 1000;
/// The cosine schedule's offset `s`.
const COSINE_S: f64 = 0.008;
/// Betas are clipped to this.
const MAX_BETA: f64 = 0.999;

/// `alphas_cumprod` of the cosine schedule (Nichol & Dhariwal), in f64 like the original's
/// buffers: `ᾱ(x) = cos²((x/T + s)/(1 + s) · π/2)` normalised by `ᾱ(0)`, betas
/// `1 − ᾱ(x+1)/ᾱ(x)` clipped to 0.999, and their running product.
///
/// # Shapes
/// → `[1000]`
pub fn alphas_cumprod() -> Vec<f64> {
    let t = TIMESTEPS as f64;
    let f = |x: f64| {
        let c = ((x / t + COSINE_S) / (1.0 + COSINE_S) * std::f64::consts::PI * 0.5).cos();
        c * c
    };
    let raw: Vec<f64> = (0..=TIMESTEPS).map(|x| f(x as f64)).collect();
    let normalised: Vec<f64> = raw.iter().map(|a| a / raw[0]).collect();
    let mut product = 1.0;
    normalised
        .windows(2)
        .map(|w| {
            let beta = (1.0 - w[1] / w[0]).clamp(0.0, MAX_BETA);
            product *= 1.0 - beta;
            product
        })
        .collect()
}

/// The `(t, t_next)` pairs of `steps` DDIM steps: `linspace(-1, 999, steps + 1)` in f32,
/// truncated to integers and reversed (one step: `(999, -1)`; four: `(999, 749)`, …,
/// `(249, -1)`).
pub fn time_pairs(steps: usize) -> Vec<(i64, i64)> {
    let (start, end) = (-1.0f32, (TIMESTEPS - 1) as f32);
    let n = steps + 1;
    let step = (end - start) / steps as f32;
    // torch's linspace fills the first half from the start and the second from the end.
    let times: Vec<i64> = (0..n)
        .map(|i| {
            let v = if i < n / 2 {
                start + step * i as f32
            } else {
                end - step * (n - 1 - i) as f32
            };
            v as i64
        })
        .rev()
        .collect();
    times.windows(2).map(|w| (w[0], w[1])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_match_the_original() {
        assert_eq!(time_pairs(1), vec![(999, -1)]);
        assert_eq!(
            time_pairs(4),
            vec![(999, 749), (749, 499), (499, 249), (249, -1)]
        );
        assert_eq!(time_pairs(3), vec![(999, 665), (665, 332), (332, -1)]);
    }

    #[test]
    fn schedule_falls_from_one_to_nearly_zero() {
        let a = alphas_cumprod();
        assert_eq!(a.len(), TIMESTEPS);
        assert!(a.windows(2).all(|w| w[1] < w[0]));
        assert!(a[0] > 0.9999 && a[0] < 1.0, "{}", a[0]);
        assert!(a[999] < 1e-6, "{}", a[999]);
    }
}
