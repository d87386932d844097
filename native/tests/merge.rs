//! `maskforge merge`: synthetic annotation files appended to an LVIS-style dataset.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use maskforge_native::merge::{self, AddFile};
use serde_json::{Value, json};

/// An LVIS-like base: annotations before images, extra fields at every level, unusual
/// formatting (spaces around colons, escapes, exponents, a category without counts).
const BASE: &str = r#"  {
  "info" : {"description": "tiny LVIS-like", "year": 2020, "extra": {"nested": [1, 2.5, null]}},
  "annotations":[
     {"id": 7, "image_id": 1, "category_id": 1, "bbox": [1,2,3,4], "area": 12.0,
      "segmentation": [[1,2, 4,2, 4,6]], "iscrowd": 0, "custom": "keep me"},
     {"id":9,"image_id":17,"category_id":3,"bbox":[0.5,0.5,2,2],"area":4,"segmentation":[[0.5,0.5,2.5,0.5,2.5,2.5]],"iscrowd":0},
     {"segmentation" : [ [ 1 , 1 , 5 , 1 , 5 , 5 ] ], "id" : 12 , "image_id":17, "category_id": 1,
      "bbox":[1,1,4,4], "area": 1.6e1 , "note":"\u00e9t\u00e9 \"quoted\" \/ \n"}
  ] ,
  "images": [
    {"id": 1, "file_name": "a.jpg", "height": 20, "width": 30, "neg_category_ids": [2],
     "not_exhaustive_category_ids": [], "coco_url": "http://x/a.jpg", "extra_field": {"x": [1, {"y": null}]}},
    {"width": 40, "height": 10, "file_name": "b.jpg", "neg_category_ids": [],
     "not_exhaustive_category_ids": [3], "id": 17}
  ],
  "licenses": [{"id": 1, "name": "CC", "url": "http://l"}],
  "categories": [
    {"id": 1, "name": "cat", "synset": "cat.n.01", "synonyms": ["cat", "kitty"], "def": "a cat",
     "frequency": "f", "image_count": 10, "instance_count": 20},
    {"id": 2, "name": "dog", "synset": "dog.n.01", "synonyms": ["dog"], "def": "a dog",
     "frequency": "c", "image_count": 3, "instance_count": 4},
    {"id": 3, "name": "bird", "frequency": "r", "def": "lacks counts"}
  ],
  "x_custom": 1e3
}
"#;

/// Images 100 and 101, annotations of categories 1 and 3.
fn add_a() -> Value {
    json!({
        "info": {"generator": "maskforge"},
        "images": [
            {"id": 100, "file_name": "syn_0.png", "height": 64, "width": 64,
             "gen": {"prompt": "a cat and a bird", "seed": 0}},
            {"id": 101, "file_name": "syn_1.png", "height": 64, "width": 64,
             "gen": {"prompt": "a cat", "seed": 1}}
        ],
        "annotations": [
            {"id": 1, "image_id": 101, "category_id": 1, "bbox": [2.0, 2.0, 10.0, 10.0],
             "area": 50.0, "segmentation": [[2.0, 2.0, 12.0, 2.0, 12.0, 12.0]], "iscrowd": 0,
             "score": 0.9},
            {"id": 2, "image_id": 100, "category_id": 1, "bbox": [0.0, 0.0, 8.0, 8.0],
             "area": 32.0, "segmentation": [[0.0, 0.0, 8.0, 0.0, 8.0, 8.0]], "iscrowd": 0},
            {"id": 3, "image_id": 100, "category_id": 3, "bbox": [20.0, 20.0, 4.0, 4.0],
             "area": 8.0, "segmentation": [[20.0, 20.0, 24.0, 20.0, 24.0, 24.0]], "iscrowd": 0}
        ],
        "categories": [{"id": 1, "name": "cat"}, {"id": 3, "name": "bird"}]
    })
}

