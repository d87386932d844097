//! `maskforge eval` against pycocotools and lvis-api (tests/fixtures/coco_eval/, from
//! `coco_eval_ref.py`), and the inputs it must refuse.

mod common;

use std::path::Path;

use common::{assert_clear_error, fixtures, maskforge};
use serde_json::Value;

fn file(name: &str) -> String {
    fixtures()
        .join("coco_eval")
        .join(name)
        .display()
        .to_string()
}

fn expected() -> Value {
    serde_json::from_str(&std::fs::read_to_string(file("expected.json")).unwrap()).unwrap()
}

fn stdout_of(args: &[&str]) -> String {
    let out = maskforge(args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The printed summary equals the reference's lines, and `--json` its values bit for bit
/// (hotcoco sums in numpy's pairwise order).
fn check(gt: &str, results: &str, iou_type: Option<&str>, key: &str, summary: &str) {
    let want = expected();
    let (gt, results) = (file(gt), file(results));
    let mut args = vec!["eval", "--gt", &gt, "--results", &results];
    if let Some(t) = iou_type {
        args.extend(["--iou-type", t]);
    }
    let lines: Vec<String> = want[summary]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    assert_eq!(stdout_of(&args).lines().collect::<Vec<_>>(), lines, "{key}");

    args.push("--json");
    let got: Value = serde_json::from_str(&stdout_of(&args)).unwrap();
    let (got, want) = (got.as_object().unwrap(), want[key].as_object().unwrap());
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{key}"
    );
    for (name, w) in want {
        assert_eq!(got[name].as_f64(), w.as_f64(), "{key} {name}");
    }
}

#[test]
fn segm_equals_pycocotools() {
    check("gt.json", "results.json", None, "segm", "coco_summary_segm");
    check(
        "gt.json",
        "results.json",
        Some("segm"),
        "segm",
        "coco_summary_segm",
    );
}

#[test]
fn bbox_equals_pycocotools() {
    check(
        "gt.json",
        "results.json",
        Some("bbox"),
        "bbox",
        "coco_summary_bbox",
    );
    // Results without masks are evaluated as boxes by default.
    check(
        "gt.json",
        "results_bbox.json",
        None,
        "bbox",
        "coco_summary_bbox",
    );
}

#[test]
fn lvis_equals_lvis_api() {
    check(
        "lvis_gt.json",
        "results.json",
        None,
        "lvis_segm",
        "lvis_summary_segm",
    );
    check(
        "lvis_gt.json",
        "results.json",
        Some("bbox"),
        "lvis_bbox",
        "lvis_summary_bbox",
    );
}

/// Writes `text` to `name` in `dir`; returns the path.
fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn bad_input_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let (gt, res, res_bbox) = (
        file("gt.json"),
        file("results.json"),
        file("results_bbox.json"),
    );
    let missing = dir.path().join("missing.json").display().to_string();
    let garbage = write(dir.path(), "garbage.json", "{not json");
    let empty = write(dir.path(), "empty.json", "[]");
    let det = |img: u64, cat: u64| {
        format!(r#"[{{"image_id":{img},"category_id":{cat},"bbox":[1,2,3,4],"score":0.5}}]"#)
    };
    let unknown_img = write(dir.path(), "unknown_img.json", &det(99, 1));
    let unknown_cat = write(dir.path(), "unknown_cat.json", &det(10, 2));
    let no_score = write(
        dir.path(),
        "no_score.json",
        r#"[{"image_id":10,"category_id":1,"bbox":[1,2,3,4]}]"#,
    );
    let wrong_size = write(
        dir.path(),
        "wrong_size.json",
        r#"[{"image_id":10,"category_id":1,"bbox":[1,2,3,4],"score":0.5,
             "segmentation":{"size":[5,5],"counts":"05"}}]"#,
    );
    let cases: [(&[&str], &[&str]); 10] = [
        (&["--gt", &missing, "--results", &res], &["missing.json"]),
        (&["--gt", &gt, "--results", &missing], &["missing.json"]),
        (&["--gt", &garbage, "--results", &res], &["garbage.json"]),
        (&["--gt", &gt, "--results", &garbage], &["garbage.json"]),
        (&["--gt", &res, "--results", &res], &["results.json"]),
        (
            &["--gt", &gt, "--results", &empty],
            &["empty.json", "no detections"],
        ),
        (
            &["--gt", &gt, "--results", &unknown_img],
            &["unknown_img.json", "image_id 99"],
        ),
        (
            &["--gt", &gt, "--results", &unknown_cat],
            &["unknown_cat.json", "category_id 2"],
        ),
        (
            &["--gt", &gt, "--results", &no_score],
            &["no_score.json", "score"],
        ),
        (
            &["--gt", &gt, "--results", &wrong_size],
            &["wrong_size.json", "5×5 mask", "240×320"],
        ),
    ];
    for (args, needles) in cases {
        let out = maskforge(&[&["eval"], args].concat());
        assert_clear_error(&out, needles);
    }
    let out = maskforge(&[
        "eval",
        "--gt",
        &gt,
        "--results",
        &res_bbox,
        "--iou-type",
        "segm",
    ]);
    assert_clear_error(&out, &["results_bbox.json", "--iou-type bbox"]);
}
