//! diffusers' noise schedulers for Stable Diffusion inference.
//!
//! Each scheduler reproduces its diffusers class (0.42): `set_timesteps(n)` happens in the
//! constructor, [`Scheduler::timesteps`] is `scheduler.timesteps`, and [`Scheduler::step`] is
//! `scheduler.step(...)` at `timesteps()[step_index]`. Schedule values (`alphas_cumprod`,
//! sigmas) are the `float32` numbers diffusers computes; the per-step coefficients derived
//! from them are evaluated in `f64` and applied to tensors in the tensor's dtype.

pub(crate) mod betas;
mod ddim;
mod dpm_multistep;
mod euler;
mod euler_ancestral;
mod heun;
mod lms;
mod pndm;

use burn::tensor::Tensor;
use serde::Deserialize;

use crate::rng::TorchRng;

pub use betas::alphas_cumprod;
pub use ddim::DdimScheduler;
pub use dpm_multistep::DpmSolverMultistepScheduler;
pub use euler::EulerDiscreteScheduler;
pub use euler_ancestral::EulerAncestralDiscreteScheduler;
pub use heun::HeunDiscreteScheduler;
pub use lms::LmsDiscreteScheduler;
pub use pndm::PndmScheduler;

/// `beta_schedule`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum BetaSchedule {
    #[serde(rename = "linear")]
    Linear,
    #[serde(rename = "scaled_linear")]
    ScaledLinear,
    #[serde(rename = "squaredcos_cap_v2")]
    SquaredcosCapV2,
}

/// `prediction_type`: what the UNet predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum PredictionType {
    #[serde(rename = "epsilon")]
    Epsilon,
    #[serde(rename = "v_prediction")]
    VPrediction,
    #[serde(rename = "sample")]
    Sample,
}

/// `timestep_spacing` (arXiv 2305.08891, Table 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum TimestepSpacing {
    #[serde(rename = "linspace")]
    Linspace,
    #[serde(rename = "leading")]
    Leading,
    #[serde(rename = "trailing")]
    Trailing,
}

