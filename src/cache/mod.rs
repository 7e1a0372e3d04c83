//! The step cache: content-based keys for layer-producing steps ([`key`]) and the records that
//! map a key to the layer it produced ([`records`]), kept in the store. The builder computes a
//! step's key before running it and reuses the recorded layer on a hit. See docs/CACHE.md.

pub mod du;
pub mod key;
pub mod prune;
pub mod records;
pub mod remote;

pub use key::{CacheKey, KeyBuilder, StepInputs};
pub use records::{Hit, Records};
