//! A dataset folder on disk as the core's [`Storage`]: atomic writes through a temporary file
//! and a rename, and the clean-up of temporaries a killed run left.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::Context;
use maskforge_core::dataset::Storage;
use maskforge_core::{Error, Result};

/// The dataset folder `root`.
pub struct DirStorage {
    root: PathBuf,
}

impl DirStorage {
    /// Creates `root` and its `folders` if missing.
    pub fn create(root: &Path, folders: &[&str]) -> anyhow::Result<Self> {
        for dir in std::iter::once(root.to_path_buf()).chain(folders.iter().map(|f| root.join(f))) {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("{}: cannot create the output folder", dir.display()))?;
        }
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    /// Opens the existing dataset folder `root`.
    pub fn open(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
        }
    }

    /// Removes temporary files (`.<name>.tmp-<pid>`, see [`crate::write_atomically`]) that a
    /// killed run left in `folder` for the samples `mine` (files named `<image id>.<ext>`).
    /// Every sample belongs to one shard, so each shard clears its own.
    pub fn remove_stale_temporaries(
        &self,
        folder: &str,
        mine: &BTreeSet<u64>,
    ) -> anyhow::Result<()> {
        let dir = self.root.join(folder);
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("{}: cannot list", dir.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("{}: cannot list", dir.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some((file, _pid)) = name.strip_prefix('.').and_then(|n| n.split_once(".tmp-"))
            else {
                continue;
            };
            let id = file
                .split_once('.')
                .and_then(|(id, _ext)| id.parse::<u64>().ok());
            if id.is_some_and(|id| id >= 1 && mine.contains(&(id - 1))) {
                std::fs::remove_file(entry.path())
                    .with_context(|| format!("{}: cannot remove", entry.path().display()))?;
            }
        }
        Ok(())
    }

    fn path(&self, path: &str) -> PathBuf {
        if path.is_empty() {
            self.root.clone()
        } else {
            self.root.join(path)
        }
    }
}

impl Storage for DirStorage {
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>> {
        let full = self.path(path);
        match std::fs::read(&full) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::Io {
                file: full.display().to_string(),
                message: format!("cannot read ({e})"),
            }),
        }
    }

    fn write(&self, path: &str, bytes: &[u8]) -> Result<()> {
        let full = self.path(path);
        let io = |e: std::io::Error| Error::Io {
            file: full.display().to_string(),
            message: format!("cannot write ({e})"),
        };
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        crate::write_atomically(&full, |tmp| std::fs::write(tmp, bytes).context("write")).map_err(
            |e| {
                let cause = e.root_cause().to_string();
                Error::Io {
                    file: full.display().to_string(),
                    message: format!("cannot write ({cause})"),
                }
            },
        )
    }

    fn display(&self, path: &str) -> String {
        self.path(path).display().to_string()
    }
}
