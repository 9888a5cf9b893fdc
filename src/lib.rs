//! Harmony: a secure, Lua-scriptable proxy for data meshes with first-class
//! healthcare protocols. See `docs/architecture.md` for the layers.

pub mod allocator;
pub mod base64;
pub mod config;
pub mod logging;
pub mod lua;
pub mod pipeline;
pub mod runtime;
