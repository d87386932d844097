//! `maskforge generate` end to end on the embedded shapes model: the dataset is valid COCO/LVIS
//! (read back with hotcoco: masks decode, area and bbox agree, ids unique), the manifest
//! records every sample, reruns are byte-identical, and bad input is a clear error.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{assert_clear_error, maskforge};

const CATEGORIES: &str = r#"{"info": {}, "categories": [
  {"id": 1, "name": "cat", "def": "a small domesticated feline", "frequency": "f", "synset": "cat.n.01"},
  {"id": 2, "name": "bow_(weapon)", "def": "a weapon for shooting arrows", "frequency": "r", "synset": "bow.n.04"},
  {"id": 7, "name": "teapot", "def": "pot for brewing tea", "frequency": "c", "synset": "teapot.n.01"}
]}"#;

fn write_categories(dir: &Path) -> PathBuf {
    let path = dir.join("lvis_categories.json");
    std::fs::write(&path, CATEGORIES).unwrap();
    path
}

fn generate(categories: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "generate",
        "--categories",
        categories.to_str().unwrap(),
        "--num-images",
        "3",
        "--out",
        out.to_str().unwrap(),
        "--regions",
        "1,2,4",
        "--region-size",
        "64x64",
        "--overlap",
        "16x16",
        "--steps",
        "3",
        "--seed",
        "11",
        "--device",
        "cpu",
        "--quiet",
    ];
    args.extend_from_slice(extra);
    maskforge(&args)
}

/// Only the required arguments plus `extra`.
fn generate_plain(categories: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "generate",
        "--categories",
        categories.to_str().unwrap(),
        "--num-images",
        "1",
        "--out",
        out.to_str().unwrap(),
        "--device",
        "cpu",
    ];
    args.extend_from_slice(extra);
    maskforge(&args)
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
                files.push((
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                ));
            }
        }
    }
    files.sort();
    files
}

/// Reads `annotations.json` with hotcoco and checks every annotation against its mask.
fn validate_dataset(out: &Path) -> (usize, usize) {
    let coco =
        hotcoco::COCO::new(&out.join("annotations.json")).expect("hotcoco reads the dataset");
    let ds = &coco.dataset;
    let ann_ids: BTreeSet<u64> = ds.annotations.iter().map(|a| a.id).collect();
    assert_eq!(
        ann_ids.len(),
        ds.annotations.len(),
        "annotation ids are unique"
    );
    let img_ids: BTreeSet<u64> = ds.images.iter().map(|i| i.id).collect();
    assert_eq!(img_ids.len(), ds.images.len(), "image ids are unique");
    for img in &ds.images {
        let file = out.join("images").join(img.file_name.as_str());
        let (w, h) =
            image::image_dimensions(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert_eq!((w as u64, h as u64), (img.width as u64, img.height as u64));
    }
    for a in &ds.annotations {
        assert!(img_ids.contains(&a.image_id));
        let rle = coco.ann_to_rle(a).expect("RLE segmentation");
        let mask = hotcoco::mask::decode(&rle);
        let area = mask.iter().filter(|&&v| v != 0).count() as f64;
        assert!(area > 0.0);
        assert_eq!(a.area, Some(area), "area agrees with the decoded mask");
        assert_eq!(
            a.bbox,
            Some(hotcoco::mask::to_bbox(&rle)),
            "bbox agrees with the mask"
        );
        assert!(!a.iscrowd);
    }
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("annotations.json")).unwrap()).unwrap();
    for c in json["categories"].as_array().unwrap() {
        let id = c["id"].as_u64().unwrap();
        let n = ds
            .annotations
            .iter()
            .filter(|a| a.category_id == id)
            .count() as u64;
        assert_eq!(c["instance_count"].as_u64(), Some(n));
        assert!(c["synset"].is_string(), "category fields are kept");
    }
    for i in json["images"].as_array().unwrap() {
        let name = i["file_name"].as_str().unwrap();
        assert_eq!(i["coco_url"].as_str().unwrap(), format!("images/{name}"));
        assert!(i["neg_category_ids"].is_array() && i["not_exhaustive_category_ids"].is_array());
    }
    (ds.images.len(), ds.annotations.len())
}

