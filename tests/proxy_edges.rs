//! Edge cases of a single exchange: path normalisation against path_filter,
//! stale pooled upstream connections, upstream connect timeout, early answers
//! and response-side middleware, HTTP/1.0 keep-alive, absolute-form targets,
//! a chunked body over the limit mid-stream, and client request ids.
//! (Worker, drain and connection-limit edges are in proxy_edges_conns.rs.)

mod common;

use common::origin::Origin;
use common::*;
use serde_json::Value;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::time::Duration;

const GUARD: Duration = Duration::from_secs(10);

/// harmony with an `/api` pipeline to `base_url` (plus `more` config text).
fn proxy(tag: &str, base_url: &str, proxy_extra: &str, middleware: &[&str], more: &str) -> Harmony {
    let port = free_port();
    let cfg = format!("{}{}{}", base_config(port, proxy_extra), api_pipeline(base_url, middleware, ""), more);
    Harmony::start(tag, &cfg, port)
}

fn assert_still_serves(h: &mut Harmony) {
    assert!(h.alive(), "harmony died; stderr:\n{}", h.stderr());
}

// ---------------------------------------------------------------- 2. paths

#[test]
fn path_normalisation_cannot_bypass_path_filter() {
    let o = Origin::start();
    let mw = r#"
[middleware.filter]
type = "path_filter"
options = { rules = ["/public/*"] }
"#;
    let mut h = proxy("edge-norm", &o.base_url(), "", &["filter"], mw);

    // Dot segments are resolved before routing and filtering: these are /api/secret.
    for target in ["/api/public/../secret", "/api/public/a/../../secret", "/api/./public/../secret"] {
        let r = get(h.port, target);
        assert_eq!(r.status, 404, "{target} must be filtered as /secret: {}", r.text());
        r.assert_error(404);
    }
    // Encoded dots and encoded slashes are ambiguous: refused outright.
    for target in [
        "/api/public/%2e%2e/secret",
        "/api/public/%2E%2E/secret",
        "/api/public/.%2e/secret",
        "/api/public%2fx",
        "/api/public%2F..%2Fsecret",
        "/api/public/%5c../secret",
    ] {
        let r = get(h.port, target);
        assert_eq!(r.status, 400, "{target}: {}", r.text());
        r.assert_error(400);
    }
    assert_eq!(o.requests(), 0, "a filtered or refused request reached the origin: {:?}", o.targets());

    // Allowed paths still get through, normalised.
    let r = get(h.port, "/api/public/./a");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["target"], "/public/a");
    let r = get(h.port, "/api/public/x/../b?q=1");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["target"], "/public/b?q=1");
    assert_eq!(o.targets(), vec!["/public/a".to_string(), "/public/b?q=1".to_string()]);
    assert_still_serves(&mut h);
}

#[test]
fn encoded_letters_or_doubled_slashes_cannot_bypass_a_deny_rule() {
    let o = Origin::start();
    let mw = r#"
[middleware.filter]
type = "path_filter"
options = { rules = ["/allowed/*"], deny = ["/allowed/secret", "/allowed/secret/*"] }
"#;
    let mut h = proxy("edge-norm-deny", &o.base_url(), "", &["filter"], mw);
    get(h.port, "/api/allowed/secret").assert_error(403);
    // An origin decodes %73 to 's' (RFC 3986 section 6.2.2.2) and most merge
    // '//' into '/': both of these are /allowed/secret to it.
    let mut leaked = Vec::new();
    for target in ["/api/allowed/%73ecret", "/api/allowed/%73ecret/x", "/api/allowed/secre%74", "/api/allowed//secret"]
    {
        let r = get(h.port, target);
        if r.status == 200 {
            leaked.push(format!("{target} -> 200, origin saw {}", r.json()["target"]));
        } else {
            assert!(matches!(r.status, 400 | 403), "{target}: {} {}", r.status, r.text());
        }
    }
    assert!(leaked.is_empty(), "deny rule bypassed: {leaked:#?}");
    assert_eq!(o.requests(), 0, "{:?}", o.targets());
    assert_still_serves(&mut h);
}

// ---------------------------------------------------------------- 3. stale pool

