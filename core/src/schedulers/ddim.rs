//! `DDIMScheduler` (arXiv 2010.02502).

use burn::tensor::Tensor;

use super::betas::{alphas_cumprod, spaced_timesteps};
use super::{PredictionType, Scheduler, SchedulerConfig, TimestepSpacing, check_steps};
use crate::rng::TorchRng;

/// DDIM with `eta` (0 by default: deterministic). `step` follows `DDIMScheduler.step` with
/// `use_clipped_model_output=False`.
#[derive(Debug, Clone)]
pub struct DdimScheduler {
    alphas_cumprod: Vec<f64>,
    /// `alpha_prod_t_prev` when `prev_timestep < 0`.
    final_alpha_cumprod: f64,
    timesteps: Vec<f64>,
    /// `num_train_timesteps // num_inference_steps`.
    step_ratio: i64,
    prediction_type: PredictionType,
    clip_sample: Option<f64>,
    eta: f64,
}

impl DdimScheduler {
    pub fn new(config: &SchedulerConfig, num_inference_steps: usize) -> Result<Self, String> {
        check_steps(config, num_inference_steps)?;
        let alphas_cumprod = alphas_cumprod(config)?;
        let final_alpha_cumprod = if config.set_alpha_to_one.unwrap_or(true) {
            1.0
        } else {
            alphas_cumprod[0]
        };
        let timesteps = spaced_timesteps(
            config.spacing_or(TimestepSpacing::Leading),
            config.num_train_timesteps,
            num_inference_steps,
            config.steps_offset,
            true,
        );
        check_timesteps(&timesteps, alphas_cumprod.len())?;
        Ok(Self {
            alphas_cumprod,
            final_alpha_cumprod,
            timesteps,
            step_ratio: (config.num_train_timesteps / num_inference_steps) as i64,
            prediction_type: config.prediction_type,
            clip_sample: config
                .clip_sample
                .unwrap_or(true)
                .then_some(config.clip_sample_range),
            eta: 0.0,
        })
    }

    /// DDIM's `eta`: weight of the fresh noise added at each step (0 = DDIM, 1 = DDPM-like).
    pub fn with_eta(mut self, eta: f64) -> Self {
        self.eta = eta;
        self
    }
}

/// Every timestep must index `alphas_cumprod` (e.g. `steps_offset` can push past the end).
pub(super) fn check_timesteps(timesteps: &[f64], num_train: usize) -> Result<(), String> {
    match timesteps
        .iter()
        .find(|&&t| t < 0.0 || t >= num_train as f64)
    {
        Some(t) => Err(format!("timestep {t} outside 0..{num_train}")),
        None => Ok(()),
    }
}

impl Scheduler for DdimScheduler {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn init_noise_sigma(&self) -> f64 {
        1.0
    }

    fn scale_model_input(&self, sample: Tensor<4>, _step_index: usize) -> Tensor<4> {
        sample
    }

    fn step(
        &mut self,
        model_output: Tensor<4>,
        step_index: usize,
        sample: Tensor<4>,
        rng: &mut TorchRng,
    ) -> Tensor<4> {
        let timestep = self.timesteps[step_index] as i64;
        let prev_timestep = timestep - self.step_ratio;
        let alpha_prod_t = self.alphas_cumprod[timestep as usize];
        let alpha_prod_t_prev = if prev_timestep >= 0 {
            self.alphas_cumprod[prev_timestep as usize]
        } else {
            self.final_alpha_cumprod
        };
        let beta_prod_t = 1.0 - alpha_prod_t;
        let (pred_original_sample, pred_epsilon) = match self.prediction_type {
            PredictionType::Epsilon => (
                (sample.clone() - model_output.clone() * beta_prod_t.sqrt()) / alpha_prod_t.sqrt(),
                model_output,
            ),
            PredictionType::Sample => (
                model_output.clone(),
                (sample - model_output * alpha_prod_t.sqrt()) / beta_prod_t.sqrt(),
            ),
            PredictionType::VPrediction => (
                sample.clone() * alpha_prod_t.sqrt() - model_output.clone() * beta_prod_t.sqrt(),
                model_output * alpha_prod_t.sqrt() + sample * beta_prod_t.sqrt(),
            ),
        };
        let pred_original_sample = match self.clip_sample {
            Some(range) => pred_original_sample.clamp(-range, range),
            None => pred_original_sample,
        };
        // _get_variance
        let beta_prod_t_prev = 1.0 - alpha_prod_t_prev;
        let variance = (beta_prod_t_prev / beta_prod_t) * (1.0 - alpha_prod_t / alpha_prod_t_prev);
        let std_dev_t = self.eta * variance.sqrt();
        let direction = pred_epsilon * (1.0 - alpha_prod_t_prev - std_dev_t * std_dev_t).sqrt();
        let prev_sample = pred_original_sample * alpha_prod_t_prev.sqrt() + direction;
        if self.eta > 0.0 {
            let noise = rng.randn_like(&prev_sample);
            prev_sample + noise * std_dev_t
        } else {
            prev_sample
        }
    }
}
