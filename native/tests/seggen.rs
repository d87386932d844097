//! SegGen through the CLI on the tiny fixtures: `text2mask`, `imgsyn` and `masksyn` datasets
//! (files, manifest, panoptic and instance files read back, seeds, shards and resume), and
//! their bad input.

mod common;

use std::path::{Path, PathBuf};

use common::{assert_clear_error, copy_dir, fixtures, maskforge};
use image::{GrayImage, Luma};
use serde_json::Value;

fn ok(args: &[&str]) -> String {
    let out = maskforge(args);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    stderr
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn fixture(name: &str) -> String {
    fixtures().join(name).display().to_string()
}

fn manifest(out: &Path) -> Vec<Value> {
    std::fs::read_to_string(out.join("manifest.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A 64×48 (W×H) ADE20K label map: wall | sky over floor, with a person in the middle.
fn ade_labels(shift: u32) -> GrayImage {
    GrayImage::from_fn(64, 48, |x, y| {
        Luma([match (x, y) {
            (20..40, 10..40) if shift == 0 => 13,
            (0..32, _) => 1,
            (_, 0..24) => 3,
            _ => 4,
        }])
    })
}

const MODEL_ARGS: [&str; 8] = [
    "--steps",
    "3",
    "--guidance",
    "7.5",
    "--device",
    "cpu",
    "--quiet",
    "--seed",
];

/// A folder with two label maps and a prompt file naming them.
fn imgsyn_inputs(dir: &Path) -> (PathBuf, PathBuf) {
    let labels = dir.join("labels");
    std::fs::create_dir_all(&labels).unwrap();
    ade_labels(0).save(labels.join("a.png")).unwrap();
    ade_labels(1).save(labels.join("b.png")).unwrap();
    let prompts = dir.join("prompts.jsonl");
    std::fs::write(
        &prompts,
        "{\"labels\": \"a.png\", \"caption\": \"a person in a room\"}\n\
         {\"labels\": \"b.png\", \"caption\": \"an empty room\"}\n",
    )
    .unwrap();
    (labels, prompts)
}

fn imgsyn_args<'a>(
    labels: &'a str,
    prompts: &'a str,
    out: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        "imgsyn",
        "--model",
        "PLACEHOLDER",
        "--controlnet",
        "PLACEHOLDER",
        "--palette",
        "ade20k",
        "--labels",
        labels,
        "--prompts",
        prompts,
        "--per-mask",
        "2",
        "--out",
        out,
    ];
    args.extend_from_slice(&MODEL_ARGS);
    args.push("100");
    args.extend_from_slice(extra);
    args
}

#[test]
fn imgsyn_dataset_matches_txt2img_with_the_colour_map() {
    let dir = tempfile::tempdir().unwrap();
    let (labels, prompts) = imgsyn_inputs(dir.path());
    let out = dir.path().join("out");
    let (model, net) = (fixture("tiny-sd15"), fixture("tiny-controlnet-sd15"));
    let mut args = imgsyn_args(s(&labels), s(&prompts), s(&out), &[]);
    args[2] = &model;
    args[4] = &net;
    ok(&args);

    let records = manifest(&out);
    assert_eq!(records.len(), 4);
    for (k, r) in records.iter().enumerate() {
        assert_eq!(r["seed"], 100 + k as u64, "seed = S + i·N + j");
        assert_eq!(r["source_mask"], if k < 2 { "a.png" } else { "b.png" });
        assert_eq!(r["steps"], 3);
        assert_eq!(r["model"], model.as_str());
        assert!(r["scheduler"].is_string());
        assert!(r["color"].is_null(), "no colour map is drawn in ImgSyn");
        let image = image::open(out.join(r["image"].as_str().unwrap())).unwrap();
        assert_eq!((image.width(), image.height()), (64, 48));
        let got = image::open(out.join(r["labels"].as_str().unwrap()))
            .unwrap()
            .to_luma8();
        assert_eq!(
            got,
            ade_labels(if k < 2 { 0 } else { 1 }),
            "labels are the source map"
        );
    }

    // Sample 1 is txt2img conditioned on the label map's colour map with seed 101.
    let colors = dir.path().join("a-colors.png");
    ok(&[
        "palette",
        "colorize",
        "--palette",
        "ade20k",
        "--labels",
        s(&labels.join("a.png")),
        "--out",
        s(&colors),
    ]);
    let single = dir.path().join("single.png");
    ok(&[
        "txt2img",
        "--model",
        &model,
        "--prompt",
        "a person in a room",
        "--height",
        "48",
        "--width",
        "64",
        "--steps",
        "3",
        "--guidance",
        "7.5",
        "--seed",
        "101",
        "--device",
        "cpu",
        "--controlnet",
        &net,
        "--control-image",
        s(&colors),
        "--out",
        s(&single),
    ]);
    let want = image::open(&single).unwrap().to_rgb8();
    let got = image::open(out.join(records[1]["image"].as_str().unwrap()))
        .unwrap()
        .to_rgb8();
    assert_eq!(
        got, want,
        "ImgSyn's sample 1 equals txt2img with its colour map"
    );

    // A rerun finds every sample finished; two shards and `collect` give the same manifest.
    let stderr = ok(&args);
    assert!(stderr.contains("0 samples made"), "{stderr}");
    let sharded = dir.path().join("sharded");
    for shard in ["0/2", "1/2"] {
        let mut a = imgsyn_args(s(&labels), s(&prompts), s(&sharded), &["--shard", shard]);
        a[2] = &model;
        a[4] = &net;
        ok(&a);
    }
    assert!(!sharded.join("manifest.jsonl").exists());
    ok(&["collect", s(&sharded)]);
    assert_eq!(
        std::fs::read(sharded.join("manifest.jsonl")).unwrap(),
        std::fs::read(out.join("manifest.jsonl")).unwrap()
    );
}

#[test]
fn masksyn_dataset_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let prompts = dir.path().join("prompts.jsonl");
    std::fs::write(
        &prompts,
        "{\"caption\": \"a kitchen\"}\n{\"caption\": \"a street\"}\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let (model, net) = (fixture("tiny-sd15"), fixture("tiny-controlnet-sd15"));
    let mut args = vec![
        "masksyn",
        "--text2mask",
        &model,
        "--model",
        &model,
        "--controlnet",
        &net,
        "--palette",
        "coco-panoptic",
        "--prompts",
        s(&prompts),
        "--per-prompt",
        "1",
        "--mask-steps",
        "2",
        "--height",
        "48",
        "--width",
        "64",
        "--out",
        s(&out),
    ];
    args.extend_from_slice(&MODEL_ARGS);
    args.push("7");
    ok(&args);

    let records = manifest(&out);
    assert_eq!(records.len(), 2);
    let panoptic: Value =
        serde_json::from_slice(&std::fs::read(out.join("panoptic.json")).unwrap()).unwrap();
    let instances: Value =
        serde_json::from_slice(&std::fs::read(out.join("instances.json")).unwrap()).unwrap();
    let things: std::collections::HashMap<u64, bool> = panoptic["categories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["id"].as_u64().unwrap(), c["isthing"] == 1))
        .collect();
    assert_eq!(things.len(), 133);
    // Per image id, the pixels (row-major) of each thing segment, with its category.
    let mut thing_masks: Vec<(u64, u64, Vec<bool>)> = Vec::new();
    for (k, r) in records.iter().enumerate() {
        assert_eq!(r["seed"], 7 + k as u64);
        assert_eq!(r["text2mask_steps"], 2);
        // The drawn colour map decodes to the label map.
        let color = out.join(r["color"].as_str().unwrap());
        let decoded = dir.path().join(format!("decoded{k}.png"));
        ok(&[
            "palette",
            "decode",
            "--palette",
            "coco-panoptic",
            "--image",
            s(&color),
            "--out",
            s(&decoded),
        ]);
        let labels = image::open(out.join(r["labels"].as_str().unwrap()))
            .unwrap()
            .to_luma8();
        assert_eq!(image::open(&decoded).unwrap().to_luma8(), labels);
        // Panoptic segments agree with the PNG and the labels.
        let png = image::open(out.join(r["panoptic"].as_str().unwrap()))
            .unwrap()
            .to_rgb8();
        let ann = &panoptic["annotations"][k];
        assert_eq!(ann["image_id"], r["id"]);
        for seg in ann["segments_info"].as_array().unwrap() {
            let id = seg["id"].as_u64().unwrap() as u32;
            let class = seg["category_id"].as_u64().unwrap();
            let (mut area, mut x1, mut y1, mut x2, mut y2) = (0, u32::MAX, u32::MAX, 0, 0);
            for (x, y, p) in png.enumerate_pixels() {
                if p.0[0] as u32 + 256 * p.0[1] as u32 + 65536 * p.0[2] as u32 == id {
                    area += 1;
                    assert_eq!(labels.get_pixel(x, y).0[0] as u64, class);
                    (x1, y1, x2, y2) = (x1.min(x), y1.min(y), x2.max(x + 1), y2.max(y + 1));
                }
            }
            assert_eq!(seg["area"], area);
            assert_eq!(seg["bbox"], serde_json::json!([x1, y1, x2 - x1, y2 - y1]));
            if things[&class] {
                let mask = png
                    .pixels()
                    .map(|p| p.0[0] as u32 + 256 * p.0[1] as u32 + 65536 * p.0[2] as u32 == id)
                    .collect();
                thing_masks.push((r["id"].as_u64().unwrap(), class, mask));
            }
        }
    }
    // Every instance's RLE decodes to exactly one thing segment of its image.
    let anns = instances["annotations"].as_array().unwrap();
    assert_eq!(
        anns.len(),
        thing_masks.len(),
        "one instance per thing segment"
    );
    for a in anns {
        assert_eq!(a["segmentation"]["size"], serde_json::json!([48, 64]));
        let counts = a["segmentation"]["counts"].as_str().unwrap();
        let rle = hotcoco::mask::rle_from_string(counts, 48, 64).unwrap();
        let column_major = hotcoco::mask::decode(&rle);
        let mask: Vec<bool> = (0..48 * 64)
            .map(|i| column_major[(i % 64) * 48 + i / 64] != 0)
            .collect();
        assert_eq!(
            a["area"].as_f64().unwrap() as usize,
            mask.iter().filter(|&&m| m).count()
        );
        let matches = thing_masks
            .iter()
            .filter(|(image, class, m)| {
                *image == a["image_id"].as_u64().unwrap()
                    && *class == a["category_id"].as_u64().unwrap()
                    && *m == mask
            })
            .count();
        assert_eq!(matches, 1, "annotation {} is one thing segment", a["id"]);
    }
}

#[test]
fn text2mask_labels_are_the_decoded_colour_map() {
    let dir = tempfile::tempdir().unwrap();
    let (color, labels, decoded) = (
        dir.path().join("c.png"),
        dir.path().join("l.png"),
        dir.path().join("d.png"),
    );
    let model = fixture("tiny-sd15");
    ok(&[
        "text2mask",
        "--model",
        &model,
        "--palette",
        "ade20k",
        "--prompt",
        "a bedroom",
        "--height",
        "48",
        "--width",
        "64",
        "--out-color",
        s(&color),
        "--out-labels",
        s(&labels),
        "--steps",
        "2",
        "--seed",
        "3",
        "--device",
        "cpu",
    ]);
    ok(&[
        "palette",
        "decode",
        "--palette",
        "ade20k",
        "--image",
        s(&color),
        "--out",
        s(&decoded),
    ]);
    assert_eq!(
        std::fs::read(&labels).unwrap(),
        std::fs::read(&decoded).unwrap()
    );
    // The colour map is the txt2img image of the same seed.
    let single = dir.path().join("single.png");
    ok(&[
        "txt2img",
        "--model",
        &model,
        "--prompt",
        "a bedroom",
        "--height",
        "48",
        "--width",
        "64",
        "--steps",
        "2",
        "--seed",
        "3",
        "--device",
        "cpu",
        "--out",
        s(&single),
    ]);
    assert_eq!(
        image::open(&color).unwrap().to_rgb8(),
        image::open(&single).unwrap().to_rgb8()
    );
}

#[test]
fn bad_input_gets_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (labels, prompts) = imgsyn_inputs(dir.path());
    let out = dir.path().join("out");
    let (model, net) = (fixture("tiny-sd15"), fixture("tiny-controlnet-sd15"));
    let run = |labels: &Path, prompts: &Path, extra: &[&str], palette: &str| {
        let mut args = imgsyn_args(s(labels), s(prompts), s(&out), extra);
        args[2] = &model;
        args[4] = &net;
        args[6] = palette;
        maskforge(&args)
    };
    assert_clear_error(
        &run(&labels, &prompts, &[], "nonsense"),
        &["unknown palette `nonsense`"],
    );

    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"labels\": \"a.png\", \"caption\": \"x\"}\n{\"labels\": 3}\n",
    )
    .unwrap();
    assert_clear_error(&run(&labels, &bad, &[], "ade20k"), &["bad.jsonl", "line 2"]);
    std::fs::write(&bad, "{\"labels\": \"missing.png\", \"caption\": \"x\"}\n").unwrap();
    assert_clear_error(
        &run(&labels, &bad, &[], "ade20k"),
        &["line 1", "missing.png"],
    );

    assert_clear_error(
        &run(
            &labels,
            &prompts,
            &["--height", "64", "--width", "64"],
            "ade20k",
        ),
        &["a.png", "48x64", "64x64"],
    );

    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    GrayImage::from_pixel(64, 48, Luma([200]))
        .save(outside.join("a.png"))
        .unwrap();
    GrayImage::from_pixel(64, 48, Luma([1]))
        .save(outside.join("b.png"))
        .unwrap();
    let out2 = dir.path().join("out2");
    let mut args = imgsyn_args(s(&outside), s(&prompts), s(&out2), &[]);
    args[2] = &model;
    args[4] = &net;
    assert_clear_error(
        &maskforge(&args),
        &["a.png", "label id 200", "not in palette ade20k"],
    );
}

/// A ControlNet folder's `seggen.json` sets the guidance and conditioning scale where no flag
/// does; flags win; a broken file is a clear error naming it.
#[test]
fn a_controlnets_own_settings_stand_under_the_flags() {
    let dir = tempfile::tempdir().unwrap();
    let (labels, prompts) = imgsyn_inputs(dir.path());
    let net = dir.path().join("controlnet");
    std::fs::create_dir_all(&net).unwrap();
    for file in ["config.json", "diffusion_pytorch_model.safetensors"] {
        std::fs::copy(
            fixtures().join("tiny-controlnet-sd15").join(file),
            net.join(file),
        )
        .unwrap();
    }
    let settings = net.join("seggen.json");
    std::fs::write(&settings, r#"{"guidance": 3, "control_scale": 0.5}"#).unwrap();
    let model = fixture("tiny-sd15");
    let run = |out: &Path, extra: &[&str]| {
        let mut args = vec![
            "imgsyn",
            "--model",
            &model,
            "--controlnet",
            s(&net),
            "--palette",
            "ade20k",
            "--labels",
            s(&labels),
            "--prompts",
            s(&prompts),
            "--per-mask",
            "1",
            "--out",
            s(out),
            "--steps",
            "2",
            "--device",
            "cpu",
            "--quiet",
        ];
        args.extend_from_slice(extra);
        maskforge(&args)
    };
    let settled = |out: &Path| -> Vec<(f64, f64)> {
        manifest(out)
            .iter()
            .map(|r| {
                (
                    r["guidance"].as_f64().unwrap(),
                    r["control_scale"].as_f64().unwrap(),
                )
            })
            .collect()
    };

    let own = dir.path().join("own");
    let out = run(&own, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(settled(&own), [(3.0, 0.5); 2]);

    let flagged = dir.path().join("flagged");
    let out = run(&flagged, &["--guidance", "7.5", "--control-scale", "2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(settled(&flagged), [(7.5, 2.0); 2]);
    assert_ne!(
        std::fs::read(own.join("images/000000000001.png")).unwrap(),
        std::fs::read(flagged.join("images/000000000001.png")).unwrap(),
        "the settings are used, not only recorded"
    );

    std::fs::write(&settings, r#"{"guidance": "strong"}"#).unwrap();
    assert_clear_error(
        &run(&dir.path().join("bad"), &[]),
        &[s(&settings), "SegGen settings"],
    );
}

/// A diffusers ControlNet pipeline folder (`StableDiffusionControlNetPipeline`'s layout) runs
/// as `--controlnet` alone: its `controlnet/` on its own model, its `seggen.json` (here a
/// minimum segment area) applied; the same as naming the model and the net apart. A pipeline
/// without a ControlNet is a clear error.
#[test]
fn a_controlnet_pipeline_brings_its_model_and_settings() {
    let dir = tempfile::tempdir().unwrap();
    let (model, net) = (fixture("tiny-sd15"), fixture("tiny-controlnet-sd15"));
    let pipeline = dir.path().join("pipeline");
    copy_dir(Path::new(&model), &pipeline);
    copy_dir(Path::new(&net), &pipeline.join("controlnet"));
    let index = pipeline.join("model_index.json");
    let mut json: Value = serde_json::from_slice(&std::fs::read(&index).unwrap()).unwrap();
    json["_class_name"] = "StableDiffusionControlNetPipeline".into();
    json["controlnet"] = serde_json::json!(["diffusers", "ControlNetModel"]);
    std::fs::write(&index, json.to_string()).unwrap();
    std::fs::write(pipeline.join("seggen.json"), r#"{"min_area": 6}"#).unwrap();
    let prompts = dir.path().join("prompts.jsonl");
    std::fs::write(&prompts, "{\"caption\": \"a kitchen\"}\n").unwrap();
    let run = |out: &Path, nets: &[&str]| {
        let mut args = vec![
            "masksyn",
            "--text2mask",
            &model,
            "--palette",
            "ade20k",
            "--prompts",
            s(&prompts),
            "--per-prompt",
            "2",
            "--mask-steps",
            "2",
            "--height",
            "48",
            "--width",
            "64",
            "--out",
            s(out),
        ];
        args.extend_from_slice(nets);
        args.extend_from_slice(&MODEL_ARGS);
        args.push("3");
        maskforge(&args)
    };

    let own = dir.path().join("own");
    let out = run(&own, &["--controlnet", s(&pipeline)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let settings: Value =
        serde_json::from_slice(&std::fs::read(own.join("run.json")).unwrap()).unwrap();
    assert_eq!(settings["model"], s(&pipeline));
    assert_eq!(settings["min_area"], 6);
    let apart = dir.path().join("apart");
    let out = run(
        &apart,
        &["--model", &model, "--controlnet", &net, "--min-area", "6"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (mut absorbed, mut labelled) = (0, 0);
    for (k, r) in manifest(&own).iter().enumerate() {
        for file in [&r["image"], &r["labels"], &r["color"]] {
            let file = file.as_str().unwrap();
            assert_eq!(
                std::fs::read(own.join(file)).unwrap(),
                std::fs::read(apart.join(file)).unwrap(),
                "{file}"
            );
        }
        // The labels are the drawing decoded with the minimum area, not without it.
        let labels = image::open(own.join(r["labels"].as_str().unwrap()))
            .unwrap()
            .to_luma8();
        let color = own.join(r["color"].as_str().unwrap());
        let decode = |min_area: &str| {
            let file = dir.path().join(format!("decoded{k}_{min_area}.png"));
            ok(&[
                "palette",
                "decode",
                "--palette",
                "ade20k",
                "--image",
                s(&color),
                "--out",
                s(&file),
                "--min-area",
                min_area,
            ]);
            image::open(&file).unwrap().to_luma8()
        };
        assert_eq!(decode("6"), labels);
        let plain = decode("0");
        absorbed += plain
            .pixels()
            .zip(labels.pixels())
            .filter(|(a, b)| a != b)
            .count();
        labelled += labels.len();
    }
    assert!(
        absorbed > 0 && absorbed < labelled,
        "{absorbed} of {labelled}"
    );

    let bad = dir.path().join("bad");
    assert_clear_error(
        &run(&bad, &["--controlnet", &model]),
        &["model_index.json", "without a `controlnet` component"],
    );
    assert!(!bad.exists(), "nothing is written for a bad ControlNet");
}
