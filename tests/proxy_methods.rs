//! Requests go through the proxy and arrive as the origin expects: methods,
//! the echo backend, path rewriting, forwarded headers, hop-by-hop removal,
//! the headers and path_filter middleware, round robin.

mod common;

use common::origin::Origin;
use common::*;
use serde_json::Value;

/// harmony with an `/api` pipeline to `base_url` and an `/echo` pipeline.
fn proxy(tag: &str, base_url: &str, middleware: &[&str], extra: &str, more: &str) -> Harmony {
    let port = free_port();
    let cfg =
        format!("{}{}{}{}", base_config(port, ""), api_pipeline(base_url, middleware, extra), echo_pipeline(), more);
    Harmony::start(tag, &cfg, port)
}

/// The value of a header the origin received (from its `/headers` JSON).
fn seen<'a>(v: &'a Value, name: &str) -> Option<&'a str> {
    v["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p[0].as_str().unwrap().eq_ignore_ascii_case(name))
        .map(|p| p[1].as_str().unwrap())
}

#[test]
fn echo_backend_answers_get_and_post() {
    let o = Origin::start();
    let h = proxy("echo", &o.base_url(), &[], "", "");
    let r = get(h.port, "/echo/hello?x=1");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap_or("").contains("application/json"));
    let v = r.json();
    assert_eq!(v["method"], "GET");
    assert!(v["path"].as_str().unwrap().ends_with("/hello"), "{v}");
    assert!(v["headers"].is_object(), "{v}");

    let r = request(h.port, "POST", "/echo/submit", &[("Content-Type", "text/plain")], b"hello body");
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["method"], "POST");
    assert_eq!(v["body"], "hello body");
}

#[test]
fn get_post_put_delete_reach_the_origin_with_their_bodies() {
    let o = Origin::start();
    let h = proxy("methods", &o.base_url(), &[], "", "");
    for (method, body) in [("GET", &b""[..]), ("POST", b"post-body"), ("PUT", b"put body!"), ("DELETE", b"")] {
        let r = request(h.port, method, "/api/items/7", &[], body);
        assert_eq!(r.status, 200, "{method}: {}", r.text());
        let v = r.json();
        assert_eq!(v["method"], method);
        assert_eq!(v["target"], "/items/7");
        assert_eq!(v["body_bytes"], body.len());
    }
    let r = request(h.port, "POST", "/api/echo-body", &[("Content-Type", "text/plain")], b"round trip");
    assert_eq!(r.text(), "round trip");
}

#[test]
fn head_has_headers_but_no_body_and_the_connection_stays_usable() {
    let o = Origin::start();
    let h = proxy("head", &o.base_url(), &[], "", "");
    let mut c = h.connect();
    c.send(&request_bytes("HEAD", "/api/big?bytes=1000", &[], b""));
    let r = c.read_final(true);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("1000"));
    // If the proxy had sent a body, it would be read as the next status line.
    c.send(&request_bytes("GET", "/api/status/201", &[], b""));
    let r = c.read_final(false);
    assert_eq!(r.status, 201);
    assert_eq!(r.text(), "status 201\n");
}

#[test]
fn prefix_is_stripped_and_base_path_prepended() {
    let o = Origin::start();
    let h = proxy("rewrite", &format!("{}/v1", o.base_url()), &[], "", "");
    let v = get(h.port, "/api/x?q=1").json();
    assert_eq!(v["target"], "/v1/x?q=1");
    let v = get(h.port, "/api/a/b/c").json();
    assert_eq!(v["target"], "/v1/a/b/c");

    let h2 = proxy("rewrite2", &o.base_url(), &[], "", "");
    let v = get(h2.port, "/api/x?q=1").json();
    assert_eq!(v["target"], "/x?q=1");
}

