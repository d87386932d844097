//! The trainer's optimisation steps equal PyTorch's on tiny models (`tests/fixtures/train_ref.py`):
//! diffusers' `train_text_to_image` loop (run A: epsilon, warm-up + cosine, clipping, EMA;
//! run B: v_prediction with two accumulated micro-batches), `train_controlnet`'s (run C,
//! the UNet frozen), a VAE's reconstruction + KL objective (run D) and the UNet trained with
//! its text encoder (run E, `--train-text-encoder`) and with token grounding (run G,
//! `--grounding-loss`: TokenCompose's term on the cross-attention); on the CPU and on wgpu
//! (lavapipe in CI). Checked: losses, gradients, gradient norms, learning rates, the weights
//! after AdamW, and the EMA. Run R (`tests/fixtures/train_consistency_ref.py`) is run C's loop
//! with ControlNet++'s consistency reward (`--consistency-weight`), its one-step samples,
//! decoded images and reward checked on the way.
//!
//! Tolerances: losses and gradient norms within 1e-5 relative, gradients within 1e-5 of their
//! scale (see `grad_scales`), weights within 1e-5 of their scale. Updates are about 1e-3, so
//! a wrong learning rate, moment or decay fails. One exception: on AdamW's first step the
//! update is about `lr·sign(g)`, so where a gradient is within the gradient tolerance of zero
//! (float noise) its sign, and the update, may differ; those weights may move by `±lr` either
//! way (their gradients are held to the gradient tolerance). Measured on the CPU: gradients
//! within 5.4e-6 of their scale, weights within 8.2e-6.
//!
//! Run R's reward reaches the ControlNet back through the VAE decoder and the segmenter's
//! 1/temperature, so float noise grows: its gradients are held to 1e-3 of their scale (measured
//! 5.9e-4 on the CPU, in the tensors whose gradient is a thousandth of the model's largest) and
//! its weights to 3e-5 (measured 1.2e-5); on wgpu to 3e-3 and 1e-4 (measured 2.3e-3, 2.8e-5).
//!
//! On wgpu (lavapipe) reductions run in other orders: gradients differ by up to 4.5e-4 of
//! their scale (checked at 1e-3, the inference parity bound), and AdamW's normalisation carries
//! that into the weights of small-gradient elements: up to 2.3e-5 after three steps (checked
//! at 5e-5; lavapipe's results vary slightly from run to run).

use std::sync::{Arc, OnceLock};

use burn::module::Module;
use burn::tensor::{DType, Device};
use maskforge_core::models::diffusion::controlnet::{ControlNetConfig, ControlNetModel};
use maskforge_core::models::diffusion::unet::{
    CrossAttentionProbe, UNet2DConditionConfig, UNet2DConditionModel, UNetHooks,
};
use maskforge_core::models::diffusion::vae::{AutoencoderKL, AutoencoderKLConfig};
use maskforge_core::schedulers::{PredictionType, SchedulerConfig};
use maskforge_core::text::clip::ClipTextConfig;
use maskforge_core::training::consistency::{labelled, saturation_bce};
use maskforge_core::training::{
    AdamW, AdamWConfig, ConsistencyReward, DenoisingBatch, GroundingTargets, LrSchedule,
    LrScheduleKind, ModelOptimizer, Noising, ParamNames, TextToImage, controlnet_from_unet,
    controlnet_loss, grounding_loss, unet_loss, vae_loss,
};
use maskforge_core::weights::{
    HostTensor, PrefixedWeights, SafetensorsFile, SafetensorsWeights, VarBuilder, Weights,
};
use maskforge_native::source::map_file;
use maskforge_tests::{Expected, assert_close, fixture};

struct Tiny {
    config: UNet2DConditionConfig,
    weights: Arc<SafetensorsWeights>,
    scheduler: SchedulerConfig,
}

fn tiny() -> Tiny {
    let dir = fixture("tiny-train");
    let config = std::fs::read(dir.join("unet/config.json")).unwrap();
    let config = UNet2DConditionConfig::from_json(&config, "unet/config.json").unwrap();
    let path = dir.join("unet/diffusion_pytorch_model.safetensors");
    let file =
        SafetensorsFile::parse(path.display().to_string(), map_file(&path).unwrap()).unwrap();
    let scheduler = std::fs::read(dir.join("scheduler/scheduler_config.json")).unwrap();
    Tiny {
        config,
        weights: Arc::new(SafetensorsWeights::new(vec![file]).unwrap()),
        scheduler: SchedulerConfig::from_json(&scheduler).unwrap(),
    }
}

