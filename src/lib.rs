//! Harmony: a secure, Lua-scriptable proxy for data meshes.

pub mod config;