#[test]
fn pooled_connection_closed_by_the_origin_while_idle_is_not_a_failure() {
    let o = Origin::start();
    let mut h = proxy("edge-stale-idle", &o.base_url(), "", &[], "");
    for i in 1..=5 {
        let r = get(h.port, "/api/idle-close?ms=100");
        assert_eq!(r.status, 200, "request {i} after the origin closed the pooled connection: {}", r.text());
        assert_eq!(r.json()["target"], "/idle-close?ms=100");
        // The origin has closed the (now pooled) keep-alive connection.
        assert!(
            eventually(GUARD, || o.idle_closes() == i),
            "origin did not close idle connection {i} (closes: {})",
            o.idle_closes()
        );
    }
    assert_eq!(o.requests(), 5);
    assert_still_serves(&mut h);
}

#[test]
fn stale_pooled_connection_is_retried_once_for_a_get_but_not_for_a_post() {
    let o = Origin::start();
    let mut h = proxy("edge-stale-drop", &o.base_url(), "", &[], "");
    // Every request after the first lands on a pooled connection whose origin
    // reads it and closes without answering: the proxy must retry on a new one.
    for i in 0..5 {
        let r = get(h.port, "/api/drop-next");
        assert_eq!(r.status, 200, "GET {i}: {}", r.text());
    }
    assert_eq!(o.dropped(), 4, "targets: {:?}", o.targets());
    assert_eq!(o.connections(), 5);

    // A POST is not idempotent: it must not be replayed, so the client sees 502.
    let r = request(h.port, "POST", "/api/headers", &[], b"body");
    assert_eq!(o.dropped(), 5, "the POST did not go to the stale pooled connection");
    r.assert_error(502);
    assert_eq!(o.targets().iter().filter(|t| t.as_str() == "/headers").count(), 1, "POST was replayed");
    assert_still_serves(&mut h);
}

// ---------------------------------------------------------------- 4. connect timeout

/// A listener with backlog 1 whose accept queue is full (never accepted), so
/// the kernel drops further SYNs and connects hang. Returns it, the filler
/// connections and how many fit.
fn stuck_listener() -> (socket2::Socket, Vec<TcpStream>, SocketAddr) {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    s.bind(&any.into()).expect("bind");
    s.listen(1).expect("listen");
    let addr = s.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
            Ok(c) => fillers.push(c),
            Err(_) => break, // the queue is full: this connect hung (or was refused)
        }
    }
    (s, fillers, addr)
}

#[test]
fn upstream_connect_timeout_is_504() {
    let (_listener, fillers, addr) = stuck_listener();
    eprintln!("accept queue of {addr} full after {} connection(s)", fillers.len());
    let mut h = proxy("edge-connect", &format!("http://{addr}"), "connect_timeout_ms = 300\n", &[], "");
    for round in 0..2 {
        let r = get(h.port, "/api/anything");
        match r.status {
            504 => {
                let v = r.assert_error(504);
                eprintln!("round {round}: connect hung and timed out: 504 {v}");
            }
            502 => {
                let v = r.assert_error(502);
                eprintln!("round {round}: NOTE this kernel refused the connect instead of dropping the SYN: 502 {v}");
            }
            s => panic!("expected 504 (or 502 if refused), got {s}: {}", r.text()),
        }
    }
    assert_still_serves(&mut h);
}

// ---------------------------------------------------------------- 5. early answer

#[test]
fn response_side_of_stages_that_ran_applies_to_early_answers() {
    let o = Origin::start();
    let mw = r#"
[middleware.hdrs]
type = "headers"
options = { response_set = { "x-resp" = "yes" } }

[middleware.filter]
type = "path_filter"
options = { rules = ["/allowed/*", "/reset"], deny = ["/allowed/secret"] }
"#;
    let mut h = proxy("edge-early", &o.base_url(), "", &["hdrs", "filter"], mw);
    let r = get(h.port, "/api/other");
    r.assert_error(404);
    assert_eq!(r.header("x-resp"), Some("yes"), "404 from the filter: {:?}", r.headers);
    let r = get(h.port, "/api/allowed/secret");
    r.assert_error(403);
    assert_eq!(r.header("x-resp"), Some("yes"), "403 from the filter: {:?}", r.headers);
    assert_eq!(o.requests(), 0);

    let r = get(h.port, "/api/allowed/x");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["target"], "/allowed/x");
    assert_eq!(r.header("x-resp"), Some("yes"), "{:?}", r.headers);

    // A proxy error after every stage ran gets the response side too.
    let r = get(h.port, "/api/reset");
    r.assert_error(502);
    assert_eq!(r.header("x-resp"), Some("yes"), "502: {:?}", r.headers);
    assert_still_serves(&mut h);
}

