//! `DPMSolverMultistepScheduler` (DPM-Solver++, arXiv 2211.01095): multistep solver in
//! `λ = log(α/σ)` on the data prediction `x0`, orders 1–3, `dpmsolver++` (ODE) or
//! `sde-dpmsolver++` (SDE, noise from the generator at every step).

use burn::tensor::Tensor;

use super::betas::{
    alphas_cumprod, interp_sigmas, karras_sigmas, log_sigmas, np_arange, np_linspace, sigma_to_t,
    train_sigmas,
};
use super::{
    BetaSchedule, PredictionType, Scheduler, SchedulerConfig, TimestepSpacing, check_steps,
};
use crate::rng::TorchRng;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Algorithm {
    /// `dpmsolver++`
    DpmSolverPp,
    /// `sde-dpmsolver++`
    SdeDpmSolverPp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SolverType {
    Midpoint,
    Heun,
}

#[derive(Debug, Clone)]
pub struct DpmSolverMultistepScheduler {
    timesteps: Vec<f64>,
    /// `float32` sigmas, `n + 1` entries (the last is the final sigma).
    sigmas: Vec<f64>,
    prediction_type: PredictionType,
    algorithm: Algorithm,
    solver_type: SolverType,
    solver_order: usize,
    lower_order_final: bool,
    euler_at_final: bool,
    final_sigma_zero: bool,
    /// The last `solver_order` converted model outputs (`x0` predictions), oldest first.
    model_outputs: Vec<Tensor<4>>,
    lower_order_nums: usize,
}

/// `(α_t, σ_t, λ_t)` of a sigma: `α = 1 / sqrt(σ² + 1)`, `σ_t = σ α`, `λ = log α − log σ_t`.
fn alpha_sigma_lambda(sigma: f64) -> (f64, f64, f64) {
    let alpha = 1.0 / (sigma * sigma + 1.0).sqrt();
    let sigma_t = sigma * alpha;
    (alpha, sigma_t, alpha.ln() - sigma_t.ln())
}

impl DpmSolverMultistepScheduler {
    pub fn new(config: &SchedulerConfig, num_inference_steps: usize) -> Result<Self, String> {
        check_steps(config, num_inference_steps)?;
        let algorithm = match config.algorithm_type.as_str() {
            "dpmsolver++" => Algorithm::DpmSolverPp,
            "sde-dpmsolver++" => Algorithm::SdeDpmSolverPp,
            other => return Err(format!("algorithm_type {other:?} is not supported")),
        };
        let solver_type = match config.solver_type.as_str() {
            "midpoint" => SolverType::Midpoint,
            "heun" => SolverType::Heun,
            other => return Err(format!("solver_type {other:?} is not supported")),
        };
        if !(1..=3).contains(&config.solver_order) {
            return Err(format!(
                "solver_order must be 1, 2 or 3, got {}",
                config.solver_order
            ));
        }
        if let Some(v) = &config.variance_type {
            return Err(format!("variance_type {v:?} is not supported"));
        }
        let final_sigma_zero = match config.final_sigmas_type.as_str() {
            "zero" => true,
            "sigma_min" => false,
            other => return Err(format!("final_sigmas_type {other:?} is not supported")),
        };
        let mut alphas_cumprod = alphas_cumprod(config)?;
        if config.rescale_betas_zero_snr {
            if let Some(last) = alphas_cumprod.last_mut() {
                *last = 2f64.powi(-24);
            }
        }
        let num_train = config.num_train_timesteps;
        let n = num_inference_steps;
        // `searchsorted(flip(lambda_t), lambda_min_clipped)`: the number of (increasing)
        // flipped lambdas below the threshold.
        let clipped_idx = alphas_cumprod
            .iter()
            .filter(|&&a| {
                let a = a as f32;
                let lambda = f64::from(a.sqrt().ln()) - f64::from((1.0 - a).sqrt().ln());
                lambda < config.lambda_min_clipped
            })
            .count();
        let last_timestep = num_train - clipped_idx;
        let mut timesteps: Vec<f64> = match config.spacing_or(TimestepSpacing::Linspace) {
            TimestepSpacing::Linspace => {
                let mut t: Vec<f64> = np_linspace(0.0, last_timestep as f64 - 1.0, n + 1)
                    .into_iter()
                    .map(f64::round_ties_even)
                    .collect();
                t.reverse();
                t.pop();
                t
            }
            TimestepSpacing::Leading => {
                let ratio = last_timestep / (n + 1);
                (1..=n)
                    .rev()
                    .map(|i| (i * ratio + config.steps_offset) as f64)
                    .collect()
            }
            TimestepSpacing::Trailing => {
                np_arange(last_timestep as f64, 0.0, -(num_train as f64 / n as f64))
                    .into_iter()
                    .map(|t| t.round_ties_even() - 1.0)
                    .collect()
            }
        };
        let train = train_sigmas(&alphas_cumprod);
        let mut sigmas = if config.use_karras_sigmas {
            let sigma_max = config.sigma_max.unwrap_or(train[train.len() - 1]);
            let sigma_min = config.sigma_min.unwrap_or(train[0]);
            let sigmas = karras_sigmas(sigma_max, sigma_min, n);
            let log_sigmas = log_sigmas(&train);
            timesteps = sigmas
                .iter()
                .map(|&s| {
                    let t = sigma_to_t(s, &log_sigmas);
                    if config.beta_schedule == BetaSchedule::SquaredcosCapV2 {
                        t
                    } else {
                        t.round_ties_even()
                    }
                })
                .collect();
            sigmas
        } else {
            interp_sigmas(&timesteps, &train)
        };
        // `.to(torch.int64)` truncates fractional (squaredcos Karras) timesteps.
        timesteps.iter_mut().for_each(|t| *t = t.trunc());
        sigmas.push(if final_sigma_zero { 0.0 } else { train[0] });
        let sigmas = sigmas.into_iter().map(|s| f64::from(s as f32)).collect();
        Ok(Self {
            timesteps,
            sigmas,
            prediction_type: config.prediction_type,
            algorithm,
            solver_type,
            solver_order: config.solver_order,
            lower_order_final: config.lower_order_final,
            euler_at_final: config.euler_at_final,
            final_sigma_zero,
            model_outputs: Vec::new(),
            lower_order_nums: 0,
        })
    }

    /// `convert_model_output`: the `x0` prediction at step `i`.
    fn convert_model_output(
        &self,
        model_output: Tensor<4>,
        i: usize,
        sample: Tensor<4>,
    ) -> Tensor<4> {
        let (alpha_t, sigma_t, _) = alpha_sigma_lambda(self.sigmas[i]);
        match self.prediction_type {
            PredictionType::Epsilon => (sample - model_output * sigma_t) / alpha_t,
            PredictionType::Sample => model_output,
            PredictionType::VPrediction => sample * alpha_t - model_output * sigma_t,
        }
    }

    /// `dpm_solver_first_order_update` (DDIM in λ).
    fn first_order_update(
        &self,
        i: usize,
        m0: Tensor<4>,
        sample: Tensor<4>,
        noise: Option<Tensor<4>>,
    ) -> Tensor<4> {
        let (alpha_t, sigma_t, lambda_t) = alpha_sigma_lambda(self.sigmas[i + 1]);
        let (_, sigma_s, lambda_s) = alpha_sigma_lambda(self.sigmas[i]);
        let h = lambda_t - lambda_s;
        match noise {
            None => sample * (sigma_t / sigma_s) - m0 * (alpha_t * ((-h).exp() - 1.0)),
            Some(noise) => {
                sample * (sigma_t / sigma_s * (-h).exp())
                    + m0 * (alpha_t * (1.0 - (-2.0 * h).exp()))
                    + noise * (sigma_t * (1.0 - (-2.0 * h).exp()).sqrt())
            }
        }
    }

    /// `multistep_dpm_solver_second_order_update`.
    fn second_order_update(
        &self,
        i: usize,
        sample: Tensor<4>,
        noise: Option<Tensor<4>>,
    ) -> Tensor<4> {
        let (alpha_t, sigma_t, lambda_t) = alpha_sigma_lambda(self.sigmas[i + 1]);
        let (_, sigma_s0, lambda_s0) = alpha_sigma_lambda(self.sigmas[i]);
        let (_, _, lambda_s1) = alpha_sigma_lambda(self.sigmas[i - 1]);
        let n = self.model_outputs.len();
        let (m0, m1) = (
            self.model_outputs[n - 1].clone(),
            self.model_outputs[n - 2].clone(),
        );
        let (h, h_0) = (lambda_t - lambda_s0, lambda_s0 - lambda_s1);
        let r0 = h_0 / h;
        let d0 = m0.clone();
        let d1 = (m0 - m1) * (1.0 / r0);
        match noise {
            None => {
                let e = (-h).exp() - 1.0;
                let base = sample * (sigma_t / sigma_s0) - d0 * (alpha_t * e);
                match self.solver_type {
                    SolverType::Midpoint => base - d1 * (0.5 * (alpha_t * e)),
                    SolverType::Heun => base + d1 * (alpha_t * (e / h + 1.0)),
                }
            }
            Some(noise) => {
                let e2 = 1.0 - (-2.0 * h).exp();
                let base = sample * (sigma_t / sigma_s0 * (-h).exp()) + d0 * (alpha_t * e2);
                let with_d1 = match self.solver_type {
                    SolverType::Midpoint => base + d1 * (0.5 * (alpha_t * e2)),
                    SolverType::Heun => base + d1 * (alpha_t * (e2 / (-2.0 * h) + 1.0)),
                };
                with_d1 + noise * (sigma_t * e2.sqrt())
            }
        }
    }

    /// `multistep_dpm_solver_third_order_update`.
    fn third_order_update(
        &self,
        i: usize,
        sample: Tensor<4>,
        noise: Option<Tensor<4>>,
    ) -> Tensor<4> {
        let (alpha_t, sigma_t, lambda_t) = alpha_sigma_lambda(self.sigmas[i + 1]);
        let (_, sigma_s0, lambda_s0) = alpha_sigma_lambda(self.sigmas[i]);
        let (_, _, lambda_s1) = alpha_sigma_lambda(self.sigmas[i - 1]);
        let (_, _, lambda_s2) = alpha_sigma_lambda(self.sigmas[i - 2]);
        let n = self.model_outputs.len();
        let m0 = self.model_outputs[n - 1].clone();
        let m1 = self.model_outputs[n - 2].clone();
        let m2 = self.model_outputs[n - 3].clone();
        let (h, h_0, h_1) = (
            lambda_t - lambda_s0,
            lambda_s0 - lambda_s1,
            lambda_s1 - lambda_s2,
        );
        let (r0, r1) = (h_0 / h, h_1 / h);
        let d0 = m0.clone();
        let d1_0 = (m0 - m1.clone()) * (1.0 / r0);
        let d1_1 = (m1 - m2) * (1.0 / r1);
        let d1 = d1_0.clone() + (d1_0.clone() - d1_1.clone()) * (r0 / (r0 + r1));
        let d2 = (d1_0 - d1_1) * (1.0 / (r0 + r1));
        match noise {
            None => {
                let e = (-h).exp() - 1.0;
                sample * (sigma_t / sigma_s0) - d0 * (alpha_t * e) + d1 * (alpha_t * (e / h + 1.0))
                    - d2 * (alpha_t * ((e + h) / (h * h) - 0.5))
            }
            Some(noise) => {
                let e2 = 1.0 - (-2.0 * h).exp();
                sample * (sigma_t / sigma_s0 * (-h).exp())
                    + d0 * (alpha_t * e2)
                    + d1 * (alpha_t * (e2 / (-2.0 * h) + 1.0))
                    + d2 * (alpha_t * ((e2 - 2.0 * h) / (2.0 * h).powi(2) - 0.5))
                    + noise * (sigma_t * e2.sqrt())
            }
        }
    }
}

impl Scheduler for DpmSolverMultistepScheduler {
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
        let i = step_index;
        let len = self.timesteps.len();
        let lower_order_final = i + 1 == len
            && (self.euler_at_final
                || (self.lower_order_final && len < 15)
                || self.final_sigma_zero);
        let lower_order_second = i + 2 == len && self.lower_order_final && len < 15;

        let x0 = self.convert_model_output(model_output, i, sample.clone());
        self.model_outputs.push(x0.clone());
        if self.model_outputs.len() > self.solver_order {
            self.model_outputs.remove(0);
        }
        let noise = match self.algorithm {
            Algorithm::SdeDpmSolverPp => Some(rng.randn_like(&x0)),
            Algorithm::DpmSolverPp => None,
        };
        let prev_sample =
            if self.solver_order == 1 || self.lower_order_nums < 1 || lower_order_final {
                self.first_order_update(i, x0, sample, noise)
            } else if self.solver_order == 2 || self.lower_order_nums < 2 || lower_order_second {
                self.second_order_update(i, sample, noise)
            } else {
                self.third_order_update(i, sample, noise)
            };
        if self.lower_order_nums < self.solver_order {
            self.lower_order_nums += 1;
        }
        prev_sample
    }
}
