//! The crate-wide error type.

use thiserror::Error;

/// Everything that can go wrong in the engine, with enough context to act on.
#[derive(Debug, Error)]
pub enum Error {
    /// Two operands of an op do not have compatible shapes.
    #[error("shape mismatch in {op}: {detail}")]
    Shape {
        /// The op that rejected its inputs.
        op: &'static str,
        /// What was expected and what was given.
        detail: String,
    },
    /// An argument is outside the range an op accepts.
    #[error("invalid argument to {op}: {detail}")]
    InvalidArgument {
        /// The op that rejected the argument.
        op: &'static str,
        /// Why it was rejected.
        detail: String,
    },
    /// The autograd tape was used in a way it does not support.
    #[error("autograd: {0}")]
    Autograd(String),
    /// A file could not be read or written.
    #[error("{path}: {detail}")]
    Io {
        /// The file concerned.
        path: String,
        /// What failed.
        detail: String,
    },
    /// A checkpoint could not be written, or is damaged and was not loaded.
    #[error("checkpoint {path}: {detail}")]
    Checkpoint {
        /// The file or directory concerned.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// Training cannot go on (e.g. the loss stayed non-finite).
    #[error("training stopped: {0}")]
    Training(String),
    /// A backend (device) failed.
    #[error("backend {backend}: {detail}")]
    Backend {
        /// The backend's name.
        backend: String,
        /// What failed.
        detail: String,
    },
    /// Input data (a WAV file, an image, a manifest) is missing or malformed.
    #[error("{path}: {detail}")]
    Data {
        /// The file (or directory) at fault.
        path: String,
        /// What is wrong with it.
        detail: String,
    },
}

/// The crate-wide result type.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// A shape error for `op`.
    pub fn shape(op: &'static str, detail: impl Into<String>) -> Self {
        Error::Shape {
            op,
            detail: detail.into(),
        }
    }

    /// A data error about the file at `path`.
    pub fn data(path: impl AsRef<std::path::Path>, detail: impl Into<String>) -> Self {
        Error::Data {
            path: path.as_ref().display().to_string(),
            detail: detail.into(),
        }
    }

    /// An invalid-argument error for `op`.
    pub fn invalid(op: &'static str, detail: impl Into<String>) -> Self {
        Error::InvalidArgument {
            op,
            detail: detail.into(),
        }
    }
}
