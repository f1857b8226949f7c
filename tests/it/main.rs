//! Integration tests: the `tidalscope` binary run as a user runs it.

mod data;
mod simulate;
mod util;
