//! Noise schedule and timestep grids shared by all schedulers.
//!
//! diffusers builds `betas` and `alphas_cumprod` as `float32` torch tensors and the timestep
//! grids with numpy; the helpers here reproduce those computations (torch's `linspace` and
//! `cumprod`, numpy's `linspace`, float `arange`, round-half-to-even `round`, `interp`) so that
//! timesteps and schedule values match diffusers' numbers.

use super::{BetaSchedule, SchedulerConfig, TimestepSpacing};

/// `betas` as diffusers builds them (`float32` values, stored as `f64`), after
/// `rescale_zero_terminal_snr` when `rescale_betas_zero_snr` is set.
fn betas(config: &SchedulerConfig) -> Result<Vec<f64>, String> {
    let n = config.num_train_timesteps;
    let beta_start = config.beta_start.unwrap_or(0.0001);
    let beta_end = config.beta_end.unwrap_or(0.02);
    if n < 2 {
        return Err(format!("num_train_timesteps must be at least 2, got {n}"));
    }
    let betas: Vec<f32> = if let Some(trained) = &config.trained_betas {
        if trained.len() != n {
            return Err(format!(
                "trained_betas has {} entries, num_train_timesteps is {n}",
                trained.len()
            ));
        }
        trained.iter().map(|&b| b as f32).collect()
    } else {
        match config.beta_schedule {
            // torch.linspace(beta_start, beta_end, n, dtype=float32)
            BetaSchedule::Linear => linspace_f32(beta_start, beta_end, n),
            // torch.linspace(beta_start**0.5, beta_end**0.5, n, dtype=float32) ** 2
            BetaSchedule::ScaledLinear => linspace_f32(beta_start.sqrt(), beta_end.sqrt(), n)
                .into_iter()
                .map(|b| b * b)
                .collect(),
            BetaSchedule::SquaredcosCapV2 => betas_for_alpha_bar(n),
        }
    };
    let betas = if config.rescale_betas_zero_snr {
        rescale_zero_terminal_snr(&betas)
    } else {
        betas
    };
    Ok(betas.into_iter().map(f64::from).collect())
}

/// `torch.cumprod(1 - betas)` in `float32` (torch accumulates the product in double and rounds
/// each element), stored as `f64`. Length `num_train_timesteps`.
pub fn alphas_cumprod(config: &SchedulerConfig) -> Result<Vec<f64>, String> {
    Ok(cumprod_f32(&betas(config)?))
}

fn cumprod_f32(betas: &[f64]) -> Vec<f64> {
    let mut acc = 1.0f64;
    betas
        .iter()
        .map(|&b| {
            acc *= f64::from(1.0f32 - b as f32);
            f64::from(acc as f32)
        })
        .collect()
}

/// `torch.linspace(start, end, n, dtype=float32)` exactly as torch's CPU kernel computes it:
/// `float32` step, `fma(step, i, start)` for the first half and `fma(-step, n - 1 - i, end)`
/// for the second.
fn linspace_f32(start: f64, end: f64, n: usize) -> Vec<f32> {
    let (start, end) = (start as f32, end as f32);
    let step = (end - start) / (n - 1) as f32;
    (0..n)
        .map(|i| {
            if i < n / 2 {
                step.mul_add(i as f32, start)
            } else {
                (-step).mul_add((n - 1 - i) as f32, end)
            }
        })
        .collect()
}

/// diffusers' `betas_for_alpha_bar` with the cosine `alpha_bar` ("squaredcos_cap_v2").
fn betas_for_alpha_bar(n: usize) -> Vec<f32> {
    let alpha_bar = |t: f64| {
        ((t + 0.008) / 1.008 * std::f64::consts::PI / 2.0)
            .cos()
            .powi(2)
    };
    (0..n)
        .map(|i| {
            let t1 = i as f64 / n as f64;
            let t2 = (i + 1) as f64 / n as f64;
            (1.0 - alpha_bar(t2) / alpha_bar(t1)).min(0.999) as f32
        })
        .collect()
}

