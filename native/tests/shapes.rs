//! `maskforge shapes` end to end: the dataset is valid COCO (read back with hotcoco, masks
//! decode to the image size and lie on their class in the label map), label maps use the
//! palette's ids, `palette decode` with the dataset's own palette gives the label maps back,
//! the caption files point at real files, runs are byte-identical, and bad input is a clear
//! error. The shapes-world models committed under `native/models/` load unchanged and draw.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::{assert_clear_error, maskforge};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn shapes(out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["shapes", "--out", s(out), "--quiet"];
    args.extend_from_slice(extra);
    maskforge(&args)
}

fn ok(out: std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    stderr
}

/// Every file under `dir`, relative, with its bytes.
fn tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let bytes = std::fs::read(&p).unwrap();
                files.push((p.strip_prefix(dir).unwrap().to_path_buf(), bytes));
            }
        }
    }
    files.sort();
    files
}

fn jsonl(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_dataset_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("world");
    let size = 96usize;
    ok(shapes(
        &out,
        &["--num-images", "6", "--size", "96", "--seed", "3"],
    ));

    let coco = hotcoco::COCO::new(&out.join("annotations.json")).expect("hotcoco reads it");
    let ds = &coco.dataset;
    assert_eq!(ds.images.len(), 6);
    assert_eq!(ds.categories.len(), 10);
    let names: Vec<&str> = ds.categories.iter().map(|c| c.name.as_str()).collect();
    for name in [
        "circle", "square", "triangle", "star", "ring", "cross", "heart", "hexagon",
    ] {
        assert!(names.contains(&name), "{name}");
    }
    let ann_ids: BTreeSet<u64> = ds.annotations.iter().map(|a| a.id).collect();
    assert_eq!(ann_ids.len(), ds.annotations.len());
    assert!(ds.annotations.len() >= 6);
    for a in &ds.annotations {
        let rle = coco.ann_to_rle(a).expect("RLE segmentation");
        assert_eq!((rle.h as usize, rle.w as usize), (size, size));
        let mask = hotcoco::mask::decode(&rle);
        assert_eq!(mask.len(), size * size);
        let area = mask.iter().filter(|&&v| v != 0).count();
        assert!(area > 0);
        assert_eq!(a.area, Some(area as f64));
        let image = ds.images.iter().find(|i| i.id == a.image_id).unwrap();
        let labels = image::open(out.join("annotations").join(&image.file_name))
            .unwrap()
            .to_luma8();
        for (i, &v) in mask.iter().enumerate() {
            if v != 0 {
                // Column-major RLE.
                let (x, y) = ((i / size) as u32, (i % size) as u32);
                assert_eq!(labels.get_pixel(x, y).0[0] as u64, a.category_id);
            }
        }
    }

    let palette: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(out.join("palette.json")).unwrap()).unwrap();
    let ids: BTreeSet<u64> = palette.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    let palette_path = out.join("palette.json");
    for image in &ds.images {
        let name = &image.file_name;
        let labels = image::open(out.join("annotations").join(name)).unwrap();
        assert!(matches!(labels, image::DynamicImage::ImageLuma8(_)));
        let labels = labels.to_luma8();
        assert!(
            labels
                .pixels()
                .all(|p| p.0[0] == 0 || ids.contains(&(p.0[0] as u64)))
        );
        let back = dir.path().join(format!("back-{name}"));
        let colors = out.join("colors").join(name);
        ok(maskforge(&[
            "palette",
            "decode",
            "--palette",
            s(&palette_path),
            "--image",
            s(&colors),
            "--out",
            s(&back),
        ]));
        assert_eq!(image::open(&back).unwrap().to_luma8(), labels, "{name}");
    }

    let prompts = jsonl(&out.join("prompts.jsonl"));
    let captions = jsonl(&out.join("captions.jsonl"));
    assert_eq!((prompts.len(), captions.len()), (6, 6));
    for (p, c) in prompts.iter().zip(&captions) {
        assert!(
            out.join("annotations")
                .join(p["labels"].as_str().unwrap())
                .is_file()
        );
        assert!(p["caption"].as_str().unwrap().starts_with('a'));
        for key in ["image", "labels", "colors"] {
            assert!(out.join(c[key].as_str().unwrap()).is_file(), "{key}");
        }
        let o = &c["objects"][0];
        let want = format!("a photo of a single {} {}", o["color"], o["name"]).replace('"', "");
        assert_eq!(o["caption"], want.as_str());
    }
    // `generate` accepts the dataset's categories.
    let bytes = std::fs::read(out.join("annotations.json")).unwrap();
    let categories = maskforge_core::dataset::parse_categories(&bytes, "annotations.json").unwrap();
    assert_eq!(categories.len(), 10);
}

