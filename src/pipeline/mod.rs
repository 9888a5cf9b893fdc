//! Everything that decides where a request goes and what happens to it on
//! the way: the routing table, middleware chains and backends, compiled once
//! per configuration generation.

mod backend;
mod error;
mod generation;
mod middleware;
mod path;
mod router;

pub use backend::{Backend, DicomTarget, HttpUpstream};
pub use error::ProxyError;
pub use generation::{
    DicomLimits, DicomRoute, Generation, Limits, LuaSettings, ManagementRt, NetworkRt, PipelineRt, Settings,
};
pub use middleware::{Ctx, Flow, LocalResponse, Middleware};
pub use path::normalize_path;
pub use router::{route_path, Route, RouteMatch};
