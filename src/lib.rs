//! hako: a daemonless, single-binary container image builder.
//!
//! Data flows one way: [`dockerfile`] (parse, expand, type) → [`plan`] (stages, ARG scoping, the stage graph) →
//! later the sandbox, layers and exporters. [`context`] owns the build context (`.dockerignore`).
//! The binary (`src/main.rs`) is a thin shell around [`cli`].

pub mod build;
pub mod cache;
pub mod cli;
pub mod context;
pub mod digest;
pub mod dockerfile;
pub mod export;
#[doc(hidden)]
pub mod fuzzing;
pub mod handoff;
pub mod image;
pub mod layer;
pub mod plan;
pub mod registry;
pub mod sandbox;
pub mod store;
