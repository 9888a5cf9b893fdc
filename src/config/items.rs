//! `[services.*]` / `[middleware_types.*]` registrations, `[endpoints.*]`
//! and `[backends.*]`.

use super::build::{origin, Items};
use super::dicom::{dicom_backend, dicom_endpoint};
use super::model::{Backend, BackendKind, Endpoint, EndpointKind, HttpBackend};
use super::source::Ctx;
use super::url::{normalise_prefix, parse_upstream};
use super::value::{Tbl, Val};

/// Endpoint services of this build (routed by `options.path_prefix`).
/// ("dicom" endpoints are routed by called AE title instead.)
pub(crate) const ENDPOINT_SERVICES: &[&str] = &["http", "fhir", "echo", "dicom"];
/// Backend services of this build.
pub(crate) const BACKEND_SERVICES: &[&str] = &["http", "fhir", "echo", "dicom"];
/// Harmony services this build knows but does not provide yet.
pub(crate) const UNSUPPORTED_SERVICES: &[&str] = &["dicomweb", "jmix", "management"];
/// Middleware types of this build.
pub(crate) const MIDDLEWARE_TYPES: &[&str] = &["path_filter", "headers", "lua"];
/// Harmony (or planned) middleware types not available yet.
pub(crate) const UNSUPPORTED_MIDDLEWARE: &[&str] =
    &["jwt_auth", "jwtauth", "basic_auth", "auth_sidecar", "transform", "policies"];

/// Harmony keys of endpoints/backends/middleware we do not implement and
/// that would change behaviour if ignored.
const UNSUPPORTED_ITEM_KEYS: &[&str] = &["peer_ref", "target_ref", "connection", "authentication"];

/// `[services.NAME]` / `[middleware_types.NAME]`: `module = ""` registers a
/// built-in (no effect: built-ins are always available).
pub(crate) fn registrations(cx: &mut Ctx, section: &str, items: &Items<'_, '_>) {
    // Registering a known-but-unavailable name is harmless; using it is not.
    let (builtin, what) = if section == "services" {
        ([BACKEND_SERVICES, UNSUPPORTED_SERVICES].concat(), "service")
    } else {
        ([MIDDLEWARE_TYPES, UNSUPPORTED_MIDDLEWARE].concat(), "middleware type")
    };
    for (name, v) in items {
        let Some(t) = v.table(cx) else { continue };
        t.check_keys(cx, &["id", "module"], &[]);
        t.str(cx, "id");
        let Some((module, mv)) = t.req_str(cx, "module") else {
            continue;
        };
        if !module.is_empty() {
            let kind = if section == "services" {
                "custom service modules are not supported"
            } else {
                "custom middleware modules are not supported"
            };
            mv.err(cx, kind);
        } else if !builtin.contains(&name.as_str()) {
            v.key_err(cx, format!("unknown built-in {what} '{name}' (built-in: {})", builtin.join(", ")));
        }
    }
}

/// Reads `service`, reporting unknown / unavailable names. Returns the
/// service if it is one of `available`.
fn service<'a>(cx: &mut Ctx, t: &Tbl<'a, '_>, available: &[&str], role: &str) -> Option<&'a str> {
    let (s, v) = t.req_str(cx, "service")?;
    if available.contains(&s) {
        return Some(s);
    }
    if UNSUPPORTED_SERVICES.contains(&s) {
        v.err(cx, format!("service '{s}' is not supported by this build yet"));
    } else if BACKEND_SERVICES.contains(&s) || ENDPOINT_SERVICES.contains(&s) {
        v.err(cx, format!("service '{s}' cannot be used for {role}s (available: {})", available.join(", ")));
    } else {
        v.err(cx, format!("unknown service '{s}' (available for {role}s: {})", available.join(", ")));
    }
    None
}

/// `[endpoints.NAME]`.
pub(crate) fn endpoint(cx: &mut Ctx, name: &str, v: &Val<'_, '_>) -> Option<Endpoint> {
    let t = v.table(cx)?;
    t.check_keys(cx, &["id", "service", "options"], UNSUPPORTED_ITEM_KEYS);
    t.str(cx, "id");
    let service = service(cx, &t, ENDPOINT_SERVICES, "endpoint");
    let options = t.table(cx, "options");
    let service = service?;
    if service == "dicom" {
        let kind = dicom_endpoint(cx, &t, options.as_ref())?;
        return Some(Endpoint { name: name.to_string(), kind, origin: origin(v) });
    }
    let mut path_prefix = Some("/".to_string());
    if let Some(o) = &options {
        o.check_keys(cx, &["path_prefix"], &[]);
        if let Some(pv) = o.get("path_prefix") {
            path_prefix = pv.str(cx).and_then(|p| match normalise_prefix(p) {
                Ok(p) => Some(p),
                Err(e) => {
                    pv.err(cx, e);
                    None
                }
            });
        }
    }
    Some(Endpoint {
        name: name.to_string(),
        kind: EndpointKind::Http { service: service.to_string(), path_prefix: path_prefix? },
        origin: origin(v),
    })
}