#[test]
fn generates_a_valid_reproducible_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let categories = write_categories(dir.path());
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let permissive = [
        "--component-policy",
        "all",
        "--min-area-frac",
        "0",
        "--max-area-frac",
        "1",
    ];
    for out in [&a, &b] {
        let o = generate(&categories, out, &permissive);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    assert_eq!(
        tree(&a),
        tree(&b),
        "same arguments and seed give byte-identical output"
    );

    let (images, annotations) = validate_dataset(&a);
    assert!(
        images > 0 && annotations >= images,
        "{images} images, {annotations} annotations"
    );
    let manifest = std::fs::read_to_string(a.join("manifest.jsonl")).unwrap();
    let records: Vec<serde_json::Value> = manifest
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 3);
    for (k, r) in records.iter().enumerate() {
        assert_eq!(r["index"], k as u64);
        assert_eq!(r["seed"], 11 + k as u64);
        let regions = r["regions"].as_array().unwrap();
        assert!([1, 2, 4].contains(&regions.len()));
        for region in regions {
            let prompt = region["prompt"].as_str().unwrap();
            assert!(prompt.starts_with("a photo of a single "), "{prompt}");
            assert!(region["token_index"].as_u64().unwrap() >= 5);
            assert_eq!(region["attention_resolutions"], serde_json::json!([4, 8]));
        }
        assert_eq!(r["model"], "embedded:shapes");
        assert_eq!(r["scheduler"], "ddim");
    }
    // Main categories cycle through the pool: with `--main-frequency r` every sample has a bow.
    let rare = dir.path().join("rare");
    let o = generate(
        &categories,
        &rare,
        &[
            "--main-frequency",
            "r",
            "--refine",
            "none",
            "--component-policy",
            "strict",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let manifest = std::fs::read_to_string(rare.join("manifest.jsonl")).unwrap();
    for line in manifest.lines() {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(r["main_category_id"], 2);
        assert!(
            r["regions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|g| g["category_id"] == 2)
        );
        if r["kept"] == false {
            assert!(r["reason"].as_str().unwrap().starts_with("region "), "{r}");
        }
    }
    validate_dataset(&rare);
}

#[test]
fn bad_input_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let categories = write_categories(dir.path());
    let out = dir.path().join("out");
    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, "\n\n").unwrap();
    assert_clear_error(&generate(&empty, &out, &[]), &["empty.txt", "empty"]);
    let garbage = dir.path().join("garbage.json");
    std::fs::write(&garbage, "{\"categories\": [{\"id\": 1,").unwrap();
    assert_clear_error(&generate(&garbage, &out, &[]), &["garbage.json"]);
    let missing = dir.path().join("missing.json");
    assert_clear_error(&generate(&missing, &out, &[]), &["missing.json"]);
    assert_clear_error(
        &generate(&categories, &out, &["--main-frequency", "x"]),
        &["frequency", "`x`"],
    );
    let text = dir.path().join("names.txt");
    std::fs::write(&text, "cat\ndog\n").unwrap();
    assert_clear_error(
        &generate(&text, &out, &["--main-frequency", "r"]),
        &["frequency"],
    );
    assert_clear_error(
        &generate_plain(&categories, &out, &["--region-size", "60x64"]),
        &["multiples of 8", "60x64"],
    );
    assert_clear_error(
        &generate_plain(
            &categories,
            &out,
            &["--region-size", "64x64", "--overlap", "96x96"],
        ),
        &["overlap", "smaller"],
    );
    assert_clear_error(
        &generate_plain(&categories, &out, &["--region-size", "64"]),
        &["HxW"],
    );
    assert_clear_error(
        &generate(&categories, &out, &["--component-policy", "some"]),
        &["component policy"],
    );
    assert!(!out.join("annotations.json").exists());
}

