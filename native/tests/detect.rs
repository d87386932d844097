//! `maskforge detect` on the tiny random DiffusionInst of `tests/fixtures/diffinst_ref.py`:
//! the COCO results equal the PyTorch reference's detections (category ids, boxes as
//! `[x, y, w, h]`, scores, RLE masks), with the options the issue names, and bad inputs give
//! clear errors.

mod common;

use std::path::{Path, PathBuf};

use common::{assert_clear_error, expected, fixtures, maskforge};
use serde_json::Value;

/// COCO's first category ids, enough for the tiny model's labels.
fn coco_id(label: usize) -> u64 {
    maskforge_core::diffusioninst::results::COCO_CATEGORY_IDS[label]
}

fn model() -> String {
    fixtures()
        .join("diffusioninst/tiny-r50.pth")
        .display()
        .to_string()
}

fn config() -> String {
    fixtures()
        .join("diffusioninst/tiny-r50.yaml")
        .display()
        .to_string()
}

/// Writes fixture image `a` or `b` as a PNG named `name` in `dir`.
fn write_image(dir: &Path, which: &str, name: &str) -> PathBuf {
    let (shape, values) = expected("diffinst_backbone", &format!("image_{which}"));
    let pixels: Vec<u8> = values.iter().map(|&v| v as u8).collect();
    let path = dir.join(name);
    image::RgbImage::from_raw(shape[1] as u32, shape[0] as u32, pixels)
        .unwrap()
        .save(&path)
        .unwrap();
    path
}