/// Parsed `scheduler_config.json` (every field optional with diffusers' default; unknown keys
/// ignored; `_class_name` kept). Options whose default differs between diffusers classes are
/// `Option`s resolved by each scheduler.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct SchedulerConfig {
    #[serde(rename = "_class_name")]
    pub class_name: Option<String>,
    pub num_train_timesteps: usize,
    /// `None`: the class default (0.00085 for Heun, 0.0001 otherwise).
    pub beta_start: Option<f64>,
    /// `None`: the class default (0.012 for Heun, 0.02 otherwise).
    pub beta_end: Option<f64>,
    pub beta_schedule: BetaSchedule,
    pub trained_betas: Option<Vec<f64>>,
    pub prediction_type: PredictionType,
    /// `None`: the class default (`leading` for DDIM and PNDM, `linspace` otherwise).
    pub timestep_spacing: Option<TimestepSpacing>,
    pub steps_offset: usize,
    /// DDIM, Euler, Euler ancestral, DPM-Solver++ (the other classes ignore it).
    pub rescale_betas_zero_snr: bool,
    /// `None`: the class default (`true` for DDIM, `false` for PNDM).
    pub set_alpha_to_one: Option<bool>,
    /// DDIM and Heun; `None`: the class default (`true` for DDIM, `false` for Heun).
    pub clip_sample: Option<bool>,
    pub clip_sample_range: f64,
    /// Dynamic thresholding (DDIM, DPM-Solver): not supported, must be `false`.
    pub thresholding: bool,
    /// PNDM: `true` runs PLMS only (Stable Diffusion), `false` starts with Runge–Kutta steps.
    pub skip_prk_steps: bool,
    // DPMSolverMultistepScheduler.
    pub solver_order: usize,
    pub algorithm_type: String,
    pub solver_type: String,
    pub lower_order_final: bool,
    pub euler_at_final: bool,
    pub lambda_min_clipped: f64,
    pub variance_type: Option<String>,
    // Sigma schedule options. `sigma_min`/`sigma_max` bound the Karras sigmas of Euler, Heun
    // and DPM-Solver++ (diffusers reads them from any config that has them), not LMS's.
    pub final_sigmas_type: String,
    pub use_karras_sigmas: bool,
    pub use_exponential_sigmas: bool,
    pub use_beta_sigmas: bool,
    pub use_lu_lambdas: bool,
    pub use_flow_sigmas: bool,
    pub use_dynamic_shifting: bool,
    pub sigma_min: Option<f64>,
    pub sigma_max: Option<f64>,
    // EulerDiscreteScheduler.
    pub interpolation_type: String,
    pub timestep_type: String,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            class_name: None,
            num_train_timesteps: 1000,
            beta_start: None,
            beta_end: None,
            beta_schedule: BetaSchedule::Linear,
            trained_betas: None,
            prediction_type: PredictionType::Epsilon,
            timestep_spacing: None,
            steps_offset: 0,
            rescale_betas_zero_snr: false,
            set_alpha_to_one: None,
            clip_sample: None,
            clip_sample_range: 1.0,
            thresholding: false,
            skip_prk_steps: false,
            solver_order: 2,
            algorithm_type: "dpmsolver++".into(),
            solver_type: "midpoint".into(),
            lower_order_final: true,
            euler_at_final: false,
            lambda_min_clipped: f64::NEG_INFINITY,
            variance_type: None,
            final_sigmas_type: "zero".into(),
            use_karras_sigmas: false,
            use_exponential_sigmas: false,
            use_beta_sigmas: false,
            use_lu_lambdas: false,
            use_flow_sigmas: false,
            use_dynamic_shifting: false,
            sigma_min: None,
            sigma_max: None,
            interpolation_type: "linear".into(),
            timestep_type: "discrete".into(),
        }
    }
}

impl SchedulerConfig {
    /// Parses a diffusers `scheduler_config.json`. Like diffusers' `from_config`, `null` values
    /// and the keys listed in `_use_default_values` fall back to the defaults; Python's
    /// `-Infinity` (written for `lambda_min_clipped`) is accepted.
    pub fn from_json(bytes: &[u8]) -> Result<Self, String> {
        let text = std::str::from_utf8(bytes).map_err(|e| format!("scheduler config: {e}"))?;
        let text = replace_neg_infinity(text);
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("scheduler config: {e}"))?;
        let serde_json::Value::Object(mut map) = value else {
            return Err("scheduler config: expected a JSON object".into());
        };
        if let Some(serde_json::Value::Array(keys)) = map.remove("_use_default_values") {
            for key in keys.iter().filter_map(|k| k.as_str()) {
                map.remove(key);
            }
        }
        map.retain(|_, v| !v.is_null());
        serde_json::from_value(serde_json::Value::Object(map))
            .map_err(|e| format!("scheduler config: {e}"))
    }

    fn spacing_or(&self, default: TimestepSpacing) -> TimestepSpacing {
        self.timestep_spacing.unwrap_or(default)
    }

    /// Options of the diffusers classes that are not implemented here.
    fn check_supported(&self) -> Result<(), String> {
        let unsupported = [
            ("thresholding", self.thresholding),
            ("use_exponential_sigmas", self.use_exponential_sigmas),
            ("use_beta_sigmas", self.use_beta_sigmas),
            ("use_lu_lambdas", self.use_lu_lambdas),
            ("use_flow_sigmas", self.use_flow_sigmas),
            ("use_dynamic_shifting", self.use_dynamic_shifting),
        ];
        match unsupported.iter().find(|(_, set)| *set) {
            Some((name, _)) => Err(format!("scheduler option {name}=true is not supported")),
            None => Ok(()),
        }
    }
}