fn relative(what: &str, got: f64, expected: f64, tol: f64) {
    let err = (got - expected).abs() / expected.abs().max(1e-12);
    assert!(
        err <= tol,
        "{what}: {got} vs {expected} (relative error {err:e})"
    );
}

/// Weights within `tol` of their scale. With `first_step` (the reference gradients of AdamW's
/// first step, the learning rate and the gradient tolerance), an element whose gradient is
/// within the gradient tolerance of zero (see [`grad_scales`]) may move by `±lr` either way.
fn check_weights(
    exp: &Expected,
    prefix: &str,
    got: &[(String, HostTensor)],
    tol: f32,
    first_step: Option<(&str, f32, f32)>,
) {
    let (mut worst, mut loose) = (0f32, 0);
    let keys: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
    let grads = first_step
        .map(|(grads, lr, grad_tol)| (grad_scales(exp, grads, &keys), grads, lr, grad_tol));
    for (n, (key, t)) in got.iter().enumerate() {
        let name = format!("{prefix}.{key}");
        let (shape, expected) = exp.host(&name);
        assert_eq!(t.shape, shape, "{name}: shape");
        let Some((scales, grads_prefix, lr, grad_tol)) = grads.as_ref() else {
            worst = worst.max(assert_close(&name, &t.data, &expected, tol));
            continue;
        };
        let (_, g) = exp.host(&format!("{grads_prefix}.{key}"));
        let scale = expected.iter().fold(1f32, |m, v| m.max(v.abs()));
        let tiny = scales[n] * *grad_tol;
        for (i, ((a, e), g)) in t.data.iter().zip(&expected).zip(&g).enumerate() {
            let err = (a - e).abs();
            let allowed = if g.abs() < tiny {
                loose += 1;
                2.0 * *lr
            } else {
                worst = worst.max(err);
                tol * scale
            };
            assert!(
                err <= allowed,
                "{name}[{i}]: {a} vs {e} (gradient {g:e}); allowed {allowed:e}"
            );
        }
    }
    eprintln!(
        "{prefix}: {} tensors, max abs error {worst:.2e} ({loose} tiny-gradient elements within lr)",
        got.len()
    );
}

/// The scale each tensor's gradient is compared at: its largest element, at least a
/// thousandth of the model's largest gradient (tensors whose gradient vanishes analytically,
/// attention key biases since softmax ignores a shift shared by all keys, hold float noise).
fn grad_scales(exp: &Expected, prefix: &str, keys: &[&str]) -> Vec<f32> {
    let maxima: Vec<f32> = keys
        .iter()
        .map(|k| {
            exp.host(&format!("{prefix}.{k}"))
                .1
                .iter()
                .fold(0f32, |m, v| m.max(v.abs()))
        })
        .collect();
    let model = maxima.iter().fold(0f32, |m, &v| m.max(v));
    maxima.iter().map(|&m| m.max(model * 1e-3)).collect()
}

/// Gradients within `tol` of their [`grad_scales`].
fn check_grads(exp: &Expected, prefix: &str, got: &[(String, HostTensor)], tol: f32) {
    let keys: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
    let scales = grad_scales(exp, prefix, &keys);
    let mut worst = 0f32;
    for ((key, t), scale) in got.iter().zip(scales) {
        let name = format!("{prefix}.{key}");
        let (shape, expected) = exp.host(&name);
        assert_eq!(t.shape, shape, "{name}: shape");
        for (i, (a, e)) in t.data.iter().zip(&expected).enumerate() {
            let err = (a - e).abs() / scale;
            assert!(
                err <= tol,
                "{name}[{i}]: {a} vs {e} (error {err:e} of the scale {scale:e})"
            );
            worst = worst.max(err);
        }
    }
    eprintln!(
        "{prefix}: {} tensors, max error {worst:.2e} of the scale",
        got.len()
    );
}

