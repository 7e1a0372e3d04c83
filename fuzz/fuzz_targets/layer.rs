#![no_main]
//! Fuzz target: see `hako::fuzzing::layer`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| hako::fuzzing::layer(data));
