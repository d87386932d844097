//! `PNDMScheduler`: pseudo numerical methods for diffusion models (arXiv 2202.09778).
//!
//! With `skip_prk_steps` (Stable Diffusion's config) only linear multistep (PLMS) steps run:
//! the first step is taken twice (Heun-like warm-up), hence `n + 1` timesteps. Without it, the
//! first 3 steps are Runge–Kutta (PRK, 4 model evaluations each: 12 timesteps) followed by PLMS.

use burn::tensor::Tensor;

use super::betas::{alphas_cumprod, np_arange, spaced_timesteps};
use super::ddim::check_timesteps;
use super::{PredictionType, Scheduler, SchedulerConfig, TimestepSpacing, check_steps};
use crate::rng::TorchRng;

#[derive(Debug, Clone)]
pub struct PndmScheduler {
    alphas_cumprod: Vec<f64>,
    final_alpha_cumprod: f64,
    /// PRK timesteps followed by PLMS timesteps.
    timesteps: Vec<f64>,
    num_prk_steps: usize,
    /// `num_train_timesteps // num_inference_steps`.
    step_ratio: i64,
    prediction_type: PredictionType,
    /// Number of `step` calls so far.
    counter: usize,
    /// Past model outputs (at most 4 used).
    ets: Vec<Tensor<4>>,
    cur_sample: Option<Tensor<4>>,
    /// PRK: running weighted sum of the 4 model outputs of the current step.
    cur_model_output: Option<Tensor<4>>,
}

impl PndmScheduler {
    pub fn new(config: &SchedulerConfig, num_inference_steps: usize) -> Result<Self, String> {
        check_steps(config, num_inference_steps)?;
        if config.prediction_type == PredictionType::Sample {
            return Err("PNDMScheduler supports prediction_type epsilon or v_prediction".into());
        }
        // PNDMScheduler has no `rescale_betas_zero_snr`.
        let alphas_cumprod = alphas_cumprod(&SchedulerConfig {
            rescale_betas_zero_snr: false,
            ..config.clone()
        })?;
        let final_alpha_cumprod = if config.set_alpha_to_one.unwrap_or(false) {
            1.0
        } else {
            alphas_cumprod[0]
        };
        let num_train = config.num_train_timesteps;
        let n = num_inference_steps;
        // `_timesteps`, ascending.
        let spacing = config.spacing_or(TimestepSpacing::Leading);
        let base: Vec<f64> = if spacing == TimestepSpacing::Trailing {
            let mut t: Vec<f64> = np_arange(num_train as f64, 0.0, -(num_train as f64 / n as f64))
                .into_iter()
                .map(|v| v.round_ties_even() - 1.0)
                .collect();
            t.reverse();
            t
        } else {
            let mut t = spaced_timesteps(spacing, num_train, n, config.steps_offset, true);
            t.reverse();
            t
        };
        let (prk, plms): (Vec<f64>, Vec<f64>) = if config.skip_prk_steps {
            // concatenate([_t[:-1], _t[-2:-1], _t[-1:]])[::-1]
            let len = base.len();
            let mut plms = base[..len - 1].to_vec();
            if len >= 2 {
                plms.push(base[len - 2]);
            }
            plms.push(base[len - 1]);
            plms.reverse();
            (Vec::new(), plms)
        } else {
            if base.len() < 4 {
                return Err("PNDM with PRK steps needs at least 4 inference steps".into());
            }
            let half = (num_train / n / 2) as f64;
            // _t[-4:].repeat(2) + tile([0, half], 4), then [:-1].repeat(2)[1:-1][::-1]
            let pairs: Vec<f64> = base[base.len() - 4..]
                .iter()
                .flat_map(|&t| [t, t + half])
                .collect();
            let repeated: Vec<f64> = pairs[..pairs.len() - 1]
                .iter()
                .flat_map(|&t| [t, t])
                .collect();
            let mut prk = repeated[1..repeated.len() - 1].to_vec();
            prk.reverse();
            let mut plms = base[..base.len() - 3].to_vec();
            plms.reverse();
            (prk, plms)
        };
        let num_prk_steps = prk.len();
        let timesteps: Vec<f64> = prk.into_iter().chain(plms).collect();
        check_timesteps(&timesteps, alphas_cumprod.len())?;
        Ok(Self {
            alphas_cumprod,
            final_alpha_cumprod,
            timesteps,
            num_prk_steps,
            step_ratio: (num_train / n) as i64,
            prediction_type: config.prediction_type,
            counter: 0,
            ets: Vec::new(),
            cur_sample: None,
            cur_model_output: None,
        })
    }

