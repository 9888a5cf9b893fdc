//! The validated, typed configuration. Everything here has passed validation:
//! names resolve, paths are absolute, options are typed. `src/pipeline`
//! compiles it into a `Generation`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Where a config item was defined, for error messages after loading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: PathBuf,
    pub line: usize,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    /// The main file, absolute.
    pub main_file: PathBuf,
    /// Every file that was read (main + pipelines), for reload watching.
    pub files: Vec<PathBuf>,
    pub proxy: ProxySettings,
    pub networks: BTreeMap<String, Network>,
    pub management: Option<Management>,
    pub logging: Logging,
    pub pipelines: BTreeMap<String, Pipeline>,
    pub endpoints: BTreeMap<String, Endpoint>,
    pub middleware: BTreeMap<String, Middleware>,
    pub backends: BTreeMap<String, Backend>,
}

/// `[proxy]` plus our limits/timeouts (all optional in the file; defaults here).
#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// `proxy.id`, default "harmony".
    pub id: String,
    /// `proxy.log_level`: error|warn|info|debug|trace, default "info".
    pub log_level: String,
    /// `proxy.pipelines_path`, resolved against the main file's dir. Default "pipelines".
    pub pipelines_path: PathBuf,
    /// `proxy.scripts_path`, resolved likewise. Default "../scripts".
    pub scripts_path: PathBuf,
    /// `proxy.workers`, 1..=64, default 1.
    pub workers: usize,
    /// `proxy.max_connections` per worker, default 10_000.
    pub max_connections: usize,
    /// `proxy.max_header_bytes`, default 32768.
    pub max_header_bytes: usize,
    /// `proxy.max_headers`, default 100.
    pub max_headers: usize,
    /// `proxy.max_uri_bytes`, default 8192.
    pub max_uri_bytes: usize,
    /// `proxy.max_body_bytes` for request bodies, default 0 = unlimited (streamed).
    pub max_body_bytes: u64,
    /// `proxy.buffered_body_bytes`: most a stage/echo may buffer, default 1 MiB.
    pub buffered_body_bytes: usize,
    /// `proxy.header_timeout_ms`: full request head must arrive within, default 10_000.
    pub header_timeout_ms: u64,
    /// `proxy.idle_timeout_ms`: keep-alive idle / body inactivity, default 60_000.
    pub idle_timeout_ms: u64,
    /// `proxy.connect_timeout_ms`: upstream connect, default 5_000.
    pub connect_timeout_ms: u64,
    /// `proxy.upstream_timeout_ms`: default upstream response timeout, default 30_000
    /// (a backend's `timeout_ms` overrides it).
    pub upstream_timeout_ms: u64,
    /// `proxy.upstream_idle_timeout_ms`: pooled keep-alive upstream conns, default 30_000.
    pub upstream_idle_timeout_ms: u64,
    /// `proxy.upstream_pool_size`: max idle conns per upstream address, default 64.
    pub upstream_pool_size: usize,
    /// `proxy.drain_timeout_ms`: on SIGTERM, wait this long for in-flight work, default 30_000.
    pub drain_timeout_ms: u64,
    /// `proxy.lua_max_instructions`: VM instructions one Lua hook call may run, default 1_000_000.
    pub lua_max_instructions: u64,
    /// `proxy.lua_memory_bytes`: memory one Lua state (per worker) may hold, default 32 MiB.
    pub lua_memory_bytes: usize,
    /// `proxy.lua_cache_entries`: entries in each worker's `harmony.cache`, default 10_000.
    pub lua_cache_entries: usize,
    /// `proxy.watch`: reload when a config file or script changes, default true.
    pub watch: bool,
    /// `proxy.watch_interval_ms`: how often files are checked, default 1000.
    pub watch_interval_ms: u64,
}

#[derive(Debug, Clone)]
pub struct Network {
    pub name: String,
    /// `[network.N.http]`, if present.
    pub http: Option<HttpListener>,
    /// `[network.N.dicom]`, if present.
    pub dicom: Option<DicomListener>,
    pub origin: Origin,
}

#[derive(Debug, Clone)]
pub struct HttpListener {
    /// bind_address + bind_port.
    pub addr: SocketAddr,
}

/// `[network.N.dicom]`: the `http` keys plus DICOM limits.
#[derive(Debug, Clone)]
pub struct DicomListener {
    pub addr: SocketAddr,
    /// `max_pdu`: the largest PDU body either peer may send; both are told
    /// so in the Maximum Length they see (default 128 KiB).
    pub max_pdu: u32,
    /// `max_associations`: at once on this listener, all workers (default 64).
    pub max_associations: usize,
    /// `max_associations_per_calling_ae` (default 0: no per-AE limit).
    pub max_associations_per_calling_ae: usize,
    /// `buffered_dataset_bytes`: the largest data set a script may make the
    /// proxy hold (reading `msg.dataset`), default 64 MiB.
    pub buffered_dataset_bytes: usize,
}

/// `[management]` (served from issue 3 on; validated now).
#[derive(Debug, Clone)]
pub struct Management {
    pub enabled: bool,
    pub network: String,
    pub base_path: String,
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
}

