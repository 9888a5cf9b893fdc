//! Regression tests for the review findings fixed together: each test replays
//! the scenario that exposed one bug (first written as a raw-socket script)
//! and checks the behaviour that is correct now.
//!
//! No timing assertions: pauses are part of the scenarios (a client that stops
//! reading, or stops sending, for longer than the upstream timeout), and every
//! wait is bounded by a generous failure guard.

mod common;

use common::origin::Origin;
use common::*;
use serde_json::Value;
use std::io::Write;
use std::net::Shutdown;
use std::thread;
use std::time::Duration;

const MIB: u64 = 1024 * 1024;
const GUARD: Duration = Duration::from_secs(10);

/// harmony with an `/api` pipeline to `o` and an `/echo` pipeline.
fn proxy(tag: &str, o: &Origin, proxy_extra: &str, backend_extra: &str) -> Harmony {
    let port = free_port();
    let cfg = format!(
        "{}{}{}",
        base_config(port, proxy_extra),
        api_pipeline(&o.base_url(), &[], backend_extra),
        echo_pipeline()
    );
    Harmony::start(tag, &cfg, port)
}

/// Read the body of `r` (head already read) and check it is `n` pattern bytes.
/// `pace` sleeps after each read (a slow reader); `stall` = (offset, pause):
/// stop reading once `offset` bytes have arrived, for `pause`.
fn read_pattern_body(c: &mut Conn, r: &mut Response, n: u64, pace: Duration, mut stall: Option<(u64, Duration)>) {
    let (mut off, mut bad) = (0u64, None);
    c.read_body_with(r, false, &mut |b| {
        if let Some((at, pause)) = stall {
            if off >= at {
                thread::sleep(pause);
                stall = None;
            }
        }
        for x in b {
            if bad.is_none() && *x != pattern_byte(off) {
                bad = Some(off);
            }
            off += 1;
        }
        if !pace.is_zero() {
            thread::sleep(pace);
        }
    });
    assert_eq!(bad, None, "body differs from the pattern at byte {bad:?}");
    assert_eq!(off, n, "body length");
}