fn run_ok(args: &[&str]) -> Vec<Value> {
    let out = maskforge(args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = args[args.iter().position(|a| *a == "--out").unwrap() + 1];
    serde_json::from_slice::<Value>(&std::fs::read(path).unwrap())
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// The results of one image equal run `run` of the reference, with image id `image_id`.
fn check_run(results: &[Value], run: &str, image_id: u64) {
    let (_, boxes) = expected("diffinst", &format!("{run}.boxes"));
    let (_, scores) = expected("diffinst", &format!("{run}.scores"));
    let (_, labels) = expected("diffinst", &format!("{run}.labels"));
    let (mask_shape, masks) = expected("diffinst", &format!("{run}.masks"));
    let mine: Vec<&Value> = results
        .iter()
        .filter(|r| r["image_id"] == image_id)
        .collect();
    assert_eq!(mine.len(), scores.len(), "{run}");
    let (h, w) = (mask_shape[1], mask_shape[2]);
    for (k, r) in mine.iter().enumerate() {
        assert_eq!(
            r["category_id"].as_u64().unwrap(),
            coco_id(labels[k] as usize),
            "{run} #{k}"
        );
        assert!(
            (r["score"].as_f64().unwrap() - scores[k] as f64).abs() < 1e-5,
            "{run} #{k}"
        );
        let b: Vec<f64> = r["bbox"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let want = &boxes[k * 4..k * 4 + 4];
        let xywh = [want[0], want[1], want[2] - want[0], want[3] - want[1]];
        for (g, w) in b.iter().zip(xywh) {
            assert!((g - w as f64).abs() < 1e-3, "{run} #{k}: {b:?} vs {xywh:?}");
        }
        let seg = &r["segmentation"];
        assert_eq!(seg["size"], serde_json::json!([h, w]));
        let rle =
            hotcoco::mask::rle_from_string(seg["counts"].as_str().unwrap(), h as u32, w as u32)
                .unwrap();
        let column_major = hotcoco::mask::decode(&rle);
        let want = &masks[k * h * w..(k + 1) * h * w];
        for y in 0..h {
            for x in 0..w {
                assert_eq!(
                    column_major[x * h + y] as f32,
                    want[y * w + x],
                    "{run} #{k} ({y}, {x})"
                );
            }
        }
    }
}

#[test]
fn results_equal_the_reference_with_seeds_steps_and_batches() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir(&images).unwrap();
    write_image(&images, "b", "2.png");
    write_image(&images, "a", "1.png");
    let out = dir.path().join("results.json");
    let out = out.to_str().unwrap();
    let (model, config) = (model(), config());
    let base = [
        "detect", "--model", &model, "--config", &config, "--device", "cpu", "--out", out,
    ];

    // One step, seed 0, image a alone: the original's run `a.s1`.
    let a = images.join("1.png");
    let mut args = base.to_vec();
    args.extend(["--images", a.to_str().unwrap(), "--steps", "1"]);
    check_run(&run_ok(&args), "a.s1", 1);

    // A folder (sorted: 1.png = a, then 2.png = b), 4 steps, batch 2, seed 0: `a.s4` for a.
    let vis = dir.path().join("vis");
    let mut args = base.to_vec();
    let folder = images.to_str().unwrap();
    args.extend([
        "--images",
        folder,
        "--steps",
        "4",
        "--batch",
        "2",
        "--vis",
        vis.to_str().unwrap(),
    ]);
    let results = run_ok(&args);
    check_run(&results, "a.s4", 1);
    assert!(results.iter().any(|r| r["image_id"] == 2));
    for name in ["1.png", "2.png"] {
        let drawn = image::open(vis.join(name)).unwrap();
        assert_eq!(
            (drawn.width(), drawn.height()),
            if name == "1.png" { (77, 48) } else { (61, 90) }
        );
    }

    // Seed 3 on b with the last step ensembled too is not a.s4last; b's seed-3 run is `b.s4`.
    let b = images.join("2.png");
    let mut args = base.to_vec();
    args.extend([
        "--images",
        b.to_str().unwrap(),
        "--steps",
        "4",
        "--seed",
        "3",
    ]);
    check_run(&run_ok(&args), "b.s4", 1);
    let mut args = base.to_vec();
    args.extend([
        "--images",
        a.to_str().unwrap(),
        "--steps",
        "4",
        "--ensemble-last-step",
    ]);
    check_run(&run_ok(&args), "a.s4last", 1);

    // A score threshold between two scores keeps exactly the detections above it.
    let (_, scores) = expected("diffinst", "a.s1.scores");
    let mut sorted = scores.clone();
    sorted.sort_by(f32::total_cmp);
    let middle = sorted.len() / 2;
    let threshold = ((sorted[middle - 1] + sorted[middle]) / 2.0).to_string();
    let mut args = base.to_vec();
    args.extend(["--images", a.to_str().unwrap(), "--steps", "1"]);
    args.extend(["--score-threshold", &threshold]);
    assert_eq!(run_ok(&args).len(), sorted.len() - middle);
}

#[test]
fn ground_truth_ids_and_given_noise() {
    let dir = tempfile::tempdir().unwrap();
    let a = write_image(dir.path(), "a", "photo.png");
    // A ground truth naming the image by a URL-like file name, with categories given out of
    // order: classes map to its ids sorted.
    let categories: Vec<Value> = (0..80)
        .rev()
        .map(|i| serde_json::json!({"id": 1000 + i, "name": format!("c{i}")}))
        .collect();
    let gt = serde_json::json!({
        "images": [{"id": 42, "file_name": "http://x/val/photo.png", "height": 48, "width": 77}],
        "annotations": [],
        "categories": categories,
    });
    let gt_path = dir.path().join("gt.json");
    std::fs::write(&gt_path, gt.to_string()).unwrap();
    // The reference's initial noise, given as a file, with another seed: a.s1 again.
    let (shape, noise) = expected("diffinst", "a.noise");
    let npy = dir.path().join("noise.npy");
    maskforge_native::npy::write_f32(&npy, &shape, &noise).unwrap();
    let out = dir.path().join("r.json");
    let (model, config) = (model(), config());
    let results = run_ok(&[
        "detect",
        "--model",
        &model,
        "--config",
        &config,
        "--device",
        "cpu",
        "--images",
        a.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--annotations",
        gt_path.to_str().unwrap(),
        "--boxes-noise",
        npy.to_str().unwrap(),
        "--seed",
        "9",
        "--steps",
        "1",
    ]);
    let (_, labels) = expected("diffinst", "a.s1.labels");
    assert_eq!(results.len(), labels.len());
    for (r, l) in results.iter().zip(labels) {
        assert_eq!(r["image_id"], 42);
        assert_eq!(r["category_id"].as_u64().unwrap(), 1000 + l as u64);
    }
}

#[test]
fn bad_inputs_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let a = write_image(dir.path(), "a", "a.png");
    let a = a.to_str().unwrap();
    let out = dir.path().join("r.json");
    let out = out.to_str().unwrap();
    let (model, config) = (model(), config());

    let garbage = dir.path().join("garbage.pth");
    std::fs::write(&garbage, b"PK\x03\x04 not really a zip").unwrap();
    let g = garbage.to_str().unwrap();
    let r = maskforge(&[
        "detect", "--model", g, "--config", &config, "--images", a, "--out", out, "--device", "cpu",
    ]);
    assert_clear_error(&r, &["garbage.pth"]);

    let yaml = dir.path().join("bad.yaml");
    std::fs::write(&yaml, "MODEL: [unclosed").unwrap();
    let y = yaml.to_str().unwrap();
    let r = maskforge(&[
        "detect", "--model", &model, "--config", y, "--images", a, "--out", out, "--device", "cpu",
    ]);
    assert_clear_error(&r, &["bad.yaml"]);

    let npy = dir.path().join("noise.npy");
    maskforge_native::npy::write_f32(&npy, &[1, 3, 4], &[0.0; 12]).unwrap();
    let n = npy.to_str().unwrap();
    let r = maskforge(&[
        "detect",
        "--model",
        &model,
        "--config",
        &config,
        "--images",
        a,
        "--out",
        out,
        "--device",
        "cpu",
        "--boxes-noise",
        n,
    ]);
    assert_clear_error(&r, &["20 proposals need 80"]);

    let missing = dir.path().join("nothing.png");
    let r = maskforge(&[
        "detect",
        "--model",
        &model,
        "--config",
        &config,
        "--images",
        missing.to_str().unwrap(),
        "--out",
        out,
        "--device",
        "cpu",
    ]);
    assert_clear_error(&r, &["nothing.png"]);

    // A checkpoint for another architecture (the R18 backbone under the R50 config).
    let r18 = fixtures().join("diffusioninst/tiny-r18-backbone.safetensors");
    let r = maskforge(&[
        "detect",
        "--model",
        r18.to_str().unwrap(),
        "--config",
        &config,
        "--images",
        a,
        "--out",
        out,
        "--device",
        "cpu",
    ]);
    assert_clear_error(
        &r,
        &[
            "tiny-r18-backbone.safetensors",
            "missing keys",
            "backbone.bottom_up",
        ],
    );
    assert!(!Path::new(out).exists(), "no results file after errors");
}
