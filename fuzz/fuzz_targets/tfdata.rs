//! cargo-fuzz target: the tfdata parser must never panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tidalscope_io::fuzzing::tfdata(data));
