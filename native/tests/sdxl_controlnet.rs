//! `maskforge txt2img` on SDXL and with ControlNets, end to end on the tiny fixtures: results
//! equal diffusers', and bad control inputs give clear errors.

mod common;

use common::{assert_clear_error, maskforge};

use maskforge_native::npy;

fn fixture(name: &str) -> String {
    common::fixtures().join(name).display().to_string()
}

fn expected(key: &str) -> (Vec<usize>, Vec<f32>) {
    common::expected("sdxl", key)
}

/// Runs txt2img from the fixture's `{tag}.latents_in` with `extra` flags and compares the
/// saved final latents with `expected_key` at 1e-3 of their scale.
fn run_and_compare(
    model: &str,
    tag: &str,
    steps: &str,
    guidance: &str,
    extra: &[&str],
    expected_key: &str,
) {
    let dir = tempfile::tempdir().unwrap();
    let (shape, init) = expected(&format!("{tag}.latents_in"));
    let latents = dir.path().join("init.npy");
    npy::write_f32(&latents, &shape, &init).unwrap();
    let saved = dir.path().join("final.npy");
    let png = dir.path().join("out.png");
    let model = fixture(model);
    let mut args = vec![
        "txt2img",
        "--model",
        &model,
        "--prompt",
        "a photo of a single cat",
        "--height",
        "64",
        "--width",
        "48",
        "--steps",
        steps,
        "--guidance",
        guidance,
        "--device",
        "cpu",
        "--latents",
        latents.to_str().unwrap(),
        "--save-latents",
        saved.to_str().unwrap(),
        "--out",
        png.to_str().unwrap(),
    ];
    args.extend(extra);
    let out = maskforge(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (got_shape, got) = npy::read_f32(&saved).unwrap();
    let (want_shape, want) = expected(expected_key);
    assert_eq!(got_shape, want_shape);
    let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
    let err = got
        .iter()
        .zip(&want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        err <= 1e-3 * scale,
        "{expected_key}: max abs error {err} (scale {scale})"
    );
    let img = image::open(&png).unwrap();
    assert_eq!((img.width(), img.height()), (48, 64));
}

#[test]
fn sdxl_folder_is_recognised_and_equals_diffusers_without_negative_prompt() {
    run_and_compare("tiny-sdxl", "xl", "4", "5", &[], "xl.txt2img.latents");
}

#[test]
fn controlnet_run_equals_diffusers() {
    let (net, image) = (fixture("tiny-controlnet-sd15"), fixture("control-rgb.png"));
    let flags = [
        "--controlnet",
        &net,
        "--control-image",
        &image,
        "--control-scale",
        "0.8",
    ];
    run_and_compare("tiny-sd15", "cn", "4", "7.5", &flags, "cn.latents");
}

#[test]
fn two_controlnets_from_repeated_flags_equal_diffusers() {
    let net = fixture("tiny-controlnet-sd15");
    let (rgb, palette) = (fixture("control-rgb.png"), fixture("control-palette.png"));
    let flags = [
        "--controlnet",
        &net,
        "--control-image",
        &rgb,
        "--control-scale",
        "0.8",
        "--controlnet",
        &net,
        "--control-image",
        &palette,
        "--control-scale",
        "0.5",
    ];
    run_and_compare("tiny-sd15", "cn", "4", "7.5", &flags, "mcn.latents");
}

#[test]
fn sdxl_controlnet_run_equals_diffusers() {
    let (net, image) = (fixture("tiny-controlnet-sdxl"), fixture("control-rgb.png"));
    let flags = [
        "--controlnet",
        &net,
        "--control-image",
        &image,
        "--control-scale",
        "0.6",
    ];
    run_and_compare("tiny-sdxl", "xlcn", "3", "5", &flags, "xlcn.latents");
}

fn controlnet_args<'a>(model: &'a str, net: &'a str, image: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "txt2img",
        "--model",
        model,
        "--prompt",
        "a cat",
        "--height",
        "64",
        "--width",
        "48",
        "--steps",
        "1",
        "--device",
        "cpu",
        "--controlnet",
        net,
        "--control-image",
        image,
        "--out",
        out,
    ]
}

