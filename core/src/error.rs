//! The one error type of the core: every failure names what it was reading.

use thiserror::Error;

/// Errors of the MaskForge core. Messages name the file, the tensor key and the shapes involved.
#[derive(Debug, Error)]
pub enum Error {
    /// A file could not be parsed (bad JSON, truncated or garbage safetensors, ...).
    #[error("{file}: {message}")]
    BadFile { file: String, message: String },
    /// A file that the model needs is not there.
    #[error("{file}: missing ({message})")]
    MissingFile { file: String, message: String },
    /// A weight the model needs is absent from every weight file.
    #[error("{file}: no tensor named `{key}`")]
    MissingTensor { file: String, key: String },
    /// A weight has another shape than the configuration implies.
    #[error("{file}: tensor `{key}` has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        file: String,
        key: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    /// A weight is stored in a type we cannot read.
    #[error("{file}: tensor `{key}` has unsupported dtype {dtype}")]
    UnsupportedDType {
        file: String,
        key: String,
        dtype: String,
    },
    /// A configuration value we cannot run.
    #[error("{file}: {message}")]
    Config { file: String, message: String },
    /// A file could not be read or written (a dataset's storage).
    #[error("{file}: {message}")]
    Io { file: String, message: String },
    /// A bad argument (sizes, steps, ...).
    #[error("{0}")]
    Invalid(String),
    /// The device failed while running or reading back a tensor.
    #[error("device error: {0}")]
    Device(String),
}

/// Result with the core's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A parse failure of `file`.
    pub fn bad_file(file: impl Into<String>, message: impl std::fmt::Display) -> Self {
        Error::BadFile {
            file: file.into(),
            message: message.to_string(),
        }
    }

    /// An invalid-configuration failure of `file`.
    pub fn config(file: impl Into<String>, message: impl std::fmt::Display) -> Self {
        Error::Config {
            file: file.into(),
            message: message.to_string(),
        }
    }
}