/// Replaces the bare token `-Infinity` (outside strings) by `null`.
fn replace_neg_infinity(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains("-Infinity") {
        return text.into();
    }
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if !in_string && rest.starts_with("-Infinity") {
            out.push_str("null");
            rest = &rest["-Infinity".len()..];
            continue;
        }
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out.into()
}

/// The schedulers this crate implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchedulerKind {
    Ddim,
    Pndm,
    Euler,
    EulerAncestral,
    DpmPp2m,
    Lms,
    Heun,
}

impl SchedulerKind {
    pub const ALL: [SchedulerKind; 7] = [
        SchedulerKind::Ddim,
        SchedulerKind::Pndm,
        SchedulerKind::Euler,
        SchedulerKind::EulerAncestral,
        SchedulerKind::DpmPp2m,
        SchedulerKind::Lms,
        SchedulerKind::Heun,
    ];

    /// Command-line name: `ddim pndm euler euler-a dpmpp-2m lms heun`.
    pub fn cli_name(&self) -> &'static str {
        match self {
            SchedulerKind::Ddim => "ddim",
            SchedulerKind::Pndm => "pndm",
            SchedulerKind::Euler => "euler",
            SchedulerKind::EulerAncestral => "euler-a",
            SchedulerKind::DpmPp2m => "dpmpp-2m",
            SchedulerKind::Lms => "lms",
            SchedulerKind::Heun => "heun",
        }
    }

    pub fn from_cli_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.cli_name() == s)
    }

    /// diffusers class name, e.g. `"PNDMScheduler"`.
    pub fn class_name(&self) -> &'static str {
        match self {
            SchedulerKind::Ddim => "DDIMScheduler",
            SchedulerKind::Pndm => "PNDMScheduler",
            SchedulerKind::Euler => "EulerDiscreteScheduler",
            SchedulerKind::EulerAncestral => "EulerAncestralDiscreteScheduler",
            SchedulerKind::DpmPp2m => "DPMSolverMultistepScheduler",
            SchedulerKind::Lms => "LMSDiscreteScheduler",
            SchedulerKind::Heun => "HeunDiscreteScheduler",
        }
    }

    pub fn from_class_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.class_name() == s)
    }

    /// Whether the diffusers class has `use_karras_sigmas` (DDIM's, PNDM's and Euler
    /// ancestral's ignore the key).
    pub fn has_karras_sigmas(&self) -> bool {
        matches!(
            self,
            SchedulerKind::Euler
                | SchedulerKind::DpmPp2m
                | SchedulerKind::Lms
                | SchedulerKind::Heun
        )
    }
}

/// Parses a command-line name; the error lists the names.
impl std::str::FromStr for SchedulerKind {
    type Err = crate::Error;

    fn from_str(s: &str) -> crate::Result<Self> {
        Self::from_cli_name(s).ok_or_else(|| {
            let names: Vec<_> = Self::ALL.iter().map(|k| k.cli_name()).collect();
            crate::Error::Invalid(format!(
                "unknown scheduler \"{s}\" (one of: {})",
                names.join(", ")
            ))
        })
    }
}

/// A diffusers scheduler after `set_timesteps(num_inference_steps)`.
pub trait Scheduler: Send {
    /// diffusers' `scheduler.timesteps` after `set_timesteps(n)` (PLMS: n+1 entries, Heun:
    /// 2n−1), one model evaluation each.
    fn timesteps(&self) -> &[f64];
    /// Factor applied to the initial Gaussian latents.
    fn init_noise_sigma(&self) -> f64;
    /// The UNet input for step `step_index` (`sample / sqrt(sigma² + 1)` for sigma schedulers).
    fn scale_model_input(&self, sample: Tensor<4>, step_index: usize) -> Tensor<4>;
    /// One denoising step for `timesteps()[step_index]`; noise (Euler ancestral, DDIM eta>0) comes from `rng`.
    fn step(
        &mut self,
        model_output: Tensor<4>,
        step_index: usize,
        sample: Tensor<4>,
        rng: &mut TorchRng,
    ) -> Tensor<4>;
}

