//! `maskforge score` on a small generated dataset with the tiny DiffusionInst fixture, then
//! `collect --min-agreement` and `merge --min-agreement`: records per image, resume, shards,
//! and the annotations kept or dropped by their agreement.

mod common;

use std::path::Path;

use common::{assert_clear_error, fixtures, maskforge};
use maskforge_native::agreement::{ScoreRecord, read_record};
use serde_json::Value;

const CATEGORIES: &str = r#"{"categories": [
  {"id": 3, "name": "dog", "def": "a common domesticated carnivorous mammal", "frequency": "f"},
  {"id": 7, "name": "teapot", "def": "pot for brewing tea", "frequency": "c"}
]}"#;

fn ok(args: &[&str]) -> String {
    let out = maskforge(args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn generate(dir: &Path) -> std::path::PathBuf {
    let categories = dir.join("categories.json");
    std::fs::write(&categories, CATEGORIES).unwrap();
    let out = dir.join("data");
    // The tiny fixture model as a single-file checkpoint (its masks give both categories here).
    let model = fixtures().join("tiny-sd15.safetensors");
    let configs = fixtures().join("tiny-sd15");
    ok(&[
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--model-config",
        configs.to_str().unwrap(),
        "--categories",
        categories.to_str().unwrap(),
        "--num-images",
        "4",
        "--out",
        out.to_str().unwrap(),
        "--regions",
        "1,2",
        "--region-size",
        "64x64",
        "--overlap",
        "16x16",
        "--steps",
        "2",
        "--seed",
        "5",
        "--device",
        "cpu",
        "--quiet",
    ]);
    out
}

fn score(data: &Path, extra: &[&str]) -> String {
    let model = fixtures().join("diffusioninst/tiny-r50.pth");
    let config = fixtures().join("diffusioninst/tiny-r50.yaml");
    let mut args = vec![
        "score",
        data.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--device",
        "cpu",
        "--steps",
        "1",
        "--quiet",
    ];
    args.extend_from_slice(extra);
    ok(&args)
}

fn annotations(path: &Path) -> Vec<Value> {
    let v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    v["annotations"].as_array().unwrap().clone()
}

fn records(data: &Path) -> Vec<ScoreRecord> {
    let v: Value =
        serde_json::from_slice(&std::fs::read(data.join("annotations.json")).unwrap()).unwrap();
    (v["images"].as_array().unwrap().iter())
        .map(|i| {
            read_record(data, i["id"].as_u64().unwrap())
                .unwrap()
                .expect("scored")
        })
        .collect()
}

#[test]
fn scores_resume_shard_and_filter_annotations() {
    let dir = tempfile::tempdir().unwrap();
    let data = generate(dir.path());
    let before = annotations(&data.join("annotations.json"));
    assert!(!before.is_empty());

    score(&data, &[]);
    let whole = records(&data);
    let per_image: usize = whole.iter().map(|r| r.agreement.len()).sum();
    assert_eq!(per_image, before.len());
    for r in &whole {
        assert!(r.agreement.iter().all(|a| (0.0..=1.0).contains(a)));
        assert_eq!(r.agreement.len(), r.category_agreement.len());
    }
    // "dog" is a COCO class of the 80-class detector, "teapot" is not.
    let cats: Vec<u64> = before
        .iter()
        .map(|a| a["category_id"].as_u64().unwrap())
        .collect();
    let flat: Vec<Option<f64>> = whole
        .iter()
        .flat_map(|r| r.category_agreement.clone())
        .collect();
    assert!(flat.iter().any(Option::is_some) && flat.iter().any(Option::is_none));
    for (c, a) in cats.iter().zip(&flat) {
        assert_eq!(a.is_some(), *c == 3, "category {c}: {a:?}");
    }
    // A rerun skips every scored image.
    assert!(score(&data, &[]).contains("scored 0 images (4 already scored)"));
    // Two shards give the same records as one run.
    std::fs::remove_dir_all(data.join("scores")).unwrap();
    score(&data, &["--shard", "1/2"]);
    score(&data, &["--shard", "0/2"]);
    assert_eq!(records(&data), whole);

    // collect adds the scores; with --min-agreement it drops those below.
    let mut all: Vec<f64> = whole.iter().flat_map(|r| r.agreement.clone()).collect();
    ok(&["collect", data.to_str().unwrap()]);
    let scored = annotations(&data.join("annotations.json"));
    assert_eq!(scored.len(), before.len());
    let got: Vec<f64> = scored
        .iter()
        .map(|a| a["agreement"].as_f64().unwrap())
        .collect();
    assert_eq!(got, all);
    all.sort_by(f64::total_cmp);
    let min = all[all.len() / 2];
    ok(&[
        "collect",
        data.to_str().unwrap(),
        "--min-agreement",
        &min.to_string(),
    ]);
    let kept = annotations(&data.join("annotations.json"));
    assert_eq!(kept.len(), all.iter().filter(|&&a| a >= min).count());
    assert!(kept.iter().all(|a| a["agreement"].as_f64().unwrap() >= min));

    // merge --min-agreement filters an added file by its annotations' agreement.
    let base = dir.path().join("base.json");
    std::fs::write(
        &base,
        r#"{"images": [], "annotations": [], "categories": []}"#,
    )
    .unwrap();
    ok(&["collect", data.to_str().unwrap()]);
    let merged = dir.path().join("merged.json");
    let add = data.join("annotations.json");
    ok(&[
        "merge",
        "--base",
        base.to_str().unwrap(),
        "--add",
        add.to_str().unwrap(),
        "--out",
        merged.to_str().unwrap(),
        "--min-agreement",
        &min.to_string(),
    ]);
    assert_eq!(annotations(&merged).len(), kept.len());
}

#[test]
fn unscored_datasets_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let data = generate(dir.path());
    let out = maskforge(&["collect", data.to_str().unwrap(), "--min-agreement", "0.5"]);
    assert_clear_error(&out, &["maskforge score"]);
    let base = dir.path().join("base.json");
    std::fs::write(
        &base,
        r#"{"images": [], "annotations": [], "categories": []}"#,
    )
    .unwrap();
    let merged = dir.path().join("merged.json");
    let add = data.join("annotations.json");
    let out = maskforge(&[
        "merge",
        "--base",
        base.to_str().unwrap(),
        "--add",
        add.to_str().unwrap(),
        "--out",
        merged.to_str().unwrap(),
        "--min-agreement",
        "0.5",
    ]);
    assert_clear_error(&out, &["annotations.json", "agreement"]);
    assert!(!merged.exists());
    let out = maskforge(&[
        "score",
        dir.path().to_str().unwrap(),
        "--model",
        "m.pth",
        "--config",
        "c.yaml",
        "--device",
        "cpu",
    ]);
    assert_clear_error(&out, &["annotations.json"]);
}
