//! Scheduler tests against diffusers: timesteps of the pipeline fixtures
//! (`tests/fixtures/expected/*.safetensors`) and step math of `core/tests/data/schedulers_ref.json`
//! (written by `tests/fixtures/schedulers_ref.py`).

use burn::tensor::{Device, Tensor, TensorData};
use serde::Deserialize;

use super::*;

const SHAPE: [usize; 4] = [1, 2, 3, 3];

/// Relative tolerance of one step against diffusers. Coefficients here are computed in `f64`
/// from diffusers' `float32` sigmas; diffusers evaluates them in `float32`, which costs up to
/// ~1e-5 (relative) in third-order DPM-Solver++ steps, ~1e-6 elsewhere.
const TOLERANCE: f32 = 2e-5;

/// Karras timesteps (`_sigma_to_t` of the Karras sigmas) against diffusers'. They interpolate
/// in `np.log` of the float32 training sigmas, which numpy's SIMD float32 `log` computes up to
/// 2 ulps off the correctly rounded values used here; the sigmas themselves match. Other
/// timesteps are exact.
const KARRAS_TIMESTEP_TOLERANCE: f64 = 2e-4;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../tests/fixtures/expected/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e} (see tests/fixtures/README.md)"))
}

fn tensor(values: &[f32], device: &Device) -> Tensor<4> {
    Tensor::from_data(TensorData::new(values.to_vec(), SHAPE), device)
}

fn values(t: Tensor<4>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().expect("f32 tensor")
}

/// Max of `|got - want| / max(1, |want|)`.
fn max_rel_err(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs() / w.abs().max(1.0))
        .fold(0.0, f32::max)
}

#[test]
fn pipeline_fixture_timesteps() {
    for file in ["sd15.safetensors", "sd2v.safetensors"] {
        let bytes = fixture(file);
        let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).expect("header");
        let info = header
            .metadata()
            .as_ref()
            .and_then(|m| m.get("fixture_info"))
            .expect("fixture_info metadata");
        let info: serde_json::Value = serde_json::from_str(info).expect("fixture_info JSON");
        let info = info.as_object().expect("object");
        let mut checked = 0;
        for (key, config) in info.iter().filter(|(k, _)| k.starts_with("sched.")) {
            let name = &key["sched.".len()..];
            let config = config.as_str().expect("config string");
            let config = SchedulerConfig::from_json(config.as_bytes()).expect("config");
            let class = config.class_name.as_deref().expect("_class_name");
            let kind = SchedulerKind::from_class_name(class).expect("known class");
            let scheduler = build(kind, &config, 5).expect("build");
            let view = st
                .tensor(&format!("pipe.{name}.timesteps"))
                .expect("timesteps");
            let want: Vec<f64> = view
                .data()
                .chunks_exact(4)
                .map(|b| f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
                .collect();
            assert_eq!(scheduler.timesteps(), want.as_slice(), "{file} {name}");
            checked += 1;
        }
        assert!(checked >= 9, "{file}: only {checked} schedulers");
    }
}

#[derive(Deserialize)]
struct RefFile {
    schedules: Vec<RefSchedule>,
    cases: Vec<RefCase>,
}

#[derive(Deserialize)]
struct RefSchedule {
    name: String,
    config: serde_json::Value,
    indices: Vec<usize>,
    alphas_cumprod: Vec<f64>,
}

#[derive(Deserialize)]
struct RefCase {
    name: String,
    config: serde_json::Value,
    num_inference_steps: usize,
    seed: u64,
    step_kwargs: serde_json::Map<String, serde_json::Value>,
    timesteps: Vec<f64>,
    sigmas: Option<Vec<f64>>,
    init_noise_sigma: f64,
    init_sample: Vec<f32>,
    steps: Vec<RefStep>,
}

#[derive(Deserialize)]
struct RefStep {
    model_output: Vec<f32>,
    scaled_input: Vec<f32>,
    prev_sample: Vec<f32>,
}

fn reference() -> RefFile {
    let text = include_str!("../../tests/data/schedulers_ref.json");
    serde_json::from_str(text).expect("schedulers_ref.json")
}