fn batch(exp: &Expected, run: &str, k: usize, device: &Device) -> DenoisingBatch {
    let (_, t) = exp.host(&format!("{run}.timesteps.{k}"));
    DenoisingBatch {
        latents: exp.tensor("latents", device),
        context: exp.tensor("context", device),
        noise: exp.tensor(&format!("{run}.noise.{k}"), device),
        timesteps: t.iter().map(|&t| t as usize).collect(),
        grounding: None,
    }
}

/// The reference runs' constant learning rate.
const CONSTANT: LrSchedule = LrSchedule {
    kind: LrScheduleKind::Constant,
    base: 1e-3,
    warmup: 0,
    total: 10,
};

/// AdamW as the reference scripts configure it, clipping at 1, over `model`'s `names`.
fn optimizer<M: Module>(
    names: ParamNames,
    model: &M,
    schedule: LrSchedule,
    ema: bool,
) -> ModelOptimizer {
    let n = names.params().len();
    ModelOptimizer::new(
        names,
        model,
        AdamW::new(AdamWConfig::default(), n),
        schedule,
        Some(1.0),
        ema.then_some(0.9999),
    )
    .unwrap()
}

fn unet_names(t: &Tiny) -> ParamNames {
    ParamNames::of(|vb| UNet2DConditionModel::load(vb, &t.config, "config.json")).unwrap()
}

fn check_training(device: &Device, grad_tol: f32, weight_tol: f32) {
    let t = tiny();
    let exp = Expected::load("train");
    let device = device.clone().autodiff();
    let load = || {
        let vb = VarBuilder::from_weights(t.weights.clone(), &device, DType::F32);
        UNet2DConditionModel::load(&vb, &t.config, "config.json").unwrap()
    };

    // Run A: epsilon, warm-up + cosine, clipping, EMA.
    let mut unet = load();
    let schedule = LrSchedule {
        kind: LrScheduleKind::Cosine,
        base: 1e-3,
        warmup: 2,
        total: 10,
    };
    let mut opt = optimizer(unet_names(&t), &unet, schedule, true);
    let noising = Noising::new(&t.scheduler, "scheduler_config.json").unwrap();
    let (_, losses) = exp.host("A.loss");
    let (_, norms) = exp.host("A.grad_norm");
    let (_, lrs) = exp.host("A.lr");
    for k in 0..3 {
        let loss = unet_loss(&unet, &noising, &batch(&exp, "A", k, &device));
        let value = loss.clone().into_scalar::<f32>() as f64;
        relative(&format!("A.loss[{k}]"), value, losses[k] as f64, 1e-5);
        opt.accumulate(&unet, loss.backward());
        if k == 0 {
            check_grads(&exp, "A.grad0", &opt.gradients(), grad_tol);
        }
        relative(
            &format!("A.grad_norm[{k}]"),
            opt.grad_norm(),
            norms[k] as f64,
            1e-5,
        );
        let (updated, lr) = opt.step(unet);
        unet = updated;
        relative(
            &format!("A.lr[{k}]"),
            lr.max(1e-30),
            (lrs[k] as f64).max(1e-30),
            1e-6,
        );
    }
    check_weights(&exp, "A.param", &opt.weights(&unet), weight_tol, None);
    check_weights(&exp, "A.ema", &opt.ema_weights().unwrap(), weight_tol, None);

    // Run B: v_prediction, two accumulated micro-batches.
    let unet = load();
    let mut opt = optimizer(unet_names(&t), &unet, CONSTANT, false);
    let v = SchedulerConfig {
        prediction_type: PredictionType::VPrediction,
        ..t.scheduler.clone()
    };
    let noising = Noising::new(&v, "scheduler_config.json").unwrap();
    let (_, losses) = exp.host("B.loss");
    for (k, &expected) in losses.iter().enumerate() {
        let loss = unet_loss(&unet, &noising, &batch(&exp, "B", k, &device));
        relative(
            &format!("B.loss[{k}]"),
            loss.clone().into_scalar::<f32>() as f64,
            expected as f64,
            1e-5,
        );
        opt.accumulate(&unet, (loss / 2.0).backward());
    }
    check_grads(&exp, "B.grad", &opt.gradients(), grad_tol);
    let (unet, lr) = opt.step(unet);
    check_weights(
        &exp,
        "B.param",
        &opt.weights(&unet),
        weight_tol,
        Some(("B.grad", lr as f32, grad_tol)),
    );
}

