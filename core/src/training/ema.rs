//! [`Ema`]: diffusers' `EMAModel`, an exponential moving average of the trained weights.

use burn::tensor::Tensor;

/// `EMAModel` with its defaults: `decay` 0.9999, no warm-up, `update_after_step` 0,
/// `min_decay` 0; the averages are kept flattened by parameter index.
#[derive(Debug, Clone)]
pub struct Ema {
    pub decay: f64,
    /// `optimization_step`: EMA updates made.
    pub step: usize,
    pub(crate) shadow: Vec<Tensor<1>>,
}

impl Ema {
    /// Averages starting from `params` (flattened, by parameter index).
    pub fn new(decay: f64, params: Vec<Tensor<1>>) -> Self {
        Self {
            decay,
            step: 0,
            shadow: params,
        }
    }

    /// `EMAModel.get_decay` for update number `step` (1-based).
    pub fn decay_at(&self, step: usize) -> f64 {
        let s = step.saturating_sub(1);
        if s == 0 {
            return 0.0;
        }
        ((1.0 + s as f64) / (10.0 + s as f64))
            .min(self.decay)
            .max(0.0)
    }

    /// One `EMAModel.step`: `shadow −= (1 − decay)·(shadow − param)` for every parameter.
    ///
    /// # Shapes
    /// `params[i]`: `[n_i]`, as the shadows
    pub fn update(&mut self, params: &[Tensor<1>]) {
        self.step += 1;
        let one_minus = (1.0 - self.decay_at(self.step)) as f32;
        for (s, p) in self.shadow.iter_mut().zip(params) {
            *s = s.clone() - (s.clone() - p.clone()).mul_scalar(one_minus);
        }
    }

    /// The averaged parameters (flattened, by parameter index).
    pub fn shadow(&self) -> &[Tensor<1>] {
        &self.shadow
    }
}
