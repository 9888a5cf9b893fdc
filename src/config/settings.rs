//! `[proxy]`, `[network.*]`, `[management]`, `[logging]`, `[storage]`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::build::{origin, valid_name};
use super::load::{DEFAULT_PIPELINES_PATH, DEFAULT_SCRIPTS_PATH};
use super::model::{HttpListener, Logging, Management, Network, ProxySettings};
use super::source::{Ctx, Source};
use super::value::{Tbl, Val};

const LOG_LEVELS: &[&str] = &["error", "warn", "info", "debug", "trace"];
const DAY_MS: u64 = 86_400_000;

/// Numeric `[proxy]` keys: (name, min, max).
const NUMERIC: &[(&str, u64, u64)] = &[
    ("workers", 1, 64),
    ("max_connections", 1, 1_000_000),
    ("max_header_bytes", 1024, 1 << 20),
    ("max_headers", 1, 10_000),
    ("max_uri_bytes", 64, 1 << 20),
    ("max_body_bytes", 0, i64::MAX as u64),
    ("buffered_body_bytes", 1, 1 << 30),
    ("header_timeout_ms", 1, DAY_MS),
    ("idle_timeout_ms", 1, DAY_MS),
    ("connect_timeout_ms", 1, DAY_MS),
    ("upstream_timeout_ms", 1, DAY_MS),
    ("upstream_idle_timeout_ms", 1, DAY_MS),
    ("upstream_pool_size", 0, 100_000),
    ("drain_timeout_ms", 1, DAY_MS),
    ("lua_max_instructions", 1_000, 100_000_000_000),
    ("lua_memory_bytes", 1 << 20, 1 << 36),
    ("lua_cache_entries", 1, 100_000_000),
    ("watch_interval_ms", 50, DAY_MS),
];

/// Harmony keys accepted with no effect yet.
const PROXY_NO_EFFECT: &[&str] = &["store_dir", "transforms_path", "jwks_cache_duration_hours"];

/// `[proxy]` with defaults (see model.rs).
pub(crate) fn proxy(cx: &mut Ctx, main: &Source, t: Option<&Tbl<'_, '_>>) -> ProxySettings {
    let mut p = ProxySettings {
        id: "harmony".into(),
        log_level: "info".into(),
        pipelines_path: main.resolve(DEFAULT_PIPELINES_PATH),
        scripts_path: main.resolve(DEFAULT_SCRIPTS_PATH),
        workers: 1,
        max_connections: 10_000,
        max_header_bytes: 32_768,
        max_headers: 100,
        max_uri_bytes: 8192,
        max_body_bytes: 0,
        buffered_body_bytes: 1 << 20,
        header_timeout_ms: 10_000,
        idle_timeout_ms: 60_000,
        connect_timeout_ms: 5_000,
        upstream_timeout_ms: 30_000,
        upstream_idle_timeout_ms: 30_000,
        upstream_pool_size: 64,
        drain_timeout_ms: 30_000,
        lua_max_instructions: 1_000_000,
        lua_memory_bytes: 32 << 20,
        lua_cache_entries: 10_000,
        watch: true,
        watch_interval_ms: 1_000,
    };
    let Some(t) = t else { return p };
    let mut known = vec!["id", "log_level", "pipelines_path", "scripts_path", "watch"];
    known.extend(NUMERIC.iter().map(|n| n.0));
    known.extend(PROXY_NO_EFFECT);
    t.check_keys(cx, &known, &[]);

    if let Some(v) = t.get("id") {
        if let Some(id) = v.str(cx) {
            if id.trim().is_empty() || id.chars().any(char::is_control) {
                v.err(cx, "must be a non-empty string without control characters");
            } else {
                p.id = id.to_string();
            }
        }
    }
    if let Some(v) = t.get("log_level") {
        if let Some(l) = v.str(cx) {
            if LOG_LEVELS.contains(&l) {
                p.log_level = l.to_string();
            } else {
                v.err(cx, format!("invalid log level '{l}' (expected one of: {})", LOG_LEVELS.join(", ")));
            }
        }
    }
    if let Some(s) = path_str(cx, t.get("pipelines_path")) {
        p.pipelines_path = t.src.resolve(s);
    }
    if let Some(s) = path_str(cx, t.get("scripts_path")) {
        p.scripts_path = t.src.resolve(s);
    }
    if let Some(w) = t.bool(cx, "watch") {
        p.watch = w;
    }
    path_str(cx, t.get("store_dir"));
    path_str(cx, t.get("transforms_path"));
    t.uint(cx, "jwks_cache_duration_hours", 1, 168);

    for &(name, min, max) in NUMERIC {
        let Some(n) = t.uint(cx, name, min, max) else {
            continue;
        };
        let us = n as usize;
        match name {
            "workers" => p.workers = us,
            "max_connections" => p.max_connections = us,
            "max_header_bytes" => p.max_header_bytes = us,
            "max_headers" => p.max_headers = us,
            "max_uri_bytes" => p.max_uri_bytes = us,
            "max_body_bytes" => p.max_body_bytes = n,
            "buffered_body_bytes" => p.buffered_body_bytes = us,
            "header_timeout_ms" => p.header_timeout_ms = n,
            "idle_timeout_ms" => p.idle_timeout_ms = n,
            "connect_timeout_ms" => p.connect_timeout_ms = n,
            "upstream_timeout_ms" => p.upstream_timeout_ms = n,
            "upstream_idle_timeout_ms" => p.upstream_idle_timeout_ms = n,
            "upstream_pool_size" => p.upstream_pool_size = us,
            "drain_timeout_ms" => p.drain_timeout_ms = n,
            "lua_max_instructions" => p.lua_max_instructions = n,
            "lua_memory_bytes" => p.lua_memory_bytes = us,
            "lua_cache_entries" => p.lua_cache_entries = us,
            "watch_interval_ms" => p.watch_interval_ms = n,
            _ => unreachable!("NUMERIC lists only the fields above"),
        }
    }
    p
}