#[test]
fn cpu_training_steps_match_diffusers() {
    check_training(&Device::flex(), 1e-5, 1e-5);
}

/// The grounding targets of runs G and the pull test: token 2 of every caption, the
/// top-left quarter of the latent grid, weight 0.5.
fn quarter_targets(batch: &DenoisingBatch) -> GroundingTargets {
    let [b, _, h, w] = batch.latents.dims();
    let mask: Vec<f32> = (0..h * w)
        .map(|i| ((i / w) < h / 2 && (i % w) < w / 2) as u8 as f32)
        .collect();
    GroundingTargets {
        tokens: vec![Some(2); b],
        masks: vec![mask; b],
        height: h,
        width: w,
        weight: 0.5,
    }
}

/// The unweighted grounding term of one probed UNet call on `batch`, with the maps it read.
fn probed_grounding(
    unet: &UNet2DConditionModel,
    noising: &Noising,
    batch: &DenoisingBatch,
    targets: &GroundingTargets,
) -> (burn::tensor::Tensor<1>, CrossAttentionProbe) {
    let (noisy, ts) = batch.noisy(noising);
    let mut probe = CrossAttentionProbe::new(targets.tokens.clone());
    let hooks = UNetHooks {
        probe: Some(&mut probe),
        ..UNetHooks::default()
    };
    unet.forward_per_sample(noisy, &ts, &batch.context, None, hooks);
    assert!(!probe.maps.is_empty());
    (grounding_loss(&probe.maps, targets), probe)
}

/// Run G: one AdamW step of `denoising + 0.5 · grounding` on run A's first micro-batch, as
/// `train_ref.py` computes it: each cross-attention layer's probabilities of the token (call
/// order), the grounding and total losses, the gradients and the updated weights.
fn check_grounding(device: &Device, grad_tol: f32, weight_tol: f32) {
    let t = tiny();
    let exp = Expected::load("train");
    let device = device.clone().autodiff();
    let vb = VarBuilder::from_weights(t.weights.clone(), &device, DType::F32);
    let unet = UNet2DConditionModel::load(&vb, &t.config, "config.json").unwrap();
    let noising = Noising::new(&t.scheduler, "scheduler_config.json").unwrap();
    let plain = batch(&exp, "A", 0, &device);
    let targets = quarter_targets(&plain);
    let (_, losses) = exp.host("G.loss");

    let (term, probe) = probed_grounding(&unet, &noising, &plain, &targets);
    let (_, layers) = exp.host("G.layers");
    assert_eq!(
        probe.maps.len(),
        layers[0] as usize,
        "cross-attention layers"
    );
    for (k, map) in probe.maps.iter().enumerate() {
        let (shape, expected) = exp.host(&format!("G.probs.{k}"));
        assert_eq!(map.probs.dims().to_vec(), shape, "G.probs.{k}: shape");
        let got = map.probs.clone().into_data().try_to_vec::<f32>().unwrap();
        assert_close(&format!("G.probs.{k}"), &got, &expected, 1e-5);
    }
    let scalar = |t: burn::tensor::Tensor<1>| t.into_scalar::<f32>() as f64;
    relative("G.grounding", scalar(term), losses[2] as f64, 1e-5);

    let grounded = DenoisingBatch {
        grounding: Some(targets),
        ..plain
    };
    let mut opt = optimizer(unet_names(&t), &unet, CONSTANT, false);
    let loss = unet_loss(&unet, &noising, &grounded);
    relative("G.loss", scalar(loss.clone()), losses[0] as f64, 1e-5);
    opt.accumulate(&unet, loss.backward());
    check_grads(&exp, "G.grad", &opt.gradients(), grad_tol);
    let (unet, lr) = opt.step(unet);
    check_weights(
        &exp,
        "G.param",
        &opt.weights(&unet),
        weight_tol,
        Some(("G.grad", lr as f32, grad_tol)),
    );
}

#[test]
fn cpu_grounding_step_matches_pytorch() {
    check_grounding(&Device::flex(), 1e-5, 1e-5);
}

#[test]
fn wgpu_grounding_step_matches_pytorch() {
    check_grounding(wgpu_device(), 1e-3, 5e-5);
}

