//! `HeunDiscreteScheduler`: Heun's second-order method on the probability-flow ODE in sigma
//! space (Karras et al. 2022, Algorithm 1 with `S_churn = 0`).
//!
//! Each of the `n` steps but the last evaluates the model twice: an Euler step from `σ_i` to
//! `σ_(i+1)`, then a correction with the derivative at its end. So `timesteps()` holds
//! `[t_0, t_1, t_1, …, t_(n−1), t_(n−1)]` (`2n − 1` entries) and the sigmas
//! `[σ_0, σ_1, σ_1, …, σ_(n−1), σ_(n−1), 0]`; even entries are Euler steps, odd ones
//! corrections, and the last is an Euler step to 0.

use burn::tensor::Tensor;

use super::betas::{
    alphas_cumprod, interp_sigmas, karras_schedule, spaced_timesteps, train_sigmas,
};
use super::{
    PredictionType, Scheduler, SchedulerConfig, TimestepSpacing, check_steps, scale_by_sigma,
    sigma_pred_original_sample,
};
use crate::rng::TorchRng;

#[derive(Debug, Clone)]
pub struct HeunDiscreteScheduler {
    /// `2n − 1` entries.
    timesteps: Vec<f64>,
    /// `float32` sigmas, `2n` entries ending with 0.
    sigmas: Vec<f64>,
    init_noise_sigma: f64,
    prediction_type: PredictionType,
    /// `clip_sample_range` when `clip_sample`.
    clip_sample: Option<f64>,
    /// The Euler step awaiting its correction (diffusers' `prev_derivative`, `dt`, `sample`).
    pending: Option<EulerStep>,
}

#[derive(Debug, Clone)]
struct EulerStep {
    derivative: Tensor<4>,
    dt: f64,
    sample: Tensor<4>,
}

impl HeunDiscreteScheduler {
    pub fn new(config: &SchedulerConfig, num_inference_steps: usize) -> Result<Self, String> {
        check_steps(config, num_inference_steps)?;
        // HeunDiscreteScheduler's own defaults; it has no `rescale_betas_zero_snr`.
        let config = SchedulerConfig {
            beta_start: Some(config.beta_start.unwrap_or(0.00085)),
            beta_end: Some(config.beta_end.unwrap_or(0.012)),
            rescale_betas_zero_snr: false,
            ..config.clone()
        };
        let alphas_cumprod = alphas_cumprod(&config)?;
        let spacing = config.spacing_or(TimestepSpacing::Linspace);
        let mut timesteps: Vec<f64> = spaced_timesteps(
            spacing,
            config.num_train_timesteps,
            num_inference_steps,
            config.steps_offset,
            false,
        )
        .into_iter()
        .map(|t| f64::from(t as f32))
        .collect();
        let train = train_sigmas(&alphas_cumprod);
        let mut sigmas = interp_sigmas(&timesteps, &train);
        if config.use_karras_sigmas {
            (sigmas, timesteps) =
                karras_schedule(&sigmas, &train, config.sigma_max, config.sigma_min);
        }
        sigmas.push(0.0);
        let sigmas: Vec<f64> = sigmas.into_iter().map(|s| f64::from(s as f32)).collect();
        let max_sigma = sigmas.iter().copied().fold(0.0, f64::max);
        let init_noise_sigma = match spacing {
            TimestepSpacing::Linspace | TimestepSpacing::Trailing => max_sigma,
            TimestepSpacing::Leading => (max_sigma * max_sigma + 1.0).sqrt(),
        };
        Ok(Self {
            timesteps: repeat_after_first(&timesteps, true),
            sigmas: repeat_after_first(&sigmas, false),
            init_noise_sigma,
            prediction_type: config.prediction_type,
            clip_sample: config
                .clip_sample
                .unwrap_or(false)
                .then_some(config.clip_sample_range),
            pending: None,
        })
    }

    /// The `2n` sigmas (`scheduler.sigmas`).
    pub fn sigmas(&self) -> &[f64] {
        &self.sigmas
    }

    /// The clipped `x0` prediction at `sigma`.
    fn pred_original_sample(
        &self,
        model_output: Tensor<4>,
        sample: Tensor<4>,
        sigma: f64,
    ) -> Tensor<4> {
        let x0 = sigma_pred_original_sample(self.prediction_type, model_output, sample, sigma);
        match self.clip_sample {
            Some(range) => x0.clamp(-range, range),
            None => x0,
        }
    }
}

/// `values` with every entry after the first repeated, the last too when `repeat_last`
/// (`cat([v[:1], v[1:].repeat_interleave(2)])`; else `v[1:-1]` repeated, then `v[-1:]`).
fn repeat_after_first(values: &[f64], repeat_last: bool) -> Vec<f64> {
    let last = values.len().saturating_sub(1);
    values
        .iter()
        .enumerate()
        .flat_map(|(i, &v)| {
            let once = i == 0 || (i == last && !repeat_last);
            std::iter::repeat_n(v, if once { 1 } else { 2 })
        })
        .collect()
}

impl Scheduler for HeunDiscreteScheduler {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn init_noise_sigma(&self) -> f64 {
        self.init_noise_sigma
    }

    fn scale_model_input(&self, sample: Tensor<4>, step_index: usize) -> Tensor<4> {
        scale_by_sigma(sample, self.sigmas[step_index])
    }

    /// An Euler step from `sigmas[i]` to `sigmas[i + 1]` (kept for the correction), or, right
    /// after one, its correction: the Euler step's start moved by the mean of both derivatives.
    fn step(
        &mut self,
        model_output: Tensor<4>,
        step_index: usize,
        sample: Tensor<4>,
        _rng: &mut TorchRng,
    ) -> Tensor<4> {
        match self.pending.take() {
            None => {
                let sigma = self.sigmas[step_index];
                let x0 = self.pred_original_sample(model_output, sample.clone(), sigma);
                let derivative = (sample.clone() - x0) / sigma;
                let dt = self.sigmas[step_index + 1] - sigma;
                let prev_sample = sample.clone() + derivative.clone() * dt;
                self.pending = Some(EulerStep {
                    derivative,
                    dt,
                    sample,
                });
                prev_sample
            }
            Some(euler) => {
                let sigma_next = self.sigmas[step_index];
                let x0 = self.pred_original_sample(model_output, sample.clone(), sigma_next);
                let derivative = (sample - x0) / sigma_next;
                euler.sample + (euler.derivative + derivative) * (euler.dt / 2.0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_after_the_first_repeat() {
        let v = [3.0, 2.0, 1.0, 0.0];
        assert_eq!(
            repeat_after_first(&v, true),
            [3.0, 2.0, 2.0, 1.0, 1.0, 0.0, 0.0]
        );
        assert_eq!(
            repeat_after_first(&v, false),
            [3.0, 2.0, 2.0, 1.0, 1.0, 0.0]
        );
        assert_eq!(repeat_after_first(&[5.0], true), [5.0]);
        assert_eq!(repeat_after_first(&[5.0, 0.0], false), [5.0, 0.0]);
    }
}