/// `[backends.NAME]`.
pub(crate) fn backend(cx: &mut Ctx, name: &str, v: &Val<'_, '_>, default_timeout: u64) -> Option<Backend> {
    let t = v.table(cx)?;
    t.check_keys(cx, &["id", "service", "options", "timeout_secs", "max_retries"], UNSUPPORTED_ITEM_KEYS);
    t.str(cx, "id");
    t.uint(cx, "max_retries", 0, 10);
    let timeout_secs = t.uint(cx, "timeout_secs", 1, 300);
    let service = service(cx, &t, BACKEND_SERVICES, "backend");
    let options = t.table(cx, "options");
    let kind = match service? {
        "echo" => {
            if let Some(o) = &options {
                // Harmony's echo backend takes a path_prefix; it has no effect here.
                o.check_keys(cx, &["path_prefix"], &[]);
                o.str(cx, "path_prefix");
            }
            BackendKind::Echo
        }
        "dicom" => {
            let timeout = timeout_secs.map_or(default_timeout, |s| s * 1000);
            BackendKind::Dicom(dicom_backend(cx, &t, options.as_ref(), timeout)?)
        }
        _ => {
            let timeout = timeout_secs.map_or(default_timeout, |s| s * 1000);
            BackendKind::Http(http_backend(cx, &t, options.as_ref(), timeout)?)
        }
    };
    Some(Backend { name: name.to_string(), kind, origin: origin(v) })
}

fn http_backend(cx: &mut Ctx, t: &Tbl<'_, '_>, o: Option<&Tbl<'_, '_>>, timeout: u64) -> Option<HttpBackend> {
    let Some(o) = o else {
        t.missing(cx, "options", "http backends need options.base_url or options.targets");
        return None;
    };
    o.check_keys(cx, &["base_url", "targets", "timeout_ms", "preserve_host"], &["path_prefix"]);
    let mut ok = true;
    let timeout_ms = backend_timeout(cx, t, o, timeout, &mut ok);
    let preserve_host = o.bool(cx, "preserve_host").unwrap_or(false);

    let mut targets = Vec::new();
    let mut first: Option<(String, String)> = None; // (host_header, path)
    match (o.get("base_url"), o.get("targets")) {
        (Some(_), Some(tv)) => {
            tv.key_err(cx, "set either base_url or targets, not both");
            ok = false;
        }
        (None, None) => {
            o.missing(cx, "base_url", "or targets");
            ok = false;
        }
        (Some(bv), None) => match bv.str(cx).map(parse_upstream) {
            Some(Ok(u)) => {
                targets.push(u.addr);
                first = Some((u.host_header, u.path));
            }
            Some(Err(e)) => {
                bv.err(cx, e);
                ok = false;
            }
            None => ok = false,
        },
        (None, Some(tv)) => match tv.str_array(cx) {
            Some(list) if list.is_empty() => {
                tv.err(cx, "needs at least one target URL");
                ok = false;
            }
            Some(list) => {
                for (s, ev) in list {
                    match parse_upstream(s) {
                        Ok(u) => match &first {
                            Some((_, path)) if *path != u.path => {
                                ev.err(cx, format!("all targets must have the same path ('{path}' vs '{}')", u.path));
                                ok = false;
                            }
                            Some(_) => targets.push(u.addr),
                            None => {
                                targets.push(u.addr);
                                first = Some((u.host_header, u.path));
                            }
                        },
                        Err(e) => {
                            ev.err(cx, e);
                            ok = false;
                        }
                    }
                }
            }
            None => ok = false,
        },
    }
    let (host_header, base_path) = first?;
    ok.then_some(HttpBackend { targets, base_path, host_header, timeout_ms, preserve_host })
}

/// `options.timeout_ms` of a backend (1 ms to a day), or `default`; it may
/// not be combined with Harmony's item-level `timeout_secs`.
pub(crate) fn backend_timeout(cx: &mut Ctx, t: &Tbl<'_, '_>, o: &Tbl<'_, '_>, default: u64, ok: &mut bool) -> u64 {
    let Some(tv) = o.get("timeout_ms") else { return default };
    if t.get("timeout_secs").is_some() {
        tv.key_err(cx, "set either timeout_ms or timeout_secs, not both");
    }
    match tv.uint(cx, 1, 86_400_000) {
        Some(n) => n,
        None => {
            *ok = false;
            default
        }
    }
}