// ---------------------------------------------------------------- 6. HTTP/1.0

#[test]
fn http10_keep_alive_only_when_asked() {
    let o = Origin::start();
    let mut h = proxy("edge-h10", &o.base_url(), "", &[], &echo_pipeline());
    let mut c = h.connect();
    for (i, ka) in ["keep-alive", "Keep-Alive", "keep-alive"].iter().enumerate() {
        c.send(format!("GET /api/h10/{i} HTTP/1.0\r\nHost: a\r\nConnection: {ka}\r\n\r\n").as_bytes());
        let r = c.read_final(false);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["target"], format!("/h10/{i}"));
        let conn = r.header("connection").unwrap_or("").to_ascii_lowercase();
        assert!(conn.contains("keep-alive"), "request {i}: Connection: {conn:?}");
        assert_eq!(r.framing, "length");
    }
    // A local answer (echo backend) on the same connection keeps it alive too.
    c.send(b"GET /echo/h10 HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n");
    let r = c.read_final(false);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["version"], "HTTP/1.0");
    assert!(r.header("connection").unwrap_or("").to_ascii_lowercase().contains("keep-alive"), "{:?}", r.headers);
    // A chunked upstream answer cannot be framed for HTTP/1.0 except by closing.
    c.send(b"GET /api/chunked HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n");
    let r = c.read_final(false);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("transfer-encoding"), None, "chunked sent to an HTTP/1.0 client: {:?}", r.headers);
    assert_eq!(r.framing, "close");
    assert_eq!(r.text(), "hello chunked world!");

    let mut c = h.connect();
    c.send(b"GET /api/h10/plain HTTP/1.0\r\nHost: a\r\n\r\n");
    let r = c.read_final(false);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["target"], "/h10/plain");
    assert!(!r.header("connection").unwrap_or("").to_ascii_lowercase().contains("keep-alive"), "{:?}", r.headers);
    assert!(c.closed_within(GUARD), "HTTP/1.0 connection without keep-alive left open");
    assert_still_serves(&mut h);
}

// ---------------------------------------------------------------- 7. absolute form

#[test]
fn absolute_form_target_is_routed_like_origin_form() {
    let o = Origin::start();
    let mut h = proxy("edge-abs", &o.base_url(), "", &[], &echo_pipeline());
    let mut c = h.connect();
    let p = h.port;
    c.send(format!("GET http://127.0.0.1:{p}/api/x HTTP/1.1\r\nHost: 127.0.0.1:{p}\r\n\r\n").as_bytes());
    let r = c.read_final(false);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["target"], "/x");
    c.send(format!("GET http://127.0.0.1:{p}/api/y/../z?q=1 HTTP/1.1\r\nHost: 127.0.0.1:{p}\r\n\r\n").as_bytes());
    let r = c.read_final(false);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["target"], "/z?q=1");
    c.send(format!("GET http://127.0.0.1:{p}/echo/e HTTP/1.1\r\nHost: 127.0.0.1:{p}\r\n\r\n").as_bytes());
    let r = c.read_final(false);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["pipeline"], "echo");
    assert_eq!(o.targets(), vec!["/x".to_string(), "/z?q=1".to_string()]);
    assert_still_serves(&mut h);
}

#[test]
fn absolute_form_scheme_is_case_insensitive() {
    let o = Origin::start();
    let mut h = proxy("edge-abs-case", &o.base_url(), "", &[], "");
    let p = h.port;
    for scheme in ["HTTP", "Http"] {
        let mut c = h.connect();
        c.send(format!("GET {scheme}://127.0.0.1:{p}/api/x HTTP/1.1\r\nHost: 127.0.0.1:{p}\r\n\r\n").as_bytes());
        let r = c.read_final(false);
        assert_eq!(r.status, 200, "{scheme}://: {}", r.text());
        assert_eq!(r.json()["target"], "/x");
    }
    assert_still_serves(&mut h);
}

