//! Integration tests: the `tidalscope` binary run as a user runs it.

mod collect;
mod data;
mod experiment;
mod infer;
mod label;
pub mod pipeline;
mod simulate;
mod util;
