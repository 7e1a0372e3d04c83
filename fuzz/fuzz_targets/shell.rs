#![no_main]
//! Fuzz target: see `hako::fuzzing::shell_words`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| hako::fuzzing::shell_words(data));
