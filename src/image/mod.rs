//! OCI image objects: the config ([`config`]), the manifest/index/descriptor helpers that tie
//! layers and configs together ([`manifest`]), platforms ([`platform`]) and image references
//! ([`reference`]), and the images kept in the store by name ([`stored`]).

pub mod config;
pub mod manifest;
pub mod platform;
pub mod reference;
pub mod stored;