/// `alphas_cumprod` is bit-identical to diffusers' float32 tensor, except with
/// `rescale_betas_zero_snr`: torch's float32 `sqrt` (MKL VML on x86) is not always correctly
/// rounded, so a few entries differ by one ulp there.
#[test]
fn alphas_cumprod_matches_diffusers() {
    for schedule in reference().schedules {
        let config = SchedulerConfig::from_json(schedule.config.to_string().as_bytes()).unwrap();
        let all = alphas_cumprod(&config).unwrap();
        let max_ulps = if config.rescale_betas_zero_snr { 1 } else { 0 };
        for (&i, &want) in schedule.indices.iter().zip(&schedule.alphas_cumprod) {
            let ulps = (all[i] as f32).to_bits().abs_diff((want as f32).to_bits());
            assert!(
                ulps <= max_ulps,
                "{} [{i}]: {} vs {want}",
                schedule.name,
                all[i]
            );
        }
    }
}

#[test]
fn step_math_matches_diffusers() {
    let reference = reference();
    let device = Device::flex();
    for case in &reference.cases {
        let name = &case.name;
        let config = SchedulerConfig::from_json(case.config.to_string().as_bytes()).expect(name);
        let class = config.class_name.as_deref().expect("_class_name");
        let kind = SchedulerKind::from_class_name(class).expect(name);
        let steps = case.num_inference_steps;
        let mut scheduler: Box<dyn Scheduler> = match case.step_kwargs.get("eta") {
            Some(eta) => Box::new(
                DdimScheduler::new(&config, steps)
                    .expect(name)
                    .with_eta(eta.as_f64().expect("eta")),
            ),
            None => build(kind, &config, steps).expect(name),
        };
        let got = scheduler.timesteps();
        assert_eq!(got.len(), case.timesteps.len(), "{name} timesteps {got:?}");
        let timestep_err = got
            .iter()
            .zip(&case.timesteps)
            .map(|(g, w)| (g - w).abs())
            .fold(0.0, f64::max);
        assert!(
            timestep_err
                <= KARRAS_TIMESTEP_TOLERANCE * f64::from(u8::from(config.use_karras_sigmas)),
            "{name} timesteps {got:?} {:?}",
            case.timesteps
        );
        let sigma_err = (scheduler.init_noise_sigma() - case.init_noise_sigma).abs();
        assert!(
            sigma_err < 1e-6 * case.init_noise_sigma,
            "{name} init_noise_sigma"
        );
        let sigmas = match kind {
            SchedulerKind::Euler => Some(
                EulerDiscreteScheduler::new(&config, steps)
                    .expect(name)
                    .sigmas()
                    .to_vec(),
            ),
            SchedulerKind::Heun => Some(
                HeunDiscreteScheduler::new(&config, steps)
                    .expect(name)
                    .sigmas()
                    .to_vec(),
            ),
            _ => None,
        };
        if let (Some(want), Some(got)) = (&case.sigmas, sigmas) {
            let got: Vec<f32> = got.iter().map(|&s| s as f32).collect();
            let want: Vec<f32> = want.iter().map(|&s| s as f32).collect();
            assert!(
                max_rel_err(&got, &want) < 1e-6,
                "{name} sigmas {got:?} {want:?}"
            );
        }

        let mut rng = TorchRng::new(case.seed);
        let mut sample = rng.randn_tensor(SHAPE, &device) * scheduler.init_noise_sigma();
        let mut worst = max_rel_err(&values(sample.clone()), &case.init_sample);
        assert!(worst < 1e-6, "{name} init sample");
        for (i, step) in case.steps.iter().enumerate() {
            let scaled = scheduler.scale_model_input(sample.clone(), i);
            let err = max_rel_err(&values(scaled), &step.scaled_input);
            assert!(err < TOLERANCE, "{name} step {i} scaled input: {err}");
            let model_output = tensor(&step.model_output, &device);
            sample = scheduler.step(model_output, i, sample, &mut rng);
            // Continue from diffusers' sample so that errors do not compound across steps.
            let err = max_rel_err(&values(sample), &step.prev_sample);
            assert!(err < TOLERANCE, "{name} step {i} prev_sample: {err}");
            worst = worst.max(err);
            sample = tensor(&step.prev_sample, &device);
        }
        eprintln!(
            "{name}: {} steps, max rel err {worst:e}, timesteps max abs err {timestep_err:e}",
            case.steps.len()
        );
    }
}

