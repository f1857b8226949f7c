//! cargo-fuzz target: the Parquet catalogue reader must never panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tidalscope_io::fuzzing::parquet(data));
