//! The test origin and raw client talk to each other directly (no proxy), so
//! a failure in the proxy suites is never a bug in the test harness.

mod common;

use common::origin::Origin;
use common::*;

#[test]
fn keep_alive_many_requests_one_connection() {
    let o = Origin::start();
    let mut c = Conn::connect(o.port);
    for i in 0..5 {
        c.send(&request_bytes("GET", &format!("/headers?i={i}"), &[], b""));
        let r = c.read_final(false);
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["target"], format!("/headers?i={i}"));
    }
    assert_eq!(o.connections(), 1);
    assert_eq!(o.requests(), 5);
}

#[test]
fn framings_chunked_close_and_trailers() {
    let o = Origin::start();
    let r = get(o.port, "/chunked");
    assert_eq!((r.framing, r.text().as_str()), ("chunked", "hello chunked world!"));
    assert_eq!(r.trailer("x-trailer"), Some("done"));
    let r = get(o.port, "/close");
    assert_eq!(r.framing, "close");
    assert!(r.text().starts_with("close-delimited body"));
    let r = get(o.port, "/status/418");
    assert_eq!(r.status, 418);
    let r = request(o.port, "HEAD", "/big?bytes=1000", &[], b"");
    assert_eq!(r.header("content-length"), Some("1000"));
    assert!(r.body.is_empty());
}

#[test]
fn echo_and_count_stream_bodies() {
    let o = Origin::start();
    let r = request(o.port, "POST", "/echo-body", &[], b"ping");
    assert_eq!(r.text(), "ping");
    let mut c = Conn::connect(o.port);
    let mut req = request_bytes("POST", "/count", &[("Transfer-Encoding", "chunked")], b"");
    req.extend_from_slice(&chunked(b"abcdefghij", 3, &[("X-Sum", "10")]));
    c.send(&req);
    let v = c.read_final(false).json();
    assert_eq!(v["bytes"], 10);
    let mut f = Fnv::new();
    f.update(b"abcdefghij");
    assert_eq!(v["fnv"], format!("{:016x}", f.0));
    assert_eq!(v["trailers"]["x-sum"], "10");
    let mut c = Conn::connect(o.port);
    let mut req = request_bytes("POST", "/echo-body", &[("Transfer-Encoding", "chunked")], b"");
    req.extend_from_slice(&chunked(b"streamed back", 4, &[]));
    c.send(&req);
    let r = c.read_final(false);
    assert_eq!((r.framing, r.text().as_str()), ("chunked", "streamed back"));
}

#[test]
fn big_pattern_is_checkable_while_streaming() {
    let o = Origin::start();
    let n = 3 * 1024 * 1024 + 17;
    for chunked in [false, true] {
        let mut c = Conn::connect(o.port);
        let target = format!("/big?bytes={n}{}", if chunked { "&chunked=1" } else { "" });
        c.send(&request_bytes("GET", &target, &[], b""));
        let mut off = 0u64;
        let r = c.read_response_with(false, &mut |b| {
            for x in b {
                assert_eq!(*x, pattern_byte(off));
                off += 1;
            }
        });
        assert_eq!(r.status, 200);
        assert_eq!(off, n);
    }
}

#[test]
fn reset_and_garbage_close_without_a_response() {
    let o = Origin::start();
    for path in ["/reset", "/garbage"] {
        let mut c = Conn::connect(o.port);
        c.send(&request_bytes("GET", path, &[], b""));
        let mut all = Vec::new();
        let _ = std::io::Read::read_to_end(&mut c.reader, &mut all);
        assert!(!all.starts_with(b"HTTP/"), "{path}: {all:?}");
    }
}