#[test]
fn forwarded_headers_and_request_id() {
    let o = Origin::start();
    let h = proxy("fwd", &o.base_url(), &[], "", "");
    let r = request(h.port, "GET", "/api/headers", &[("Host", "client.example:1234")], b"");
    assert_eq!(r.status, 200);
    let v = r.json();
    assert!(seen(&v, "via").unwrap_or("").contains("harmony"), "{v}");
    assert!(seen(&v, "x-forwarded-for").unwrap_or("").contains("127.0.0.1"), "{v}");
    assert_eq!(seen(&v, "x-forwarded-proto"), Some("http"));
    assert_eq!(seen(&v, "x-forwarded-host"), Some("client.example:1234"));
    // A request with a Host: the client's X-Forwarded-Host is replaced ...
    let spoof = [("Host", "client.example"), ("X-Forwarded-Host", "spoof.example")];
    let v2 = request(h.port, "GET", "/api/headers", &spoof, b"").json();
    let all: Vec<&str> = v2["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p[0] == "X-Forwarded-Host")
        .map(|p| p[1].as_str().unwrap())
        .collect();
    assert_eq!(all, ["client.example"], "{v2}");
    // ... one without (HTTP/1.0) keeps the one it sent
    let mut c = h.connect();
    c.send(b"GET /api/headers HTTP/1.0\r\nX-Forwarded-Host: earlier.example\r\n\r\n");
    let v3 = c.read_final(false).json();
    assert_eq!(seen(&v3, "x-forwarded-host"), Some("earlier.example"), "{v3}");
    // Without preserve_host the origin sees its own authority.
    assert_eq!(seen(&v, "host"), Some(format!("127.0.0.1:{}", o.port).as_str()));
    let id = seen(&v, "x-request-id").expect("generated X-Request-Id").to_string();
    assert!(!id.is_empty());
    assert_eq!(r.header("x-request-id"), Some(id.as_str()), "response echoes the id");

    let r = request(h.port, "GET", "/api/headers", &[("X-Request-Id", "client-id-42")], b"");
    assert_eq!(seen(&r.json(), "x-request-id"), Some("client-id-42"));
    assert_eq!(r.header("x-request-id"), Some("client-id-42"));
}

#[test]
fn preserve_host_sends_the_client_host() {
    let o = Origin::start();
    let h = proxy("phost", &o.base_url(), &[], "preserve_host = true", "");
    let v = request(h.port, "GET", "/api/headers", &[("Host", "client.example:1234")], b"").json();
    assert_eq!(seen(&v, "host"), Some("client.example:1234"));
}

#[test]
fn hop_by_hop_headers_are_not_forwarded() {
    let o = Origin::start();
    let h = proxy("hop", &o.base_url(), &[], "", "");
    let r = request(
        h.port,
        "GET",
        "/api/headers",
        &[
            ("Connection", "keep-alive, X-Custom-Hop"),
            ("Keep-Alive", "timeout=5"),
            ("X-Custom-Hop", "secret"),
            ("TE", "trailers"),
            ("Upgrade", "h2c"),
            ("Proxy-Connection", "keep-alive"),
            ("X-End-To-End", "kept"),
        ],
        b"",
    );
    assert_eq!(r.status, 200);
    let v = r.json();
    for name in ["keep-alive", "x-custom-hop", "te", "upgrade", "proxy-connection"] {
        assert_eq!(seen(&v, name), None, "{name} was forwarded: {v}");
    }
    let conn = seen(&v, "connection").unwrap_or("").to_ascii_lowercase();
    assert!(!conn.contains("x-custom-hop"), "client Connection forwarded: {conn}");
    assert_eq!(seen(&v, "x-end-to-end"), Some("kept"));
}

#[test]
fn headers_middleware_sets_and_removes_both_ways() {
    let o = Origin::start();
    let mw = r#"
[middleware.hdrs]
type = "headers"
options = { request_set = { "x-test" = "1" }, request_remove = ["x-remove-me"], response_set = { "x-resp" = "yes" }, response_remove = ["server"] }
"#;
    let h = proxy("hdrs", &o.base_url(), &["hdrs"], "", mw);
    let r = request(h.port, "GET", "/api/headers", &[("X-Remove-Me", "1"), ("X-Test", "client")], b"");
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(seen(&v, "x-test"), Some("1"), "{v}");
    assert_eq!(seen(&v, "x-remove-me"), None, "{v}");
    assert_eq!(r.header("x-resp"), Some("yes"));
    assert!(!r.headers_named("server").iter().any(|s| s.contains("test-origin")), "{:?}", r.headers);
}

#[test]
fn path_filter_allows_denies_and_hides() {
    let o = Origin::start();
    let mw = r#"
[middleware.filter]
type = "path_filter"
options = { rules = ["/allowed", "/allowed/*"], deny = ["/allowed/secret"] }
"#;
    let h = proxy("filter", &o.base_url(), &["filter"], "", mw);
    assert_eq!(get(h.port, "/api/allowed").status, 200);
    assert_eq!(get(h.port, "/api/allowed/item").json()["target"], "/allowed/item");
    get(h.port, "/api/other").assert_error(404);
    get(h.port, "/api/allowed/secret").assert_error(403);
    assert_eq!(o.requests(), 2, "filtered requests must not reach the origin: {:?}", o.targets());
}

#[test]
fn round_robin_spreads_over_both_targets() {
    let (a, b) = (Origin::start(), Origin::start());
    let port = free_port();
    let cfg = format!(
        r#"{}
[pipelines.api]
networks = ["default"]
endpoints = ["api_in"]
backends = ["origin"]

[endpoints.api_in]
service = "http"
options = {{ path_prefix = "/api" }}

[backends.origin]
service = "http"
options = {{ targets = ["{}", "{}"], timeout_ms = 2000 }}
"#,
        base_config(port, ""),
        a.base_url(),
        b.base_url()
    );
    let h = Harmony::start("rr", &cfg, port);
    let mut ports = Vec::new();
    for _ in 0..10 {
        let r = get(h.port, "/api/headers");
        assert_eq!(r.status, 200);
        ports.push(r.header("x-origin-port").unwrap().to_string());
    }
    let na = ports.iter().filter(|p| **p == a.port.to_string()).count();
    let nb = ports.iter().filter(|p| **p == b.port.to_string()).count();
    assert_eq!(na + nb, 10);
    assert!(na.abs_diff(nb) <= 2, "not round robin: {ports:?}");
}

#[test]
fn curl_put_and_head_through_the_proxy() {
    if !have_curl() {
        eprintln!("SKIP: curl not installed (tests/run.sh installs it)");
        return;
    }
    let o = Origin::start();
    let h = proxy("curl", &o.base_url(), &[], "", "");
    let (st, out, err) = curl(&["-sS", "-X", "PUT", "--data-binary", "curl body", &h.url("/api/echo-body")]);
    assert!(st.success(), "{err}");
    assert_eq!(out, b"curl body");
    let (st, out, err) = curl(&["-sS", "-I", &h.url("/api/big?bytes=77")]);
    assert!(st.success(), "{err}");
    let text = String::from_utf8_lossy(&out).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 200"), "{text}");
    assert!(text.contains("content-length: 77"), "{text}");
}