/// Ten AdamW steps on the grounding term move the name token's attention onto the object.
#[test]
fn grounding_steps_pull_attention_onto_the_object() {
    let t = tiny();
    let exp = Expected::load("train");
    let device = Device::flex().autodiff();
    let vb = VarBuilder::from_weights(t.weights.clone(), &device, DType::F32);
    let mut unet = UNet2DConditionModel::load(&vb, &t.config, "config.json").unwrap();
    let noising = Noising::new(&t.scheduler, "scheduler_config.json").unwrap();
    let plain = batch(&exp, "A", 0, &device);
    let targets = quarter_targets(&plain);
    let scalar = |t: burn::tensor::Tensor<1>| t.into_scalar::<f32>() as f64;
    let before = scalar(probed_grounding(&unet, &noising, &plain, &targets).0);
    let mut opt = optimizer(unet_names(&t), &unet, CONSTANT, false);
    for _ in 0..10 {
        let loss = probed_grounding(&unet, &noising, &plain, &targets).0;
        opt.accumulate(&unet, loss.backward());
        unet = opt.step(unet).0;
    }
    let after = scalar(probed_grounding(&unet, &noising, &plain, &targets).0);
    assert!(after < 0.7 * before, "grounding loss {before} → {after}");
}

fn wgpu_device() -> &'static Device {
    static DEVICE: OnceLock<Device> = OnceLock::new();
    DEVICE.get_or_init(|| {
        Device::wgpu_options()
            .init()
            .unwrap_or_else(|e| panic!("no wgpu adapter (install mesa-vulkan-drivers): {e}"))
    })
}

#[test]
fn wgpu_training_steps_match_diffusers() {
    check_training(wgpu_device(), 1e-3, 5e-5);
}

/// `controlnet_from_unet` builds what `ControlNetModel.from_unet` builds: every key, the
/// UNet's weights copied, zero convolutions zero; the conditioning encoder's other layers are
/// random in both (shapes compared).
#[test]
fn controlnet_from_unet_matches_diffusers() {
    let t = tiny();
    let (config, reference) = tiny_controlnet("controlnet");
    let ours = controlnet_from_unet(&config, t.weights.as_ref(), 0).unwrap();
    let mut keys: Vec<String> = Weights::keys(reference.as_ref()).unwrap();
    keys.sort();
    assert_eq!(Weights::keys(&ours).unwrap(), keys);
    for key in keys {
        let (a, e) = (
            ours.read(&key).unwrap().unwrap(),
            reference.read(&key).unwrap().unwrap(),
        );
        assert_eq!(a.shape, e.shape, "{key}");
        let random = key.starts_with("controlnet_cond_embedding.") && !key.contains("conv_out");
        if !random {
            assert!(a.data == e.data, "{key}: values differ");
        }
    }
}

/// The ControlNet fixture `tiny-train/{name}`: its config and weights.
fn tiny_controlnet(name: &str) -> (ControlNetConfig, Arc<SafetensorsWeights>) {
    let dir = fixture(&format!("tiny-train/{name}"));
    let config = std::fs::read(dir.join("config.json")).unwrap();
    let config = ControlNetConfig::from_json(&config, "controlnet/config.json").unwrap();
    let path = dir.join("diffusion_pytorch_model.safetensors");
    let file =
        SafetensorsFile::parse(path.display().to_string(), map_file(&path).unwrap()).unwrap();
    (
        config,
        Arc::new(SafetensorsWeights::new(vec![file]).unwrap()),
    )
}

