//! cargo-fuzz target: the npy parser must never panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tidalscope_io::fuzzing::npy(data));