/// diffusers' `rescale_zero_terminal_snr` (arXiv 2305.08891, Algorithm 1), in `float32`.
fn rescale_zero_terminal_snr(betas: &[f32]) -> Vec<f32> {
    let cumprod = cumprod_f32(&betas.iter().map(|&b| f64::from(b)).collect::<Vec<_>>());
    let sqrt: Vec<f32> = cumprod.iter().map(|&a| (a as f32).sqrt()).collect();
    let (first, last) = (sqrt[0], sqrt[sqrt.len() - 1]);
    let scale = first / (first - last);
    let alphas_bar: Vec<f32> = sqrt
        .iter()
        .map(|&s| {
            let s = (s - last) * scale;
            s * s
        })
        .collect();
    let mut out = Vec::with_capacity(betas.len());
    out.push(1.0 - alphas_bar[0]);
    out.extend(alphas_bar.windows(2).map(|w| 1.0 - w[1] / w[0]));
    out
}

/// `((1 - alphas_cumprod) / alphas_cumprod) ** 0.5` in `float32`, as `f64`.
pub(super) fn train_sigmas(alphas_cumprod: &[f64]) -> Vec<f64> {
    alphas_cumprod
        .iter()
        .map(|&a| {
            let a = a as f32;
            f64::from(((1.0 - a) / a).sqrt())
        })
        .collect()
}

/// `np.linspace(start, stop, num)` (float64, endpoint included).
pub(super) fn np_linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    if num == 1 {
        return vec![start];
    }
    let step = (stop - start) / (num - 1) as f64;
    let mut y: Vec<f64> = (0..num).map(|i| i as f64 * step + start).collect();
    if let Some(last) = y.last_mut() {
        *last = stop;
    }
    y
}

/// `np.arange(start, stop, step)` for float arguments: `ceil((stop - start) / step)` values
/// `start + i * delta` with `delta = (start + step) - start`, as numpy fills them.
pub(super) fn np_arange(start: f64, stop: f64, step: f64) -> Vec<f64> {
    let len = ((stop - start) / step).ceil();
    if len.is_nan() || len <= 0.0 {
        return Vec::new();
    }
    let delta = (start + step) - start;
    (0..len as usize)
        .map(|i| {
            if i == 0 {
                start
            } else {
                start + i as f64 * delta
            }
        })
        .collect()
}

/// `np.interp(x, arange(len(fp)), fp)` for `0 <= x <= len(fp) - 1`.
fn np_interp(x: f64, fp: &[f64]) -> f64 {
    let last = fp.len() - 1;
    if x >= last as f64 {
        return fp[last];
    }
    if x <= 0.0 {
        return fp[0];
    }
    let j = x.floor() as usize;
    let slope = fp[j + 1] - fp[j];
    slope * (x - j as f64) + fp[j]
}

/// `np.interp(timesteps, arange(len(train_sigmas)), train_sigmas)`.
pub(super) fn interp_sigmas(timesteps: &[f64], train_sigmas: &[f64]) -> Vec<f64> {
    timesteps
        .iter()
        .map(|&t| np_interp(t, train_sigmas))
        .collect()
}

/// `_convert_to_karras`: `n` sigmas from `sigma_max` to `sigma_min`, evenly spaced in
/// `sigma^(1/7)` (Karras et al. 2022, eq. 5).
pub(super) fn karras_sigmas(sigma_max: f64, sigma_min: f64, n: usize) -> Vec<f64> {
    const RHO: f64 = 7.0;
    let min_inv_rho = sigma_min.powf(1.0 / RHO);
    let max_inv_rho = sigma_max.powf(1.0 / RHO);
    np_linspace(0.0, 1.0, n)
        .into_iter()
        .map(|ramp| (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)).powf(RHO))
        .collect()
}

/// `use_karras_sigmas` in the fractional-timestep schedulers (Euler, Heun, LMS): `n` Karras
/// sigmas from `sigma_max` to `sigma_min` (by default the first and last of `sigmas`, the
/// sigmas at the spaced timesteps) and their `float32` timesteps (`_sigma_to_t`).
pub(super) fn karras_schedule(
    sigmas: &[f64],
    train_sigmas: &[f64],
    sigma_max: Option<f64>,
    sigma_min: Option<f64>,
) -> (Vec<f64>, Vec<f64>) {
    let sigma_max = sigma_max.unwrap_or(sigmas[0]);
    let sigma_min = sigma_min.unwrap_or(sigmas[sigmas.len() - 1]);
    let sigmas = karras_sigmas(sigma_max, sigma_min, sigmas.len());
    let log_sigmas = log_sigmas(train_sigmas);
    let timesteps = sigmas
        .iter()
        .map(|&s| f64::from(sigma_to_t(s, &log_sigmas) as f32))
        .collect();
    (sigmas, timesteps)
}

