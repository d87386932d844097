//! `LMSDiscreteScheduler`: linear multistep (Adams–Bashforth in sigma) of order up to 4.

use burn::tensor::Tensor;

use super::betas::{
    alphas_cumprod, interp_sigmas, karras_schedule, spaced_timesteps, train_sigmas,
};
use super::{
    PredictionType, Scheduler, SchedulerConfig, TimestepSpacing, check_steps, scale_by_sigma,
    sigma_pred_original_sample,
};
use crate::rng::TorchRng;

/// diffusers' default `order` argument of `LMSDiscreteScheduler.step`.
const ORDER: usize = 4;

#[derive(Debug, Clone)]
pub struct LmsDiscreteScheduler {
    timesteps: Vec<f64>,
    /// `float32` sigmas, `n + 1` entries ending with 0.
    sigmas: Vec<f64>,
    init_noise_sigma: f64,
    prediction_type: PredictionType,
    /// The last (at most [`ORDER`]) derivatives `(x - x0) / sigma`, oldest first.
    derivatives: Vec<Tensor<4>>,
}

impl LmsDiscreteScheduler {
    pub fn new(config: &SchedulerConfig, num_inference_steps: usize) -> Result<Self, String> {
        check_steps(config, num_inference_steps)?;
        // LMSDiscreteScheduler has no `rescale_betas_zero_snr`.
        let alphas_cumprod = alphas_cumprod(&SchedulerConfig {
            rescale_betas_zero_snr: false,
            ..config.clone()
        })?;
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
            // LMS's `_convert_to_karras` ignores `sigma_min`/`sigma_max`.
            (sigmas, timesteps) = karras_schedule(&sigmas, &train, None, None);
        }
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
            derivatives: Vec::new(),
        })
    }

    /// `get_lms_coefficient(order, t, current_order)`: the integral over `[σ_t, σ_(t+1)]` of the
    /// Lagrange basis polynomial through `σ_t, σ_(t−1), …` that is 1 at `σ_(t−current_order)`.
    fn lms_coefficient(&self, order: usize, t: usize, current_order: usize) -> f64 {
        // diffusers evaluates the polynomial with float32 torch scalars and integrates it with
        // scipy.integrate.quad; the same float32 arithmetic is reproduced here.
        let sigma = |i: usize| self.sigmas[i] as f32;
        let basis = |tau: f64| {
            let tau = tau as f32;
            let mut prod = 1.0f32;
            for k in (0..order).filter(|&k| k != current_order) {
                prod *= (tau - sigma(t - k)) / (sigma(t - current_order) - sigma(t - k));
            }
            f64::from(prod)
        };
        gauss_kronrod_21(basis, self.sigmas[t], self.sigmas[t + 1])
    }
}

/// QUADPACK's 21-point Gauss–Kronrod rule (`dqk21`), with its evaluation and summation order.
///
/// `scipy.integrate.quad` (QAGS) returns this first estimate when its error estimate is below
/// `epsrel * |result|`; for the LMS basis polynomials (degree ≤ 3, integrated exactly by the
/// rule) the estimate is at rounding level, so quad never subdivides.
#[allow(clippy::excessive_precision)]
fn gauss_kronrod_21(f: impl Fn(f64) -> f64, a: f64, b: f64) -> f64 {
    // Abscissae xgk(1..=10) (xgk(11) = 0) and weights wgk(1..=11) of QUADPACK.
    const XGK: [f64; 10] = [
        0.995_657_163_025_808_080_735_527_280_689_003,
        0.973_906_528_517_171_720_077_964_012_084_452,
        0.930_157_491_355_708_226_001_207_180_059_508,
        0.865_063_366_688_984_510_732_096_688_423_493,
        0.780_817_726_586_416_897_063_717_578_345_042,
        0.679_409_568_299_024_406_234_327_365_114_874,
        0.562_757_134_668_604_683_339_000_099_272_694,
        0.433_395_394_129_247_190_799_265_943_165_784,
        0.294_392_862_701_460_198_131_126_603_103_866,
        0.148_874_338_981_631_210_884_826_001_129_720,
    ];
    const WGK: [f64; 11] = [
        0.011_694_638_867_371_874_278_064_396_062_192,
        0.032_558_162_307_964_727_478_818_972_459_390,
        0.054_755_896_574_351_996_031_381_300_244_580,
        0.075_039_674_810_919_952_767_043_140_916_190,
        0.093_125_454_583_697_605_535_065_465_083_366,
        0.109_387_158_802_297_641_899_210_590_325_805,
        0.123_491_976_262_065_851_077_958_109_831_074,
        0.134_709_217_311_473_325_928_054_001_771_707,
        0.142_775_938_577_060_080_797_094_273_138_717,
        0.147_739_104_901_338_491_374_841_515_972_068,
        0.149_445_554_002_916_905_664_936_468_389_821,
    ];
    let centr = 0.5 * (a + b);
    let hlgth = 0.5 * (b - a);
    let mut resk = WGK[10] * f(centr);
    // Gauss nodes (even QUADPACK indices) first, then the Kronrod extension nodes.
    for j in (1..10).step_by(2).chain((0..10).step_by(2)) {
        let absc = hlgth * XGK[j];
        resk += WGK[j] * (f(centr - absc) + f(centr + absc));
    }
    resk * hlgth
}

impl Scheduler for LmsDiscreteScheduler {
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
        self.derivatives
            .push((sample.clone() - pred_original_sample) / sigma);
        if self.derivatives.len() > ORDER {
            self.derivatives.remove(0);
        }
        let order = (step_index + 1).min(ORDER);
        // sum(coeff * derivative for coeff, derivative in zip(coeffs, reversed(derivatives)))
        let update = self
            .derivatives
            .iter()
            .rev()
            .take(order)
            .enumerate()
            .map(|(k, d)| d.clone() * self.lms_coefficient(order, step_index, k))
            .reduce(|acc, x| acc + x);
        match update {
            Some(update) => sample + update,
            None => sample,
        }
    }
}
