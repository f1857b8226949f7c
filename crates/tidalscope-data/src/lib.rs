//! Datasets for training and inference: the reference normalisation
//! (per-band MAD σ, asinh), the stated rule for non-finite pixels, labelled
//! splits, augmentations, a streaming loader that shuffles through a
//! bounded buffer for training, and a streaming reader for inference.
#![deny(missing_docs)]

pub mod augment;
pub mod crowd;
pub mod loader;
pub mod normalise;
pub mod preprocess;
pub mod residual;
pub mod split;
pub mod stream;

pub use normalise::Normaliser;