#[test]
fn unreadable_control_image_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("map.png");
    std::fs::write(&bad, b"this is not an image").unwrap();
    let out_png = dir.path().join("out.png");
    let (model, net) = (fixture("tiny-sd15"), fixture("tiny-controlnet-sd15"));
    let out = maskforge(&controlnet_args(
        &model,
        &net,
        bad.to_str().unwrap(),
        out_png.to_str().unwrap(),
    ));
    assert_clear_error(&out, &["map.png", "not a readable PNG or JPEG image"]);
    let missing = dir.path().join("missing.png");
    let out = maskforge(&controlnet_args(
        &model,
        &net,
        missing.to_str().unwrap(),
        out_png.to_str().unwrap(),
    ));
    assert_clear_error(&out, &["missing.png", "cannot read control image"]);
    assert!(!out_png.exists());
}

#[test]
fn controlnet_that_does_not_fit_the_unet_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out_png = dir.path().join("out.png");
    let (model, net, image) = (
        fixture("tiny-sd15"),
        fixture("tiny-controlnet-sdxl"),
        fixture("control-rgb.png"),
    );
    let out = maskforge(&controlnet_args(
        &model,
        &net,
        &image,
        out_png.to_str().unwrap(),
    ));
    assert_clear_error(
        &out,
        &[
            "tiny-controlnet-sdxl",
            "does not fit the UNet",
            "cross_attention_dim",
        ],
    );
}

#[test]
fn controlnet_flags_must_pair_up() {
    let dir = tempfile::tempdir().unwrap();
    let out_png = dir.path().join("out.png");
    let (model, net) = (fixture("tiny-sd15"), fixture("tiny-controlnet-sd15"));
    let out = maskforge(&[
        "txt2img",
        "--model",
        &model,
        "--prompt",
        "a cat",
        "--height",
        "64",
        "--width",
        "48",
        "--device",
        "cpu",
        "--controlnet",
        &net,
        "--out",
        out_png.to_str().unwrap(),
    ]);
    assert_clear_error(&out, &["1 --controlnet but 0 --control-image"]);
}

#[test]
fn bench_runs_an_sdxl_pipeline() {
    let model = fixture("tiny-sdxl");
    let out = maskforge(&[
        "bench", "--model", &model, "--height", "64", "--width", "48", "--batch", "2", "--iters",
        "1", "--device", "cpu", "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["unet_ms"].as_f64().unwrap() > 0.0, "{report}");
    // CI installs oneDNN, which then runs the convolutions and the sgemm; elsewhere a CBLAS
    // or the `gemm` crate is the fallback.
    let gemm = report["cpu_gemm"].as_str().unwrap();
    let conv = report["cpu_conv"].as_str().unwrap();
    if std::env::var_os("CI").is_some() {
        assert!(
            gemm.starts_with("onednn 2.") && conv.starts_with("onednn 2."),
            "{report}"
        );
    } else {
        assert!(
            ["onednn", "cblas", "gemm crate"]
                .iter()
                .any(|p| gemm.starts_with(p))
                && (conv.starts_with("onednn") || conv.starts_with("im2col")),
            "{report}"
        );
    }
}

#[test]
fn bench_reports_skipped_parts_as_null() {
    let model = fixture("tiny-sdxl");
    let out = maskforge(&[
        "bench", "--model", &model, "--height", "64", "--width", "48", "--iters", "1", "--device",
        "cpu", "--skip", "unet,vae", "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["unet_ms"].is_null(), "{report}");
    assert!(report["vae_decode_ms"].is_null(), "{report}");
    assert!(report["text_encode_ms"].as_f64().unwrap() > 0.0, "{report}");
}

#[test]
fn generate_runs_mosaicfusion_on_an_sdxl_model() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("ds");
    let (model, categories) = (fixture("tiny-sdxl"), fixture("categories.json"));
    let out = maskforge(&[
        "generate",
        "--model",
        &model,
        "--categories",
        &categories,
        "--num-images",
        "1",
        "--region-size",
        "64x64",
        "--overlap",
        "16x16",
        "--steps",
        "2",
        "--device",
        "cpu",
        "--quiet",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest = std::fs::read_to_string(out_dir.join("manifest.jsonl")).unwrap();
    let record: serde_json::Value = serde_json::from_str(manifest.lines().next().unwrap()).unwrap();
    // SDXL has no cross-attention at 1/8: the 1/16 and 1/32 maps are the ones used.
    assert_eq!(
        record["regions"][0]["attention_resolutions"],
        serde_json::json!([16, 32])
    );
    let annotations: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("annotations.json")).unwrap()).unwrap();
    assert_eq!(
        annotations["images"].as_array().unwrap().len(),
        usize::from(record["kept"] == true)
    );
}