/// Image 1 (colliding with the base's id 1): a cat and a new category 9.
fn add_b() -> Value {
    json!({
        "images": [{"id": 1, "file_name": "syn_2.png", "height": 32, "width": 32}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1.0, 1.0, 5.0, 5.0],
             "area": 12.5, "segmentation": [[1.0, 1.0, 6.0, 1.0, 6.0, 6.0]], "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 9, "bbox": [10.0, 10.0, 5.0, 5.0],
             "area": 12.5, "segmentation": [[10.0, 10.0, 15.0, 10.0, 15.0, 15.0]], "iscrowd": 0}
        ],
        "categories": [{"id": 9, "name": "unicorn", "synonyms": ["unicorn"], "frequency": "r",
                        "image_count": 999, "instance_count": 999}]
    })
}

struct Files {
    dir: tempfile::TempDir,
    base: PathBuf,
    a: PathBuf,
    b: PathBuf,
    out: PathBuf,
}

fn files() -> Files {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("lvis_base.json");
    let a = dir.path().join("synthetic_a.json");
    let b = dir.path().join("synthetic_b.json");
    std::fs::write(&base, BASE).unwrap();
    std::fs::write(&a, serde_json::to_string_pretty(&add_a()).unwrap()).unwrap();
    std::fs::write(&b, serde_json::to_string(&add_b()).unwrap()).unwrap();
    let out = dir.path().join("merged.json");
    Files {
        dir,
        base,
        a,
        b,
        out,
    }
}

fn maskforge(args: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_maskforge"))
        .args(args)
        .output()
        .expect("runs maskforge")
}

fn merge_cli(base: &Path, adds: &[&Path], out: &Path) -> Output {
    let mut args: Vec<&Path> = vec![Path::new("merge"), Path::new("--base"), base];
    for add in adds {
        args.extend([Path::new("--add"), add]);
    }
    args.extend([Path::new("--out"), out]);
    maskforge(&args)
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn by_id(records: &Value) -> std::collections::BTreeMap<u64, Value> {
    let mut map = std::collections::BTreeMap::new();
    for r in records.as_array().unwrap() {
        let id = r["id"].as_u64().unwrap();
        assert!(map.insert(id, r.clone()).is_none(), "duplicate id {id}");
    }
    map
}

/// Asserts a failure whose message mentions every one of `needles`, without a panic, and
/// that nothing (no output, no temporary file) was left in the folder of `out`.
fn assert_clean_failure(out_file: &Path, output: &Output, needles: &[&str], inputs: usize) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "expected failure, stderr: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "panicked: {stderr}");
    for n in needles {
        assert!(stderr.contains(n), "error should mention `{n}`: {stderr}");
    }
    assert!(!out_file.exists(), "{} was written", out_file.display());
    let left = std::fs::read_dir(out_file.parent().unwrap())
        .unwrap()
        .count();
    assert_eq!(left, inputs, "a temporary file was left behind");
}

