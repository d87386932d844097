//! `maskforge palette colorize|decode`: SegGen colour maps through the CLI.

mod common;

use std::path::Path;

use common::{assert_clear_error, maskforge};
use image::{GrayImage, ImageBuffer, Luma, Rgb, RgbImage};

fn ok(args: &[&str]) {
    let out = maskforge(args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A 12×8 label map of ADE20K ids: wall, sky, person, unlabelled.
fn ade_labels() -> GrayImage {
    GrayImage::from_fn(12, 8, |x, y| {
        Luma([match (x, y) {
            (0..4, _) => 1,
            (4..8, 0..4) => 3,
            (4..8, _) => 13,
            _ => 0,
        }])
    })
}

#[test]
fn semantic_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let (labels, colors, back) = (
        dir.path().join("l.png"),
        dir.path().join("c.png"),
        dir.path().join("b.png"),
    );
    ade_labels().save(&labels).unwrap();
    ok(&[
        "palette",
        "colorize",
        "--palette",
        "ade20k",
        "--labels",
        s(&labels),
        "--out",
        s(&colors),
    ]);
    let c = image::open(&colors).unwrap().to_rgb8();
    assert_eq!(c.get_pixel(0, 0).0, [120, 120, 120]);
    assert_eq!(c.get_pixel(5, 1).0, [6, 230, 230]);
    assert_eq!(c.get_pixel(11, 7).0, [0, 0, 0]);
    ok(&[
        "palette",
        "decode",
        "--palette",
        "ade20k",
        "--image",
        s(&colors),
        "--out",
        s(&back),
    ]);
    let b = image::open(&back).unwrap();
    assert!(matches!(b, image::DynamicImage::ImageLuma8(_)));
    assert_eq!(b.to_luma8(), ade_labels());
}

#[test]
fn panoptic_edges_and_decode() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    // Two persons (segments 1 and 2) touching at x = 5|6, a car (3) below, void on the right.
    let seg = |x: u32, y: u32| match (x, y) {
        (10.., _) => 0u32,
        (_, 6..) => 3,
        (0..6, _) => 1,
        _ => 2,
    };
    let png = RgbImage::from_fn(12, 10, |x, y| {
        let id = seg(x, y);
        Rgb([id as u8, (id >> 8) as u8, (id >> 16) as u8])
    });
    png.save(p("pan.png")).unwrap();
    let json = r#"{"image_id": 3, "file_name": "pan.png", "segments_info": [
        {"id": 1, "category_id": 1, "iscrowd": 0}, {"id": 2, "category_id": 1, "iscrowd": 0},
        {"id": 3, "category_id": 3, "iscrowd": 0}]}"#;
    std::fs::write(p("pan.json"), json).unwrap();
    ok(&[
        "palette",
        "colorize",
        "--palette",
        "coco-panoptic",
        "--panoptic",
        s(&p("pan.png")),
        "--segments",
        s(&p("pan.json")),
        "--out",
        s(&p("c.png")),
    ]);
    let c = image::open(p("c.png")).unwrap().to_rgb8();
    let edge = [120, 255, 70];
    assert_eq!(c.get_pixel(0, 0).0, [220, 20, 60]);
    assert_eq!(c.get_pixel(5, 0).0, edge);
    assert_eq!(c.get_pixel(6, 0).0, edge);
    assert_eq!(c.get_pixel(7, 0).0, [220, 20, 60]);
    assert_eq!(c.get_pixel(0, 8).0, [0, 0, 142]);
    assert_eq!(c.get_pixel(9, 3).0, [220, 20, 60]); // beside void: no edge
    assert_eq!(c.get_pixel(11, 3).0, [0, 0, 0]);
    // Decoding fills the edges with the nearest instance's class.
    ok(&[
        "palette",
        "decode",
        "--palette",
        "coco-panoptic",
        "--image",
        s(&p("c.png")),
        "--out",
        s(&p("l.png")),
    ]);
    let l = image::open(p("l.png")).unwrap().to_luma8();
    let want = GrayImage::from_fn(12, 10, |x, y| Luma([[0, 1, 1, 3][seg(x, y) as usize]]));
    assert_eq!(l, want);
    // A custom edge colour, and a list of segments.
    std::fs::write(p("list.json"), r#"[{"id": 1, "category_id": 1}, {"id": 2, "category_id": 1}, {"id": 3, "category_id": 3}]"#).unwrap();
    ok(&[
        "palette",
        "colorize",
        "--palette",
        "coco-panoptic",
        "--panoptic",
        s(&p("pan.png")),
        "--segments",
        s(&p("list.json")),
        "--edge-color",
        "1,2,250",
        "--out",
        s(&p("c2.png")),
    ]);
    assert_eq!(
        image::open(p("c2.png"))
            .unwrap()
            .to_rgb8()
            .get_pixel(5, 0)
            .0,
        [1, 2, 250]
    );
    ok(&[
        "palette",
        "decode",
        "--palette",
        "coco-panoptic",
        "--image",
        s(&p("c2.png")),
        "--edge-color",
        "1,2,250",
        "--out",
        s(&p("l2.png")),
    ]);
    assert_eq!(image::open(p("l2.png")).unwrap().to_luma8(), want);
}

