//! Whole text-to-image runs against diffusers' `StableDiffusionPipeline` (CPU backend): every
//! scheduler and timestep spacing, Heun and Karras sigmas, negative prompt, seeded noise,
//! guidance 1, decoded image.

use burn::tensor::Device;
use maskforge_core::pipelines::{StableDiffusion, Txt2ImgParams};
use maskforge_core::schedulers::{self, BuildOptions, SchedulerKind, TimestepSpacing};
use maskforge_tests::{Expected, assert_close, check, load_pipeline};

/// Final latents after 5 steps with guidance 7.5: float32 differences grow through the loop.
const TOL: f32 = 1e-3;

/// The fixture's scheduler runs: name, scheduler, timestep spacing override.
const RUNS: [(&str, SchedulerKind, Option<TimestepSpacing>); 10] = [
    ("ddim", SchedulerKind::Ddim, None),
    ("pndm", SchedulerKind::Pndm, None),
    ("euler", SchedulerKind::Euler, None),
    ("euler-a", SchedulerKind::EulerAncestral, None),
    ("dpmpp-2m", SchedulerKind::DpmPp2m, None),
    ("lms", SchedulerKind::Lms, None),
    (
        "ddim-trailing",
        SchedulerKind::Ddim,
        Some(TimestepSpacing::Trailing),
    ),
    (
        "euler-linspace",
        SchedulerKind::Euler,
        Some(TimestepSpacing::Linspace),
    ),
    (
        "euler-leading",
        SchedulerKind::Euler,
        Some(TimestepSpacing::Leading),
    ),
    (
        "dpmpp-2m-trailing",
        SchedulerKind::DpmPp2m,
        Some(TimestepSpacing::Trailing),
    ),
];

fn params(exp: &Expected, device: &Device, scheduler: SchedulerKind) -> Txt2ImgParams {
    Txt2ImgParams {
        prompt: "a photo of a single cat".into(),
        negative_prompt: None,
        height: 64,
        width: 64,
        steps: 5,
        guidance: 7.5,
        scheduler: Some(scheduler),
        karras_sigmas: false,
        seed: 0,
        latents: Some(exp.tensor("pipe.init_latents", device)),
        clip_skip: None,
        controls: Vec::new(),
    }
}

fn every_scheduler_matches(pipeline: &str, expected: &str) {
    let device = Device::flex();
    let mut sd: StableDiffusion = load_pipeline(pipeline, &device);
    let exp = Expected::load(expected);
    let base_config = sd.scheduler_config.clone();
    for (name, kind, spacing) in RUNS {
        sd.scheduler_config = base_config.clone();
        if spacing.is_some() {
            sd.scheduler_config.timestep_spacing = spacing;
        }
        let scheduler = schedulers::build(kind, &sd.scheduler_config, 5).unwrap();
        let ts: Vec<f32> = scheduler.timesteps().iter().map(|&t| t as f32).collect();
        assert_close(
            &format!("{name} timesteps"),
            &ts,
            &exp.host(&format!("pipe.{name}.timesteps")).1,
            1e-6,
        );
        let out = sd.txt2img(&params(&exp, &device, kind), |_, _| {}).unwrap();
        check(&exp, &format!("pipe.{name}.latents"), out.latents, TOL);
    }
}

#[test]
fn sd15_every_scheduler_matches_diffusers() {
    every_scheduler_matches("tiny-sd15", "sd15");
}

#[test]
fn sd2v_every_scheduler_matches_diffusers() {
    every_scheduler_matches("tiny-sd2v", "sd2v");
}

/// The runs of `expected/karras_heun.safetensors` (`tests/fixtures/karras_heun_ref.py`): name,
/// scheduler, Karras sigmas forced over the model's config.
const KARRAS_HEUN_RUNS: [(&str, SchedulerKind, bool); 5] = [
    ("heun", SchedulerKind::Heun, false),
    ("heun-karras", SchedulerKind::Heun, true),
    ("euler-karras", SchedulerKind::Euler, true),
    ("dpmpp-2m-karras", SchedulerKind::DpmPp2m, true),
    ("lms-karras", SchedulerKind::Lms, true),
];

/// Heun's `2n − 1` evaluations and Karras sigmas through the whole loop.
fn heun_and_karras_match(pipeline: &str, expected: &str) {
    let device = Device::flex();
    let sd = load_pipeline(pipeline, &device);
    let exp = Expected::load(expected);
    let runs = Expected::load("karras_heun");
    for (name, kind, karras_sigmas) in KARRAS_HEUN_RUNS {
        let key = format!("{expected}.{name}");
        let options = BuildOptions { karras_sigmas };
        let scheduler = schedulers::build_with(kind, &sd.scheduler_config, 5, options).unwrap();
        let ts: Vec<f32> = scheduler.timesteps().iter().map(|&t| t as f32).collect();
        // Karras timesteps: numpy's float32 log differs by an ulp or two (schedulers/tests.rs).
        assert_close(
            &format!("{key} timesteps"),
            &ts,
            &runs.host(&format!("{key}.timesteps")).1,
            1e-6,
        );
        let p = Txt2ImgParams {
            karras_sigmas,
            ..params(&exp, &device, kind)
        };
        let out = sd.txt2img(&p, |_, _| {}).unwrap();
        check(&runs, &format!("{key}.latents"), out.latents, TOL);
    }
}

#[test]
fn sd15_heun_and_karras_sigmas_match_diffusers() {
    heun_and_karras_match("tiny-sd15", "sd15");
}

#[test]
fn sd2v_heun_and_karras_sigmas_match_diffusers() {
    heun_and_karras_match("tiny-sd2v", "sd2v");
}

fn variants_match(pipeline: &str, expected: &str) {
    let device = Device::flex();
    let sd = load_pipeline(pipeline, &device);
    let exp = Expected::load(expected);
    let out = sd
        .txt2img(&params(&exp, &device, SchedulerKind::Pndm), |_, _| {})
        .unwrap();
    check(&exp, "pipe.pndm.image", out.image, TOL);

    let mut p = params(&exp, &device, SchedulerKind::Pndm);
    p.negative_prompt = Some("blurry, low quality".into());
    check(
        &exp,
        "pipe.neg.pndm.latents",
        sd.txt2img(&p, |_, _| {}).unwrap().latents,
        TOL,
    );

    let mut p = params(&exp, &device, SchedulerKind::Pndm);
    p.latents = None;
    p.seed = 42;
    check(
        &exp,
        "pipe.seed42.pndm.latents",
        sd.txt2img(&p, |_, _| {}).unwrap().latents,
        TOL,
    );

    let mut p = params(&exp, &device, SchedulerKind::Pndm);
    p.guidance = 1.0;
    check(
        &exp,
        "pipe.guidance1.pndm.latents",
        sd.txt2img(&p, |_, _| {}).unwrap().latents,
        TOL,
    );
}

#[test]
fn sd15_negative_prompt_seed_guidance_and_image_match_diffusers() {
    variants_match("tiny-sd15", "sd15");
}

#[test]
fn sd2v_negative_prompt_seed_guidance_and_image_match_diffusers() {
    variants_match("tiny-sd2v", "sd2v");
}
