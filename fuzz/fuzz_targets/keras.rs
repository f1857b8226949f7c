//! cargo-fuzz target: the Keras checkpoint index, object graph and
//! metadata parsers must never panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tidalscope_io::fuzzing::keras(data));