/// `[logging]`.
#[derive(Debug, Clone)]
pub struct Logging {
    /// `logging.access_log`, default true: one line per request at info on target "access".
    pub access_log: bool,
    /// `logging.format`: "text" (default) or "json".
    pub json: bool,
    /// `logging.log_to_file` + `logging.file_path`: if set, logs go to this file (appended).
    pub file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct Pipeline {
    pub name: String,
    pub description: Option<String>,
    pub networks: Vec<String>,
    pub endpoints: Vec<String>,
    pub middleware: Vec<String>,
    pub backends: Vec<String>,
    pub origin: Origin,
}

#[derive(Debug, Clone)]
pub struct Endpoint {
    pub name: String,
    pub kind: EndpointKind,
    pub origin: Origin,
}

#[derive(Debug, Clone)]
pub enum EndpointKind {
    /// service = "http" | "fhir": routed by path prefix ("/" if not given;
    /// normalised: leading "/", no trailing "/" except for "/").
    Http { service: String, path_prefix: String },
    /// service = "dicom": routed by the called AE title.
    Dicom(DicomEndpoint),
}

/// `service = "dicom"` endpoint options.
#[derive(Debug, Clone)]
pub struct DicomEndpoint {
    /// `ae_title` (1-16 characters, compared without surrounding spaces).
    pub ae_title: String,
    /// `allowed_calling_aes` (empty = any calling AE).
    pub allowed_calling_aes: Vec<String>,
    /// `calling_ae_routes = { AE = "backend" }` (with the value's line).
    pub calling_ae_routes: Vec<(String, String, usize)>,
    /// `peer_routes = { "10.0.0.0/8" = "backend" }` (with the value's line).
    pub peer_routes: Vec<(PeerNet, String, usize)>,
    /// `echo = "local"`: answer C-ECHO here instead of forwarding it.
    pub local_echo: bool,
    /// `move_destinations = ["backend", ...]`: C-MOVE destinations reached
    /// through the proxy (with the value's line).
    pub move_destinations: Vec<(String, usize)>,
    /// `sop_classes`: abstract syntaxes this endpoint accepts (None: what
    /// the backend accepts).
    pub sop_classes: Option<Vec<String>>,
    /// `transfer_syntaxes`: transfer syntaxes it accepts (None: the backend's).
    pub transfer_syntaxes: Option<Vec<String>>,
}

/// An IP network (address + prefix length).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerNet {
    pub ip: std::net::IpAddr,
    pub bits: u8,
}

impl PeerNet {
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.ip, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                let mask = if self.bits == 0 { 0 } else { u32::MAX << (32 - u32::from(self.bits)) };
                u32::from(a) & mask == u32::from(b) & mask
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                let mask = if self.bits == 0 { 0 } else { u128::MAX << (128 - u32::from(self.bits)) };
                u128::from(a) & mask == u128::from(b) & mask
            }
            _ => false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Middleware {
    pub name: String,
    pub kind: MiddlewareKind,
    pub origin: Origin,
}

#[derive(Debug, Clone)]
pub enum MiddlewareKind {
    /// type = "path_filter": `options.rules` (allow-list of path patterns; a
    /// pattern ending in "*" is a prefix, otherwise exact match; matched
    /// against the path *after* the endpoint prefix is stripped, so rules look
    /// like "/Patient", "/Patient/*"). Non-matching → `status` (default 404;
    /// 403 allowed). `options.deny` (same pattern syntax) → 403 even if allowed.
    PathFilter { allow: Vec<String>, deny: Vec<String>, status: u16 },
    /// type = "headers": `options.request_set`, `options.request_remove`,
    /// `options.response_set`, `options.response_remove`
    /// (set = table name → string value; remove = array of names).
    /// type = "lua": `options.script` (relative to `proxy.scripts_path`,
    /// resolved here), `options.on_error` ("fail" | "continue"); the whole
    /// options table is handed to the script's `init(opts)`.
    Lua { script: PathBuf, options: serde_json::Value, continue_on_error: bool },
    Headers {
        request_set: Vec<(String, String)>,
        request_remove: Vec<String>,
        response_set: Vec<(String, String)>,
        response_remove: Vec<String>,
    },
}

#[derive(Debug, Clone)]
pub struct Backend {
    pub name: String,
    pub kind: BackendKind,
    pub origin: Origin,
}

#[derive(Debug, Clone)]
pub enum BackendKind {
    /// service = "http" | "fhir".
    Http(HttpBackend),
    /// service = "echo".
    Echo,
    /// service = "dicom": a DICOM SCP associations are relayed to.
    Dicom(DicomBackend),
}

#[derive(Debug, Clone)]
pub struct DicomBackend {
    /// `options.aet`: the called AE title sent to the backend.
    pub aet: String,
    /// `options.host` (IP literal or "localhost") + `options.port`.
    pub addr: SocketAddr,
    /// `options.local_aet`: the calling AE title sent to the backend (default: the client's).
    pub local_aet: Option<String>,
    /// `options.timeout_ms` (connect + association answer), or proxy.upstream_timeout_ms.
    pub timeout_ms: u64,
    /// `options.dimse_timeout_ms`: time the backend has to answer a DIMSE
    /// request; any traffic on the association (e.g. a pending response) restarts it (default 120 s).
    pub dimse_timeout_ms: u64,
}

#[derive(Debug, Clone)]
pub struct HttpBackend {
    /// From `base_url` (one target) or `targets = ["http://h:p", ...]` (round robin).
    /// Only `http://` URLs with an IP literal or "localhost" host in this
    /// build (resolved at load time, no DNS on the loop).
    pub targets: Vec<SocketAddr>,
    /// Path prefix from base_url ("" when none / "/"), no trailing "/".
    pub base_path: String,
    /// The Host header value to send when not preserving: "host:port" of base_url.
    pub host_header: String,
    /// `timeout_ms` (response timeout), or proxy.upstream_timeout_ms.
    pub timeout_ms: u64,
    /// `preserve_host`, default false.
    pub preserve_host: bool,
}