#[test]
fn merges_two_files_into_an_lvis_like_base() {
    let f = files();
    let output = merge_cli(&f.base, &[&f.a, &f.b], &f.out);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    for part in [
        "3 images added",
        "5 annotations added",
        "2 categories updated",
        "1 added",
    ] {
        assert!(stdout.contains(part), "summary lacks `{part}`: {stdout}");
    }

    let base: Value = serde_json::from_str(BASE).unwrap();
    let merged = read_json(&f.out);

    // Every top-level key kept, in the base's order, the new data inside the existing keys.
    let text = std::fs::read_to_string(&f.out).unwrap();
    let positions: Vec<usize> = [
        "\"info\":",
        "\"annotations\":",
        "\"images\":",
        "\"licenses\":",
        "\"categories\":",
        "\"x_custom\":",
    ]
    .iter()
    .map(|k| text.find(k).unwrap_or_else(|| panic!("{k} missing")))
    .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    let keys: Vec<_> = merged.as_object().unwrap().keys().cloned().collect();
    let mut want: Vec<_> = base.as_object().unwrap().keys().cloned().collect();
    let mut got = keys.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    for key in ["info", "licenses", "x_custom"] {
        assert_eq!(merged[key], base[key], "{key}");
    }

    // Base records unchanged, first and in order; ids unique.
    let images = merged["images"].as_array().unwrap();
    let annotations = merged["annotations"].as_array().unwrap();
    assert_eq!(images.len(), 2 + 3);
    assert_eq!(annotations.len(), 3 + 5);
    assert_eq!(images[..2], base["images"].as_array().unwrap()[..]);
    assert_eq!(
        annotations[..3],
        base["annotations"].as_array().unwrap()[..]
    );
    let images = by_id(&merged["images"]);
    let annotations = by_id(&merged["annotations"]);
    assert_eq!(
        images.keys().copied().collect::<Vec<_>>(),
        [1, 17, 18, 19, 20]
    );
    assert_eq!(
        annotations.keys().copied().collect::<Vec<_>>(),
        [7, 9, 12, 13, 14, 15, 16, 17]
    );

    // Added images: new ids in order, every other field kept.
    let a = add_a();
    let b = add_b();
    let renumbered = |mut v: Value, id: u64| {
        v["id"] = id.into();
        v
    };
    assert_eq!(images[&18], renumbered(a["images"][0].clone(), 18));
    assert_eq!(images[&19], renumbered(a["images"][1].clone(), 19));
    assert_eq!(images[&20], renumbered(b["images"][0].clone(), 20));

    // Added annotations: new ids, image_id remapped, every other field kept.
    let remapped = |mut v: Value, id: u64, image: u64| {
        v["id"] = id.into();
        v["image_id"] = image.into();
        v
    };
    assert_eq!(
        annotations[&13],
        remapped(a["annotations"][0].clone(), 13, 19)
    );
    assert_eq!(
        annotations[&14],
        remapped(a["annotations"][1].clone(), 14, 18)
    );
    assert_eq!(
        annotations[&15],
        remapped(a["annotations"][2].clone(), 15, 18)
    );
    assert_eq!(
        annotations[&16],
        remapped(b["annotations"][0].clone(), 16, 20)
    );
    assert_eq!(
        annotations[&17],
        remapped(b["annotations"][1].clone(), 17, 20)
    );

    // Categories: counts increased (created when absent), the untouched one verbatim, the
    // new one appended with its own fields and the added counts.
    let cats = merged["categories"].as_array().unwrap();
    assert_eq!(cats.len(), 4);
    let mut cat1 = base["categories"][0].clone();
    cat1["image_count"] = 13.into(); // 10 + images 18, 19, 20
    cat1["instance_count"] = 23.into(); // 20 + 3
    assert_eq!(cats[0], cat1);
    assert_eq!(cats[1], base["categories"][1]);
    let mut cat3 = base["categories"][2].clone();
    cat3["image_count"] = 1.into();
    cat3["instance_count"] = 1.into();
    assert_eq!(cats[2], cat3);
    let mut cat9 = b["categories"][0].clone();
    cat9["image_count"] = 1.into();
    cat9["instance_count"] = 1.into();
    assert_eq!(cats[3], cat9);

    // Nothing but the output in the folder.
    assert_eq!(std::fs::read_dir(f.dir.path()).unwrap().count(), 4);
}

#[test]
fn merged_file_is_a_valid_coco_dataset_for_hotcoco() {
    let f = files();
    merge::merge_files(&f.base, &[f.a.clone(), f.b.clone()], &f.out, None).unwrap();
    let coco = hotcoco::COCO::new(&f.out).unwrap();
    assert_eq!(coco.get_img_ids(&[], &[]).len(), 5);
    assert_eq!(coco.get_ann_ids(&[], &[], None, None).len(), 8);
    assert_eq!(coco.get_cat_ids(&[], &[], &[]).len(), 4);
    let ann = coco.get_ann(17).unwrap();
    assert_eq!((ann.image_id, ann.category_id), (20, 9));
    assert_eq!(coco.get_img(20).unwrap().file_name, "syn_2.png");
    assert_eq!(coco.get_cat(9).unwrap().name, "unicorn");
    assert_eq!(coco.get_img(1).unwrap().neg_category_ids, [2]);
    let report = coco.healthcheck();
    assert!(report.errors.is_empty(), "{:#?}", report.errors);
}