#[test]
fn config_parsing() {
    let json = br#"{"_class_name": "DPMSolverMultistepScheduler", "lambda_min_clipped": -Infinity,
        "note": "-Infinity in a string", "trained_betas": null, "use_karras_sigmas": null,
        "timestep_spacing": "leading", "_use_default_values": ["timestep_spacing"],
        "some_future_option": [1, 2]}"#;
    let config = SchedulerConfig::from_json(json).unwrap();
    assert_eq!(
        config.class_name.as_deref(),
        Some("DPMSolverMultistepScheduler")
    );
    assert_eq!(config.lambda_min_clipped, f64::NEG_INFINITY);
    assert_eq!(config.timestep_spacing, None);
    assert!(!config.use_karras_sigmas);
    assert!(SchedulerConfig::from_json(br#"{"beta_schedule": "cubic"}"#).is_err());
    assert!(SchedulerConfig::from_json(b"[1]").is_err());
    assert_eq!(
        "magic".parse::<SchedulerKind>().unwrap_err().to_string(),
        "unknown scheduler \"magic\" (one of: ddim, pndm, euler, euler-a, dpmpp-2m, lms, heun)"
    );
    for kind in SchedulerKind::ALL {
        assert_eq!(SchedulerKind::from_cli_name(kind.cli_name()), Some(kind));
        assert_eq!(kind.cli_name().parse::<SchedulerKind>().unwrap(), kind);
        assert_eq!(
            SchedulerKind::from_class_name(kind.class_name()),
            Some(kind)
        );
    }
}

#[test]
fn unsupported_options_are_errors() {
    let config = |json: &str| SchedulerConfig::from_json(json.as_bytes()).unwrap();
    for (kind, json) in [
        (SchedulerKind::Ddim, r#"{"thresholding": true}"#),
        (SchedulerKind::Euler, r#"{"use_exponential_sigmas": true}"#),
        (
            SchedulerKind::Euler,
            r#"{"interpolation_type": "log_linear"}"#,
        ),
        (SchedulerKind::DpmPp2m, r#"{"algorithm_type": "dpmsolver"}"#),
        (SchedulerKind::DpmPp2m, r#"{"solver_order": 4}"#),
        (SchedulerKind::Pndm, r#"{"prediction_type": "sample"}"#),
        (SchedulerKind::Ddim, r#"{"steps_offset": 500}"#),
    ] {
        assert!(build(kind, &config(json), 5).is_err(), "{kind:?} {json}");
    }
    assert!(build(SchedulerKind::Ddim, &config("{}"), 0).is_err());
    assert!(build(SchedulerKind::Ddim, &config("{}"), 1001).is_err());
}

#[test]
fn karras_sigmas_can_be_forced() {
    let sd15 = SchedulerConfig::from_json(
        br#"{"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}"#,
    )
    .unwrap();
    let karras = SchedulerConfig {
        use_karras_sigmas: true,
        ..sd15.clone()
    };
    let forced = BuildOptions {
        karras_sigmas: true,
    };
    for kind in SchedulerKind::ALL {
        let built = build_with(kind, &sd15, 6, forced);
        if kind.has_karras_sigmas() {
            let want = build(kind, &karras, 6).unwrap();
            let plain = build(kind, &sd15, 6).unwrap();
            let got = built.unwrap();
            assert_eq!(got.timesteps(), want.timesteps(), "{kind:?}");
            assert_ne!(got.timesteps(), plain.timesteps(), "{kind:?}");
        } else {
            let e = built.err().expect("an error");
            assert!(e.contains(kind.class_name()), "{kind:?}: {e}");
        }
        let unforced = build_with(kind, &sd15, 6, BuildOptions::default()).unwrap();
        assert_eq!(
            unforced.timesteps(),
            build(kind, &sd15, 6).unwrap().timesteps()
        );
    }
}
