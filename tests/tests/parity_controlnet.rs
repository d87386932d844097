//! ControlNet against diffusers' `StableDiffusionControlNetPipeline` and
//! `StableDiffusionXLControlNetPipeline` (CPU backend): control image preprocessing, step-0
//! residuals, whole runs, several ControlNets at once, single files, and mismatched nets.

use burn::tensor::{Device, Tensor};
use maskforge_core::models::diffusion::unet::ControlResiduals;
use maskforge_core::pipelines::{Control, StableDiffusion, Txt2ImgParams};
use maskforge_core::schedulers;
use maskforge_tests::sdxl_fixture::{HEIGHT, PROMPT, WIDTH};
use maskforge_tests::{Expected, assert_close, check, fixture_controls, load_pipeline, values};

/// Residuals at step 0: the ControlNet's own depth of float32 ops.
const TOL: f32 = 1e-4;
/// Final latents and images after 3–4 steps with guidance: differences grow through the loop.
const TOL_LATENTS: f32 = 1e-3;

/// The summed residuals of `controls` for the first UNet call of a CFG run from `latents_in`.
fn step_zero(
    sd: &StableDiffusion,
    controls: &[Control],
    latents_in: Tensor<4>,
    steps: usize,
) -> ControlResiduals {
    let scheduler = schedulers::build(sd.default_scheduler, &sd.scheduler_config, steps).unwrap();
    let latents = latents_in * scheduler.init_noise_sigma();
    let input = scheduler.scale_model_input(Tensor::cat(vec![latents.clone(), latents], 0), 0);
    let positive = sd.encode_text(&[PROMPT], None);
    let embeds = sd.encode_negative(None, &positive).cat(positive);
    let added = embeds.added_cond(HEIGHT, WIDTH);
    let t = scheduler.timesteps()[0] as f32;
    controls
        .iter()
        .map(|c| {
            c.net.model.forward(
                input.clone(),
                t,
                &embeds.context,
                added.as_ref(),
                &c.image,
                c.scale,
            )
        })
        .reduce(|a, b| a + b)
        .unwrap()
}

fn check_residuals(exp: &Expected, tag: &str, r: ControlResiduals) {
    assert_eq!(r.down.len(), 9, "{tag}: one residual per skip connection");
    for (i, d) in r.down.into_iter().enumerate() {
        check(exp, &format!("{tag}.down.{i}"), d, TOL);
    }
    check(exp, &format!("{tag}.mid"), r.mid, TOL);
}

fn run(
    sd: &StableDiffusion,
    exp: &Expected,
    tag: &str,
    steps: usize,
    guidance: f64,
    controls: Vec<Control>,
) -> maskforge_core::pipelines::Txt2ImgOutput {
    let device = sd.device.clone();
    let params = Txt2ImgParams {
        prompt: PROMPT.into(),
        height: HEIGHT,
        width: WIDTH,
        steps,
        guidance,
        latents: Some(exp.tensor(&format!("{tag}.latents_in"), &device)),
        controls,
        ..Default::default()
    };
    sd.txt2img(&params, |_, _| {}).unwrap()
}

#[test]
fn control_images_are_prepared_as_diffusers_does() {
    let device = Device::flex();
    let sd = load_pipeline("tiny-sd15", &device);
    let exp = Expected::load("sdxl");
    let controls = fixture_controls(
        &sd,
        &["tiny-controlnet-sd15"; 3],
        &["control-rgb.png", "control-palette.png", "control-rgba.png"],
        &[1.0],
    );
    // Pillow's resizes (Lanczos in fixed point, NEAREST for palettes, premultiplied alpha for
    // RGBA) ported exactly: equal to float rounding.
    check(&exp, "cn.control_rgb", controls[0].image.clone(), 1e-7);
    check(&exp, "cn.control_palette", controls[1].image.clone(), 1e-7);
    check(&exp, "cn.control_rgba", controls[2].image.clone(), 1e-7);
}

