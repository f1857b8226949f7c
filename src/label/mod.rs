//! `tidalscope label`: a local web page on which a person labels galaxies,
//! with queues ordered by the classifier, and a linear probe retrained on
//! the labels in seconds (active learning).
//!
//! - [`log`]: the labels, appended and synced before the page hears they are saved;
//! - [`catalogue`]: the objects, their cached embeddings, scores and queues;
//! - [`retrain`]: the probe fitted on the labels, every object rescored;
//! - [`render`]: the pictures of a cutout;
//! - [`server`]: the HTTP server and the page (`page.html`, compiled in).

pub mod catalogue;
pub mod log;
pub mod render;
pub mod retrain;
pub mod server;
