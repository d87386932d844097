//! The native side of MaskForge: files, devices and the `maskforge` subcommands.

pub mod agreement;
pub mod alloc;
pub mod commands;
pub mod control;
pub mod device;
pub mod embedded;
pub mod merge;
pub mod model;
pub mod npy;
pub mod pool;
pub mod progress;
pub mod source;
pub mod storage;

use std::path::Path;

use anyhow::{Context, Result};

/// Writes `path` through a temporary file in the same folder and a rename, so that a reader
/// (or a crash) never sees a half-written file.
pub fn write_atomically(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .with_context(|| format!("{}: not a file path", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = write(&tmp).and_then(|_| {
        std::fs::rename(&tmp, path).with_context(|| format!("{}: cannot write", path.display()))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// [`write_atomically`] for bytes already in memory.
pub fn write_bytes_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomically(path, |tmp| {
        std::fs::write(tmp, bytes).with_context(|| format!("{}: cannot write", path.display()))
    })
}