#[test]
fn sd15_controlnet_residuals_and_run_match() {
    let device = Device::flex();
    let sd = load_pipeline("tiny-sd15", &device);
    let exp = Expected::load("sdxl");
    let controls = fixture_controls(&sd, &["tiny-controlnet-sd15"], &["control-rgb.png"], &[0.8]);
    let latents_in = exp.tensor("cn.latents_in", &device);
    check_residuals(&exp, "cn.res", step_zero(&sd, &controls, latents_in, 4));
    let out = run(&sd, &exp, "cn", 4, 7.5, controls);
    check(&exp, "cn.latents", out.latents, TOL_LATENTS);
    check(&exp, "cn.image", out.image, TOL_LATENTS);
}

#[test]
fn two_controlnets_sum_their_residuals_as_diffusers_does() {
    let device = Device::flex();
    let sd = load_pipeline("tiny-sd15", &device);
    let exp = Expected::load("sdxl");
    let controls = fixture_controls(
        &sd,
        &["tiny-controlnet-sd15", "tiny-controlnet-sd15"],
        &["control-rgb.png", "control-palette.png"],
        &[0.8, 0.5],
    );
    let out = run(&sd, &exp, "cn", 4, 7.5, controls);
    check(&exp, "mcn.latents", out.latents, TOL_LATENTS);
}

/// SD 1.5: the original release's `control_model.*` layout; SDXL: diffusers names in one file.
#[test]
fn single_file_controlnets_give_the_folder_residuals() {
    let device = Device::flex();
    let exp = Expected::load("sdxl");
    for (model, net, tag) in [
        ("tiny-sd15", "tiny-controlnet-sd15", "cn"),
        ("tiny-sdxl", "tiny-controlnet-sdxl", "xlcn"),
    ] {
        let sd = load_pipeline(model, &device);
        let latents_in = exp.tensor(&format!("{tag}.latents_in"), &device);
        let file = format!("{net}.safetensors");
        let folder = fixture_controls(&sd, &[net], &["control-rgb.png"], &[0.8]);
        let single = fixture_controls(&sd, &[file.as_str()], &["control-rgb.png"], &[0.8]);
        let a = step_zero(&sd, &folder, latents_in.clone(), 4);
        let b = step_zero(&sd, &single, latents_in, 4);
        for (i, (x, y)) in b.down.into_iter().zip(a.down).enumerate() {
            assert_close(&format!("{file} down.{i}"), &values(x), &values(y), 0.0);
        }
        assert_close(&format!("{file} mid"), &values(b.mid), &values(a.mid), 0.0);
    }
}

#[test]
fn sdxl_controlnet_residuals_and_run_match() {
    let device = Device::flex();
    let sd = load_pipeline("tiny-sdxl", &device);
    let exp = Expected::load("sdxl");
    let controls = fixture_controls(&sd, &["tiny-controlnet-sdxl"], &["control-rgb.png"], &[0.6]);
    let latents_in = exp.tensor("xlcn.latents_in", &device);
    check_residuals(&exp, "xlcn.res", step_zero(&sd, &controls, latents_in, 3));
    let out = run(&sd, &exp, "xlcn", 3, 5.0, controls);
    check(&exp, "xlcn.latents", out.latents, TOL_LATENTS);
    check(&exp, "xlcn.image", out.image, TOL_LATENTS);
}

#[test]
fn a_controlnet_for_another_unet_is_a_clear_error() {
    let device = Device::flex();
    let sd = load_pipeline("tiny-sd15", &device);
    let err = maskforge_native::control::load_controls(
        &sd,
        &[maskforge_tests::fixture("tiny-controlnet-sdxl")],
        &[maskforge_tests::fixture("control-rgb.png")],
        &[],
        HEIGHT,
        WIDTH,
    )
    .unwrap_err();
    let message = format!("{err:#}");
    assert!(
        message.contains("tiny-controlnet-sdxl") && message.contains("does not fit the UNet"),
        "{message}"
    );
}
