//! Evaluation and pictures: colour composites and mosaics of cutouts, and
//! (in later modules) ROC curves, completeness and similarity search.
//!
//! Depends only on `core` and `io`: scores and embeddings arrive as plain
//! arrays, so evaluation builds and tests without the deep-learning stack.
#![deny(missing_docs)]

pub mod metrics;
pub mod plot;
pub mod rgb;
