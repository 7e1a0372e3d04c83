//! hako's integration tests: one test binary (so the crate is linked once), one module per area.
//! They run the real `hako` binary and read BuildKit's conformance data from `../shared`.

mod build;
mod buildx_flags;
mod cache;
mod checks;
mod ci_examples;
mod cli;
mod common;
mod dockerignore_conformance;
mod dry_run_conformance;
mod examples;
mod export;
mod fidelity;
mod fuzz_seeds;
mod images;
mod login;
mod parser_conformance;
mod progress;
mod registry;
mod registry_fixture;
mod run;
mod shell_conformance;
