//! [`Noising`]: DDPM's forward process and the training targets (`DDPMScheduler.add_noise`
//! and `get_velocity`).

use burn::tensor::{Tensor, TensorData};

use crate::error::{Error, Result};
use crate::schedulers::{PredictionType, SchedulerConfig, betas::alphas_cumprod};

/// The noise schedule of a scheduler config, for training.
#[derive(Debug, Clone)]
pub struct Noising {
    alphas_cumprod: Vec<f64>,
    pub prediction_type: PredictionType,
}

impl Noising {
    /// From `scheduler_config.json` (`file` names it in errors).
    pub fn new(config: &SchedulerConfig, file: &str) -> Result<Self> {
        let alphas_cumprod = alphas_cumprod(config).map_err(|m| Error::Config {
            file: file.into(),
            message: m,
        })?;
        if config.prediction_type == PredictionType::Sample {
            return Err(Error::Config {
                file: file.into(),
                message: "training supports the epsilon and v_prediction objectives".into(),
            });
        }
        Ok(Self {
            alphas_cumprod,
            prediction_type: config.prediction_type,
        })
    }

    /// `num_train_timesteps`.
    pub fn num_timesteps(&self) -> usize {
        self.alphas_cumprod.len()
    }

    /// `(√ᾱ_t, √(1−ᾱ_t))` per batch item as `[B, 1, 1, 1]` tensors, in f32 as diffusers.
    fn coefficients(&self, timesteps: &[usize], like: &Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        let b = timesteps.len();
        let a: Vec<f32> = timesteps
            .iter()
            .map(|&t| self.alphas_cumprod[t] as f32)
            .collect();
        let make = |v: Vec<f32>| {
            Tensor::<4>::from_data(
                TensorData::new(v, [b, 1, 1, 1]),
                (&like.device(), like.dtype()),
            )
        };
        (
            make(a.iter().map(|a| a.sqrt()).collect()),
            make(a.iter().map(|a| (1.0 - a).sqrt()).collect()),
        )
    }

    /// `x_t = √ᾱ_t·x_0 + √(1−ᾱ_t)·ε`.
    ///
    /// # Shapes
    /// `x0`, `noise`: `[B, C, H, W]`, `timesteps`: `[B]` → `[B, C, H, W]`
    pub fn add_noise(&self, x0: &Tensor<4>, noise: &Tensor<4>, timesteps: &[usize]) -> Tensor<4> {
        let (sa, s1a) = self.coefficients(timesteps, x0);
        sa * x0.clone() + s1a * noise.clone()
    }

    /// What the model learns to predict: `ε`, or `v = √ᾱ_t·ε − √(1−ᾱ_t)·x_0`.
    ///
    /// # Shapes
    /// as [`add_noise`](Self::add_noise)
    pub fn target(&self, x0: &Tensor<4>, noise: &Tensor<4>, timesteps: &[usize]) -> Tensor<4> {
        match self.prediction_type {
            PredictionType::VPrediction => {
                let (sa, s1a) = self.coefficients(timesteps, x0);
                sa * noise.clone() - s1a * x0.clone()
            }
            _ => noise.clone(),
        }
    }

    /// The scheduler's `pred_original_sample`: `x_0 = √ᾱ_t·x_t − √(1−ᾱ_t)·v`, or
    /// `(x_t − √(1−ᾱ_t)·ε) / √ᾱ_t`, from the model's prediction at `x_t`.
    ///
    /// # Shapes
    /// as [`add_noise`](Self::add_noise)
    pub fn predicted_sample(
        &self,
        noisy: &Tensor<4>,
        pred: &Tensor<4>,
        timesteps: &[usize],
    ) -> Tensor<4> {
        let (sa, s1a) = self.coefficients(timesteps, noisy);
        match self.prediction_type {
            PredictionType::VPrediction => sa * noisy.clone() - s1a * pred.clone(),
            _ => (noisy.clone() - s1a * pred.clone()) / sa.clamp_min(1e-4),
        }
    }
}

/// `F.mse_loss(pred.float(), target.float(), reduction="mean")`.
///
/// # Shapes
/// `pred`, `target`: any, equal → `[1]`
pub fn mse_loss<const D: usize>(pred: Tensor<D>, target: Tensor<D>) -> Tensor<1> {
    let d = pred.cast(burn::tensor::DType::F32) - target.cast(burn::tensor::DType::F32);
    (d.clone() * d).mean()
}
