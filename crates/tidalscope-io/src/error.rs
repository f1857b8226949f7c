//! The error type of every reader and writer.

use std::path::{Path, PathBuf};

/// What went wrong, and where: every error names its file, and the object
/// (record, HDU, keyword, row) when there is one.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The operating system refused a read or write.
    #[error("{}: {source}", path.display())]
    Io {
        /// File concerned.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The file's content is not what its format requires.
    #[error("{}: {message}", path.display())]
    Format {
        /// File concerned.
        path: PathBuf,
        /// What is wrong, naming the object (record, HDU, keyword).
        message: String,
    },
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io { path: path.to_path_buf(), source }
    }

    /// A format error on `path`.
    pub fn format(path: &Path, message: impl Into<String>) -> Self {
        Error::Format { path: path.to_path_buf(), message: message.into() }
    }
}

/// Result of the io crate.
pub type Result<T> = std::result::Result<T, Error>;