#[test]
fn custom_palette_with_large_ids_writes_16_bit() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    std::fs::write(
        p("pal.json"),
        r#"[{"id": 300, "name": "a", "color": [250, 0, 0]}, {"id": 7, "name": "b", "color": [0, 0, 250], "isthing": 1}]"#,
    )
    .unwrap();
    // A palette that uses the default edge colour decodes it as its class.
    std::fs::write(
        p("green.json"),
        r#"[{"id": 2, "name": "green", "color": [120, 255, 70]}]"#,
    )
    .unwrap();
    let g = GrayImage::from_fn(3, 1, |x, _| Luma([[2, 0, 2][x as usize]]));
    g.save(p("g.png")).unwrap();
    ok(&[
        "palette",
        "colorize",
        "--palette",
        s(&p("green.json")),
        "--labels",
        s(&p("g.png")),
        "--out",
        s(&p("gc.png")),
    ]);
    ok(&[
        "palette",
        "decode",
        "--palette",
        s(&p("green.json")),
        "--image",
        s(&p("gc.png")),
        "--out",
        s(&p("gb.png")),
    ]);
    assert_eq!(image::open(p("gb.png")).unwrap().to_luma8(), g);

    let labels: ImageBuffer<Luma<u16>, Vec<u16>> =
        ImageBuffer::from_fn(4, 2, |x, _| Luma([[300, 7, 0, 300][x as usize]]));
    labels.save(p("l.png")).unwrap();
    ok(&[
        "palette",
        "colorize",
        "--palette",
        s(&p("pal.json")),
        "--labels",
        s(&p("l.png")),
        "--out",
        s(&p("c.png")),
    ]);
    // Slightly off colours; one far from all.
    let mut c = image::open(p("c.png")).unwrap().to_rgb8();
    c.put_pixel(0, 1, Rgb([240, 10, 5]));
    c.put_pixel(1, 1, Rgb([128, 0, 128]));
    c.save(p("c.png")).unwrap();
    ok(&[
        "palette",
        "decode",
        "--palette",
        s(&p("pal.json")),
        "--image",
        s(&p("c.png")),
        "--out",
        s(&p("b.png")),
        "--max-distance",
        "30",
    ]);
    let b = image::open(p("b.png")).unwrap();
    let image::DynamicImage::ImageLuma16(b) = b else {
        panic!("expected a 16-bit PNG")
    };
    assert_eq!(b.into_raw(), [300, 7, 0, 300, 300, 0, 0, 300]);
}

