//! Helpers shared by the CLI test files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use maskforge_core::weights::{SafetensorsFile, SafetensorsWeights, Weights};
use maskforge_native::source::map_file;

/// `tests/fixtures` of the workspace.
#[allow(dead_code)] // not every test file uses every helper
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

/// Shape and values of tensor `key` in `tests/fixtures/expected/<file>.safetensors`.
#[allow(dead_code)]
pub fn expected(file: &str, key: &str) -> (Vec<usize>, Vec<f32>) {
    let path = fixtures().join(format!("expected/{file}.safetensors"));
    let file = SafetensorsFile::parse(file, map_file(&path).unwrap()).unwrap();
    let t = SafetensorsWeights::new(vec![file])
        .unwrap()
        .read(key)
        .unwrap()
        .unwrap();
    (t.shape, t.data)
}

/// Runs the `maskforge` binary with `args`.
pub fn maskforge(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_maskforge"))
        .args(args)
        .output()
        .expect("runs maskforge")
}

/// Asserts a failure whose message mentions every one of `needles`, without a panic.
#[allow(dead_code)]
pub fn assert_clear_error(out: &Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure, stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "panicked: {stderr}");
    for n in needles {
        assert!(stderr.contains(n), "error should mention `{n}`: {stderr}");
    }
}
