//! Saving and loading module weights (burn's burnpack format), atomically.

use burn::module::Module;
use burn::store::ModuleRecord;
use burn::tensor::Bytes;
use std::path::Path;

/// Errors of saving and loading weights.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// File system.
    #[error(transparent)]
    Io(#[from] tidalscope_io::Error),
    /// The file is not a burnpack record of this module.
    #[error("{path}: {message}")]
    Record {
        /// File.
        path: String,
        /// What burn said.
        message: String,
    },
}

/// Writes `module`'s parameters to `path` (write then rename).
pub fn save<M: Module>(module: M, path: &Path) -> Result<(), StoreError> {
    let bytes = module
        .into_record()
        .into_bytes()
        .map_err(|e| StoreError::Record { path: path.display().to_string(), message: format!("{e:?}") })?;
    tidalscope_io::atomic::write(path, &bytes)?;
    Ok(())
}

/// Loads parameters from `path` into `module` (which fixes the structure).
pub fn load<M: Module>(module: M, path: &Path) -> Result<M, StoreError> {
    let bytes = std::fs::read(path).map_err(|e| tidalscope_io::Error::io(path, e))?;
    let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes)).map_err(|e| StoreError::Record {
        path: path.display().to_string(),
        message: format!("not a weights file: {e:?}"),
    })?;
    module.try_load_record(record).map_err(|e| StoreError::Record {
        path: path.display().to_string(),
        message: format!("weights do not fit this model: {e:?}"),
    })
}
