//! The library's error type. Every variant names the file (and line or field,
//! where there is one) at fault, so that a message alone says what to fix.

use std::path::PathBuf;

/// Errors of the gcse library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A configuration file (config.json, an experiment TOML) is malformed or
    /// holds a value we cannot use.
    #[error("{}: {message}", path.display())]
    Config { path: PathBuf, message: String },
    /// Model weights could not be loaded into the encoder.
    #[error("{}: {message}", path.display())]
    Load { path: PathBuf, message: String },
    /// A tokenizer file could not be read or used.
    #[error("{}: {message}", path.display())]
    Tokenizer { path: PathBuf, message: String },
    /// An input data file holds a line we cannot use.
    #[error("{}:{line}: {message}", path.display())]
    Data {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// An input file or folder, as a whole, holds nothing we can use (no
    /// pairs, every score equal...).
    #[error("{}: {message}", path.display())]
    Unusable { path: PathBuf, message: String },
    /// A model name is neither a local directory nor obtainable from the hub.
    #[error("{0}")]
    ModelNotFound(String),
    /// The requested compute backend is not available on this machine or build.
    #[error("{0}")]
    Backend(String),
    /// Training cannot go on: the loss, gradients or weights stopped being
    /// finite.
    #[error("{0}")]
    Diverged(String),
    /// A command-line value is not valid.
    #[error("{0}")]
    Usage(String),
}

/// Result with the library's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// An [`Error::Data`] for line `line` (1-based) of `path`.
    pub fn data(path: impl Into<PathBuf>, line: usize, message: impl Into<String>) -> Self {
        Error::Data {
            path: path.into(),
            line,
            message: message.into(),
        }
    }
}
