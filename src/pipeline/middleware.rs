//! Built-in middleware. Request side runs in pipeline order and may answer
//! early; response side runs in reverse order over every response the
//! pipeline produces (upstream, local, or error).

use http1::Headers;
use std::net::SocketAddr;

/// Per-request context shared by every stage.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub request_id: String,
    pub pipeline: usize,
    pub endpoint: usize,
    /// The normalised path behind the endpoint prefix (starts with "/").
    pub route_path: String,
    pub peer: SocketAddr,
}

/// A response made by the proxy itself (early answer, echo, error).
#[derive(Debug, Clone)]
pub struct LocalResponse {
    pub status: u16,
    pub headers: Headers,
    pub body: Vec<u8>,
}

impl LocalResponse {
    /// `{"error","detail","request_id"}` with the given status.
    pub fn json_error(status: u16, code: &str, detail: &str, request_id: &str) -> Self {
        let v = serde_json::json!({ "error": code, "detail": detail, "request_id": request_id });
        let mut body = serde_json::to_vec(&v).unwrap_or_default();
        body.push(b'\n');
        let mut headers = Headers::new();
        headers.append("Content-Type", b"application/json");
        LocalResponse { status, headers, body }
    }
}

/// What a request-side stage decided.
#[derive(Debug)]
pub enum Flow {
    Continue,
    Respond(LocalResponse),
}

#[derive(Debug, Clone)]
pub enum Middleware {
    /// A Lua script; the worker's `LuaHost` runs it (keyed by middleware index).
    Lua,
    PathFilter {
        allow: Vec<String>,
        deny: Vec<String>,
        status: u16,
    },
    Headers {
        request_set: Vec<(String, String)>,
        request_remove: Vec<String>,
        response_set: Vec<(String, String)>,
        response_remove: Vec<String>,
    },
}

fn pattern_matches(pattern: &str, path: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => path.starts_with(prefix),
        None => pattern == path,
    }
}

/// The path with every segment's ";params" removed.
fn strip_params(path: &str) -> std::borrow::Cow<'_, str> {
    if !path.contains(';') {
        return std::borrow::Cow::Borrowed(path);
    }
    let segs: Vec<&str> = path.split('/').map(|seg| seg.split(';').next().unwrap_or("")).collect();
    std::borrow::Cow::Owned(segs.join("/"))
}

impl Middleware {
    /// Request side of a built-in stage (Lua stages are run by the worker's host).
    pub fn on_request(&self, headers: &mut Headers, ctx: &mut Ctx) -> Flow {
        match self {
            Middleware::Lua => Flow::Continue,
            Middleware::PathFilter { allow, deny, status } => {
                // match without ";params" (Tomcat/Spring strip them: "/secret;x" is "/secret")
                let stripped = strip_params(&ctx.route_path);
                let path = stripped.as_ref();
                if deny.iter().any(|p| pattern_matches(p, path)) {
                    return Flow::Respond(LocalResponse::json_error(
                        403,
                        "forbidden",
                        "path is denied by policy",
                        &ctx.request_id,
                    ));
                }
                if !allow.is_empty() && !allow.iter().any(|p| pattern_matches(p, path)) {
                    let (code, detail) = if *status == 403 {
                        ("forbidden", "path is not allowed by policy")
                    } else {
                        ("not_found", "path is not allowed by policy")
                    };
                    return Flow::Respond(LocalResponse::json_error(*status, code, detail, &ctx.request_id));
                }
                Flow::Continue
            }
            Middleware::Headers { request_set, request_remove, .. } => {
                for name in request_remove {
                    headers.remove(name);
                }
                for (name, value) in request_set {
                    headers.set(name, value.as_bytes());
                }
                Flow::Continue
            }
        }
    }

    pub fn on_response(&self, headers: &mut Headers, _ctx: &Ctx) {
        if let Middleware::Headers { response_set, response_remove, .. } = self {
            for name in response_remove {
                headers.remove(name);
            }
            for (name, value) in response_set {
                headers.set(name, value.as_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(path: &str) -> Ctx {
        Ctx {
            request_id: "r1".into(),
            pipeline: 0,
            endpoint: 0,
            route_path: path.into(),
            peer: "127.0.0.1:1".parse().unwrap(),
        }
    }

    #[test]
    fn path_filter_allows_denies_and_hides() {
        let m = Middleware::PathFilter {
            allow: vec!["/Patient".into(), "/Patient/*".into()],
            deny: vec!["/Patient/secret".into()],
            status: 404,
        };
        assert!(matches!(m.on_request(&mut Headers::new(), &mut ctx("/Patient")), Flow::Continue));
        assert!(matches!(m.on_request(&mut Headers::new(), &mut ctx("/Patient/1")), Flow::Continue));
        match m.on_request(&mut Headers::new(), &mut ctx("/Observation")) {
            Flow::Respond(r) => assert_eq!(r.status, 404),
            _ => panic!("expected 404"),
        }
        match m.on_request(&mut Headers::new(), &mut ctx("/Patient/secret")) {
            Flow::Respond(r) => assert_eq!(r.status, 403),
            _ => panic!("expected 403"),
        }
        match m.on_request(&mut Headers::new(), &mut ctx("/Patient/secret;jsessionid=1")) {
            Flow::Respond(r) => assert_eq!(r.status, 403),
            _ => panic!("expected 403 with path params"),
        }
    }

    #[test]
    fn headers_sets_and_removes() {
        let m = Middleware::Headers {
            request_set: vec![("X-A".into(), "1".into())],
            request_remove: vec!["x-b".into()],
            response_set: vec![("X-C".into(), "2".into())],
            response_remove: vec!["server".into()],
        };
        let mut r = Headers::new();
        r.append("X-B", b"gone");
        m.on_request(&mut r, &mut ctx("/"));
        assert_eq!(r.get("x-a"), Some(&b"1"[..]));
        assert!(!r.contains("x-b"));
        let mut h = Headers::new();
        h.append("Server", b"nginx");
        m.on_response(&mut h, &ctx("/"));
        assert!(!h.contains("server"));
        assert_eq!(h.get("x-c"), Some(&b"2"[..]));
    }
}
