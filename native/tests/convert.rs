//! `maskforge convert`: PyTorch checkpoints (tests/fixtures/pth/, from `pth_ref.py`) to
//! safetensors, and the files it must refuse without running anything.

mod common;

use std::path::Path;

use common::{assert_clear_error, fixtures, maskforge};
use safetensors::SafeTensors;

fn pth(name: &str) -> String {
    fixtures().join("pth").join(name).display().to_string()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `out` holds exactly the tensors of `expected` (dtype, shape, bytes).
fn assert_same(out: &Path, expected: &str) {
    let (a, b) = (
        std::fs::read(out).unwrap(),
        std::fs::read(pth(expected)).unwrap(),
    );
    let (a, b) = (
        SafeTensors::deserialize(&a).unwrap(),
        SafeTensors::deserialize(&b).unwrap(),
    );
    let (mut na, mut nb) = (a.names(), b.names());
    na.sort();
    nb.sort();
    assert_eq!(na, nb);
    for (key, want) in b.tensors() {
        let got = a.tensor(&key).unwrap();
        assert_eq!(
            (got.dtype(), got.shape(), got.data()),
            (want.dtype(), want.shape(), want.data()),
            "{key}"
        );
    }
}

#[test]
fn converts_a_detectron2_checkpoint_keeping_dtypes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("model.safetensors");
    let run = maskforge(&["convert", &pth("detectron2.pth"), s(&out)]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_same(&out, "detectron2.expected.safetensors");
    assert!(
        stdout.contains("tensors, ")
            && stdout.contains("1 BF16")
            && stdout.contains("(`model` entry)"),
        "{stdout}"
    );
    // Safetensors in, the same tensors out.
    let again = dir.path().join("again.safetensors");
    let run = maskforge(&["convert", s(&out), s(&again)]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_same(&again, "detectron2.expected.safetensors");
}

#[test]
fn converts_plain_legacy_and_float8_files() {
    let dir = tempfile::tempdir().unwrap();
    for (input, expected) in [
        ("plain.pth", "plain.expected.safetensors"),
        ("legacy.pth", "plain.expected.safetensors"),
        ("float8.pth", "float8.expected.safetensors"),
    ] {
        let out = dir.path().join(format!("{input}.safetensors"));
        let run = maskforge(&["convert", &pth(input), s(&out)]);
        assert!(
            run.status.success(),
            "{input}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        assert_same(&out, expected);
    }
}

#[test]
fn a_checkpoint_that_would_run_a_command_is_refused_and_nothing_runs() {
    let dir = tempfile::tempdir().unwrap();
    for (file, marker, global) in [
        (
            "malicious.pth",
            "/tmp/maskforge-pwned-5d1c9b7e",
            "`posix.system`",
        ),
        (
            "malicious-trainer.pth",
            "/tmp/maskforge-pwned-trainer-5d1c9b7e",
            "`builtins.exec`",
        ),
    ] {
        let _ = std::fs::remove_file(marker);
        let out = dir.path().join("out.safetensors");
        let run = maskforge(&["convert", &pth(file), s(&out)]);
        assert_clear_error(&run, &[file, "refused pickle global", global]);
        assert!(!Path::new(marker).exists(), "{marker} was created");
        assert!(!out.exists());
    }
}

#[test]
fn bad_inputs_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.safetensors");
    let cases: [(String, &[&str]); 3] = [
        (pth("truncated.pth"), &["truncated.pth", "truncated"]),
        (
            pth("garbage.pth"),
            &[
                "garbage.pth",
                "neither a PyTorch checkpoint nor a safetensors file",
            ],
        ),
        (
            s(&dir.path().join("missing.pth")).to_string(),
            &["missing.pth", "missing"],
        ),
    ];
    for (input, needles) in &cases {
        assert_clear_error(&maskforge(&["convert", input, s(&out)]), needles);
        assert!(!out.exists());
    }
    let text = dir.path().join("notes.safetensors");
    std::fs::write(&text, "hello").unwrap();
    assert_clear_error(
        &maskforge(&["convert", s(&text), s(&out)]),
        &[
            "notes.safetensors",
            "neither a PyTorch checkpoint nor a safetensors file",
        ],
    );
    // The output folder must exist.
    let nowhere = dir.path().join("no/such/dir/out.safetensors");
    assert_clear_error(
        &maskforge(&["convert", &pth("plain.pth"), s(&nowhere)]),
        &["out.safetensors", "cannot write"],
    );
}

#[test]
fn half_stores_f32_tensors_as_f16() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixtures().join("tiny-sd15/vae/diffusion_pytorch_model.safetensors");
    let out = dir.path().join("vae.fp16.safetensors");
    let run = maskforge(&["convert", s(&input), s(&out), "--half"]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let (a, b) = (std::fs::read(&input).unwrap(), std::fs::read(&out).unwrap());
    let (a, b) = (
        SafeTensors::deserialize(&a).unwrap(),
        SafeTensors::deserialize(&b).unwrap(),
    );
    assert_eq!(a.len(), b.len());
    for (key, want) in a.tensors() {
        let got = b.tensor(&key).unwrap();
        assert_eq!(
            (got.dtype(), got.shape()),
            (safetensors::Dtype::F16, want.shape()),
            "{key}"
        );
        let rounded: Vec<u8> = want
            .data()
            .chunks_exact(4)
            .flat_map(|v| {
                half::f16::from_f32(f32::from_le_bytes(v.try_into().unwrap())).to_le_bytes()
            })
            .collect();
        assert_eq!(got.data(), rounded.as_slice(), "{key}");
    }
}
