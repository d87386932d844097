//! `EulerAncestralDiscreteScheduler`: Euler step down to `sigma_down`, then fresh noise of
//! scale `sigma_up` (k-diffusion's `sample_euler_ancestral`).

use burn::tensor::Tensor;

use super::betas::{alphas_cumprod, interp_sigmas, spaced_timesteps, train_sigmas};
use super::{
    PredictionType, Scheduler, SchedulerConfig, TimestepSpacing, check_steps, scale_by_sigma,
    sigma_pred_original_sample,
};
use crate::rng::TorchRng;

#[derive(Debug, Clone)]
pub struct EulerAncestralDiscreteScheduler {
    timesteps: Vec<f64>,
    /// `float32` sigmas, `n + 1` entries ending with 0.
    sigmas: Vec<f64>,
    init_noise_sigma: f64,
    prediction_type: PredictionType,
}

impl EulerAncestralDiscreteScheduler {
    pub fn new(config: &SchedulerConfig, num_inference_steps: usize) -> Result<Self, String> {
        check_steps(config, num_inference_steps)?;
        if config.prediction_type == PredictionType::Sample {
            return Err(
                "EulerAncestralDiscreteScheduler: prediction_type sample is not supported \
                        (not implemented in diffusers either)"
                    .into(),
            );
        }
        let mut alphas_cumprod = alphas_cumprod(config)?;
        if config.rescale_betas_zero_snr {
            if let Some(last) = alphas_cumprod.last_mut() {
                *last = 2f64.powi(-24);
            }
        }
        let spacing = config.spacing_or(TimestepSpacing::Linspace);
        let timesteps: Vec<f64> = spaced_timesteps(
            spacing,
            config.num_train_timesteps,
            num_inference_steps,
            config.steps_offset,
            false,
        )
        .into_iter()
        .map(|t| f64::from(t as f32))
        .collect();
        let mut sigmas = interp_sigmas(&timesteps, &train_sigmas(&alphas_cumprod));
        sigmas.push(0.0);
        let sigmas: Vec<f64> = sigmas.into_iter().map(|s| f64::from(s as f32)).collect();
        let max_sigma = sigmas.iter().copied().fold(0.0, f64::max);
        let init_noise_sigma = match spacing {
            TimestepSpacing::Linspace | TimestepSpacing::Trailing => max_sigma,
            TimestepSpacing::Leading => (max_sigma * max_sigma + 1.0).sqrt(),
        };
        Ok(Self {
            timesteps,
            sigmas,
            init_noise_sigma,
            prediction_type: config.prediction_type,
        })
    }
}

impl Scheduler for EulerAncestralDiscreteScheduler {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn init_noise_sigma(&self) -> f64 {
        self.init_noise_sigma
    }

    fn scale_model_input(&self, sample: Tensor<4>, step_index: usize) -> Tensor<4> {
        scale_by_sigma(sample, self.sigmas[step_index])
    }

    fn step(
        &mut self,
        model_output: Tensor<4>,
        step_index: usize,
        sample: Tensor<4>,
        rng: &mut TorchRng,
    ) -> Tensor<4> {
        let sigma = self.sigmas[step_index];
        let noise = rng.randn_like(&model_output);
        let pred_original_sample =
            sigma_pred_original_sample(self.prediction_type, model_output, sample.clone(), sigma);
        let sigma_from = sigma;
        let sigma_to = self.sigmas[step_index + 1];
        let sigma_up = (sigma_to * sigma_to * (sigma_from * sigma_from - sigma_to * sigma_to)
            / (sigma_from * sigma_from))
            .sqrt();
        let sigma_down = (sigma_to * sigma_to - sigma_up * sigma_up).max(0.0).sqrt();
        let derivative = (sample.clone() - pred_original_sample) / sigma;
        let dt = sigma_down - sigma;
        sample + derivative * dt + noise * sigma_up
    }
}