/// A non-empty path string.
pub(crate) fn path_str<'a>(cx: &mut Ctx, v: Option<Val<'a, '_>>) -> Option<&'a str> {
    let v = v?;
    let s = v.str(cx)?;
    if s.is_empty() || s.contains('\0') {
        v.err(cx, "must be a non-empty path");
        return None;
    }
    Some(s)
}

/// Names of networks that declare a listener table (even an invalid one), so
/// later checks do not repeat "no listener" for a listener already reported.
#[derive(Default)]
pub(crate) struct Declared {
    pub http: BTreeSet<String>,
    pub dicom: BTreeSet<String>,
}

/// `[network.NAME]` with optional `[network.NAME.http]` and
/// `[network.NAME.dicom]`.
pub(crate) fn networks(cx: &mut Ctx, t: Option<&Tbl<'_, '_>>) -> (BTreeMap<String, Network>, Declared) {
    let mut out = BTreeMap::new();
    let mut declared = Declared::default();
    let Some(t) = t else {
        return (out, declared);
    };
    let mut bound: Vec<(SocketAddr, String)> = Vec::new();
    for (name, v) in t.entries() {
        if !valid_name(name) {
            v.key_err(cx, "invalid network name (use letters, digits, '_' and '-' only)");
            continue;
        }
        let Some(n) = v.table(cx) else { continue };
        n.check_keys(cx, &["id", "enable_wireguard", "interface", "http", "dicom"], &["tls"]);
        n.str(cx, "id");
        n.str(cx, "interface");
        if let Some(w) = n.get("enable_wireguard") {
            if w.bool(cx) == Some(true) {
                w.err(cx, "WireGuard is not supported by this build");
            }
        }
        if n.get("http").is_some() {
            declared.http.insert(name.to_string());
        }
        if n.get("dicom").is_some() {
            declared.dicom.insert(name.to_string());
        }
        let mut check = |cx: &mut Ctx, key: &str, addr: SocketAddr| {
            if let Some((_, other)) = bound.iter().find(|(a, _)| *a == addr) {
                n.get(key).unwrap().key_err(cx, format!("address {addr} is already used by network '{other}'"));
            }
            bound.push((addr, name.to_string()));
        };
        let http = n.table(cx, "http").and_then(|h| listener(cx, &h, &[]));
        if let Some(h) = &http {
            check(cx, "http", h.addr);
        }
        let dicom = n.table(cx, "dicom").and_then(|h| super::dicom::dicom_listener(cx, &h));
        if let Some(d) = &dicom {
            check(cx, "dicom", d.addr);
        }
        let network = Network { name: name.to_string(), http, dicom, origin: origin(&v) };
        out.insert(name.to_string(), network);
    }
    (out, declared)
}

/// The listener keys of a `[network.N.http]`/`.dicom` table; `extra` are
/// further keys the caller reads.
pub(crate) fn listener(cx: &mut Ctx, h: &Tbl<'_, '_>, extra: &[&str]) -> Option<HttpListener> {
    h.check_keys(cx, &[&["bind_address", "bind_port"][..], extra].concat(), &[]);
    let ip = match h.get("bind_address") {
        None => Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        Some(v) => v.str(cx).and_then(|s| {
            let ip = parse_ip(s);
            if ip.is_none() {
                v.err(
                    cx,
                    format!("invalid bind address '{s}' (expected an IP address such as 127.0.0.1, 0.0.0.0 or ::)"),
                );
            }
            ip
        }),
    };
    let port = match h.get("bind_port") {
        Some(v) => v.uint(cx, 1, 65535),
        None => {
            h.missing(cx, "bind_port", "");
            None
        }
    };
    Some(HttpListener { addr: SocketAddr::new(ip?, port? as u16) })
}