#[test]
fn absolute_form_authority_replaces_the_host_header() {
    let o = Origin::start();
    let port = free_port();
    let cfg = format!("{}{}", base_config(port, ""), api_pipeline(&o.base_url(), &[], "preserve_host = true"));
    let mut h = Harmony::start("edge-abs-host", &cfg, port);
    let mut c = h.connect();
    c.send(format!("GET http://127.0.0.1:{port}/api/x HTTP/1.1\r\nHost: other.example\r\n\r\n").as_bytes());
    let r = c.read_final(false);
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let seen = |name: &str| {
        v["headers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p[0].as_str().unwrap().eq_ignore_ascii_case(name))
            .map(|p| p[1].as_str().unwrap().to_string())
    };
    let authority = format!("127.0.0.1:{port}");
    assert_eq!(seen("host").as_deref(), Some(authority.as_str()), "preserved Host: {v}");
    assert_eq!(seen("x-forwarded-host").as_deref(), Some(authority.as_str()), "X-Forwarded-Host: {v}");
    assert_still_serves(&mut h);
}

// ---------------------------------------------------------------- 8. 413 mid-stream

#[test]
fn chunked_body_over_the_limit_mid_stream_gets_a_readable_413() {
    let o = Origin::start();
    let mut h = proxy("edge-413", &o.base_url(), "max_body_bytes = 1000\n", &[], "");
    let mut c = h.connect();
    c.send(b"POST /api/count HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
    c.send(&chunk(&[b'a'; 600]));
    // The body is streaming: the first 600 bytes reached the origin.
    assert!(
        eventually(GUARD, || o.stats.body_bytes_received.load(Ordering::SeqCst) >= 600),
        "first chunk never reached the origin"
    );
    // Past the limit, and more after that (which the proxy must discard, not reset on).
    let mut extra = Vec::new();
    for _ in 0..2 {
        extra.extend_from_slice(&chunk(&[b'b'; 300]));
    }
    for _ in 0..10 {
        extra.extend_from_slice(&chunk(&[b'c'; 500]));
    }
    extra.extend_from_slice(b"0\r\n\r\n");
    let sent = c.try_send(&extra);
    let r = c.read_final(false);
    let v = r.assert_error(413);
    eprintln!("413 after sending the rest ({sent:?}): {v}");
    assert_eq!(r.header("connection").map(str::to_ascii_lowercase).as_deref(), Some("close"));
    assert!(c.closed_within(GUARD), "connection left open after 413");
    assert!(o.stats.body_bytes_received.load(Ordering::SeqCst) <= 1000, "more than the limit reached the origin");
    // The half-sent upstream connection is not reused.
    let r = get(h.port, "/api/headers");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_still_serves(&mut h);
}

fn chunk(data: &[u8]) -> Vec<u8> {
    let mut v = format!("{:x}\r\n", data.len()).into_bytes();
    v.extend_from_slice(data);
    v.extend_from_slice(b"\r\n");
    v
}

// ---------------------------------------------------------------- 12. request id

#[test]
fn client_request_id_is_kept_in_response_and_access_log() {
    let o = Origin::start();
    let mut h = proxy("edge-rid", &o.base_url(), "", &[], "");
    let r = request(h.port, "GET", "/api/rid-path", &[("X-Request-Id", "abc-123")], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-request-id"), Some("abc-123"));
    assert_eq!(r.headers_named("x-request-id").len(), 1, "{:?}", r.headers);
    let v: Value = r.json();
    let seen =
        v["headers"].as_array().unwrap().iter().find(|p| p[0].as_str().unwrap().eq_ignore_ascii_case("x-request-id"));
    assert_eq!(seen.map(|p| p[1].as_str().unwrap()), Some("abc-123"), "{v}");

    let r = request(h.port, "GET", "/nowhere", &[("X-Request-Id", "abc-124")], b"");
    assert_eq!(r.assert_error(404)["request_id"], "abc-124");
    assert_eq!(r.header("x-request-id"), Some("abc-124"));

    let found = eventually(GUARD, || {
        let err = h.stderr();
        let line = |rid: &str, path: &str| err.lines().any(|l| l.contains(rid) && l.contains(path));
        line("rid=abc-123", "/api/rid-path") && line("rid=abc-124", "/nowhere")
    });
    assert!(found, "access log lines with the client ids missing; stderr:\n{}", h.stderr());
    assert_still_serves(&mut h);
}
