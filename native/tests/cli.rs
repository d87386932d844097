//! The `maskforge` binary end to end on the tiny fixtures: results equal diffusers', and bad
//! input gives a clear error naming the file, never a panic.

mod common;

use std::process::Command;

use common::{assert_clear_error, copy_dir, fixtures, maskforge};

use maskforge_native::npy;

fn expected(key: &str) -> (Vec<usize>, Vec<f32>) {
    common::expected("sd15", key)
}

fn txt2img_args<'a>(model: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "txt2img",
        "--model",
        model,
        "--prompt",
        "a photo of a single cat",
        "--height",
        "64",
        "--width",
        "64",
        "--steps",
        "5",
        "--guidance",
        "7.5",
        "--device",
        "cpu",
        "--out",
        out,
    ]
}

#[test]
fn txt2img_with_given_latents_equals_diffusers() {
    let dir = tempfile::tempdir().unwrap();
    let (shape, init) = expected("pipe.init_latents");
    let latents = dir.path().join("init.npy");
    npy::write_f32(&latents, &shape, &init).unwrap();
    let saved = dir.path().join("final.npy");
    let png = dir.path().join("out.png");
    let model = fixtures().join("tiny-sd15");
    let mut args = txt2img_args(model.to_str().unwrap(), png.to_str().unwrap());
    args.extend([
        "--latents",
        latents.to_str().unwrap(),
        "--save-latents",
        saved.to_str().unwrap(),
    ]);
    let out = maskforge(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (shape, got) = npy::read_f32(&saved).unwrap();
    let (want_shape, want) = expected("pipe.pndm.latents");
    assert_eq!(shape, want_shape);
    let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
    let err = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        err <= 1e-3 * scale,
        "final latents differ by {err} (scale {scale})"
    );

    let img = image::open(&png).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (64, 64));
    let (_, want) = expected("pipe.pndm.image");
    let mut worst = 0f32;
    for (x, y, p) in img.enumerate_pixels() {
        for c in 0..3 {
            let w = want[c * 64 * 64 + (y * 64 + x) as usize] * 255.0;
            worst = worst.max((p[c] as f32 - w).abs());
        }
    }
    assert!(
        worst <= 1.0,
        "PNG differs from diffusers' image by {worst} levels"
    );
}

#[test]
fn txt2img_heun_takes_karras_sigmas() {
    let dir = tempfile::tempdir().unwrap();
    let model = fixtures().join("tiny-sd15");
    let run = |karras: bool| {
        let png = dir.path().join(format!("heun-{karras}.png"));
        let latents = dir.path().join(format!("heun-{karras}.npy"));
        let mut args = txt2img_args(model.to_str().unwrap(), png.to_str().unwrap());
        args.extend([
            "--scheduler",
            "heun",
            "--save-latents",
            latents.to_str().unwrap(),
        ]);
        if karras {
            args.push("--karras-sigmas");
        }
        let out = maskforge(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        npy::read_f32(&latents).unwrap().1
    };
    let (plain, karras) = (run(false), run(true));
    assert!(plain.iter().chain(&karras).all(|v| v.is_finite()));
    assert_ne!(plain, karras);
}

#[test]
fn karras_sigmas_where_diffusers_has_none_are_a_clear_error() {
    let model = fixtures().join("tiny-sd15");
    let mut args = txt2img_args(model.to_str().unwrap(), "/tmp/never.png");
    args.extend(["--scheduler", "euler-a", "--karras-sigmas"]);
    let out = maskforge(&args);
    assert_clear_error(
        &out,
        &["euler-a", "Karras", "EulerAncestralDiscreteScheduler"],
    );
}

#[test]
fn missing_model_folder_is_a_clear_error() {
    let out = maskforge(&txt2img_args("/nonexistent/model", "/tmp/x.png"));
    assert_clear_error(&out, &["/nonexistent/model"]);
}

/// A copy of tiny-sd15 in a temporary folder, to break.
fn model_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixtures().join("tiny-sd15"), dir.path());
    dir
}

#[test]
fn truncated_safetensors_is_a_clear_error() {
    let model = model_copy();
    let weights = model
        .path()
        .join("unet/diffusion_pytorch_model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    let png = model.path().join("out.png");
    let out = maskforge(&txt2img_args(
        model.path().to_str().unwrap(),
        png.to_str().unwrap(),
    ));
    assert_clear_error(
        &out,
        &[
            "unet/diffusion_pytorch_model.safetensors",
            "not a valid safetensors file",
        ],
    );
    assert!(!png.exists());
}

#[test]
fn garbage_safetensors_is_a_clear_error() {
    let model = model_copy();
    let weights = model.path().join("vae/diffusion_pytorch_model.safetensors");
    std::fs::write(&weights, b"this is not a safetensors file at all").unwrap();
    let png = model.path().join("out.png");
    let out = maskforge(&txt2img_args(
        model.path().to_str().unwrap(),
        png.to_str().unwrap(),
    ));
    assert_clear_error(&out, &["vae/diffusion_pytorch_model.safetensors"]);
}

#[test]
fn broken_config_json_is_a_clear_error() {
    let model = model_copy();
    std::fs::write(
        model.path().join("unet/config.json"),
        b"{\"block_out_channels\": [32, ",
    )
    .unwrap();
    let png = model.path().join("out.png");
    let out = maskforge(&txt2img_args(
        model.path().to_str().unwrap(),
        png.to_str().unwrap(),
    ));
    assert_clear_error(&out, &["unet/config.json", "invalid UNet config"]);
}

#[test]
fn wrong_weight_shape_names_key_and_shapes() {
    let model = model_copy();
    let config = model.path().join("unet/config.json");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("\"cross_attention_dim\": 32", "\"cross_attention_dim\": 48"),
    )
    .unwrap();
    let png = model.path().join("out.png");
    let out = maskforge(&txt2img_args(
        model.path().to_str().unwrap(),
        png.to_str().unwrap(),
    ));
    assert_clear_error(
        &out,
        &["attn2.to_k.weight", "expected [32, 48]", "shape [32, 32]"],
    );
}

#[test]
fn size_not_multiple_of_8_is_a_clear_error() {
    let model = fixtures().join("tiny-sd15");
    let mut args = txt2img_args(model.to_str().unwrap(), "/tmp/never.png");
    args[6] = "65";
    let out = maskforge(&args);
    assert_clear_error(&out, &["multiples of 8", "65"]);
}

#[test]
fn latents_of_the_wrong_shape_are_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let latents = dir.path().join("bad.npy");
    npy::write_f32(&latents, &[1, 4, 9, 8], &vec![0.0; 288]).unwrap();
    let model = fixtures().join("tiny-sd15");
    let mut args = txt2img_args(model.to_str().unwrap(), "/tmp/never.png");
    args.extend(["--latents", latents.to_str().unwrap()]);
    let out = maskforge(&args);
    assert_clear_error(&out, &["bad.npy", "[1, 4, 9, 8]", "[1, 4, 8, 8]"]);
}

#[test]
fn uncached_repo_id_offline_is_a_clear_error() {
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_maskforge"))
        .args(txt2img_args("someorg/some-model", "/tmp/never.png"))
        .env("HF_HOME", home.path())
        // A closed local port: the download fails at once, as it does offline.
        .env("HF_ENDPOINT", "http://127.0.0.1:9")
        .output()
        .unwrap();
    assert_clear_error(
        &out,
        &[
            "someorg/some-model",
            "model_index.json",
            "Hugging Face cache",
        ],
    );
}
