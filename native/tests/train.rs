//! `maskforge train unet` end to end on the tiny fixtures: a run killed with `kill -9` and
//! resumed ends with the same weights as an uninterrupted one, the loss log has one row per
//! step, a checkpoint exports as the run's end would write it, the result is a diffusers
//! folder `txt2img` loads (with the base model's MosaicFusion settings), a UNet trains from
//! scratch from a config, token grounding adds its term, a VAE fine-tunes whole or its decoder
//! only, and bad input is a clear error.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{assert_clear_error, fixtures, maskforge};
use maskforge_core::weights::{SafetensorsFile, SafetensorsWeights, Weights};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn ok(out: std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    stderr
}

/// The one JSON line a successful `bench` prints.
fn json_report(out: std::process::Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    ok(out);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// A 16-image shapes world at 64² (8×8 latents for the tiny VAE).
fn shapes(dir: &Path) -> PathBuf {
    let data = dir.join("shapes");
    ok(maskforge(&[
        "shapes",
        "--num-images",
        "16",
        "--size",
        "64",
        "--out",
        s(&data),
        "--quiet",
    ]));
    data
}

/// Every tensor of a safetensors file, by key, as f32.
fn tensors(path: &Path) -> BTreeMap<String, Vec<f32>> {
    let bytes = maskforge_native::source::map_file(path).unwrap();
    let file = SafetensorsWeights::new(vec![
        SafetensorsFile::parse(path.display().to_string(), bytes).unwrap(),
    ])
    .unwrap();
    Weights::keys(&file)
        .unwrap()
        .into_iter()
        .map(|k| {
            let t = file.read(&k).unwrap().unwrap();
            (k, t.data)
        })
        .collect()
}

/// `dir/bare`: the first image of the shapes world `data` as `a.png`, captioned in a
/// `metadata.jsonl` when `caption` is given (no label maps, no conditioning images).
fn image_folder(dir: &Path, data: &Path, caption: Option<&str>) -> PathBuf {
    let bare = dir.join("bare");
    std::fs::create_dir_all(&bare).unwrap();
    std::fs::copy(data.join("images/000000000001.png"), bare.join("a.png")).unwrap();
    if let Some(text) = caption {
        let line = serde_json::json!({ "file_name": "a.png", "text": text });
        std::fs::write(bare.join("metadata.jsonl"), format!("{line}\n")).unwrap();
    }
    bare
}

fn train_args<'a>(data: &'a Path, out: &'a Path, model: &'a Path, steps: &'a str) -> Vec<&'a str> {
    vec![
        "train",
        "unet",
        "--model",
        s(model),
        "--data",
        s(data),
        "--out",
        s(out),
        "--steps",
        steps,
        "--batch",
        "2",
        "--lr",
        "1e-3",
        "--lr-schedule",
        "cosine",
        "--warmup",
        "2",
        "--ema",
        "--checkpoint-every",
        "5",
        "--seed",
        "3",
        "--quiet",
    ]
}

const UNET: &str = "unet/diffusion_pytorch_model.safetensors";

#[test]
fn killed_run_resumes_to_the_same_weights() {
    let dir = tempfile::tempdir().unwrap();
    let data = shapes(dir.path());
    let model = fixtures().join("tiny-sd15");
    let whole = dir.path().join("whole");
    ok(maskforge(&train_args(&data, &whole, &model, "30")));

    let killed = dir.path().join("killed");
    let mut child = Command::new(env!("CARGO_BIN_EXE_maskforge"))
        .args(train_args(&data, &killed, &model, "30"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let first = killed.join("checkpoints/step-00000010");
    let deadline = Instant::now() + Duration::from_secs(300);
    while !first.exists() {
        assert!(Instant::now() < deadline, "no checkpoint after 300 s");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it was killed"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(!killed.join(UNET).exists(), "killed before the end");
    let log = std::fs::read_to_string(killed.join("logs/loss.csv")).unwrap();
    let rows_at_kill = log.lines().count() - 1;
    assert!(
        (10..30).contains(&rows_at_kill),
        "{rows_at_kill} rows at the kill"
    );

    ok(maskforge(&train_args(&data, &killed, &model, "30")));
    let a = std::fs::read(whole.join(UNET)).unwrap();
    let b = std::fs::read(killed.join(UNET)).unwrap();
    assert!(
        a == b,
        "resumed weights differ from the uninterrupted run's"
    );

    let log = std::fs::read_to_string(killed.join("logs/loss.csv")).unwrap();
    let steps: Vec<usize> = log
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(steps, (1..=30).collect::<Vec<_>>(), "one row per step");
    let losses = |log: &str| -> Vec<String> {
        log.lines()
            .skip(1)
            .map(|l| l.split(',').take(4).collect::<Vec<_>>().join(","))
            .collect()
    };
    let whole_log = std::fs::read_to_string(whole.join("logs/loss.csv")).unwrap();
    assert_eq!(
        losses(&log),
        losses(&whole_log),
        "same losses, learning rates and norms"
    );
    let png = image::open(killed.join("logs/loss.png")).unwrap();
    assert_eq!((png.width(), png.height()), (800, 400));

    // Only the last two checkpoints are kept.
    let mut kept: Vec<String> = std::fs::read_dir(killed.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    kept.sort();
    assert_eq!(kept, ["step-00000025", "step-00000030"]);

    // `--export` writes a checkpoint's model as the run's end does, without training.
    let export = |step: &str, to: &Path| {
        let mut args = train_args(&data, &killed, &model, "30");
        args.extend(["--export", s(to), "--export-step", step]);
        maskforge(&args)
    };
    let at_30 = dir.path().join("at-30");
    ok(export("30", &at_30));
    assert!(
        std::fs::read(at_30.join(UNET)).unwrap() == b,
        "the last checkpoint's export differs from the run's result"
    );
    assert!(at_30.join("scheduler/scheduler_config.json").is_file());
    let at_25 = dir.path().join("at-25");
    ok(export("25", &at_25));
    assert!(std::fs::read(at_25.join(UNET)).unwrap() != b);
    let log_after = std::fs::read_to_string(killed.join("logs/loss.csv")).unwrap();
    assert_eq!(log_after, log, "an export leaves the run as it was");
    assert_clear_error(
        &export("10", &dir.path().join("at-10")),
        &["no checkpoint at step 10", "25, 30"],
    );
    let nothing = dir.path().join("nothing");
    let mut not_a_run = train_args(&data, &nothing, &model, "30");
    not_a_run.extend(["--export", s(&at_25)]);
    assert_clear_error(&maskforge(&not_a_run), &["not a training run"]);

    // The result is a diffusers folder.
    let image = dir.path().join("out.png");
    ok(maskforge(&[
        "txt2img",
        "--model",
        s(&killed),
        "--prompt",
        "a photo of a single red star",
        "--steps",
        "3",
        "--height",
        "64",
        "--width",
        "64",
        "--out",
        s(&image),
    ]));
    assert!(image.exists());

    // Resuming with other arguments is refused.
    let mut other = train_args(&data, &killed, &model, "30");
    let lr = other.iter().position(|a| *a == "1e-3").unwrap();
    other[lr] = "2e-3";
    assert_clear_error(&maskforge(&other), &["train.json", "other arguments"]);
}

#[test]
fn trains_a_unet_from_scratch_and_reports_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let data = shapes(dir.path());
    let model = fixtures().join("tiny-sd15");
    let config = fixtures().join("tiny-train/unet/config.json");
    let out = dir.path().join("scratch");
    let mut args = train_args(&data, &out, &model, "3");
    args.extend(["--unet-config", s(&config), "--objective", "v_prediction"]);
    ok(maskforge(&args));
    let scheduler = std::fs::read_to_string(out.join("scheduler/scheduler_config.json")).unwrap();
    assert!(scheduler.contains("v_prediction"), "{scheduler}");
    let unet_config = std::fs::read(out.join("unet/config.json")).unwrap();
    assert_eq!(unet_config, std::fs::read(&config).unwrap());

    // The text encoder trained too: written beside the UNet, changed.
    let te = dir.path().join("te");
    let mut args = train_args(&data, &te, &model, "2");
    args.push("--train-text-encoder");
    ok(maskforge(&args));
    let trained = std::fs::read(te.join("text_encoder/model.safetensors")).unwrap();
    let base = std::fs::read(model.join("text_encoder/model.safetensors")).unwrap();
    assert!(trained.len() > 1000 && trained != base);

    // Captions chosen by JSON pointer; a pointer to nothing is a clear error.
    let (pointer, nothing) = (dir.path().join("pointer"), dir.path().join("nothing"));
    let mut args = train_args(&data, &pointer, &model, "1");
    args.extend([
        "--caption-field",
        "/objects/0/caption,/objects/0/caption_plain",
    ]);
    ok(maskforge(&args));
    let mut args = train_args(&data, &nothing, &model, "1");
    args.extend(["--caption-field", "/objects/7/caption"]);
    assert_clear_error(
        &maskforge(&args),
        &["captions.jsonl line 1", "no caption `/objects/7/caption`"],
    );

    // A data folder without captions.
    let bare = image_folder(dir.path(), &data, None);
    let o = dir.path().join("o1");
    assert_clear_error(
        &maskforge(&train_args(&bare, &o, &model, "1")),
        &["bare", "no captions file"],
    );

    // Images of mixed sizes.
    let mixed = dir.path().join("mixed");
    ok(maskforge(&[
        "shapes",
        "--num-images",
        "2",
        "--size",
        "64",
        "--out",
        s(&mixed),
        "--quiet",
    ]));
    image::RgbImage::new(32, 48)
        .save(mixed.join("images/000000000002.png"))
        .unwrap();
    let o = dir.path().join("o2");
    assert_clear_error(
        &maskforge(&train_args(&mixed, &o, &model, "1")),
        &["000000000002.png", "32×48", "one size"],
    );

    // A config that does not fit the pipeline, and one that does not fit the weights.
    let wide = dir.path().join("wide.json");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &wide,
        text.replace("\"cross_attention_dim\": 32", "\"cross_attention_dim\": 48"),
    )
    .unwrap();
    let o = dir.path().join("o3");
    let mut args = train_args(&data, &o, &model, "1");
    args.extend(["--unet-config", s(&wide)]);
    assert_clear_error(
        &maskforge(&args),
        &["wide.json", "cross_attention_dim 48", "hidden size 32"],
    );

    // Grown from the pipeline's UNet: the prompt pooled into the time embedding is the one
    // new layer; a config whose layers do not fit the UNet's weights is a clear error.
    let text_config = dir.path().join("text.json");
    let base_config = std::fs::read_to_string(model.join("unet/config.json")).unwrap();
    std::fs::write(
        &text_config,
        base_config
            .replace(
                "\"addition_embed_type\": null",
                "\"addition_embed_type\": \"text\"",
            )
            .replace(
                "\"addition_embed_type_num_heads\": 64",
                "\"addition_embed_type_num_heads\": 4",
            ),
    )
    .unwrap();
    let grown = dir.path().join("grown");
    let mut args = train_args(&data, &grown, &model, "2");
    args.extend(["--unet-config", s(&text_config), "--grow"]);
    ok(maskforge(&args));
    let (base, trained) = (tensors(&model.join(UNET)), tensors(&grown.join(UNET)));
    let added: Vec<&String> = trained.keys().filter(|k| !base.contains_key(*k)).collect();
    assert!(
        added.len() == 13 && added.iter().all(|k| k.starts_with("add_embedding.")),
        "{added:?}"
    );
    assert!(base.keys().all(|k| trained.contains_key(k)));
    ok(maskforge(&[
        "txt2img",
        "--model",
        s(&grown),
        "--prompt",
        "a photo of a single red star",
        "--height",
        "64",
        "--width",
        "64",
        "--steps",
        "2",
        "--out",
        s(&dir.path().join("grown.png")),
    ]));
    let wide_text = dir.path().join("wide-text.json");
    std::fs::write(
        &wide_text,
        std::fs::read_to_string(&text_config)
            .unwrap()
            .replace("\"cross_attention_dim\": 32", "\"cross_attention_dim\": 48"),
    )
    .unwrap();
    let o = dir.path().join("o5");
    let mut args = train_args(&data, &o, &model, "1");
    args.extend(["--unet-config", s(&wide_text), "--grow"]);
    assert_clear_error(
        &maskforge(&args),
        &[
            "diffusion_pytorch_model.safetensors",
            "attn2.to_k.weight",
            "wide-text.json",
        ],
    );

    let broken = dir.path().join("broken");
    ok(maskforge(&[
        "train",
        "unet",
        "--model",
        s(&model),
        "--data",
        s(&data),
        "--out",
        s(&broken),
        "--steps",
        "1",
        "--quiet",
    ]));
    std::fs::write(
        broken.join("unet/config.json"),
        std::fs::read_to_string(broken.join("unet/config.json"))
            .unwrap()
            .replace("\"layers_per_block\": 2", "\"layers_per_block\": 3"),
    )
    .unwrap();
    let o = dir.path().join("o4");
    assert_clear_error(
        &maskforge(&[
            "train",
            "unet",
            "--model",
            s(&broken),
            "--data",
            s(&data),
            "--out",
            s(&o),
            "--steps",
            "1",
            "--quiet",
        ]),
        &[
            "diffusion_pytorch_model.safetensors",
            "down_blocks.0.resnets.2",
        ],
    );
}

#[test]
fn fine_tuning_the_embedded_model_keeps_its_mosaicfusion_settings() {
    let dir = tempfile::tempdir().unwrap();
    let data = shapes(dir.path());
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/shapes");
    let out = dir.path().join("tuned");
    ok(maskforge(&train_args(&data, &out, &model, "1")));
    assert_eq!(
        std::fs::read(out.join("mosaic.json")).unwrap(),
        std::fs::read(model.join("mosaic.json")).unwrap()
    );
}

/// The loss of a run's first step, from its loss log.
fn first_loss(run: &Path) -> f64 {
    let log = std::fs::read_to_string(run.join("logs/loss.csv")).unwrap();
    let row = log
        .lines()
        .find(|l| l.starts_with("1,"))
        .unwrap()
        .to_string();
    row.split(',').nth(1).unwrap().parse().unwrap()
}

#[test]
fn token_grounding_changes_training_and_needs_label_maps() {
    let dir = tempfile::tempdir().unwrap();
    let data = shapes(dir.path());
    let model = fixtures().join("tiny-sd15");
    let with_captions = |args: &mut Vec<&str>| {
        args.extend([
            "--caption-field",
            "/objects/0/caption,/objects/0/caption_plain",
        ])
    };
    let (plain, grounded) = (dir.path().join("plain"), dir.path().join("grounded"));
    let mut args = train_args(&data, &plain, &model, "2");
    with_captions(&mut args);
    ok(maskforge(&args));
    let mut args = train_args(&data, &grounded, &model, "2");
    with_captions(&mut args);
    args.extend(["--grounding-loss", "1"]);
    ok(maskforge(&args));
    // The same draws, one more term: a higher loss and other weights.
    let (p, g) = (first_loss(&plain), first_loss(&grounded));
    assert!(g > p + 1e-3, "grounded loss {g}, plain {p}");
    assert_ne!(
        std::fs::read(plain.join(UNET)).unwrap(),
        std::fs::read(grounded.join(UNET)).unwrap()
    );

    // Data without label maps, and a label map of the wrong size.
    let bare = image_folder(dir.path(), &data, Some("a photo of a single star"));
    let o = dir.path().join("o1");
    let mut args = train_args(&bare, &o, &model, "1");
    args.extend(["--grounding-loss", "1"]);
    assert_clear_error(&maskforge(&args), &["a.png", "--grounding-loss", "labels"]);
    image::GrayImage::new(32, 32)
        .save(data.join("annotations/000000000003.png"))
        .unwrap();
    let o = dir.path().join("o2");
    let mut args = train_args(&data, &o, &model, "1");
    args.extend(["--grounding-loss", "1"]);
    assert_clear_error(
        &maskforge(&args),
        &["000000000003.png", "label map is 32×32", "64×64"],
    );
}

#[test]
fn trains_a_controlnet_that_imgsyn_loads() {
    let dir = tempfile::tempdir().unwrap();
    let data = shapes(dir.path());
    let model = fixtures().join("tiny-sd15");
    let out = dir.path().join("mask2img");
    let args = |out: &Path, channels: &str| -> Vec<String> {
        [
            "train",
            "controlnet",
            "--model",
            s(&model),
            "--data",
            s(&data),
            "--out",
            s(out),
            "--steps",
            "3",
            "--batch",
            "2",
            "--lr",
            "1e-3",
            "--conditioning-channels",
            channels,
            "--quiet",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect()
    };
    let run = |a: Vec<String>| maskforge(&a.iter().map(String::as_str).collect::<Vec<_>>());
    ok(run(args(&out, "8,8,16,16")));
    let config = std::fs::read_to_string(out.join("config.json")).unwrap();
    assert!(
        config.contains("\"_class_name\": \"ControlNetModel\""),
        "{config}"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("logs/loss.csv"))
            .unwrap()
            .lines()
            .count(),
        4
    );

    // The consistency reward on every item: the same draws, one more term.
    let rewarded = dir.path().join("rewarded");
    let mut a = args(&rewarded, "8,8,16,16");
    a.extend(
        [
            "--consistency-weight",
            "1",
            "--consistency-max-timestep",
            "999",
        ]
        .map(String::from),
    );
    ok(run(a));
    let (p, r) = (first_loss(&out), first_loss(&rewarded));
    assert!(r > p + 1e-3, "rewarded loss {r}, plain {p}");
    assert_ne!(
        std::fs::read(out.join("diffusion_pytorch_model.safetensors")).unwrap(),
        std::fs::read(rewarded.join("diffusion_pytorch_model.safetensors")).unwrap()
    );
    let mut a = args(&dir.path().join("o3"), "8,8,16,16");
    a.push("--consistency-weight=-1".into());
    assert_clear_error(&run(a), &["--consistency-weight", "≥ 0"]);

    let synth = dir.path().join("imgsyn");
    ok(maskforge(&[
        "imgsyn",
        "--labels",
        s(&data.join("annotations")),
        "--prompts",
        s(&data.join("prompts.jsonl")),
        "--per-mask",
        "1",
        "--model",
        s(&model),
        "--controlnet",
        s(&out),
        "--palette",
        s(&data.join("palette.json")),
        "--out",
        s(&synth),
        "--height",
        "64",
        "--width",
        "64",
        "--steps",
        "2",
    ]));
    assert_eq!(std::fs::read_dir(synth.join("images")).unwrap().count(), 16);

    // A conditioning encoder that does not downsample as the VAE does.
    assert_clear_error(
        &run(args(&dir.path().join("o1"), "8,16")),
        &["downsamples by 2", "VAE by 8"],
    );
    // Captions without the conditioning images.
    let bare = image_folder(dir.path(), &data, Some("a star"));
    let mut a = args(&dir.path().join("o2"), "8,8,16,16");
    let d = a.iter().position(|x| x == "--data").unwrap();
    a[d + 1] = s(&bare).to_string();
    assert_clear_error(&run(a), &["metadata.jsonl line 1", "no `colors` path"]);
}

#[test]
fn trains_a_vae_from_a_config_or_a_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let data = shapes(dir.path());
    let config = fixtures().join("tiny-train/vae/config.json");
    let out = dir.path().join("vae");
    // A plain image folder (no captions) is enough for a VAE.
    ok(maskforge(&[
        "train",
        "vae",
        "--config",
        s(&config),
        "--data",
        s(&data.join("images")),
        "--out",
        s(&out),
        "--steps",
        "2",
        "--batch",
        "2",
        "--quiet",
    ]));
    assert_eq!(
        std::fs::read(out.join("config.json")).unwrap(),
        std::fs::read(&config).unwrap()
    );
    assert!(out.join("diffusion_pytorch_model.safetensors").is_file());

    // Fine-tuning a pipeline's VAE; then the same with a config that does not fit its weights.
    let model = fixtures().join("tiny-sd15");
    ok(maskforge(&[
        "train",
        "vae",
        "--model",
        s(&model),
        "--data",
        s(&data),
        "--out",
        s(&dir.path().join("ft")),
        "--steps",
        "1",
        "--batch",
        "2",
        "--quiet",
    ]));

    // The decoder only: the encoder's and quant_conv's tensors stay bit for bit.
    let decoder = dir.path().join("decoder");
    ok(maskforge(&[
        "train",
        "vae",
        "--model",
        s(&model),
        "--decoder-only",
        "--data",
        s(&data),
        "--out",
        s(&decoder),
        "--steps",
        "2",
        "--batch",
        "2",
        "--quiet",
    ]));
    let base = tensors(&model.join("vae/diffusion_pytorch_model.safetensors"));
    let tuned = tensors(&decoder.join("diffusion_pytorch_model.safetensors"));
    assert_eq!(
        base.keys().collect::<Vec<_>>(),
        tuned.keys().collect::<Vec<_>>()
    );
    let moved: Vec<&String> = base.keys().filter(|k| base[*k] != tuned[*k]).collect();
    assert!(
        !moved.is_empty()
            && moved
                .iter()
                .all(|k| k.starts_with("decoder.") || k.starts_with("post_quant_conv.")),
        "{moved:?}"
    );
    assert_clear_error(
        &maskforge(&[
            "train",
            "vae",
            "--config",
            s(&config),
            "--decoder-only",
            "--data",
            s(&data),
            "--out",
            s(&dir.path().join("o")),
        ]),
        &["--decoder-only", "--model"],
    );

    let bad = dir.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::copy(
        model.join("vae/diffusion_pytorch_model.safetensors"),
        bad.join("diffusion_pytorch_model.safetensors"),
    )
    .unwrap();
    let text = std::fs::read_to_string(model.join("vae/config.json")).unwrap();
    std::fs::write(
        bad.join("config.json"),
        text.replace("\"latent_channels\": 4", "\"latent_channels\": 8"),
    )
    .unwrap();
    assert_clear_error(
        &maskforge(&[
            "train",
            "vae",
            "--model",
            s(&bad),
            "--data",
            s(&data),
            "--out",
            s(&dir.path().join("o")),
            "--steps",
            "1",
            "--quiet",
        ]),
        &["diffusion_pytorch_model.safetensors", "conv_out"],
    );
}

#[test]
fn bench_times_a_training_step() {
    let model = fixtures().join("tiny-sd15");
    let out = maskforge(&[
        "bench",
        "--model",
        s(&model),
        "--height",
        "64",
        "--width",
        "64",
        "--batch",
        "2",
        "--iters",
        "1",
        "--device",
        "cpu",
        "--skip",
        "unet,vae,text",
        "--train",
    ]);
    let report = json_report(out);
    let ms = report["train_step_ms"]
        .as_f64()
        .unwrap_or_else(|| panic!("{report}"));
    assert!(ms > 0.0 && ms.is_finite(), "{report}");
}

#[test]
fn bench_scores_masks_against_the_saturation_truth() {
    let model = fixtures().join("tiny-sd15");
    let controlnet = fixtures().join("tiny-controlnet-sd15");
    let base = [
        "bench",
        "--height",
        "64",
        "--width",
        "64",
        "--device",
        "cpu",
        "--skip",
        "unet,vae,text",
        "--iters",
        "1",
        "--truth",
        "2",
        "--truth-steps",
        "2",
    ];
    let mut args = base.to_vec();
    args.extend([
        "--model",
        s(&model),
        "--text2mask",
        s(&model),
        "--controlnet",
        s(&controlnet),
    ]);
    let out = maskforge(&args);
    let report = json_report(out);
    let check = |block: &serde_json::Value, list: &str, count: Option<&str>, mean: &str| {
        let ious: Vec<f64> = block[list]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        if let Some(count) = count {
            assert_eq!(ious.len() as u64, block[count].as_u64().unwrap());
        }
        assert!(ious.iter().all(|v| (0.0..=1.0).contains(v)), "{block}");
        let average = ious.iter().sum::<f64>() / ious.len().max(1) as f64;
        assert!(
            (block[mean].as_f64().unwrap() - average).abs() < 1e-12,
            "{block}"
        );
    };
    let truth = &report["truth"];
    check(truth, "region_ious", Some("regions"), "region_mean_iou");
    check(truth, "annotation_ious", Some("annotations"), "mean_iou");
    // Two samples of up to 4 regions; at most one annotation per region (`largest`).
    let regions = truth["regions"].as_u64().unwrap();
    assert!((2..=8).contains(&regions), "{truth}");
    assert!(truth["annotations"].as_u64().unwrap() <= regions, "{truth}");
    check_color_following(&truth["color_following"], 2);
    check_shape_following(&truth["shape_following"], 2);
    // MaskSyn, and ImgSyn on the world's own maps: where each sample's labels and image
    // differ, its IoU agree / (agree + missed + extra), and `pixels` the sum over samples.
    const KINDS: [&str; 5] = [
        "agree",
        "missed_edge",
        "missed_inside",
        "extra_edge",
        "extra_outside",
    ];
    let count = |p: &serde_json::Value, k: &str| p[k].as_u64().unwrap_or_else(|| panic!("{p}"));
    for block in ["masksyn", "imgsyn"] {
        let block = &report["truth"][block];
        check(block, "sample_ious", Some("samples"), "mean_iou");
        let samples = block["sample_pixels"].as_array().unwrap();
        assert_eq!(samples.len(), 2, "{block}");
        for (p, iou) in samples.iter().zip(block["sample_ious"].as_array().unwrap()) {
            let union: u64 = KINDS.iter().map(|k| count(p, k)).sum();
            assert!(union <= 64 * 64, "{p}");
            let want = if union == 0 {
                1.0
            } else {
                count(p, "agree") as f64 / union as f64
            };
            assert!((iou.as_f64().unwrap() - want).abs() < 1e-12, "{p} {iou}");
        }
        for k in KINDS {
            let sum: u64 = samples.iter().map(|p| count(p, k)).sum();
            assert_eq!(count(&block["pixels"], k), sum, "{block}");
        }
    }
    // ImgSyn draws the true maps: every sample has labelled pixels.
    for p in report["truth"]["imgsyn"]["sample_pixels"]
        .as_array()
        .unwrap()
    {
        assert!(
            count(p, "agree") + count(p, "missed_edge") + count(p, "missed_inside") > 0,
            "{p}"
        );
    }

    // The embedded model by default, with its own settings; Text2Mask needs its ControlNet.
    let out = maskforge(&base);
    let report = json_report(out);
    check(
        &report["truth"],
        "region_ious",
        Some("regions"),
        "region_mean_iou",
    );
    check(
        &report["truth"],
        "annotation_ious",
        Some("annotations"),
        "mean_iou",
    );
    assert_eq!(report["model"], "embedded:shapes", "{report}");
    let mut args = base.to_vec();
    args.extend(["--text2mask", s(&model)]);
    assert_clear_error(&maskforge(&args), &["--text2mask needs --controlnet"]);
}

/// `truth.color_following` of `samples` prompts: which colour each drew (null: nothing
/// saturated), and the share that drew the prompted one (sample k prompts colour k mod 10).
fn check_color_following(block: &serde_json::Value, samples: usize) {
    const COLORS: [&str; 10] = [
        "red", "orange", "yellow", "green", "cyan", "blue", "purple", "magenta", "pink", "brown",
    ];
    let drawn = block["drawn"].as_array().unwrap();
    assert_eq!(
        (block["samples"].as_u64(), drawn.len()),
        (Some(samples as u64), samples)
    );
    let hits = (0..samples)
        .filter(|&k| drawn[k].as_str() == Some(COLORS[k % 10]))
        .count();
    assert_eq!(
        block["accuracy"].as_f64().unwrap(),
        hits as f64 / samples as f64,
        "{block}"
    );
    let unsaturated = drawn.iter().filter(|d| d.is_null()).count();
    assert_eq!(block["unsaturated"].as_u64(), Some(unsaturated as u64));
    assert!(
        drawn
            .iter()
            .all(|d| d.is_null() || COLORS.contains(&d.as_str().unwrap()))
    );
}

/// `truth.shape_following` of the same prompts: which shape each drew (null: no saturated
/// component of 8 pixels), the share that drew the prompted one (sample k prompts shape
/// (k + k / 10) mod 10), and the mean IoU with it (0 for those that drew nothing).
fn check_shape_following(block: &serde_json::Value, samples: usize) {
    const SHAPES: [&str; 10] = [
        "circle", "square", "triangle", "star", "ring", "cross", "heart", "hexagon", "crescent",
        "arrow",
    ];
    let drawn = block["drawn"].as_array().unwrap();
    assert_eq!(
        (block["samples"].as_u64(), drawn.len()),
        (Some(samples as u64), samples)
    );
    let hits = (0..samples)
        .filter(|&k| drawn[k].as_str() == Some(SHAPES[(k + k / 10) % 10]))
        .count();
    assert_eq!(
        block["accuracy"].as_f64().unwrap(),
        hits as f64 / samples as f64,
        "{block}"
    );
    let iou = block["asked_iou"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&iou), "{block}");
    assert_eq!(iou == 0.0, drawn.iter().all(|d| d.is_null()), "{block}");
    assert!(
        drawn
            .iter()
            .all(|d| d.is_null() || SHAPES.contains(&d.as_str().unwrap()))
    );
}

/// `maskforge bench --truth --json`, as issue 17 writes it: 16 samples of the embedded model at
/// its own region size (64×64 from its `mosaic.json`); one step each keeps it short.
#[test]
fn bench_truth_without_a_count_scores_16_samples_at_the_models_size() {
    let out = maskforge(&[
        "bench",
        "--truth",
        "--json",
        "--truth-steps",
        "1",
        "--iters",
        "1",
        "--skip",
        "unet,vae,text",
        "--device",
        "cpu",
    ]);
    let report = json_report(out);
    assert_eq!(
        (report["height"].as_u64(), report["width"].as_u64()),
        (Some(64), Some(64))
    );
    let truth = &report["truth"];
    assert_eq!(truth["samples"], 16, "{truth}");
    assert_eq!(truth["region"], serde_json::json!([64, 64]), "{truth}");
    assert_eq!(truth["steps"], 1, "{truth}");
    let regions = truth["regions"].as_u64().unwrap();
    assert!(regions >= 16, "{truth}");
    assert!(
        (0.0..=1.0).contains(&truth["mean_iou"].as_f64().unwrap()),
        "{truth}"
    );
    check_color_following(&truth["color_following"], 16);
    check_shape_following(&truth["shape_following"], 16);
    // The model's own guidance (its `mosaic.json`).
    assert_eq!(truth["color_following"]["guidance"], 16.0, "{truth}");
}
