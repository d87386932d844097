//! Where a dataset's files go: a folder natively, memory (then a zip) in the browser.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::error::Result;

/// A dataset's files by `/`-separated path relative to its root. Writes are atomic: a reader,
/// or a killed process, sees the whole file or none of it.
pub trait Storage: Send + Sync {
    /// The file at `path`, or `None` when there is none.
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>>;
    /// Writes `path` whole, replacing what was there.
    fn write(&self, path: &str, bytes: &[u8]) -> Result<()>;
    /// `path` as a person finds it (for messages).
    fn display(&self, path: &str) -> String;
}

/// Files held in memory (the browser's datasets, tests).
#[derive(Debug, Default)]
pub struct MemoryStorage {
    files: Mutex<BTreeMap<String, Vec<u8>>>,
}

impl MemoryStorage {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every file, sorted by path.
    pub fn into_files(self) -> BTreeMap<String, Vec<u8>> {
        self.files.into_inner().unwrap_or_else(|e| e.into_inner())
    }
}

impl Storage for MemoryStorage {
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>> {
        let files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        Ok(files.get(path).cloned())
    }

    fn write(&self, path: &str, bytes: &[u8]) -> Result<()> {
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        files.insert(path.to_string(), bytes.to_vec());
        Ok(())
    }

    fn display(&self, path: &str) -> String {
        path.to_string()
    }
}