#[test]
fn runs_are_byte_identical_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let args = ["--num-images", "4", "--size", "64", "--seed", "9"];
    ok(shapes(&a, &args));
    ok(shapes(&b, &args));
    let first = tree(&a);
    assert_eq!(first, tree(&b));
    // A rerun keeps what is there and makes nothing.
    let stderr = ok(shapes(&a, &args));
    assert!(stderr.contains("(0 made now)"), "{stderr}");
    assert_eq!(first, tree(&a));
    // Other settings in the same folder are refused.
    let other = shapes(&a, &["--num-images", "4", "--size", "72", "--seed", "9"]);
    assert_clear_error(&other, &["other settings (size)", "new output folder"]);
}

#[test]
fn max_objects_one_gives_single_object_scenes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("single");
    ok(shapes(
        &out,
        &["--num-images", "12", "--size", "64", "--max-objects", "1"],
    ));
    let lines = jsonl(&out.join("captions.jsonl"));
    assert_eq!(lines.len(), 12);
    for line in &lines {
        let objects = line["objects"].as_array().unwrap();
        assert_eq!(objects.len(), 1, "{line}");
    }
    let run: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("run.json")).unwrap()).unwrap();
    assert_eq!(run["max_objects"], 1, "{run}");
}

#[test]
fn bad_input_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x");
    for (args, needles) in [
        (
            &["--num-images", "2", "--size", "0"][..],
            &["--size", "image size 0", "32 to 4096"][..],
        ),
        (
            &["--num-images", "2", "--size", "5000"],
            &["image size 5000"],
        ),
        (&["--num-images", "0"], &["--num-images", "at least 1"]),
        (&["--num-images", "-3"], &["--num-images"]),
        (&["--size", "64"], &["--num-images"]),
        (
            &["--num-images", "2", "--max-objects", "5"],
            &["--max-objects", "1 to 4"],
        ),
    ] {
        assert_clear_error(&shapes(&out, args), needles);
    }
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    assert_clear_error(
        &shapes(&file, &["--num-images", "1"]),
        &[s(&file), "cannot create"],
    );
}

