//! OCI image objects: the config ([`config`]), the manifest/index/descriptor helpers that tie
//! layers and configs together ([`manifest`]) and platforms ([`platform`]).

pub mod config;
pub mod manifest;
pub mod platform;