    fn alpha_prod(&self, timestep: i64) -> f64 {
        if timestep >= 0 {
            self.alphas_cumprod[timestep as usize]
        } else {
            self.final_alpha_cumprod
        }
    }

    /// `_get_prev_sample`: formula (9) of the PNDM paper, `x_t → x_(t−δ)`.
    fn prev_sample(
        &self,
        sample: Tensor<4>,
        timestep: i64,
        prev_timestep: i64,
        model_output: Tensor<4>,
    ) -> Tensor<4> {
        let alpha_prod_t = self.alpha_prod(timestep);
        let alpha_prod_t_prev = self.alpha_prod(prev_timestep);
        let beta_prod_t = 1.0 - alpha_prod_t;
        let beta_prod_t_prev = 1.0 - alpha_prod_t_prev;
        let model_output = match self.prediction_type {
            PredictionType::VPrediction => {
                model_output * alpha_prod_t.sqrt() + sample.clone() * beta_prod_t.sqrt()
            }
            _ => model_output,
        };
        let sample_coeff = (alpha_prod_t_prev / alpha_prod_t).sqrt();
        let denom = alpha_prod_t * beta_prod_t_prev.sqrt()
            + (alpha_prod_t * beta_prod_t * alpha_prod_t_prev).sqrt();
        sample * sample_coeff - model_output * ((alpha_prod_t_prev - alpha_prod_t) / denom)
    }

    /// `step_prk`: one of the 4 Runge–Kutta evaluations of a PRK step.
    fn step_prk(&mut self, model_output: Tensor<4>, timestep: i64, sample: Tensor<4>) -> Tensor<4> {
        let diff_to_prev = if self.counter % 2 == 1 {
            0
        } else {
            self.step_ratio / 2
        };
        let prev_timestep = timestep - diff_to_prev;
        let timestep = self.timesteps[self.counter / 4 * 4] as i64;
        let add = |acc: Option<Tensor<4>>, x: Tensor<4>| match acc {
            Some(acc) => acc + x,
            None => x,
        };
        let model_output = match self.counter % 4 {
            0 => {
                self.cur_model_output = Some(add(
                    self.cur_model_output.take(),
                    model_output.clone() * (1.0 / 6.0),
                ));
                self.ets.push(model_output.clone());
                self.cur_sample = Some(sample.clone());
                model_output
            }
            1 | 2 => {
                self.cur_model_output = Some(add(
                    self.cur_model_output.take(),
                    model_output.clone() * (1.0 / 3.0),
                ));
                model_output
            }
            _ => add(self.cur_model_output.take(), model_output * (1.0 / 6.0)),
        };
        let cur_sample = self.cur_sample.clone().unwrap_or(sample);
        let prev = self.prev_sample(cur_sample, timestep, prev_timestep, model_output);
        self.counter += 1;
        prev
    }

    /// `step_plms`: linear multistep with up to 4 past model outputs.
    fn step_plms(
        &mut self,
        model_output: Tensor<4>,
        mut timestep: i64,
        mut sample: Tensor<4>,
    ) -> Tensor<4> {
        let mut prev_timestep = timestep - self.step_ratio;
        if self.counter != 1 {
            let keep = self.ets.len().saturating_sub(3);
            self.ets.drain(..keep);
            self.ets.push(model_output.clone());
        } else {
            prev_timestep = timestep;
            timestep += self.step_ratio;
        }
        let e = &self.ets;
        let n = e.len();
        let model_output = if n == 1 && self.counter == 0 {
            self.cur_sample = Some(sample.clone());
            model_output
        } else if n == 1 && self.counter == 1 {
            if let Some(cur) = self.cur_sample.take() {
                sample = cur;
            }
            (model_output + e[0].clone()) / 2.0
        } else if n == 2 {
            (e[1].clone() * 3.0 - e[0].clone()) / 2.0
        } else if n == 3 {
            (e[2].clone() * 23.0 - e[1].clone() * 16.0 + e[0].clone() * 5.0) / 12.0
        } else {
            (e[n - 1].clone() * 55.0 - e[n - 2].clone() * 59.0 + e[n - 3].clone() * 37.0
                - e[n - 4].clone() * 9.0)
                * (1.0 / 24.0)
        };
        let prev = self.prev_sample(sample, timestep, prev_timestep, model_output);
        self.counter += 1;
        prev
    }
}

impl Scheduler for PndmScheduler {
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
        _rng: &mut TorchRng,
    ) -> Tensor<4> {
        let timestep = self.timesteps[step_index] as i64;
        if self.counter < self.num_prk_steps {
            self.step_prk(model_output, timestep, sample)
        } else {
            self.step_plms(model_output, timestep, sample)
        }
    }
}