/// Run C: two steps of `train_controlnet`'s loop, the UNet frozen.
fn check_controlnet_training(device: &Device, grad_tol: f32, weight_tol: f32) {
    let t = tiny();
    let exp = Expected::load("train");
    let (config, weights) = tiny_controlnet("controlnet");
    let unet = {
        let vb = VarBuilder::from_weights(t.weights.clone(), device, DType::F32);
        UNet2DConditionModel::load(&vb, &t.config, "config.json").unwrap()
    };
    let train_device = device.clone().autodiff();
    let vb = VarBuilder::from_weights(weights, &train_device, DType::F32);
    let mut controlnet = ControlNetModel::load(&vb, &config, "config.json").unwrap();
    let names = ParamNames::of(|vb| ControlNetModel::load(vb, &config, "config.json")).unwrap();
    let mut opt = optimizer(names, &controlnet, CONSTANT, false);
    let noising = Noising::new(&t.scheduler, "scheduler_config.json").unwrap();
    let cond: burn::tensor::Tensor<4> = exp.tensor("C.cond", device);
    let (_, losses) = exp.host("C.loss");
    let mut lr = 0.0;
    for (k, &expected) in losses.iter().enumerate() {
        let loss = controlnet_loss(
            &unet,
            &controlnet,
            &cond,
            &noising,
            &batch(&exp, "C", k, device),
            None,
        );
        relative(
            &format!("C.loss[{k}]"),
            loss.clone().into_scalar::<f32>() as f64,
            expected as f64,
            1e-5,
        );
        opt.accumulate(&controlnet, loss.backward());
        if k == 1 {
            check_grads(&exp, "C.grad1", &opt.gradients(), grad_tol);
        }
        let (updated, step_lr) = opt.step(controlnet);
        controlnet = updated;
        lr = step_lr;
    }
    check_weights(
        &exp,
        "C.param",
        &opt.weights(&controlnet),
        weight_tol,
        Some(("C.grad1", lr as f32, grad_tol)),
    );
}

#[test]
fn cpu_controlnet_training_steps_match_diffusers() {
    check_controlnet_training(&Device::flex(), 1e-5, 1e-5);
}

#[test]
fn wgpu_controlnet_training_steps_match_diffusers() {
    check_controlnet_training(wgpu_device(), 1e-3, 5e-5);
}

fn tiny_vae(device: &Device) -> (AutoencoderKLConfig, AutoencoderKL) {
    let dir = fixture("tiny-train/vae");
    let config = std::fs::read(dir.join("config.json")).unwrap();
    let config = AutoencoderKLConfig::from_json(&config, "vae/config.json").unwrap();
    let path = dir.join("diffusion_pytorch_model.safetensors");
    let file =
        SafetensorsFile::parse(path.display().to_string(), map_file(&path).unwrap()).unwrap();
    let weights = Arc::new(SafetensorsWeights::new(vec![file]).unwrap());
    let vb = VarBuilder::from_weights(weights, device, DType::F32);
    let vae = AutoencoderKL::load(&vb, &config).unwrap();
    (config, vae)
}

