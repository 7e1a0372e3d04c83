//! OCI image objects: the config ([`config`]), the manifest/index/descriptor helpers that tie
//! layers and configs together ([`manifest`]), platforms ([`platform`]) and image references
//! ([`reference`]).

pub mod config;
pub mod manifest;
pub mod platform;
pub mod reference;
