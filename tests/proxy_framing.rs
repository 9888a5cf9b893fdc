//! Message framing through the proxy: chunked both ways with trailers,
//! close-delimited upstream answers, 100-continue, pipelining, and
//! keep-alive on both sides.

mod common;

use common::origin::Origin;
use common::*;
use std::time::Duration;

fn proxy(tag: &str, o: &Origin) -> Harmony {
    let port = free_port();
    let cfg = format!("{}{}{}", base_config(port, ""), api_pipeline(&o.base_url(), &[], ""), echo_pipeline());
    Harmony::start(tag, &cfg, port)
}

fn fnv(data: &[u8]) -> String {
    let mut f = Fnv::new();
    f.update(data);
    format!("{:016x}", f.0)
}

#[test]
fn chunked_request_body_with_trailer_arrives_intact() {
    let o = Origin::start();
    let h = proxy("chunk-req", &o);
    let data: Vec<u8> = (0..100_000u64).map(pattern_byte).collect();
    let mut c = h.connect();
    let mut req = request_bytes("POST", "/api/count", &[("Transfer-Encoding", "chunked")], b"");
    req.extend_from_slice(&chunked(&data, 7_001, &[("X-Checksum", "abc")]));
    c.send(&req);
    let r = c.read_final(false);
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["bytes"], data.len());
    assert_eq!(v["fnv"], fnv(&data));
}

#[test]
fn chunked_response_and_its_trailer_reach_the_client() {
    let o = Origin::start();
    let h = proxy("chunk-resp", &o);
    let mut c = h.connect();
    c.send(&request_bytes("GET", "/api/chunked", &[("TE", "trailers")], b""));
    let r = c.read_final(false);
    assert_eq!(r.status, 200);
    assert_eq!(r.framing, "chunked");
    assert_eq!(r.text(), "hello chunked world!");
    assert_eq!(r.trailer("x-trailer"), Some("done"), "trailer lost: {:?}", r.trailers);
    // The connection is still in step.
    c.send(&request_bytes("GET", "/api/status/200", &[], b""));
    assert_eq!(c.read_final(false).text(), "status 200\n");
}

#[test]
fn chunked_echo_both_ways() {
    let o = Origin::start();
    let h = proxy("chunk-echo", &o);
    let mut c = h.connect();
    let mut req = request_bytes(
        "PUT",
        "/api/echo-body",
        &[("Transfer-Encoding", "chunked"), ("Content-Type", "text/plain")],
        b"",
    );
    req.extend_from_slice(&chunked(b"one two three four five", 4, &[]));
    c.send(&req);
    let r = c.read_final(false);
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "one two three four five");
}

#[test]
fn close_delimited_upstream_is_rechunked_for_http11_clients() {
    let o = Origin::start();
    let h = proxy("close", &o);
    let mut c = h.connect();
    c.send(&request_bytes("GET", "/api/close", &[], b""));
    let r = c.read_final(false);
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "close-delimited body\nsecond line\n");
    assert_eq!(r.framing, "chunked", "HTTP/1.1 client should get a re-chunked body");
    c.send(&request_bytes("GET", "/api/status/200", &[], b""));
    assert_eq!(c.read_final(false).status, 200, "client connection survives the upstream close");
}

#[test]
fn close_delimited_upstream_to_http10_client() {
    let o = Origin::start();
    let h = proxy("close10", &o);
    let mut c = h.connect();
    c.send(b"GET /api/close HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    let r = c.read_final(false);
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "close-delimited body\nsecond line\n");
    assert_ne!(r.framing, "chunked", "no chunked coding towards an HTTP/1.0 client");
}