#[test]
fn base_without_images_annotations_or_categories_gets_them_appended() {
    let f = files();
    std::fs::write(&f.base, r#"{"info": {"v": 1}}"#).unwrap();
    // Without base categories, every category comes from the added files.
    let summary = merge::merge_files(&f.base, &[f.a.clone(), f.b.clone()], &f.out, None).unwrap();
    assert_eq!(summary.images_added, 3);
    assert_eq!(summary.first_image_id, 1);
    assert_eq!(summary.categories_added, 3);
    let merged = read_json(&f.out);
    assert_eq!(merged["info"], json!({"v": 1}));
    assert_eq!(
        by_id(&merged["images"]).keys().copied().collect::<Vec<_>>(),
        [1, 2, 3]
    );
    let anns = merged["annotations"].as_array().unwrap();
    assert_eq!(
        anns.iter()
            .map(|a| (a["id"].as_u64().unwrap(), a["image_id"].as_u64().unwrap()))
            .collect::<Vec<_>>(),
        [(1, 2), (2, 1), (3, 1), (4, 3), (5, 3)]
    );
    let cats = merged["categories"].as_array().unwrap();
    let counts: Vec<_> = cats
        .iter()
        .map(|c| {
            (
                c["id"].as_u64().unwrap(),
                c["image_count"].as_u64().unwrap(),
                c["instance_count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(counts, [(1, 3, 3), (3, 1, 1), (9, 1, 1)]);
    hotcoco::COCO::new(&f.out).unwrap();
}

#[test]
fn generic_merge_streams_the_base_twice() {
    let mut opened = 0;
    let adds = [AddFile::from_value("a", add_a()).unwrap()];
    let mut out = Vec::new();
    let summary = merge::merge(
        "base",
        || {
            opened += 1;
            Ok(Cursor::new(BASE.as_bytes()))
        },
        &adds,
        "out",
        &mut out,
    )
    .unwrap();
    assert_eq!(opened, 2);
    assert_eq!(summary.images_added, 2);
    assert_eq!(summary.annotations_added, 3);
    assert_eq!(summary.first_annotation_id, 13);
    let merged: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(merged["images"].as_array().unwrap().len(), 4);
}

#[test]
fn base_changing_between_passes_is_an_error() {
    let adds = [AddFile::from_value("a", add_a()).unwrap()];
    let mut opened = 0;
    let shorter = BASE.replacen(
        r#"{"id": 7, "image_id": 1, "category_id": 1, "bbox": [1,2,3,4], "area": 12.0,
      "segmentation": [[1,2, 4,2, 4,6]], "iscrowd": 0, "custom": "keep me"},"#,
        "",
        1,
    );
    assert_ne!(shorter, BASE);
    let err = merge::merge(
        "base.json",
        || {
            opened += 1;
            Ok(Cursor::new(
                if opened == 1 { BASE } else { &shorter }
                    .as_bytes()
                    .to_vec(),
            ))
        },
        &adds,
        "out",
        &mut Vec::new(),
    )
    .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("base.json") && msg.contains("changed"),
        "{msg}"
    );

    // Failing in the second pass, with part of the output written: no output file is left.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("merged.json");
    opened = 0;
    let err = maskforge_native::write_atomically(&out, |tmp| {
        let mut file = std::fs::File::create(tmp)?;
        merge::merge(
            "base.json",
            || {
                opened += 1;
                Ok(Cursor::new(
                    if opened == 1 { BASE } else { &shorter }
                        .as_bytes()
                        .to_vec(),
                ))
            },
            &adds,
            "merged.json",
            &mut file,
        )?;
        Ok(())
    })
    .unwrap_err();
    assert!(format!("{err:#}").contains("changed"));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn missing_files_are_clear_errors() {
    let f = files();
    let missing = f.dir.path().join("nope.json");
    let output = merge_cli(&missing, &[&f.a], &f.out);
    assert_clean_failure(&f.out, &output, &["nope.json", "cannot open"], 3);
    let output = merge_cli(&f.base, &[&f.a, &missing], &f.out);
    assert_clean_failure(&f.out, &output, &["nope.json", "cannot open"], 3);
}

#[test]
fn truncated_base_is_a_clear_error_and_leaves_no_output() {
    let f = files();
    // Cut inside the second image.
    let cut = BASE.find("\"b.jpg\"").unwrap();
    std::fs::write(&f.base, &BASE[..cut]).unwrap();
    let line = format!("line {}", BASE[..cut].lines().count());
    let output = merge_cli(&f.base, &[&f.a, &f.b], &f.out);
    assert_clean_failure(
        &f.out,
        &output,
        &[
            "lvis_base.json",
            "truncated JSON",
            "`images` element 1",
            &line,
        ],
        3,
    );
}

#[test]
fn failed_merge_leaves_an_existing_output_untouched() {
    let f = files();
    std::fs::write(&f.out, "previous").unwrap();
    std::fs::write(&f.base, &BASE[..BASE.len() - 10]).unwrap();
    let output = merge_cli(&f.base, &[&f.a], &f.out);
    assert!(!output.status.success());
    assert_eq!(std::fs::read_to_string(&f.out).unwrap(), "previous");
    assert_eq!(std::fs::read_dir(f.dir.path()).unwrap().count(), 4);
}

#[test]
fn garbage_inputs_are_clear_errors() {
    let cases: [(&str, &str, &[&str]); 6] = [
        (
            "base",
            "[1, 2, 3]",
            &[
                "lvis_base.json",
                "expected a JSON object",
                "line 1 column 1",
            ],
        ),
        (
            "base",
            "{\"images\": {\"id\": 1}}",
            &["lvis_base.json", "expected an array (`images`)", "line 1"],
        ),
        (
            "base",
            "{\"images\": [{\"id\": 1}, {\"file_name\": \"x\"}]}",
            &["lvis_base.json", "`images` element 1", "missing field `id`"],
        ),
        (
            "base",
            "{\"annotations\": [{\"id\": \"seven\"}]}",
            &["lvis_base.json", "`annotations` element 0", "invalid type"],
        ),
        (
            "base",
            "{\"images\": []} trailing",
            &["lvis_base.json", "trailing characters"],
        ),
        (
            "add",
            "{\"images\": [{\"id\": 1}], \"annotations\": [,]}",
            &["synthetic_a.json", "invalid JSON", "line 1"],
        ),
    ];
    for (which, text, needles) in cases {
        let f = files();
        std::fs::write(if which == "base" { &f.base } else { &f.a }, text).unwrap();
        let output = merge_cli(&f.base, &[&f.a, &f.b], &f.out);
        assert_clean_failure(&f.out, &output, needles, 3);
    }
}

#[test]
fn inconsistent_added_files_are_clear_errors() {
    let cases: [(Value, &[&str]); 6] = [
        (
            json!({"images": [{"id": 1}], "annotations": [{"id": 1, "image_id": 2, "category_id": 1}]}),
            &["synthetic_a.json", "annotations[0]", "image_id 2"],
        ),
        (
            json!({"images": [{"id": 1}, {"id": 1}]}),
            &["synthetic_a.json", "duplicate image id 1"],
        ),
        (
            json!({"images": [{"id": 1}], "annotations": [
                {"id": 4, "image_id": 1, "category_id": 1}, {"id": 4, "image_id": 1, "category_id": 1}]}),
            &["synthetic_a.json", "duplicate annotation id 4"],
        ),
        (
            json!({"images": [{"id": 1}], "annotations": [{"id": 1, "image_id": 1, "category_id": 77}]}),
            &["synthetic_a.json", "category_id 77"],
        ),
        (
            json!({"images": {"id": 1}}),
            &[
                "synthetic_a.json",
                "`images` is an object, expected an array",
            ],
        ),
        (json!([1]), &["synthetic_a.json", "top level is an array"]),
    ];
    for (add, needles) in cases {
        let f = files();
        std::fs::write(&f.a, add.to_string()).unwrap();
        let output = merge_cli(&f.base, &[&f.a, &f.b], &f.out);
        assert_clean_failure(&f.out, &output, needles, 3);
    }
}

#[test]
fn output_over_an_input_is_refused() {
    let f = files();
    let output = merge_cli(&f.base, &[&f.a], &f.base);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("lvis_base.json") && stderr.contains("input"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&f.base).unwrap(), BASE);
    // The same file under another spelling.
    let other = f.dir.path().join(".").join("lvis_base.json");
    let output = merge_cli(&f.base, &[&f.a], &other);
    assert!(!output.status.success());
    assert_eq!(std::fs::read_to_string(&f.base).unwrap(), BASE);
}