/// Run R (`tests/fixtures/train_consistency_ref.py`): two steps of `train_controlnet`'s loop
/// with ControlNet++'s consistency reward (weight 0.5, timesteps ≤ 200), v_prediction; the
/// one-step predictions and their decoded images checked on the way.
fn check_consistency_training(device: &Device, tol: f32, grad_tol: f32, weight_tol: f32) {
    let t = tiny();
    let inputs = Expected::load("train");
    let exp = Expected::load("train_consistency");
    let unet = {
        let vb = VarBuilder::from_weights(t.weights.clone(), device, DType::F32);
        UNet2DConditionModel::load(&vb, &t.config, "config.json").unwrap()
    };
    let (vae_config, vae) = tiny_vae(device);
    let (config, weights) = tiny_controlnet("controlnet-f2");
    let train_device = device.clone().autodiff();
    let vb = VarBuilder::from_weights(weights, &train_device, DType::F32);
    let mut controlnet = ControlNetModel::load(&vb, &config, "config.json").unwrap();
    let names = ParamNames::of(|vb| ControlNetModel::load(vb, &config, "config.json")).unwrap();
    let mut opt = optimizer(names, &controlnet, CONSTANT, false);
    let v = SchedulerConfig {
        prediction_type: PredictionType::VPrediction,
        ..t.scheduler.clone()
    };
    let noising = Noising::new(&v, "scheduler_config.json").unwrap();
    let reward = ConsistencyReward {
        vae: &vae,
        scaling_factor: vae_config.scaling_factor,
        shift_factor: vae_config.shift_factor,
        vae_dtype: DType::F32,
        weight: 0.5,
        max_timestep: 200,
    };
    let cond: burn::tensor::Tensor<4> = exp.tensor("R.cond", device);
    let (_, losses) = exp.host("R.loss");
    let (_, rewards) = exp.host("R.reward");
    let mut lr = 0.0;
    for (k, &expected) in losses.iter().enumerate() {
        let (_, ts) = exp.host(&format!("R.timesteps.{k}"));
        let batch = DenoisingBatch {
            latents: inputs.tensor("latents", device),
            context: inputs.tensor("context", device),
            noise: exp.tensor(&format!("R.noise.{k}"), device),
            timesteps: ts.iter().map(|&t| t as usize).collect(),
            grounding: None,
        };
        // The intermediates: this step's prediction, its one-step sample, image and reward.
        let (noisy, tf) = batch.noisy(&noising);
        let control =
            controlnet.forward_per_sample(noisy.clone(), &tf, &batch.context, None, &cond, 1.0);
        let hooks = UNetHooks {
            control: Some(&control),
            ..UNetHooks::default()
        };
        let pred = unet.forward_per_sample(noisy.clone(), &tf, &batch.context, None, hooks);
        let rewarded = reward.rewarded(&batch.timesteps);
        let x0_rows: Vec<_> = rewarded
            .iter()
            .map(|&i| {
                noising.predicted_sample(
                    &noisy.clone().narrow(0, i, 1),
                    &pred.clone().narrow(0, i, 1),
                    &[batch.timesteps[i]],
                )
            })
            .collect();
        let x0 = burn::tensor::Tensor::cat(x0_rows, 0);
        assert_close(
            &format!("R.x0.{k}"),
            &x0.into_data().try_into_vec::<f32>().unwrap(),
            &exp.host(&format!("R.x0.{k}")).1,
            tol,
        );
        let image = reward.predicted_images(&noising, noisy, pred, &batch.timesteps, &rewarded);
        assert_close(
            &format!("R.image.{k}"),
            &image.clone().into_data().try_into_vec::<f32>().unwrap(),
            &exp.host(&format!("R.image.{k}")).1,
            tol,
        );
        let target = labelled(&cond.clone().narrow(0, rewarded[0], rewarded.len()));
        relative(
            &format!("R.reward[{k}]"),
            saturation_bce(image, target).into_scalar::<f32>() as f64,
            rewards[k] as f64,
            1e-5,
        );

        let loss = controlnet_loss(&unet, &controlnet, &cond, &noising, &batch, Some(&reward));
        relative(
            &format!("R.loss[{k}]"),
            loss.clone().into_scalar::<f32>() as f64,
            expected as f64,
            1e-5,
        );
        opt.accumulate(&controlnet, loss.backward());
        if k == 1 {
            check_grads(&exp, "R.grad1", &opt.gradients(), grad_tol);
        }
        let (updated, step_lr) = opt.step(controlnet);
        controlnet = updated;
        lr = step_lr;
    }
    check_weights(
        &exp,
        "R.param",
        &opt.weights(&controlnet),
        weight_tol,
        Some(("R.grad1", lr as f32, grad_tol)),
    );
}

#[test]
fn cpu_consistency_training_steps_match_pytorch() {
    check_consistency_training(&Device::flex(), 1e-4, 1e-3, 3e-5);
}

#[test]
fn wgpu_consistency_training_steps_match_pytorch() {
    check_consistency_training(wgpu_device(), 1e-3, 3e-3, 1e-4);
}

/// Run D: two steps of the VAE objective (reconstruction + 1e-3 · KL).
fn check_vae_training(device: &Device, grad_tol: f32, weight_tol: f32) {
    let exp = Expected::load("train");
    let device = device.clone().autodiff();
    let (config, mut vae) = tiny_vae(&device);
    let names = ParamNames::of(|vb| AutoencoderKL::load(vb, &config)).unwrap();
    let mut opt = optimizer(names, &vae, CONSTANT, false);
    let (_, losses) = exp.host("D.loss");
    let mut lr = 0.0;
    for k in 0..2 {
        let loss = vae_loss(
            &vae,
            exp.tensor("D.image", &device),
            exp.tensor(&format!("D.eps.{k}"), &device),
            1e-3,
        );
        for (i, (what, t)) in [
            ("total", &loss.total),
            ("reconstruction", &loss.reconstruction),
            ("kl", &loss.kl),
        ]
        .into_iter()
        .enumerate()
        {
            relative(
                &format!("D.loss[{k}].{what}"),
                t.clone().into_scalar::<f32>() as f64,
                losses[3 * k + i] as f64,
                1e-5,
            );
        }
        opt.accumulate(&vae, loss.total.backward());
        if k == 0 {
            check_grads(&exp, "D.grad0", &opt.gradients(), grad_tol);
        }
        let (updated, step_lr) = opt.step(vae);
        vae = updated;
        if k == 0 {
            lr = step_lr;
        }
    }
    check_weights(
        &exp,
        "D.param",
        &opt.weights(&vae),
        weight_tol,
        Some(("D.grad0", lr as f32, grad_tol)),
    );
}