#[test]
fn bad_input_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let labels = p("l.png");
    ade_labels().save(&labels).unwrap();
    let colorize = |palette: &str, labels: &Path| {
        maskforge(&[
            "palette",
            "colorize",
            "--palette",
            palette,
            "--labels",
            s(labels),
            "--out",
            s(&p("c.png")),
        ])
    };
    assert_clear_error(
        &colorize("ade21k", &labels),
        &["unknown palette `ade21k`", "coco-panoptic"],
    );
    assert_clear_error(
        &colorize("nope.json", &labels),
        &["nope.json", "cannot read"],
    );
    std::fs::write(
        p("bad.json"),
        r#"[{"id": 1, "name": "a", "color": [1, 2, 300]}]"#,
    )
    .unwrap();
    assert_clear_error(
        &colorize(s(&p("bad.json")), &labels),
        &["bad.json", "0..=255"],
    );
    std::fs::write(p("dup.json"), r#"[{"id": 1, "name": "a", "color": [1, 2, 3]}, {"id": 1, "name": "b", "color": [1, 2, 4]}]"#).unwrap();
    assert_clear_error(
        &colorize(s(&p("dup.json")), &labels),
        &["dup.json", "id 1 is used twice"],
    );
    std::fs::write(
        p("zero.json"),
        r#"[{"id": 0, "name": "a", "color": [1, 2, 3]}]"#,
    )
    .unwrap();
    assert_clear_error(
        &colorize(s(&p("zero.json")), &labels),
        &["zero.json", "id 0"],
    );
    std::fs::write(
        p("small.json"),
        r#"[{"id": 1, "name": "wall", "color": [1, 2, 3]}]"#,
    )
    .unwrap();
    assert_clear_error(
        &colorize(s(&p("small.json")), &labels),
        &["l.png", "label id 3 (16 pixels)"],
    );
    assert_clear_error(&colorize("ade20k", &p("missing.png")), &["missing.png"]);
    std::fs::write(p("junk.png"), b"not a png").unwrap();
    assert_clear_error(&colorize("ade20k", &p("junk.png")), &["junk.png"]);
    RgbImage::new(2, 2).save(p("rgb.png")).unwrap();
    assert_clear_error(
        &colorize("ade20k", &p("rgb.png")),
        &["rgb.png", "grayscale"],
    );

    // Panoptic PNG and JSON that do not match.
    let png = RgbImage::from_fn(4, 1, |x, _| Rgb([[1, 1, 2, 9][x as usize], 0, 0]));
    png.save(p("pan.png")).unwrap();
    std::fs::write(
        p("pan.json"),
        r#"[{"id": 1, "category_id": 1}, {"id": 2, "category_id": 1}]"#,
    )
    .unwrap();
    let (pan_png, out_png) = (p("pan.png"), p("c.png"));
    let panoptic = |json: &Path, extra: &[&str]| {
        let mut args = vec![
            "palette",
            "colorize",
            "--palette",
            "coco-panoptic",
            "--panoptic",
            s(&pan_png),
        ];
        args.extend(["--segments", s(json), "--out", s(&out_png)]);
        args.extend(extra);
        maskforge(&args)
    };
    assert_clear_error(
        &panoptic(&p("pan.json"), &[]),
        &["pan.png", "pan.json", "segment id 9 (1 pixels)"],
    );
    std::fs::write(p("more.json"), r#"[{"id": 1, "category_id": 1}, {"id": 2, "category_id": 1}, {"id": 9, "category_id": 1}, {"id": 5, "category_id": 1}]"#).unwrap();
    assert_clear_error(
        &panoptic(&p("more.json"), &[]),
        &["pan.png", "segment id 5", "no pixel"],
    );
    std::fs::write(p("cat.json"), r#"[{"id": 1, "category_id": 1}, {"id": 2, "category_id": 1}, {"id": 9, "category_id": 12}]"#).unwrap();
    assert_clear_error(&panoptic(&p("cat.json"), &[]), &["category_id 12"]);
    std::fs::write(p("obj.json"), r#"{"segments": []}"#).unwrap();
    assert_clear_error(
        &panoptic(&p("obj.json"), &[]),
        &["obj.json", "segments_info"],
    );
    std::fs::write(p("ok.json"), r#"[{"id": 1, "category_id": 1}, {"id": 2, "category_id": 1}, {"id": 9, "category_id": 3}]"#).unwrap();
    assert_clear_error(
        &panoptic(&p("ok.json"), &["--edge-color", "255,255,255"]),
        &["snow"],
    );
    assert_clear_error(
        &panoptic(&p("ok.json"), &["--edge-color", "1,2"]),
        &["R,G,B"],
    );
    let gray = maskforge(&[
        "palette",
        "colorize",
        "--palette",
        "coco-panoptic",
        "--panoptic",
        s(&labels),
        "--segments",
        s(&p("ok.json")),
        "--out",
        s(&p("c.png")),
    ]);
    assert_clear_error(&gray, &["l.png", "8-bit RGB"]);

    // Decode.
    let decoded = p("o.png");
    let decode = |image: &Path, extra: &[&str]| {
        let mut args = vec![
            "palette",
            "decode",
            "--palette",
            "ade20k",
            "--image",
            s(image),
            "--out",
            s(&decoded),
        ];
        args.extend(extra);
        maskforge(&args)
    };
    assert_clear_error(&decode(&p("missing.png"), &[]), &["missing.png"]);
    assert_clear_error(
        &decode(&p("rgb.png"), &["--max-distance", "-1"]),
        &["rgb.png", "max distance"],
    );
    assert_clear_error(
        &decode(&p("rgb.png"), &["--edge-color", "120,120,120"]),
        &["rgb.png", "\"wall\""],
    );
    assert!(!p("o.png").exists());
}