/// `np.log(train_sigmas)` (a `float32` array in diffusers).
pub(super) fn log_sigmas(train_sigmas: &[f64]) -> Vec<f32> {
    train_sigmas.iter().map(|&s| s.ln() as f32).collect()
}

/// `_sigma_to_t`: the fractional training timestep of `sigma`, interpolating linearly in
/// `log(sigma)` between the two neighbouring training sigmas.
pub(super) fn sigma_to_t(sigma: f64, log_sigmas: &[f32]) -> f64 {
    let log_sigma = sigma.max(1e-10).ln();
    // Last index with log_sigmas[i] <= log_sigma (0 if none), at most len - 2.
    let low_idx = log_sigmas
        .iter()
        .rposition(|&l| log_sigma - f64::from(l) >= 0.0)
        .unwrap_or(0)
        .min(log_sigmas.len() - 2);
    let low = log_sigmas[low_idx];
    let high = log_sigmas[low_idx + 1];
    let w = ((f64::from(low) - log_sigma) / f64::from(low - high)).clamp(0.0, 1.0);
    (1.0 - w) * low_idx as f64 + w * (low_idx + 1) as f64
}

/// The timestep grid most schedulers share (DDIM, PNDM, Euler, Euler ancestral, LMS), in
/// descending order:
/// * `linspace`: `np.linspace(0, T - 1, n)`, rounded half-to-even when `round_linspace`
///   (integer timesteps: DDIM, PNDM) or kept fractional (sigma schedulers);
/// * `leading`: `arange(n) * (T // n)` reversed, `+ steps_offset`;
/// * `trailing`: `round(arange(T, 0, -T / n)) - 1`.
pub(super) fn spaced_timesteps(
    spacing: TimestepSpacing,
    num_train: usize,
    n: usize,
    steps_offset: usize,
    round_linspace: bool,
) -> Vec<f64> {
    match spacing {
        TimestepSpacing::Linspace => {
            let mut t = np_linspace(0.0, (num_train - 1) as f64, n);
            if round_linspace {
                t.iter_mut().for_each(|v| *v = v.round_ties_even());
            }
            t.reverse();
            t
        }
        TimestepSpacing::Leading => {
            let ratio = num_train / n;
            (0..n)
                .rev()
                .map(|i| (i * ratio + steps_offset) as f64)
                .collect()
        }
        TimestepSpacing::Trailing => {
            let ratio = num_train as f64 / n as f64;
            np_arange(num_train as f64, 0.0, -ratio)
                .into_iter()
                .map(|v| v.round_ties_even() - 1.0)
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sd15() -> SchedulerConfig {
        SchedulerConfig::from_json(
            br#"{"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}"#,
        )
        .unwrap()
    }

    #[test]
    fn alphas_cumprod_sd15_endpoints() {
        // torch: DDIMScheduler(beta_start=0.00085, beta_end=0.012, "scaled_linear").alphas_cumprod
        let a = alphas_cumprod(&sd15()).unwrap();
        assert_eq!(a.len(), 1000);
        assert!((a[0] - 0.999_15).abs() < 1e-7, "{}", a[0]);
        assert!((a[999] - 0.004_660_0).abs() < 1e-6, "{}", a[999]);
    }

    #[test]
    fn numpy_helpers() {
        assert_eq!(
            np_linspace(0.0, 999.0, 5),
            vec![0.0, 249.75, 499.5, 749.25, 999.0]
        );
        assert_eq!(
            np_arange(1000.0, 0.0, -200.0),
            vec![1000.0, 800.0, 600.0, 400.0, 200.0]
        );
        assert_eq!(np_interp(1.5, &[0.0, 1.0, 3.0]), 2.0);
        assert_eq!(2.5f64.round_ties_even(), 2.0);
    }
}
