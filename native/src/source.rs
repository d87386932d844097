//! Model files on disk, memory-mapped, and in the Hugging Face cache.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use maskforge_core::weights::{Bytes, FileSource, MemorySource};
use maskforge_core::{Error, Result};

/// A diffusers folder on disk; weight files are memory-mapped, not copied.
pub struct DirSource {
    root: PathBuf,
}

impl DirSource {
    /// The folder `root` (an error naming it if it is not a directory).
    pub fn new(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        if !root.is_dir() {
            return Err(Error::MissingFile {
                file: root.display().to_string(),
                message: "not a directory".into(),
            });
        }
        Ok(Self { root })
    }
}

/// Maps `path` into memory (read-only), naming it in errors.
pub fn map_file(path: &Path) -> Result<Bytes> {
    let file = std::fs::File::open(path).map_err(|e| Error::MissingFile {
        file: path.display().to_string(),
        message: e.to_string(),
    })?;
    // SAFETY: the map is read-only; a model file changed by another process while mapped is
    // outside what a CLI run guards against (the same holds for diffusers and candle).
    let map = unsafe { memmap2::Mmap::map(&file) }
        .map_err(|e| Error::bad_file(path.display().to_string(), e))?;
    Ok(Arc::new(map))
}

impl FileSource for DirSource {
    fn read(&self, path: &str) -> Result<Bytes> {
        map_file(&self.root.join(path))
    }

    fn exists(&self, path: &str) -> bool {
        self.root.join(path).is_file()
    }

    fn display(&self, path: &str) -> String {
        self.root.join(path).display().to_string()
    }
}

/// A Hugging Face model repository (`org/name`): files from the standard cache (`HF_HOME`),
/// downloaded with `hf-hub` when missing and the network allows.
pub struct HubSource {
    repo_id: String,
    cache: hf_hub::CacheRepo,
    api: Option<hf_hub::api::sync::ApiRepo>,
    cache_dir: PathBuf,
}

impl HubSource {
    /// The repository `repo_id` in the cache of `HF_HOME` (or `~/.cache/huggingface`).
    pub fn new(repo_id: &str) -> Self {
        let cache = hf_hub::Cache::from_env();
        let cache_dir = cache.path().clone();
        let api = hf_hub::api::sync::ApiBuilder::from_env()
            .with_progress(true)
            .build()
            .ok()
            .map(|api| api.model(repo_id.to_string()));
        Self {
            repo_id: repo_id.to_string(),
            cache: cache.model(repo_id.to_string()),
            api,
            cache_dir,
        }
    }

    fn locate(&self, path: &str) -> std::result::Result<PathBuf, String> {
        if let Some(p) = self.cache.get(path) {
            return Ok(p);
        }
        match &self.api {
            Some(api) => api.get(path).map_err(|e| e.to_string()),
            None => Err("no Hugging Face client could be built".into()),
        }
    }
}

impl FileSource for HubSource {
    fn read(&self, path: &str) -> Result<Bytes> {
        match self.locate(path) {
            Ok(p) => map_file(&p),
            Err(e) => Err(Error::MissingFile {
                file: self.display(path),
                message: format!(
                    "not in the Hugging Face cache at {} and could not be downloaded ({e}); \
                     download the model while online or pass --model with a local folder",
                    self.cache_dir.display()
                ),
            }),
        }
    }

    fn exists(&self, path: &str) -> bool {
        self.locate(path).is_ok()
    }

    fn display(&self, path: &str) -> String {
        format!("hf://{}/{}", self.repo_id, path)
    }
}

/// `base` with the files of `top` added or put in place of its own.
pub struct Overlay<'a> {
    pub top: MemorySource,
    pub base: &'a dyn FileSource,
}

impl FileSource for Overlay<'_> {
    fn read(&self, path: &str) -> Result<Bytes> {
        if self.top.exists(path) {
            self.top.read(path)
        } else {
            self.base.read(path)
        }
    }

    fn exists(&self, path: &str) -> bool {
        self.top.exists(path) || self.base.exists(path)
    }

    fn display(&self, path: &str) -> String {
        if self.top.exists(path) {
            self.top.display(path)
        } else {
            self.base.display(path)
        }
    }
}
