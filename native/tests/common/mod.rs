//! Helpers shared by the CLI test files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use maskforge_core::weights::{SafetensorsFile, SafetensorsWeights, Weights};
use maskforge_native::source::map_file;
use safetensors::{Dtype, SafeTensors};

/// `tests/fixtures` of the workspace.
#[allow(dead_code)] // not every test file uses every helper
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

/// Copies folder `from` into `to`, recursively.
#[allow(dead_code)]
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Shape and values (as f32) of tensor `key` in `tests/fixtures/expected/<file>.safetensors`:
/// float (f16, f32, f64), u8 and i64 tensors.
#[allow(dead_code)]
pub fn expected(file: &str, key: &str) -> (Vec<usize>, Vec<f32>) {
    let path = fixtures().join(format!("expected/{file}.safetensors"));
    let bytes = map_file(&path).unwrap();
    let raw: &[u8] = (*bytes).as_ref();
    let st = SafeTensors::deserialize(raw).unwrap();
    let t = st.tensor(key).unwrap_or_else(|e| panic!("{key}: {e}"));
    let d = t.data();
    let values = match t.dtype() {
        Dtype::U8 => d.iter().map(|&v| v as f32).collect(),
        Dtype::I64 => (d.chunks_exact(8))
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as f32)
            .collect(),
        Dtype::F64 => (d.chunks_exact(8))
            .map(|b| f64::from_le_bytes(b.try_into().unwrap()) as f32)
            .collect(),
        _ => {
            let file = SafetensorsFile::parse(file, bytes.clone()).unwrap();
            let weights = SafetensorsWeights::new(vec![file]).unwrap();
            return (t.shape().to_vec(), weights.read(key).unwrap().unwrap().data);
        }
    };
    (t.shape().to_vec(), values)
}

/// Runs the `maskforge` binary with `args`.
#[allow(dead_code)]
pub fn maskforge(args: &[&str]) -> Output {
    maskforge_in(Path::new("."), args)
}

/// Runs the `maskforge` binary with `args` in `cwd` (where CubeCL looks for `cubecl.toml`).
pub fn maskforge_in(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_maskforge"))
        .current_dir(cwd)
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
