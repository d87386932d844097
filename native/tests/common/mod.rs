//! Helpers shared by the CLI test files.

use std::process::{Command, Output};

/// Runs the `maskforge` binary with `args`.
pub fn maskforge(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_maskforge"))
        .args(args)
        .output()
        .expect("runs maskforge")
}

/// Asserts a failure whose message mentions every one of `needles`, without a panic.
pub fn assert_clear_error(out: &Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure, stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "panicked: {stderr}");
    for n in needles {
        assert!(stderr.contains(n), "error should mention `{n}`: {stderr}");
    }
}
