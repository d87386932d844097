//! The code map's invariants (README, Architecture), checked on the sources: the dataset layer
//! knows no system, weights know no model type, models know no pipeline, MosaicFusion adds
//! no methods to the pipeline, the shapes world knows no model, and DiffusionInst knows no
//! text-to-image pipeline or other system.

use std::path::{Path, PathBuf};

fn sources(dir: &str) -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                out.push((path, text));
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../core/src")
        .join(dir);
    let mut out = Vec::new();
    walk(&root, &mut out);
    assert!(!out.is_empty(), "no sources under {}", root.display());
    out
}

fn assert_absent(dir: &str, needles: &[&str]) {
    for (path, text) in sources(dir) {
        for needle in needles {
            assert!(
                !text.contains(needle),
                "{} contains `{needle}`",
                path.display()
            );
        }
    }
}

#[test]
fn layers_know_only_what_they_may() {
    assert_absent(
        "dataset",
        &[
            "crate::mosaic",
            "crate::seggen",
            "crate::shapes",
            "crate::pipelines",
            "crate::diffusioninst",
        ],
    );
    assert_absent("weights", &["crate::models", "crate::pipelines"]);
    assert_absent(
        "models",
        &["crate::pipelines", "crate::mosaic", "crate::dataset"],
    );
    assert_absent(
        "models/detection",
        &[
            "crate::pipelines",
            "crate::mosaic",
            "crate::seggen",
            "crate::models::diffusion",
        ],
    );
    assert_absent(
        "pipelines",
        &["crate::mosaic", "crate::seggen", "crate::dataset"],
    );
    assert_absent("mosaic", &["impl StableDiffusion"]);
    assert_absent(
        "diffusioninst",
        &[
            "crate::mosaic",
            "crate::seggen",
            "crate::pipelines",
            "crate::models::diffusion",
        ],
    );
    assert_absent(
        "shapes",
        &[
            "crate::mosaic",
            "crate::pipelines",
            "crate::models",
            "crate::text",
            "burn::",
        ],
    );
}
