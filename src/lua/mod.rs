//! The Lua host: the only place that touches mlua. One `LuaHost` per worker
//! per generation holds a sandboxed Lua 5.4 state with every `lua`
//! middleware script loaded and its `init` run.

mod api;
mod cache;
mod coro;
mod ctx;
mod dicom;
mod fast;
mod json;

pub use cache::Cache;
mod sandbox;

pub use sandbox::LuaLimits;
mod objects;
pub use objects::{Body, Message, MessageState};
mod host;

pub use host::{Hook, LoadError, LuaHost, Outcome, Pending, StageSpec};
#[cfg(test)]
mod tests_host;
pub use ctx::{CtxState, LuaCtx};
pub use dicom::{
    next_message_id, AssocInfo, Dataset, DatasetState, DicomOutcome, DicomPending, DimseMsg, DimseState,
    ProposedContext,
};