#[test]
fn expect_100_continue_gets_an_interim_response_before_the_body() {
    let o = Origin::start();
    let h = proxy("expect", &o);
    for path in ["/api/echo-body", "/echo/x"] {
        let mut c = h.connect();
        c.send(&request_bytes(
            "POST",
            path,
            &[("Expect", "100-continue"), ("Content-Type", "text/plain"), ("Content-Length", "11")],
            b"",
        ));
        let interim = c.read_head();
        assert_eq!(interim.status, 100, "{path}: expected 100 Continue, got {interim:?}");
        assert_eq!(interim.version, "HTTP/1.1");
        c.send(b"hello world");
        let r = c.read_final(false);
        assert_eq!(r.status, 200, "{path}");
        if path == "/api/echo-body" {
            assert_eq!(r.text(), "hello world");
        } else {
            assert_eq!(r.json()["body"], "hello world");
        }
    }
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let o = Origin::start();
    let h = proxy("pipeline", &o);
    let mut c = h.connect();
    let mut all = Vec::new();
    all.extend(request_bytes("GET", "/api/slow?ms=300", &[], b""));
    all.extend(request_bytes("POST", "/api/echo-body", &[], b"second"));
    all.extend(request_bytes("GET", "/api/headers?n=3", &[], b""));
    all.extend(request_bytes("HEAD", "/api/big?bytes=5", &[], b""));
    all.extend(request_bytes("GET", "/echo/five", &[], b""));
    c.send(&all);
    assert_eq!(c.read_final(false).text(), "slow");
    assert_eq!(c.read_final(false).text(), "second");
    assert_eq!(c.read_final(false).json()["target"], "/headers?n=3");
    let r = c.read_final(true);
    assert_eq!(r.header("content-length"), Some("5"));
    assert!(c.read_final(false).json()["path"].as_str().unwrap().ends_with("/five"));
}

#[test]
fn keep_alive_on_both_sides() {
    let o = Origin::start();
    let h = proxy("keepalive", &o);
    let mut c = h.connect();
    for i in 0..20 {
        c.send(&request_bytes("GET", &format!("/api/headers?i={i}"), &[], b""));
        let r = c.read_final(false);
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["target"], format!("/headers?i={i}"));
    }
    // Fresh client connections reuse pooled upstream connections too.
    for _ in 0..10 {
        assert_eq!(get(h.port, "/api/headers").status, 200);
    }
    assert_eq!(o.requests(), 30);
    assert!(o.connections() <= 3, "origin saw {} connections for 30 requests", o.connections());
}

#[test]
fn connection_close_from_client_is_honoured() {
    let o = Origin::start();
    let h = proxy("conn-close", &o);
    let mut c = h.connect();
    c.send(&request_bytes("GET", "/api/headers", &[("Connection", "close")], b""));
    let r = c.read_final(false);
    assert_eq!(r.status, 200);
    assert!(c.closed_within(Duration::from_secs(10)), "proxy kept the connection open");
}

#[test]
fn curl_chunked_upload_and_expect_continue() {
    if !have_curl() {
        eprintln!("SKIP: curl not installed (tests/run.sh installs it)");
        return;
    }
    let o = Origin::start();
    let h = proxy("curl-framing", &o);
    let dir = TempDir::new("curl-upload");
    let data: Vec<u8> = (0..300_000u64).map(pattern_byte).collect();
    let file = dir.write("upload.bin", &data);
    let file = file.to_str().unwrap();

    let (st, out, err) =
        curl(&["-sS", "--http1.1", "-H", "Transfer-Encoding: chunked", "-T", file, &h.url("/api/count")]);
    assert!(st.success(), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["bytes"], data.len());
    assert_eq!(v["fnv"], fnv(&data));

    let (st, out, err) = curl(&[
        "-sS",
        "-v",
        "--http1.1",
        "--expect100-timeout",
        "20",
        "-H",
        "Expect: 100-continue",
        "--data-binary",
        &format!("@{file}"),
        &h.url("/api/count"),
    ]);
    assert!(st.success(), "{err}");
    assert!(err.contains("HTTP/1.1 100 Continue"), "no 100 Continue seen by curl:\n{err}");
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["bytes"], data.len());
}
