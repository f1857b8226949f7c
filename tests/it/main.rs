//! Integration tests: the `tidalscope` binary run as a user runs it.

mod simulate;
mod util;
