//! [`AdamW`]: `torch.optim.AdamW` over a model's named parameters, with its state saved
//! under the parameters' keys so that a run resumes into a freshly loaded model.

use burn::tensor::{Device, Tensor, TensorData};

use crate::error::{Error, Result};

/// `torch.optim.AdamW`'s hyper-parameters (the learning rate comes from the schedule).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    /// diffusers' training scripts: betas (0.9, 0.999), eps 1e-8, weight decay 1e-2.
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 1e-2,
        }
    }
}

/// The first and second moments of one parameter, flattened: `[n]`.
#[derive(Debug, Clone)]
pub struct Moments {
    pub exp_avg: Tensor<1>,
    pub exp_avg_sq: Tensor<1>,
}

/// AdamW's state: the step count and each parameter's moments (by parameter index).
#[derive(Debug, Clone)]
pub struct AdamW {
    pub config: AdamWConfig,
    /// Optimiser steps taken.
    pub step: usize,
    moments: Vec<Option<Moments>>,
}

impl AdamW {
    /// A fresh optimiser for `n` parameters.
    pub fn new(config: AdamWConfig, n: usize) -> Self {
        Self {
            config,
            step: 0,
            moments: vec![None; n],
        }
    }

    /// Starts an optimiser step (torch increments each parameter's `step` first).
    pub fn begin_step(&mut self) {
        self.step += 1;
    }

    /// Parameter `index` after one update with `grad` at learning rate `lr`, with the
    /// arithmetic of torch's single-tensor AdamW. Tensors without autodiff.
    ///
    /// # Shapes
    /// `param`, `grad`: `[n]` → `[n]`
    pub fn update(
        &mut self,
        index: usize,
        param: Tensor<1>,
        grad: Tensor<1>,
        lr: f64,
    ) -> Tensor<1> {
        let c = self.config;
        let param = param.mul_scalar((1.0 - lr * c.weight_decay) as f32);
        let Moments {
            exp_avg,
            exp_avg_sq,
        } = self.moments[index].take().unwrap_or_else(|| Moments {
            exp_avg: grad.zeros_like(),
            exp_avg_sq: grad.zeros_like(),
        });
        // exp_avg.lerp_(grad, 1 - beta1): below weight 0.5 torch computes `a + w·(b − a)`.
        let exp_avg = exp_avg.clone() + (grad.clone() - exp_avg).mul_scalar((1.0 - c.beta1) as f32);
        let exp_avg_sq = exp_avg_sq.mul_scalar(c.beta2 as f32)
            + (grad.clone() * grad).mul_scalar((1.0 - c.beta2) as f32);
        let t = self.step as i32;
        let bias_correction1 = 1.0 - c.beta1.powi(t);
        let bias_correction2_sqrt = (1.0 - c.beta2.powi(t)).sqrt();
        let step_size = lr / bias_correction1;
        let denom = exp_avg_sq
            .clone()
            .sqrt()
            .div_scalar(bias_correction2_sqrt as f32)
            .add_scalar(c.eps as f32);
        let param = param - (exp_avg.clone() / denom).mul_scalar(step_size as f32);
        self.moments[index] = Some(Moments {
            exp_avg,
            exp_avg_sq,
        });
        param
    }

    /// The state as safetensors tensors `exp_avg.{key}`, `exp_avg_sq.{key}` (f32, flat) for
    /// the parameters' `keys`, and the step count for the file's metadata.
    pub fn to_named(&self, keys: &[String]) -> Vec<(String, Vec<f32>)> {
        let host = |t: &Tensor<1>| {
            t.clone()
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .unwrap_or_default()
        };
        let mut out = Vec::new();
        for (key, m) in keys.iter().zip(&self.moments) {
            if let Some(m) = m {
                out.push((format!("exp_avg.{key}"), host(&m.exp_avg)));
                out.push((format!("exp_avg_sq.{key}"), host(&m.exp_avg_sq)));
            }
        }
        out
    }

    /// The state [`to_named`](Self::to_named) saved, for parameters `keys` of sizes `sizes`.
    /// `read(name)` returns a saved tensor; `file` names the file for errors.
    pub fn from_named(
        config: AdamWConfig,
        step: usize,
        keys: &[String],
        sizes: &[usize],
        mut read: impl FnMut(&str) -> Result<Option<Vec<f32>>>,
        device: &Device,
        file: &str,
    ) -> Result<Self> {
        let mut moments = Vec::with_capacity(keys.len());
        for (key, &n) in keys.iter().zip(sizes) {
            let mut get = |name: String| -> Result<Option<Tensor<1>>> {
                match read(&name)? {
                    None => Ok(None),
                    Some(v) if v.len() == n => {
                        Ok(Some(Tensor::from_data(TensorData::new(v, [n]), device)))
                    }
                    Some(v) => Err(Error::bad_file(
                        file,
                        format!("{name} has {} values, the parameter {n}", v.len()),
                    )),
                }
            };
            let m = match (
                get(format!("exp_avg.{key}"))?,
                get(format!("exp_avg_sq.{key}"))?,
            ) {
                (Some(exp_avg), Some(exp_avg_sq)) => Some(Moments {
                    exp_avg,
                    exp_avg_sq,
                }),
                (None, None) => None,
                _ => {
                    return Err(Error::bad_file(
                        file,
                        format!("the moments of {key} are incomplete"),
                    ));
                }
            };
            moments.push(m);
        }
        Ok(Self {
            config,
            step,
            moments,
        })
    }
}
