//! Configuration: the main TOML file plus every `*.toml` in
//! `proxy.pipelines_path`, in Harmony's model. Loading reports every problem
//! at once, each with file, line and key.
//!
//! Layout: `load.rs` reads and parses files (with spans), `build.rs` merges
//! them and drives the section builders (`settings.rs`, `items.rs`,
//! `middleware.rs`, `validate.rs`); `value.rs`/`source.rs` are the spanned
//! accessors and error sink; `model.rs` is the typed result.

mod build;
mod dicom;
mod error;
mod items;
mod load;
mod middleware;
mod model;
mod settings;
mod source;
mod url;
mod validate;
mod value;

#[cfg(test)]
mod tests;

pub use dicom::{DEFAULT_BUFFERED_DATASET_BYTES, DEFAULT_DIMSE_TIMEOUT_MS, DEFAULT_MAX_ASSOCIATIONS, DEFAULT_MAX_PDU};
pub use error::{ConfigError, ConfigErrors};
pub use load::load;
pub use model::*;