#[test]
fn cpu_vae_training_steps_match_pytorch() {
    check_vae_training(&Device::flex(), 1e-5, 1e-5);
}

#[test]
fn wgpu_vae_training_steps_match_pytorch() {
    check_vae_training(wgpu_device(), 1e-3, 5e-5);
}

/// Run E: the UNet and the text encoder trained together (`--train-text-encoder`).
fn check_text_encoder_training(device: &Device, grad_tol: f32, weight_tol: f32) {
    let t = tiny();
    let exp = Expected::load("train");
    let te_dir = fixture("tiny-sd15/text_encoder");
    let te_config = ClipTextConfig::from_json(
        &std::fs::read(te_dir.join("config.json")).unwrap(),
        "config.json",
    )
    .unwrap();
    let path = te_dir.join("model.safetensors");
    let file =
        SafetensorsFile::parse(path.display().to_string(), map_file(&path).unwrap()).unwrap();
    let te_weights: Arc<dyn Weights> = Arc::new(SafetensorsWeights::new(vec![file]).unwrap());
    let weights = PrefixedWeights(vec![
        ("unet.".into(), t.weights.clone() as Arc<dyn Weights>),
        ("text_encoder.".into(), te_weights),
    ]);
    let train = device.clone().autodiff();
    let vb = VarBuilder::from_weights(Arc::new(weights), &train, DType::F32);
    let model = TextToImage::load(&vb, &t.config, Some(&te_config), "config.json").unwrap();
    let names =
        ParamNames::of(|vb| TextToImage::load(vb, &t.config, Some(&te_config), "config.json"))
            .unwrap();
    let mut opt = optimizer(names, &model, CONSTANT, false);
    let noising = Noising::new(&t.scheduler, "scheduler_config.json").unwrap();
    let (_, ids) = exp.host("E.ids");
    let ids: Vec<Vec<u32>> = ids
        .chunks(77)
        .map(|r| r.iter().map(|&v| v as u32).collect())
        .collect();
    let mut batch = batch(&exp, "E", 0, device);
    batch.context = model
        .text_encoder
        .as_ref()
        .unwrap()
        .forward(&ids)
        .last_hidden_state;
    let loss = unet_loss(&model.unet, &noising, &batch);
    let (_, expected) = exp.host("E.loss");
    relative(
        "E.loss",
        loss.clone().into_scalar::<f32>() as f64,
        expected[0] as f64,
        1e-5,
    );
    opt.accumulate(&model, loss.backward());
    let (_, rows) = exp.host("E.token_rows");
    let rows: Vec<usize> = rows.iter().map(|&r| r as usize).collect();
    // Of the token embedding, the rows of the ids used (the fixture keeps only those).
    let used = |tensors: Vec<(String, HostTensor)>| -> Vec<(String, HostTensor)> {
        tensors
            .into_iter()
            .map(|(k, t)| {
                if !k.ends_with("token_embedding.weight") {
                    return (k, t);
                }
                let d = t.shape[1];
                let data = rows
                    .iter()
                    .flat_map(|&r| t.data[r * d..(r + 1) * d].to_vec())
                    .collect();
                (
                    k,
                    HostTensor {
                        shape: vec![rows.len(), d],
                        data,
                    },
                )
            })
            .collect()
    };
    check_grads(&exp, "E.grad", &used(opt.gradients()), grad_tol);
    let (model, lr) = opt.step(model);
    check_weights(
        &exp,
        "E.param",
        &used(opt.weights(&model)),
        weight_tol,
        Some(("E.grad", lr as f32, grad_tol)),
    );
}

#[test]
fn cpu_text_encoder_training_step_matches_diffusers() {
    check_text_encoder_training(&Device::flex(), 1e-5, 1e-5);
}

#[test]
fn wgpu_text_encoder_training_step_matches_diffusers() {
    check_text_encoder_training(wgpu_device(), 1e-3, 5e-5);
}
