//! `[middleware.*]`: the built-in `path_filter` and `headers` types.

use super::build::origin;
use super::items::{MIDDLEWARE_TYPES, UNSUPPORTED_MIDDLEWARE};
use super::model::{Middleware, MiddlewareKind};
use super::source::Ctx;
use super::value::{Tbl, Val};
use std::path::{Component, Path};
use toml::de::DeValue;

/// `[middleware.NAME]`.
pub(crate) fn middleware(cx: &mut Ctx, name: &str, v: &Val<'_, '_>, scripts_path: &Path) -> Option<Middleware> {
    let t = v.table(cx)?;
    t.check_keys(cx, &["id", "type", "options"], &["authentication"]);
    t.str(cx, "id");
    let kind = t.req_str(cx, "type");
    let options = t.table(cx, "options");
    let (kind, kv) = kind?;
    let kind = match kind {
        "path_filter" => path_filter(cx, &t, options.as_ref())?,
        "headers" => headers(cx, options.as_ref())?,
        "lua" => lua(cx, &t, options.as_ref(), scripts_path)?,
        k if UNSUPPORTED_MIDDLEWARE.contains(&k) => {
            kv.err(cx, format!("middleware type '{k}' is not supported by this build yet"));
            return None;
        }
        k => {
            kv.err(cx, format!("unknown middleware type '{k}' (available: {})", MIDDLEWARE_TYPES.join(", ")));
            return None;
        }
    };
    Some(Middleware { name: name.to_string(), kind, origin: origin(v) })
}

/// `path_filter`: `rules` (allow patterns; Harmony's `[{ allow = ".." },
/// { deny = ".." }]` form is accepted too), `deny`, `status` (403 | 404).
/// An empty allow list allows every path that is not denied.
fn path_filter(cx: &mut Ctx, t: &Tbl<'_, '_>, o: Option<&Tbl<'_, '_>>) -> Option<MiddlewareKind> {
    let Some(o) = o else {
        t.missing(cx, "options", "path_filter needs options.rules and/or options.deny");
        return None;
    };
    o.check_keys(cx, &["rules", "deny", "status"], &[]);
    let before = cx.errors.len();
    let mut allow = Vec::new();
    let mut deny = Vec::new();
    let rules = o.get("rules").and_then(|rv| rv.array(cx)).unwrap_or_default();
    for item in rules {
        if item.v.get_ref().is_table() {
            // Harmony form: { allow = "/x" } or { deny = "/x" }.
            let Some(rule) = item.table(cx) else { continue };
            rule.check_keys(cx, &["allow", "deny"], &[]);
            match (rule.get("allow"), rule.get("deny")) {
                (Some(a), None) => push_pattern(cx, &a, &mut allow),
                (None, Some(d)) => push_pattern(cx, &d, &mut deny),
                _ => item.err(cx, "a rule table needs exactly one of 'allow' or 'deny'"),
            }
        } else {
            push_pattern(cx, &item, &mut allow);
        }
    }
    if let Some(dv) = o.get("deny") {
        for item in dv.array(cx).unwrap_or_default() {
            push_pattern(cx, &item, &mut deny);
        }
    }
    // An empty allow list allows everything not denied; a filter with
    // neither is almost certainly a mistake.
    if allow.is_empty() && deny.is_empty() && cx.errors.len() == before {
        o.missing(cx, "rules", "path_filter needs patterns in rules and/or deny");
    }
    let mut status = 404;
    if let Some(sv) = o.get("status") {
        match sv.uint(cx, 100, 599) {
            Some(s @ (403 | 404)) => status = s as u16,
            Some(_) => sv.err(cx, "status must be 403 or 404"),
            None => {}
        }
    }
    (cx.errors.len() == before).then_some(MiddlewareKind::PathFilter { allow, deny, status })
}

/// A path pattern: "*", or "/..." with an optional trailing "*".
fn push_pattern(cx: &mut Ctx, v: &Val<'_, '_>, out: &mut Vec<String>) {
    let Some(p) = v.str(cx) else { return };
    let body = p.strip_suffix('*').unwrap_or(p);
    if p.contains(['{', '}']) {
        v.err(
            cx,
            format!("pattern '{p}': '{{param}}' segments are not supported; use a trailing '*' (e.g. \"/Patient/*\")"),
        );
    } else if p != "*" && !p.starts_with('/') {
        v.err(cx, format!("pattern '{p}' must start with '/' (or be \"*\")"));
    } else if body.contains('*') {
        v.err(cx, format!("pattern '{p}': '*' is only allowed at the end"));
    } else if p.chars().any(|c| c.is_whitespace() || c.is_control() || c == '?' || c == '#') {
        v.err(cx, format!("pattern '{p}' must not contain whitespace, control characters, '?' or '#'"));
    } else {
        out.push(p.to_string());
    }
}

