#![no_main]
//! Fuzz target: see `hako::fuzzing::dockerignore`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| hako::fuzzing::dockerignore(data));