/// Builds `kind` from `config` and calls `set_timesteps(num_inference_steps)`.
pub fn build(
    kind: SchedulerKind,
    config: &SchedulerConfig,
    num_inference_steps: usize,
) -> Result<Box<dyn Scheduler>, String> {
    Ok(match kind {
        SchedulerKind::Ddim => Box::new(DdimScheduler::new(config, num_inference_steps)?),
        SchedulerKind::Pndm => Box::new(PndmScheduler::new(config, num_inference_steps)?),
        SchedulerKind::Euler => Box::new(EulerDiscreteScheduler::new(config, num_inference_steps)?),
        SchedulerKind::EulerAncestral => Box::new(EulerAncestralDiscreteScheduler::new(
            config,
            num_inference_steps,
        )?),
        SchedulerKind::DpmPp2m => Box::new(DpmSolverMultistepScheduler::new(
            config,
            num_inference_steps,
        )?),
        SchedulerKind::Lms => Box::new(LmsDiscreteScheduler::new(config, num_inference_steps)?),
        SchedulerKind::Heun => Box::new(HeunDiscreteScheduler::new(config, num_inference_steps)?),
    })
}

/// What a caller sets over the model's scheduler config.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BuildOptions {
    /// Karras sigmas whatever the config says (diffusers'
    /// `from_config(config, use_karras_sigmas=True)`); an error for kinds without them
    /// ([`SchedulerKind::has_karras_sigmas`]), where diffusers would ignore it.
    pub karras_sigmas: bool,
}

/// [`build`] with `options` over `config`.
pub fn build_with(
    kind: SchedulerKind,
    config: &SchedulerConfig,
    num_inference_steps: usize,
    options: BuildOptions,
) -> Result<Box<dyn Scheduler>, String> {
    if !options.karras_sigmas {
        return build(kind, config, num_inference_steps);
    }
    if !kind.has_karras_sigmas() {
        return Err(format!(
            "no Karras sigmas in {} (diffusers ignores use_karras_sigmas there)",
            kind.class_name()
        ));
    }
    let config = SchedulerConfig {
        use_karras_sigmas: true,
        ..config.clone()
    };
    build(kind, &config, num_inference_steps)
}

/// Common validation of `num_inference_steps` and unsupported options.
fn check_steps(config: &SchedulerConfig, num_inference_steps: usize) -> Result<(), String> {
    config.check_supported()?;
    if num_inference_steps == 0 || num_inference_steps > config.num_train_timesteps {
        return Err(format!(
            "num_inference_steps must be in 1..={}, got {num_inference_steps}",
            config.num_train_timesteps
        ));
    }
    Ok(())
}

/// The `x0` prediction of sigma-parameterised schedulers (Euler, LMS, Heun) from the UNet output:
/// epsilon `x - σ ε`, v-prediction `v · (-σ / sqrt(σ² + 1)) + x / (σ² + 1)`, sample `x0`.
fn sigma_pred_original_sample(
    prediction_type: PredictionType,
    model_output: Tensor<4>,
    sample: Tensor<4>,
    sigma: f64,
) -> Tensor<4> {
    match prediction_type {
        PredictionType::Epsilon => sample - model_output * sigma,
        PredictionType::VPrediction => {
            model_output * (-sigma / (sigma * sigma + 1.0).sqrt()) + sample / (sigma * sigma + 1.0)
        }
        PredictionType::Sample => model_output,
    }
}

/// `sample / sqrt(sigma² + 1)`.
fn scale_by_sigma(sample: Tensor<4>, sigma: f64) -> Tensor<4> {
    sample / (sigma * sigma + 1.0).sqrt()
}

#[cfg(test)]
mod tests;