/// Headers named `name` that the origin received (from its `/headers` JSON).
fn seen_all(v: &Value, name: &str) -> Vec<String> {
    v["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p[0].as_str().unwrap().eq_ignore_ascii_case(name))
        .map(|p| p[1].as_str().unwrap().to_string())
        .collect()
}

// ------------------------------------------------ 1. memory bound per connection

/// 100 pipelined 1 MB POSTs to the echo backend on one connection that does
/// not read: the proxy must stop taking requests instead of buffering every
/// answer (about 6 MB of JSON each). The writer blocks; memory stays bounded.
#[test]
fn pipelined_uploads_to_a_client_that_does_not_read_keep_memory_bounded() {
    const LIMIT_KB: u64 = 60 * 1024;
    const BODY: usize = 1_000_000;
    let o = Origin::start();
    let h = proxy("reg-mem", &o, "idle_timeout_ms = 60000\nbuffered_body_bytes = 2097152\n", "");
    let mut c = h.connect();
    let mut w = c.stream.try_clone().unwrap();
    let writer = thread::spawn(move || {
        let body = vec![1u8; BODY];
        for i in 0..100 {
            let head = format!("POST /echo/x{i} HTTP/1.1\r\nHost: a\r\nContent-Length: {BODY}\r\n\r\n");
            if w.write_all(head.as_bytes()).and_then(|_| w.write_all(&body)).is_err() {
                return i; // we closed the connection: expected
            }
        }
        100
    });
    // The scenario: the client does not read for a while.
    thread::sleep(Duration::from_secs(3));
    let peak = h.peak_rss_kb();
    eprintln!("proxy peak RSS while the client does not read: {peak} KiB");
    assert!(peak < LIMIT_KB, "proxy peak RSS {peak} KiB >= {LIMIT_KB} KiB while one client does not read");

    // Now it reads: the answers come in order, each with its full body.
    for i in 0..3 {
        let r = c.read_final(false);
        assert_eq!(r.status, 200, "answer {i}: {}", String::from_utf8_lossy(&r.body[..r.body.len().min(300)]));
        let v = r.json();
        let path = v["path"].as_str().unwrap_or("");
        assert!(path.ends_with(&format!("/x{i}")), "answer {i} is for {path:?}: out of order");
        assert_eq!(v["body"].as_str().map(str::len), Some(BODY), "answer {i} body");
    }
    let _ = c.stream.shutdown(Shutdown::Both);
    let sent = writer.join().unwrap();
    assert!(sent < 100, "the proxy took all 100 requests while the client was not reading");
    let peak = h.peak_rss_kb();
    assert!(peak < LIMIT_KB, "proxy peak RSS {peak} KiB >= {LIMIT_KB} KiB after reading");
    assert_eq!(get(h.port, "/echo/after").status, 200);
}

// ------------------------------------------------ 2. no pooling of a poisoned upstream

/// An upstream answer of exactly 16384 bytes (one full read buffer; also
/// 32769) followed, in the same write, by an unasked response "EVIL!": that
/// connection must not go back to the pool, so no later client gets "EVIL!".
#[test]
fn extra_bytes_after_a_buffer_sized_answer_never_reach_another_client() {
    let o = Origin::start();
    let h = proxy("reg-poison", &o, "", "");
    // 16384 is the proxy's read buffer; 32769 its largest single read (max_header_bytes + 1).
    for (round, total) in [16384, 16384, 16384, 32769, 32769].into_iter().enumerate() {
        let r = get(h.port, &format!("/api/aligned?total={total}"));
        assert_eq!(r.status, 200, "round {round}");
        assert!(!r.body.is_empty() && r.body.iter().all(|b| *b == b'a'), "round {round}: aligned body {:?}", r.text());
        thread::sleep(Duration::from_millis(200));
        for i in 0..4 {
            let r = get(h.port, &format!("/api/innocent-{round}-{i}"));
            assert!(!r.text().contains("EVIL"), "round {round} client {i} got the smuggled response: {:?}", r);
            assert_eq!(r.status, 200, "round {round} client {i}: {}", r.text());
            assert_eq!(r.json()["target"], format!("/innocent-{round}-{i}"));
        }
    }
}

// ------------------------------------------------ 3. answers survive a half-close

/// A client with small socket buffers (8 KiB receive buffer, 600-byte MSS, as
/// in the original report), so the proxy still holds part of the answer when
/// the upstream finishes and the client's FIN has been seen.
fn small_window_conn(port: u16) -> Conn {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    s.set_recv_buffer_size(8192).expect("SO_RCVBUF");
    s.set_tcp_mss(600).expect("TCP_MAXSEG");
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    s.connect(&addr.into()).expect("connect to proxy");
    let stream: std::net::TcpStream = s.into();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    Conn { reader: std::io::BufReader::with_capacity(64 * 1024, stream.try_clone().unwrap()), stream }
}

/// A keep-alive GET, then shutdown(SHUT_WR), a pause, then a slow reader: the
/// whole body must arrive before the proxy closes. Sizes just above what the
/// socket buffers hold during the pause, and ~4 MB ones read slowly.
#[test]
fn half_closed_keep_alive_client_gets_the_whole_body() {
    let o = Origin::start();
    let h = proxy("reg-halfclose", &o, "idle_timeout_ms = 30000\n", "timeout_ms = 30000");
    let mut sizes: Vec<u64> = (0..8).map(|i| 70_000 + i * 16_000).collect();
    sizes.extend([4_000_000, 4 * MIB + 23_001]);
    for n in sizes {
        let mut c = small_window_conn(h.port);
        c.send(format!("GET /api/big?bytes={n} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes());
        c.stream.shutdown(Shutdown::Write).unwrap();
        thread::sleep(Duration::from_millis(300));
        let mut r = c.read_head();
        assert_eq!(r.status, 200, "{n} bytes");
        read_pattern_body(&mut c, &mut r, n, Duration::from_micros(500), None);
        assert!(c.closed_within(GUARD), "{n} bytes: the proxy did not close after answering a half-closed client");
    }
}

// ------------------------------------------------ 4. upstream timeout vs. a slow client

/// upstream timeout 1 s; the client stops reading a 32 MiB download for 2.5 s:
/// the upstream is not late, the client is, so every byte must still arrive.
#[test]
fn client_pausing_a_download_longer_than_the_upstream_timeout_gets_every_byte() {
    let o = Origin::start();
    let h = proxy("reg-updown", &o, "upstream_timeout_ms = 1000\nidle_timeout_ms = 30000\n", "timeout_ms = 1000");
    let n = 32 * MIB;
    let mut c = h.connect();
    c.send(format!("GET /api/big?bytes={n} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes());
    let mut r = c.read_head();
    assert_eq!(r.status, 200);
    // Take the first MiB, stop reading for 2.5 s, then take the rest: a 504 or
    // a cut connection here is the bug.
    read_pattern_body(&mut c, &mut r, n, Duration::ZERO, Some((MIB, Duration::from_millis(2500))));
    assert!(!h.stderr().contains(" 504 "), "a 504 was logged:\n{}", h.stderr());
}

/// upstream timeout 1 s; the client pauses 2.5 s in the middle of its POST
/// body: the origin is waiting for us, so the origin's 200 must come back.
#[test]
fn client_pausing_mid_upload_longer_than_the_upstream_timeout_gets_the_origin_answer() {
    let o = Origin::start();
    let h = proxy("reg-upup", &o, "upstream_timeout_ms = 1000\nidle_timeout_ms = 30000\n", "timeout_ms = 1000");
    let n = 2 * MIB;
    let body: Vec<u8> = (0..n).map(pattern_byte).collect();
    let mut fnv = Fnv::new();
    fnv.update(&body);
    let mut c = h.connect();
    c.send(format!("POST /api/count HTTP/1.1\r\nHost: a\r\nContent-Length: {n}\r\n\r\n").as_bytes());
    c.send(&body[..MIB as usize]);
    thread::sleep(Duration::from_millis(2500));
    c.try_send(&body[MIB as usize..]).expect("the proxy stopped taking the body during the pause");
    let r = c.read_final(false);
    assert_eq!(r.status, 200, "after a 2.5 s pause in the body: {}", r.text());
    let v = r.json();
    assert_eq!(v["bytes"], n);
    assert_eq!(v["fnv"], format!("{:016x}", fnv.0));
}

// ------------------------------------------------ 5. early answer to an upload

/// The origin reads only the head of a 20 MB POST, answers 413 with
/// Connection: close and closes: the client must get that 413, not a 502.
#[test]
fn origin_rejecting_an_upload_early_answers_the_client_with_its_413() {
    let o = Origin::start();
    let h = proxy("reg-413", &o, "idle_timeout_ms = 30000\n", "timeout_ms = 10000");
    let n: usize = 20 * 1024 * 1024;
    for round in 0..5 {
        let mut c = h.connect();
        c.send(format!("POST /api/reject HTTP/1.1\r\nHost: a\r\nContent-Length: {n}\r\n\r\n").as_bytes());
        let mut w = c.stream.try_clone().unwrap();
        let writer = thread::spawn(move || {
            let chunk = vec![b'z'; 64 * 1024];
            let mut sent = 0;
            while sent < n {
                if w.write_all(&chunk).is_err() {
                    return; // the proxy answered and closed: fine
                }
                sent += chunk.len();
            }
        });
        let r = c.read_final(false);
        assert_eq!(r.status, 413, "round {round}: {} {}", r.status, r.text());
        assert_eq!(r.text(), "nope", "round {round}");
        let _ = c.stream.shutdown(Shutdown::Both);
        writer.join().unwrap();
    }
    assert_eq!(get(h.port, "/api/after").status, 200);
}

// ------------------------------------------------ 6. answer and FIN together

/// The origin's answer and its FIN arrive in one segment: that connection is
/// dead and must not be pooled, so the next POST (not retried, it is not
/// idempotent) gets a fresh connection and a 200, not a 502.
#[test]
fn upstream_fin_with_the_answer_is_not_pooled_for_the_next_post() {
    let o = Origin::start();
    let h = proxy("reg-fin", &o, "", "");
    for round in 0..3 {
        let r = get(h.port, "/api/close-after");
        assert_eq!((r.status, r.text().as_str()), (200, "ok"), "round {round}");
        thread::sleep(Duration::from_millis(200));
        let r = request(h.port, "POST", "/api/post", &[], b"hello");
        assert_eq!(r.status, 200, "round {round}: POST after a FIN-with-answer upstream: {}", r.text());
        let v = r.json();
        assert_eq!((v["method"].as_str(), v["body_bytes"].as_u64()), (Some("POST"), Some(5)), "round {round}");
    }
}

// ------------------------------------------------ 7. large chunked trailers

/// Chunked request trailers of 20 KB (under max_header_bytes = 32 KB) must not
/// stall the request; the trailer reaches the origin. Same for a 20 KB
/// response trailer coming back.
#[test]
fn trailers_of_20_kb_pass_in_both_directions() {
    let o = Origin::start();
    let h = proxy("reg-trailers", &o, "max_header_bytes = 32768\n", "");
    let big = "b".repeat(20_000);
    let mut c = h.connect();
    let mut req =
        b"POST /api/count HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTrailer: X-Big\r\n\r\n".to_vec();
    req.extend_from_slice(&chunked(b"hello trailer world", 7, &[("X-Big", &big)]));
    c.send(&req);
    assert!(!c.silent_for(GUARD), "no answer within {GUARD:?}: the 20 KB request trailer stalled");
    let r = c.read_final(false);
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["bytes"], 19);
    assert_eq!(v["trailers"]["x-big"].as_str().map(str::len), Some(20_000), "trailer at the origin: {v}");

    let mut c = h.connect();
    c.send(b"GET /api/chunked?trailer_bytes=20000 HTTP/1.1\r\nHost: a\r\nTE: trailers\r\n\r\n");
    assert!(!c.silent_for(GUARD), "no answer within {GUARD:?}: the 20 KB response trailer stalled");
    let mut r = c.read_head();
    assert_eq!(r.status, 200);
    let mut body = Vec::new();
    c.stream.set_read_timeout(Some(GUARD)).unwrap();
    c.read_body_with(&mut r, false, &mut |b| body.extend_from_slice(b));
    assert_eq!(String::from_utf8_lossy(&body), "hello chunked world!");
    assert_eq!(r.framing, "chunked");
    assert_eq!(r.trailer("x-trailer").map(str::len), Some(20_000), "response trailers: {:?}", r.trailers.len());
}

// ------------------------------------------------ 8. access log byte count

/// The access line's byte count for a 4 MiB answer is about 4 MiB, not double.
#[test]
fn access_log_counts_response_bytes_once() {
    let o = Origin::start();
    let h = proxy("reg-bytes", &o, "", "timeout_ms = 30000");
    let n = 4 * MIB;
    let target = format!("/api/big?bytes={n}");
    let mut c = h.connect();
    c.send(format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes());
    let mut r = c.read_head();
    assert_eq!(r.status, 200);
    read_pattern_body(&mut c, &mut r, n, Duration::ZERO, None);

    let needle = format!(" GET {target} 200 ");
    let mut line = String::new();
    let found = eventually(GUARD, || {
        line = h.stderr().lines().find(|l| l.contains(&needle)).unwrap_or("").to_string();
        !line.is_empty()
    });
    assert!(found, "no access line with {needle:?}; stderr:\n{}", h.stderr());
    let bytes: u64 = line
        .split_whitespace()
        .find_map(|t| t.strip_suffix('B').and_then(|d| d.parse().ok()))
        .unwrap_or_else(|| panic!("no NNNB field in {line:?}"));
    assert!((n..n + 4096).contains(&bytes), "access log says {bytes}B for a {n}-byte body: {line}");
}

// ------------------------------------------------ Host after hop-by-hop removal

/// `Connection: host` must not strip the Host header the proxy sends: with
/// preserve_host the origin sees the client's Host, without it its own.
#[test]
fn connection_host_does_not_remove_the_host_header() {
    let o = Origin::start();
    let hdrs = [("Host", "client.example:8443"), ("Connection", "host")];

    let h = proxy("reg-host-keep", &o, "", "preserve_host = true");
    let r = request(h.port, "GET", "/api/headers", &hdrs, b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(seen_all(&r.json(), "host"), vec!["client.example:8443".to_string()]);

    let h = proxy("reg-host-own", &o, "", "");
    let r = request(h.port, "GET", "/api/headers", &hdrs, b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(seen_all(&r.json(), "host"), vec![format!("127.0.0.1:{}", o.port)]);
}
