//! `EulerDiscreteScheduler`: Euler steps of the probability-flow ODE in sigma space
//! (Karras et al. 2022, Algorithm 2 with `s_churn = 0`).

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
pub struct EulerDiscreteScheduler {
    timesteps: Vec<f64>,
    /// `float32` sigmas, `n + 1` entries (the last is the final sigma).
    sigmas: Vec<f64>,
    init_noise_sigma: f64,
    prediction_type: PredictionType,
}

impl EulerDiscreteScheduler {
    pub fn new(config: &SchedulerConfig, num_inference_steps: usize) -> Result<Self, String> {
        check_steps(config, num_inference_steps)?;
        if config.interpolation_type != "linear" {
            return Err(format!(
                "EulerDiscreteScheduler: interpolation_type {:?} is not supported",
                config.interpolation_type
            ));
        }
        if config.timestep_type != "discrete" {
            return Err(format!(
                "EulerDiscreteScheduler: timestep_type {:?} is not supported",
                config.timestep_type
            ));
        }
        let mut alphas_cumprod = alphas_cumprod(config)?;
        if config.rescale_betas_zero_snr {
            // Avoid an infinite sigma at the last training timestep.
            if let Some(last) = alphas_cumprod.last_mut() {
                *last = 2f64.powi(-24);
            }
        }
        let spacing = config.spacing_or(TimestepSpacing::Linspace);
        // float32 timesteps (`np.float32` in diffusers).
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
        let sigma_last = match config.final_sigmas_type.as_str() {
            "zero" => 0.0,
            "sigma_min" => train[0],
            other => return Err(format!("final_sigmas_type {other:?} is not supported")),
        };
        sigmas.push(sigma_last);
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

    /// The `n + 1` sigmas (`scheduler.sigmas`).
    pub fn sigmas(&self) -> &[f64] {
        &self.sigmas
    }
}

impl Scheduler for EulerDiscreteScheduler {
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
        _rng: &mut TorchRng,
    ) -> Tensor<4> {
        let sigma = self.sigmas[step_index];
        let pred_original_sample =
            sigma_pred_original_sample(self.prediction_type, model_output, sample.clone(), sigma);
        // `sigma_hat == sigma` since s_churn = 0.
        let derivative = (sample.clone() - pred_original_sample) / sigma;
        let dt = self.sigmas[step_index + 1] - sigma;
        sample + derivative * dt
    }
}
