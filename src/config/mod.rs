//! Configuration: the main TOML file plus every `*.toml` in
//! `proxy.pipelines_path`, in Harmony's model. Loading reports every problem
//! at once, each with file, line and key.

mod model;

pub use model::*;

// Implemented in load.rs / validate.rs / error.rs:
// pub fn load(path: &Path) -> Result<Config, ConfigErrors>