/// An IP literal, `[v6]`, or `localhost` (→ 127.0.0.1).
pub(crate) fn parse_ip(s: &str) -> Option<IpAddr> {
    if s.eq_ignore_ascii_case("localhost") {
        return Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    let s = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')).unwrap_or(s);
    s.parse().ok()
}

/// `[management]`.
pub(crate) fn management(
    cx: &mut Ctx,
    t: Option<&Tbl<'_, '_>>,
    nets: &BTreeMap<String, Network>,
    http_declared: &BTreeSet<String>,
) -> Option<Management> {
    let t = t?;
    t.check_keys(
        cx,
        &["enabled", "network", "base_path", "token", "token_file", "poll_interval_secs", "cloud_api_base_url"],
        &[],
    );
    t.uint(cx, "poll_interval_secs", 5, 3600);
    t.str(cx, "cloud_api_base_url");
    let enabled = t.bool(cx, "enabled").unwrap_or(false);
    let mut network = String::new();
    match t.get("network") {
        Some(v) => {
            if let Some(n) = v.str(cx) {
                network = n.to_string();
                match nets.get(n) {
                    None if enabled => v.err(cx, format!("unknown network '{n}'")),
                    Some(_) if enabled && !http_declared.contains(n) => {
                        v.err(cx, format!("network '{n}' has no [network.{n}.http] listener"))
                    }
                    _ => {}
                }
            }
        }
        None if enabled => t.missing(cx, "network", "management is enabled"),
        None => {}
    }
    let mut base_path = "admin".to_string();
    if let Some(v) = t.get("base_path") {
        if let Some(s) = v.str(cx) {
            let trimmed = s.trim_matches('/');
            let ok = !trimmed.is_empty()
                && trimmed.split('/').all(|seg| {
                    !seg.is_empty()
                        && seg != "."
                        && seg != ".."
                        && seg.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
                });
            if ok {
                base_path = trimmed.to_string();
            } else {
                v.err(cx, "invalid base path (use letters, digits, '-', '.', '_', '~' and '/')");
            }
        }
    }
    let mut token = None;
    if let Some(v) = t.get("token") {
        if let Some(s) = v.str(cx) {
            if s.is_empty() || s.chars().any(char::is_control) {
                v.err(cx, "must be a non-empty string without control characters");
            } else {
                token = Some(s.to_string());
            }
        }
    }
    let mut token_file = None;
    if let Some(v) = t.get("token_file") {
        if let Some(s) = path_str(cx, Some(v.clone())) {
            let p = v.src.resolve(s);
            if enabled && !p.is_file() {
                v.err(cx, format!("token file {} does not exist", p.display()));
            }
            token_file = Some(p);
        }
        if token.is_some() {
            v.key_err(cx, "set either token or token_file, not both");
        }
    }
    Some(Management { enabled, network, base_path, token, token_file })
}

/// `[logging]`.
pub(crate) fn logging(cx: &mut Ctx, t: Option<&Tbl<'_, '_>>) -> Logging {
    let mut log = Logging { access_log: true, json: false, file: None };
    let Some(t) = t else { return log };
    t.check_keys(cx, &["log_to_file", "file_path", "log_file_path", "access_log", "format"], &[]);
    if let Some(b) = t.bool(cx, "access_log") {
        log.access_log = b;
    }
    if let Some(v) = t.get("format") {
        match v.str(cx) {
            Some("text") => log.json = false,
            Some("json") => log.json = true,
            Some(other) => v.err(cx, format!("invalid format '{other}' (expected \"text\" or \"json\")")),
            None => {}
        }
    }
    let to_file = t.bool(cx, "log_to_file").unwrap_or(false);
    let file_path = t.get("file_path");
    let log_file_path = t.get("log_file_path");
    if let (Some(_), Some(v)) = (&file_path, &log_file_path) {
        v.key_err(cx, "set either file_path or log_file_path, not both");
    }
    match file_path.or(log_file_path) {
        Some(v) => {
            if let Some(s) = path_str(cx, Some(v.clone())) {
                if to_file {
                    log.file = Some(v.src.resolve(s));
                }
            }
        }
        None if to_file => t.missing(cx, "file_path", "log_to_file = true"),
        None => {}
    }
    log
}

/// `[storage]`: Harmony's storage backend; validated, no effect yet.
pub(crate) fn storage(cx: &mut Ctx, t: Option<&Tbl<'_, '_>>) {
    let Some(t) = t else { return };
    t.check_keys(cx, &["backend", "path", "options"], &[]);
    if let Some(v) = t.get("backend") {
        if let Some(b) = v.str(cx) {
            if !["filesystem", "s3", "memory"].contains(&b) {
                v.err(cx, format!("invalid storage backend '{b}' (expected filesystem, s3 or memory)"));
            }
        }
    }
    path_str(cx, t.get("path"));
    if let Some(o) = t.table(cx, "options") {
        o.check_keys(cx, &["path", "bucket", "region"], &[]);
        for k in ["path", "bucket", "region"] {
            o.str(cx, k);
        }
    }
}
