//! Where model files come from. The core does no I/O: the native CLI reads (or maps) files from
//! disk, the browser fetches them, and both hand the core their bytes through [`FileSource`].

use std::collections::HashMap;
use std::sync::Arc;

use crate::error::{Error, Result};

/// The contents of one file, shared without copying (a memory map natively, a buffer on the web).
pub type Bytes = Arc<dyn AsRef<[u8]> + Send + Sync>;

/// A tree of model files addressed by `/`-separated relative paths (`unet/config.json`).
pub trait FileSource: Send + Sync {
    /// The whole file at `path`, or [`Error::MissingFile`] naming it.
    fn read(&self, path: &str) -> Result<Bytes>;
    /// Whether `path` exists.
    fn exists(&self, path: &str) -> bool;
    /// How `path` should appear in messages (the full path on disk, the URL on the web).
    fn display(&self, path: &str) -> String;
}

/// Files held in memory: used by the web crate after downloading, and by tests.
#[derive(Default, Clone)]
pub struct MemorySource {
    root: String,
    files: HashMap<String, Bytes>,
}

impl MemorySource {
    /// An empty source whose messages prefix paths with `root`.
    pub fn new(root: impl Into<String>) -> Self {
        Self {
            root: root.into(),
            files: HashMap::new(),
        }
    }

    /// Adds (or replaces) the file at `path`.
    pub fn insert(&mut self, path: impl Into<String>, bytes: Vec<u8>) {
        self.files.insert(path.into(), Arc::new(bytes));
    }
}

impl FileSource for MemorySource {
    fn read(&self, path: &str) -> Result<Bytes> {
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| Error::MissingFile {
                file: self.display(path),
                message: "not in the loaded model files".into(),
            })
    }

    fn exists(&self, path: &str) -> bool {
        self.files.contains_key(path)
    }

    fn display(&self, path: &str) -> String {
        if self.root.is_empty() {
            path.to_string()
        } else {
            format!("{}/{}", self.root.trim_end_matches('/'), path)
        }
    }
}