/// `headers`: `request_set` / `response_set` (name → value tables),
/// `request_remove` / `response_remove` (arrays of names). Names are
/// stored lowercase.
fn headers(cx: &mut Ctx, o: Option<&Tbl<'_, '_>>) -> Option<MiddlewareKind> {
    let before = cx.errors.len();
    let mut sets = [Vec::new(), Vec::new()];
    let mut removes = [Vec::new(), Vec::new()];
    if let Some(o) = o {
        o.check_keys(cx, &["request_set", "request_remove", "response_set", "response_remove"], &[]);
        for (i, side) in ["request", "response"].iter().enumerate() {
            if let Some(st) = o.table(cx, &format!("{side}_set")) {
                for (name, v) in st.entries() {
                    let Some(value) = v.str(cx) else { continue };
                    if check_name(cx, &v, name) {
                        if value.contains(['\r', '\n', '\0']) {
                            v.err(cx, "header value must not contain CR, LF or NUL");
                        } else {
                            sets[i].push((name.to_ascii_lowercase(), value.to_string()));
                        }
                    }
                }
            }
            if let Some(rv) = o.get(&format!("{side}_remove")) {
                for (name, v) in rv.str_array(cx).unwrap_or_default() {
                    if check_name(cx, &v, name) {
                        removes[i].push(name.to_ascii_lowercase());
                    }
                }
            }
        }
    }
    let [request_set, response_set] = sets;
    let [request_remove, response_remove] = removes;
    (cx.errors.len() == before).then_some(MiddlewareKind::Headers {
        request_set,
        request_remove,
        response_set,
        response_remove,
    })
}

/// Header names must be HTTP tokens and not the message-framing headers.
fn check_name(cx: &mut Ctx, v: &Val<'_, '_>, name: &str) -> bool {
    let token = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !token {
        v.err(cx, format!("invalid header name '{name}'"));
        return false;
    }
    const FRAMING: &[&str] = &["content-length", "transfer-encoding", "connection"];
    if FRAMING.iter().any(|f| f.eq_ignore_ascii_case(name)) {
        v.err(cx, format!("header '{name}' is managed by the proxy and cannot be changed"));
        return false;
    }
    true
}

/// `lua`: `script` (required, relative to `proxy.scripts_path`, must exist
/// inside it), `on_error` ("fail" | "continue"); every option goes to `init`.
fn lua(cx: &mut Ctx, t: &Tbl<'_, '_>, o: Option<&Tbl<'_, '_>>, scripts_path: &Path) -> Option<MiddlewareKind> {
    let Some(o) = o else {
        t.missing(cx, "options", "lua middleware needs options.script");
        return None;
    };
    let before = cx.errors.len();
    let mut script = None;
    match o.get("script") {
        None => o.missing(cx, "script", "lua middleware needs a script (relative to proxy.scripts_path)"),
        Some(sv) => {
            if let Some(s) = sv.str(cx) {
                let rel = Path::new(s);
                if rel.is_absolute() || rel.components().any(|c| !matches!(c, Component::Normal(_))) {
                    sv.err(cx, format!("script '{s}' must be a relative path inside proxy.scripts_path (no '..')"));
                } else {
                    let path = scripts_path.join(rel);
                    if path.is_file() {
                        script = Some(path);
                    } else {
                        sv.err(cx, format!("script not found: {}", path.display()));
                    }
                }
            }
        }
    }
    let mut continue_on_error = false;
    if let Some(ev) = o.get("on_error") {
        match ev.str(cx) {
            Some("fail") => {}
            Some("continue") => continue_on_error = true,
            Some(other) => ev.err(cx, format!("on_error must be \"fail\" or \"continue\", not '{other}'")),
            None => {}
        }
    }
    let options = to_json(&DeValue::Table(o.t.clone()));
    (cx.errors.len() == before).then(|| MiddlewareKind::Lua {
        script: script.expect("checked"),
        options,
        continue_on_error,
    })
}

/// A TOML value as JSON (what a script's `init(opts)` receives).
fn to_json(v: &DeValue<'_>) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        DeValue::String(s) => J::String(s.to_string()),
        DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix()).map(J::from).unwrap_or(J::Null),
        DeValue::Float(f) => f.as_str().replace('_', "").parse::<f64>().ok().map(J::from).unwrap_or(J::Null),
        DeValue::Boolean(b) => J::Bool(*b),
        DeValue::Datetime(d) => J::String(d.to_string()),
        DeValue::Array(a) => J::Array(a.iter().map(|x| to_json(x.get_ref())).collect()),
        DeValue::Table(t) => {
            J::Object(t.iter().map(|(k, x)| (k.get_ref().to_string(), to_json(x.get_ref()))).collect())
        }
    }
}
