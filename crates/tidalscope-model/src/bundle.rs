//! Model folders: what `pretrain` and `finetune` write and every other
//! command reads.
//!
//! An **encoder folder** holds `encoder.json` (the [`EncoderConfig`] that
//! rebuilds it), `encoder.bpk` (weights, burnpack) and `preprocess.json`
//! (binning, crop and the normalisation σ_b). A **classifier folder** holds
//! `classifier.json`, `classifier.bpk` and `preprocess.json`.

use crate::classifier::{Classifier, ClassifierConfig};
use crate::encoder::{Encoder, EncoderConfig};
use crate::store::{self, StoreError};
use burn::prelude::*;
use std::path::Path;
use tidalscope_data::preprocess::{Preprocess, PreprocessError};

/// Errors of reading or writing a model folder.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The folder lacks a file every model folder of this kind has.
    #[error("{dir} is not {kind} folder: {missing} is missing")]
    NotAModel {
        /// Folder.
        dir: String,
        /// "an encoder" or "a classifier".
        kind: &'static str,
        /// The missing file.
        missing: String,
    },
    /// A configuration file is unreadable.
    #[error("{path}: {message}")]
    Config {
        /// File.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// Weights.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Preprocessing description.
    #[error(transparent)]
    Preprocess(#[from] PreprocessError),
    /// File system.
    #[error(transparent)]
    Io(#[from] tidalscope_io::Error),
}

fn require(dir: &Path, kind: &'static str, files: &[&str]) -> Result<(), BundleError> {
    if !dir.is_dir() {
        return Err(BundleError::NotAModel {
            dir: dir.display().to_string(),
            kind,
            missing: "the folder itself".into(),
        });
    }
    for f in files {
        if !dir.join(f).is_file() {
            return Err(BundleError::NotAModel { dir: dir.display().to_string(), kind, missing: f.to_string() });
        }
    }
    Ok(())
}

fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), BundleError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| BundleError::Config { path: path.display().to_string(), message: e.to_string() })?;
    tidalscope_io::atomic::write(path, text.as_bytes())?;
    Ok(())
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, BundleError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| BundleError::Config { path: path.display().to_string(), message: e.to_string() })?;
    serde_json::from_str(&text)
        .map_err(|e| BundleError::Config { path: path.display().to_string(), message: e.to_string() })
}

/// An encoder with what it needs to be used.
#[derive(Debug, Clone)]
pub struct EncoderBundle {
    /// Rebuilds the encoder.
    pub config: EncoderConfig,
    /// The encoder.
    pub encoder: Encoder,
    /// Its inputs' preprocessing.
    pub preprocess: Preprocess,
}

impl EncoderBundle {
    /// Files of an encoder folder.
    pub const FILES: [&'static str; 3] = ["encoder.json", "encoder.bpk", "preprocess.json"];

    /// True if `dir` looks like an encoder folder.
    pub fn is_bundle(dir: &Path) -> bool {
        Self::FILES.iter().all(|f| dir.join(f).is_file())
    }

    /// Writes the folder (the encoder should be in inference mode, so its
    /// BatchNorm statistics are current).
    pub fn save(&self, dir: &Path) -> Result<(), BundleError> {
        std::fs::create_dir_all(dir).map_err(|e| tidalscope_io::Error::io(dir, e))?;
        write_json(&dir.join("encoder.json"), &self.config)?;
        self.preprocess.save(&dir.join("preprocess.json"))?;
        store::save(self.encoder.clone(), &dir.join("encoder.bpk"))?;
        Ok(())
    }

    /// The encoder and preprocessing of an encoder folder, or of the
    /// encoder inside a classifier folder (what `embed --encoder` takes).
    /// A folder that is neither is reported as not an encoder folder.
    pub fn load_encoder_of(dir: &Path, device: &Device) -> Result<(Encoder, Preprocess), BundleError> {
        if !Self::is_bundle(dir) && dir.join(ClassifierBundle::FILES[0]).is_file() {
            let b = ClassifierBundle::load(dir, device)?;
            Ok((b.classifier.encoder, b.preprocess))
        } else {
            Self::load(dir, device).map(|b| (b.encoder, b.preprocess))
        }
    }

    /// Reads a folder onto `device`.
    pub fn load(dir: &Path, device: &Device) -> Result<Self, BundleError> {
        require(dir, "an encoder", &Self::FILES)?;
        let config: EncoderConfig = read_json(&dir.join("encoder.json"))?;
        let preprocess = Preprocess::load(&dir.join("preprocess.json"))?;
        let encoder = store::load(config.init(device), &dir.join("encoder.bpk"))?;
        Ok(Self { config, encoder, preprocess })
    }
}

/// A classifier with what it needs to be used.
#[derive(Debug, Clone)]
pub struct ClassifierBundle {
    /// Rebuilds the classifier.
    pub config: ClassifierConfig,
    /// The classifier.
    pub classifier: Classifier,
    /// Its inputs' preprocessing.
    pub preprocess: Preprocess,
}

impl ClassifierBundle {
    /// Files of a classifier folder.
    pub const FILES: [&'static str; 3] = ["classifier.json", "classifier.bpk", "preprocess.json"];

    /// Writes the folder.
    pub fn save(&self, dir: &Path) -> Result<(), BundleError> {
        std::fs::create_dir_all(dir).map_err(|e| tidalscope_io::Error::io(dir, e))?;
        write_json(&dir.join("classifier.json"), &self.config)?;
        self.preprocess.save(&dir.join("preprocess.json"))?;
        store::save(self.classifier.clone(), &dir.join("classifier.bpk"))?;
        Ok(())
    }

    /// Reads a folder onto `device`.
    pub fn load(dir: &Path, device: &Device) -> Result<Self, BundleError> {
        require(dir, "a classifier", &Self::FILES)?;
        let config: ClassifierConfig = read_json(&dir.join("classifier.json"))?;
        let preprocess = Preprocess::load(&dir.join("preprocess.json"))?;
        let classifier = store::load(config.init(device), &dir.join("classifier.bpk"))?;
        Ok(Self { config, classifier, preprocess })
    }
}