/// The weights committed in `native/models/shapes` (image model), `native/models/shapes-text2mask`,
/// `native/models/shapes-mask2img` and `native/models/shapes-seggen` load as they are and draw
/// at 64×64: txt2img, Text2Mask with the shapes world's own palette (labels are that palette's
/// ids or 0), ImgSyn from the world's label map, and MaskSyn on the Mask2Img pipeline.
#[test]
fn the_committed_shapes_models_load_and_draw() {
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("image.png");
    ok(maskforge(&[
        "txt2img",
        "--model",
        s(&models.join("shapes")),
        "--prompt",
        "a photo of a single red star",
        "--height",
        "64",
        "--width",
        "64",
        "--steps",
        "3",
        "--guidance",
        "4",
        "--out",
        s(&image),
    ]));
    assert_eq!(image::image_dimensions(&image).unwrap(), (64, 64));

    let world = dir.path().join("world");
    ok(shapes(&world, &["--num-images", "1", "--size", "64"]));
    let palette: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(world.join("palette.json")).unwrap()).unwrap();
    let ids: BTreeSet<u64> = palette.iter().map(|c| c["id"].as_u64().unwrap()).collect();
    let (color, labels) = (dir.path().join("color.png"), dir.path().join("labels.png"));
    ok(maskforge(&[
        "text2mask",
        "--model",
        s(&models.join("shapes-text2mask")),
        "--palette",
        s(&world.join("palette.json")),
        "--prompt",
        "a red star and a blue ring",
        "--height",
        "64",
        "--width",
        "64",
        "--steps",
        "3",
        "--out-color",
        s(&color),
        "--out-labels",
        s(&labels),
    ]));
    let labels = image::open(&labels).unwrap().to_luma8();
    assert_eq!(labels.dimensions(), (64, 64));
    // 0 is the background (black, not in the palette).
    assert!(
        labels
            .pixels()
            .all(|p| p.0[0] == 0 || ids.contains(&(p.0[0] as u64)))
    );

    // Mask2Img: the ControlNet steers the embedded image model (no `--model`) from the
    // world's own label map.
    let synth = dir.path().join("imgsyn");
    ok(maskforge(&[
        "imgsyn",
        "--labels",
        s(&world.join("annotations")),
        "--prompts",
        s(&world.join("prompts.jsonl")),
        "--per-mask",
        "1",
        "--controlnet",
        s(&models.join("shapes-mask2img")),
        // The shipped palette: the world's `palette.json`.
        "--palette",
        "shapes",
        "--out",
        s(&synth),
        "--height",
        "64",
        "--width",
        "64",
        "--steps",
        "3",
        "--device",
        "cpu",
        "--quiet",
    ]));
    let images: Vec<_> = std::fs::read_dir(synth.join("images"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(images.len(), 1);
    assert_eq!(image::image_dimensions(&images[0]).unwrap(), (64, 64));
    let run = std::fs::read_to_string(synth.join("run.json")).unwrap();
    assert!(run.contains("\"embedded:shapes\""), "{run}");
    // Without flags the ControlNet's own guidance and conditioning scale are used.
    let own: serde_json::Value =
        serde_json::from_slice(&std::fs::read(models.join("shapes-mask2img/seggen.json")).unwrap())
            .unwrap();
    let record: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(synth.join("manifest.jsonl"))
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    for key in ["guidance", "control_scale"] {
        assert_eq!(record[key].as_f64(), own[key].as_f64(), "{key}");
    }
    assert_eq!(record["palette"], "shapes");
    let run: serde_json::Value = serde_json::from_str(&run).unwrap();
    assert_eq!(run["categories"], serde_json::Value::Array(palette));

    // MaskSyn: the Mask2Img pipeline brings its own image model and settings.
    let pipeline = models.join("shapes-seggen");
    let prompts = dir.path().join("captions.jsonl");
    std::fs::write(&prompts, "{\"caption\": \"a red star and a blue ring\"}\n").unwrap();
    let masksyn = dir.path().join("masksyn");
    ok(maskforge(&[
        "masksyn",
        "--text2mask",
        s(&models.join("shapes-text2mask")),
        "--controlnet",
        s(&pipeline),
        "--palette",
        "shapes",
        "--prompts",
        s(&prompts),
        "--per-prompt",
        "1",
        "--out",
        s(&masksyn),
        "--mask-steps",
        "3",
        "--steps",
        "3",
        "--device",
        "cpu",
        "--quiet",
    ]));
    let run: serde_json::Value =
        serde_json::from_slice(&std::fs::read(masksyn.join("run.json")).unwrap()).unwrap();
    let own: serde_json::Value =
        serde_json::from_slice(&std::fs::read(pipeline.join("seggen.json")).unwrap()).unwrap();
    assert_eq!(run["model"], s(&pipeline));
    for key in ["guidance", "control_scale", "min_area"] {
        assert_eq!(run[key].as_f64(), own[key].as_f64(), "{key}");
    }
    let image = masksyn.join("images/000000000001.png");
    assert_eq!(image::image_dimensions(&image).unwrap(), (64, 64));
}