#[test]
fn shards_and_reruns_give_the_same_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let categories = write_categories(dir.path());
    let (whole, sharded) = (dir.path().join("whole"), dir.path().join("sharded"));
    let o = generate(&categories, &whole, &["--refine", "none"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for shard in ["1/2", "0/2"] {
        let o = generate(
            &categories,
            &sharded,
            &["--refine", "none", "--shard", shard],
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(
            !sharded.join("annotations.json").exists(),
            "shards leave assembly to collect"
        );
    }
    let o = maskforge(&["collect", sharded.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        tree(&whole),
        tree(&sharded),
        "two shards + collect == one run"
    );

    // A rerun after losing a finished sample redoes only that one and ends identical.
    std::fs::remove_file(whole.join("samples/000000000002.json")).unwrap();
    std::fs::remove_file(whole.join("annotations.json")).unwrap();
    let o = generate(&categories, &whole, &["--refine", "none"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(tree(&whole), tree(&sharded));

    // Other settings into the same folder, or collecting an unfinished run, are refused.
    assert_clear_error(
        &generate(
            &categories,
            &whole,
            &["--refine", "none", "--guidance", "5"],
        ),
        &["other settings", "guidance"],
    );
    let half = dir.path().join("half");
    let o = generate(&categories, &half, &["--refine", "none", "--shard", "0/2"]);
    assert!(o.status.success());
    assert_clear_error(
        &maskforge(&["collect", half.to_str().unwrap()]),
        &["not finished", "sample 1"],
    );
    assert_clear_error(&generate(&categories, &half, &["--shard", "2/2"]), &["I/N"]);
}

/// Names of leftover temporary files under `dir`.
fn temporaries(dir: &Path) -> Vec<PathBuf> {
    tree(dir)
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| p.to_string_lossy().contains(".tmp-"))
        .collect()
}

#[test]
fn a_killed_run_resumes_to_the_same_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let categories = write_categories(dir.path());
    let (whole, killed) = (dir.path().join("whole"), dir.path().join("killed"));
    let args = |out: &Path| -> Vec<String> {
        [
            "generate",
            "--categories",
            categories.to_str().unwrap(),
            "--num-images",
            "4",
            "--out",
            out.to_str().unwrap(),
            "--regions",
            "4",
            "--region-size",
            "64x64",
            "--overlap",
            "16x16",
            "--steps",
            "4",
            "--seed",
            "3",
            "--device",
            "cpu",
            "--quiet",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let o = Command::new(env!("CARGO_BIN_EXE_maskforge"))
        .args(args(&whole))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let mut child = Command::new(env!("CARGO_BIN_EXE_maskforge"))
        .args(args(&killed))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let samples = killed.join("samples");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while std::fs::read_dir(&samples).map_or(0, |d| d.count()) == 0 {
        assert!(std::time::Instant::now() < deadline, "no sample finished");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        !killed.join("annotations.json").exists(),
        "killed before the end"
    );

    let o = Command::new(env!("CARGO_BIN_EXE_maskforge"))
        .args(args(&killed))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(temporaries(&killed), Vec::<PathBuf>::new());
    assert_eq!(
        tree(&whole),
        tree(&killed),
        "a killed and resumed run == an uninterrupted one"
    );
}

#[test]
fn settings_come_from_a_toml_file_and_flags_win() {
    let dir = tempfile::tempdir().unwrap();
    let categories = write_categories(dir.path());
    let out = dir.path().join("out");
    let toml = dir.path().join("run.toml");
    std::fs::write(
        &toml,
        "num_images = 2\nsteps = 3\nregions = [1, 2]\nregion-size = \"64x64\"\noverlap = \"16x16\"\n\
         seed = 5\nquiet = true\ndevice = \"cpu\"\nrefine = \"none\"\n",
    )
    .unwrap();
    let o = maskforge(&[
        "generate",
        "--config",
        toml.to_str().unwrap(),
        "--categories",
        categories.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--steps",
        "2",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let run: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("run.json")).unwrap()).unwrap();
    assert_eq!(run["steps"], 2, "the flag wins");
    assert_eq!(run["num_images"], 2);
    assert_eq!(run["regions"], serde_json::json!([1, 2]));
    assert_eq!(run["seed"], 5);
    assert_eq!(run["guidance"], 16.0, "the embedded model's own setting");
    assert!(run.get("karras_sigmas").is_none(), "written only when set");
    std::fs::write(&toml, "num_images = 2\nbogus = 1\n").unwrap();
    let o = maskforge(&[
        "generate",
        "--config",
        toml.to_str().unwrap(),
        "--categories",
        "x",
        "--out",
        "y",
    ]);
    assert_clear_error(&o, &["run.toml", "bogus"]);
}

#[test]
fn karras_sigmas_are_recorded_when_set() {
    let dir = tempfile::tempdir().unwrap();
    let categories = write_categories(dir.path());
    let toml = dir.path().join("run.toml");
    std::fs::write(&toml, "karras-sigmas = true\n").unwrap();
    let run = |name: &str, extra: &[&str]| {
        let out = dir.path().join(name);
        let mut args = vec!["--config", toml.to_str().unwrap(), "--scheduler", "heun"];
        args.extend_from_slice(extra);
        let o = generate(&categories, &out, &args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let run: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("run.json")).unwrap()).unwrap();
        let manifest = std::fs::read_to_string(out.join("manifest.jsonl")).unwrap();
        let first: serde_json::Value =
            serde_json::from_str(manifest.lines().next().unwrap()).unwrap();
        (run, first)
    };
    let (run_json, record) = run("file", &[]);
    assert_eq!(run_json["karras_sigmas"], true);
    assert_eq!(run_json["scheduler"], "heun");
    assert_eq!(record["scheduler"], "heun");
    assert_eq!(record["settings"]["karras_sigmas"], true, "{record}");
    // Without Karras sigmas the records do not name them; the flag alone sets them too.
    std::fs::write(&toml, "").unwrap();
    let (run_json, record) = run("plain", &[]);
    assert!(run_json.get("karras_sigmas").is_none());
    assert!(
        record["settings"].get("karras_sigmas").is_none(),
        "{record}"
    );
    let (run_json, _) = run("flag", &["--karras-sigmas"]);
    assert_eq!(run_json["karras_sigmas"], true);
}

#[test]
fn a_write_failure_is_a_clear_error_and_keeps_finished_samples() {
    let dir = tempfile::tempdir().unwrap();
    let categories = write_categories(dir.path());
    let (whole, blocked) = (dir.path().join("whole"), dir.path().join("blocked"));
    // Every sample kept, so every sample writes an image.
    let args = [
        "--refine",
        "none",
        "--component-policy",
        "all",
        "--min-area-frac",
        "0",
        "--max-area-frac",
        "1",
    ];
    let o = generate(&categories, &whole, &args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // Sample 2's image path is taken by a non-empty folder: writing it fails part way.
    let obstacle = blocked.join("images/000000000002.png");
    std::fs::create_dir_all(obstacle.join("x")).unwrap();
    let o = generate(&categories, &blocked, &args);
    assert_clear_error(&o, &["000000000002.png", "cannot write"]);
    assert!(!blocked.join("annotations.json").exists());
    assert_eq!(
        std::fs::read(blocked.join("samples/000000000001.json")).unwrap(),
        std::fs::read(whole.join("samples/000000000001.json")).unwrap(),
        "the finished sample is intact"
    );
    assert_eq!(temporaries(&blocked), Vec::<PathBuf>::new());
    std::fs::remove_dir_all(&obstacle).unwrap();
    let o = generate(&categories, &blocked, &args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(tree(&whole), tree(&blocked));

    // A read-only file system: a clear error before any work.
    let o = generate(&categories, Path::new("/proc/maskforge-out"), &[]);
    assert_clear_error(
        &o,
        &["/proc/maskforge-out", "cannot create the output folder"],
    );
}
