//! OCI image objects: the config ([`config`]) and the manifest/index/descriptor helpers that tie
//! layers and configs together.

pub mod config;
pub mod manifest;
