//! Evaluation and pictures: ROC curves, completeness at fixed contamination,
//! plots, colour composites and mosaics of cutouts, and similarity search.
//!
//! Depends only on `core` and `io`: scores and embeddings arrive as plain
//! arrays, so evaluation builds and tests without the deep-learning stack.
#![deny(missing_docs)]

pub mod logistic;
pub mod metrics;
pub mod morphology;
pub mod plot;
pub mod recovery;
pub mod rgb;
pub mod search;
pub mod whiten;
