//! Rust errors as the Python exceptions a notebook user expects: a missing
//! file is `FileNotFoundError`, an unreadable or corrupt one `OSError`, an
//! array or setting that cannot work `ValueError`. Messages are the CLI's.

use pyo3::exceptions::{PyFileNotFoundError, PyOSError, PyValueError};
use pyo3::{PyErr, PyResult};
use std::path::Path;
use tidalscope_data::preprocess::PreprocessError;
use tidalscope_model::bundle::BundleError;
use tidalscope_model::store::StoreError;

/// `ValueError` with `message`.
pub fn value(message: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(message.to_string())
}

/// A reader's or writer's error: `FileNotFoundError` when the file is
/// missing, `OSError` otherwise (unreadable, or not what its format says).
pub fn io(e: tidalscope_io::Error) -> PyErr {
    let message = e.to_string();
    io_as(&e, message)
}

/// `message` as the exception `e` calls for.
fn io_as(e: &tidalscope_io::Error, message: String) -> PyErr {
    match e {
        tidalscope_io::Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            PyFileNotFoundError::new_err(message)
        }
        _ => PyOSError::new_err(message),
    }
}

/// `FileNotFoundError` unless `path` exists.
pub fn require_exists(path: &Path) -> PyResult<()> {
    if path.exists() {
        Ok(())
    } else {
        Err(PyFileNotFoundError::new_err(format!("{}: no such file or folder", path.display())))
    }
}

/// A model folder that cannot be loaded: `ValueError` when the folder is
/// not a model of the asked kind, `OSError` when a file in it is corrupt.
pub fn bundle(e: BundleError) -> PyErr {
    match e {
        BundleError::NotAModel { .. } => value(e),
        BundleError::Io(e) | BundleError::Store(StoreError::Io(e)) => io(e),
        BundleError::Preprocess(PreprocessError::Io(e)) => io(e),
        other => PyOSError::new_err(other.to_string()),
    }
}

/// An image the model cannot take (`ValueError`), naming its position.
pub fn preprocess(index: usize, e: PreprocessError) -> PyErr {
    match e {
        PreprocessError::Io(e) => io(e),
        e => value(format!("image {index}: {e}")),
    }
}

/// An object's image that cannot be read, naming the object and its file.
pub fn io_in(e: tidalscope_io::Error, id: &str, file: &str) -> PyErr {
    let message = format!("object {id} ({file}): {e}");
    io_as(&e, message)
}
