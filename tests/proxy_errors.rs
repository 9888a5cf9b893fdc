//! Every error is a real status with a JSON body {"error","detail","request_id"},
//! and the proxy keeps serving afterwards.
//!
//! Malformed requests are sent as a head only (no body bytes the proxy would
//! leave unread), so its close after the error cannot turn into a TCP reset
//! that discards the answer before we read it.

mod common;

use common::origin::Origin;
use common::*;

const LIMITS: &str = "max_body_bytes = 1000\nmax_uri_bytes = 256\nmax_header_bytes = 2048\nmax_headers = 20\n";

fn proxy(tag: &str, base_url: &str, proxy_extra: &str, backend_extra: &str) -> Harmony {
    let port = free_port();
    let cfg =
        format!("{}{}{}", base_config(port, proxy_extra), api_pipeline(base_url, &[], backend_extra), echo_pipeline());
    Harmony::start(tag, &cfg, port)
}

/// Send raw bytes on a fresh connection and read the answer.
fn raw(h: &Harmony, bytes: &[u8]) -> Response {
    let mut c = h.connect();
    c.send(bytes);
    c.read_final(false)
}

fn assert_still_serves(h: &mut Harmony) {
    assert!(h.alive(), "harmony died; stderr:\n{}", h.stderr());
    let r = get(h.port, "/echo/still-alive");
    assert_eq!(r.status, 200, "normal request after errors failed: {}", r.text());
}

#[test]
fn malformed_requests_get_400() {
    let o = Origin::start();
    let mut h = proxy("e400", &o.base_url(), LIMITS, "");
    let cases: &[(&str, &[u8])] = &[
        ("bad request line", b"THIS IS NOT HTTP\r\n\r\n"),
        (
            "CL and TE",
            b"POST /api/count HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        ),
        ("differing CL", b"POST /api/count HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"),
        ("obs-fold", b"GET /api/headers HTTP/1.1\r\nHost: a\r\nX-Folded: one\r\n  two\r\n\r\n"),
        ("NUL in value", b"GET /api/headers HTTP/1.1\r\nHost: a\r\nX-Bad: a\x00b\r\n\r\n"),
        ("space in name", b"GET /api/headers HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n"),
    ];
    for (what, bytes) in cases {
        let r = raw(&h, bytes);
        assert_eq!(r.status, 400, "{what}: {}", r.text());
        r.assert_error(400);
    }
    assert_eq!(o.requests(), 0, "a malformed request reached the origin: {:?}", o.targets());
    assert_still_serves(&mut h);
}

#[test]
fn no_route_is_404() {
    let o = Origin::start();
    let mut h = proxy("e404", &o.base_url(), "", "");
    let v = get(h.port, "/nowhere/at/all").assert_error(404);
    assert!(v["request_id"].is_string(), "{v}");
    assert_still_serves(&mut h);
}

#[test]
fn slow_head_is_408() {
    let o = Origin::start();
    let mut h = proxy("e408", &o.base_url(), "header_timeout_ms = 500\n", "");
    let mut c = h.connect();
    c.send(b"GET /api/headers HTTP/1.1\r\nHost: a\r\n");
    // No timing assertion: the read itself is bounded by IO_TIMEOUT.
    c.read_final(false).assert_error(408);
    assert_still_serves(&mut h);
}

#[test]
fn body_over_limit_is_413() {
    let o = Origin::start();
    let mut h = proxy("e413", &o.base_url(), LIMITS, "");
    raw(&h, b"POST /api/count HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n").assert_error(413);

    let mut c = h.connect();
    c.send(b"POST /api/count HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
    let _ = c.try_send(&chunked(&[b'x'; 1500], 500, &[]));
    c.read_final(false).assert_error(413);
    assert_still_serves(&mut h);
}

#[test]
fn long_uri_is_414() {
    let o = Origin::start();
    let mut h = proxy("e414", &o.base_url(), LIMITS, "");
    let target = format!("/api/{}", "a".repeat(400));
    raw(&h, &request_bytes("GET", &target, &[], b"")).assert_error(414);
    assert_still_serves(&mut h);
}

#[test]
fn big_or_many_headers_are_431() {
    let o = Origin::start();
    let mut h = proxy("e431", &o.base_url(), LIMITS, "");
    let big = "v".repeat(2500);
    raw(&h, &request_bytes("GET", "/api/headers", &[("X-Big", &big)], b"")).assert_error(431);

    let names: Vec<String> = (0..30).map(|i| format!("X-Many-{i}")).collect();
    let many: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "1")).collect();
    raw(&h, &request_bytes("GET", "/api/headers", &many, b"")).assert_error(431);
    assert_still_serves(&mut h);
}

#[test]
fn unsupported_transfer_coding_is_501() {
    let o = Origin::start();
    let mut h = proxy("e501", &o.base_url(), "", "");
    raw(&h, b"POST /api/count HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n").assert_error(501);
    assert_eq!(o.requests(), 0);
    assert_still_serves(&mut h);
}

#[test]
fn refused_upstream_is_502() {
    let mut h = proxy("e502-refused", &format!("http://127.0.0.1:{}", closed_port()), "", "");
    get(h.port, "/api/anything").assert_error(502);
    assert_still_serves(&mut h);
}

#[test]
fn reset_garbage_and_malformed_upstream_answers_are_502() {
    let o = Origin::start();
    let mut h = proxy("e502", &o.base_url(), "", "");
    for path in ["/api/reset", "/api/garbage", "/api/bad-head"] {
        let r = get(h.port, path);
        assert_eq!(r.status, 502, "{path}: {}", r.text());
        r.assert_error(502);
    }
    // The pool must not hand out the broken connections afterwards.
    assert_eq!(get(h.port, "/api/headers").status, 200);
    assert_still_serves(&mut h);
}

#[test]
fn slow_upstream_is_504() {
    let o = Origin::start();
    let mut h = proxy("e504", &o.base_url(), "", "timeout_ms = 300");
    get(h.port, "/api/slow?ms=3000").assert_error(504);
    assert_eq!(get(h.port, "/api/headers").status, 200);
    assert_still_serves(&mut h);
}

#[test]
fn error_request_id_matches_the_response_header() {
    let o = Origin::start();
    let h = proxy("e-id", &o.base_url(), "", "");
    let r = request(h.port, "GET", "/nowhere", &[("X-Request-Id", "err-id-7")], b"");
    let v = r.assert_error(404);
    assert_eq!(v["request_id"], "err-id-7");
    assert_eq!(r.header("x-request-id"), Some("err-id-7"));
}
