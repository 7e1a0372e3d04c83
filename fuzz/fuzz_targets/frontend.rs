#![no_main]
//! Fuzz target: see `hako::fuzzing::frontend`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| hako::fuzzing::frontend(data));
