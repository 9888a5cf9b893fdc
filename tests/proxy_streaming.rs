//! 64 MiB bodies stream through the proxy in both directions while its
//! memory stays small, and a client that stops reading pushes back on the
//! origin instead of filling the proxy's memory.
//!
//! Memory is judged by VmHWM (the peak resident set), so no sampling races.

mod common;

use common::origin::Origin;
use common::*;
use std::io::Write;
use std::thread;
use std::time::Duration;

const MIB: u64 = 1024 * 1024;
const BIG: u64 = 64 * MIB;
/// "stays under, say, 40 MB".
const RSS_LIMIT_KB: u64 = 40 * 1024;

fn proxy(tag: &str, o: &Origin) -> Harmony {
    let port = free_port();
    let cfg = format!(
        "{}{}",
        base_config(port, "idle_timeout_ms = 30000\n"),
        api_pipeline(&o.base_url(), &[], "timeout_ms = 30000")
    );
    Harmony::start(tag, &cfg, port)
}

/// Write `n` pattern bytes to `w` in 64 KiB pieces, feeding `fnv`.
fn write_pattern(w: &mut impl Write, n: u64, fnv: &mut Fnv) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut off = 0;
    while off < n {
        let len = buf.len().min((n - off) as usize);
        for (i, b) in buf[..len].iter_mut().enumerate() {
            *b = pattern_byte(off + i as u64);
        }
        fnv.update(&buf[..len]);
        w.write_all(&buf[..len]).expect("write body to proxy");
        off += len as u64;
    }
}

/// Read one response and check its body is exactly `n` pattern bytes.
fn read_pattern(c: &mut Conn, n: u64) -> Response {
    let mut off = 0u64;
    let mut bad = None;
    let r = c.read_response_with(false, &mut |b| {
        for x in b {
            if bad.is_none() && *x != pattern_byte(off) {
                bad = Some(off);
            }
            off += 1;
        }
    });
    assert_eq!(r.status, 200);
    assert_eq!(bad, None, "body differs from the pattern at byte {bad:?}");
    assert_eq!(off, n, "body length");
    r
}

fn assert_small(h: &Harmony, what: &str) {
    let peak = h.peak_rss_kb();
    assert!(peak < RSS_LIMIT_KB, "{what}: proxy peak RSS {peak} KiB >= {RSS_LIMIT_KB} KiB");
    eprintln!("{what}: proxy peak RSS {peak} KiB");
}

#[test]
fn upload_64_mib_streams() {
    let o = Origin::start();
    let h = proxy("up64", &o);
    let mut c = h.connect();
    c.send(format!("POST /api/count HTTP/1.1\r\nHost: a\r\nContent-Length: {BIG}\r\n\r\n").as_bytes());
    let mut fnv = Fnv::new();
    write_pattern(&mut c.stream, BIG, &mut fnv);
    let v = c.read_final(false).json();
    assert_eq!(v["bytes"], BIG);
    assert_eq!(v["fnv"], format!("{:016x}", fnv.0));
    assert_small(&h, "64 MiB upload");
}

#[test]
fn chunked_upload_64_mib_streams() {
    let o = Origin::start();
    let h = proxy("upchunk64", &o);
    let mut c = h.connect();
    c.send(b"PUT /api/count HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
    // One 64 MiB body as 1 MiB chunks.
    let mut fnv = Fnv::new();
    for i in 0..64u64 {
        c.send(format!("{:x}\r\n", MIB).as_bytes());
        let mut piece = Vec::with_capacity(MIB as usize);
        for j in 0..MIB {
            piece.push(pattern_byte(i * MIB + j));
        }
        fnv.update(&piece);
        c.send(&piece).send(b"\r\n");
    }
    c.send(b"0\r\n\r\n");
    let v = c.read_final(false).json();
    assert_eq!(v["bytes"], BIG);
    assert_eq!(v["fnv"], format!("{:016x}", fnv.0));
    assert_small(&h, "64 MiB chunked upload");
}

#[test]
fn download_64_mib_streams() {
    let o = Origin::start();
    let h = proxy("down64", &o);
    let mut c = h.connect();
    c.send(&request_bytes("GET", &format!("/api/big?bytes={BIG}"), &[], b""));
    read_pattern(&mut c, BIG);
    c.send(&request_bytes("GET", &format!("/api/big?bytes={}&chunked=1", 16 * MIB), &[], b""));
    let r = read_pattern(&mut c, 16 * MIB);
    assert_eq!(r.framing, "chunked");
    assert_small(&h, "64 MiB download");
}

#[test]
fn echo_64_mib_both_ways_at_once() {
    let o = Origin::start();
    let h = proxy("echo64", &o);
    let mut c = h.connect();
    c.send(format!("POST /api/echo-body HTTP/1.1\r\nHost: a\r\nContent-Length: {BIG}\r\n\r\n").as_bytes());
    // The origin answers while still reading: write from another thread.
    let mut w = c.stream.try_clone().unwrap();
    let writer = thread::spawn(move || {
        let mut fnv = Fnv::new();
        write_pattern(&mut w, BIG, &mut fnv);
    });
    read_pattern(&mut c, BIG);
    writer.join().expect("writer thread");
    assert_small(&h, "64 MiB echo");
}

#[test]
fn slow_reader_pushes_back_on_the_origin() {
    let o = Origin::start();
    let h = proxy("slowread", &o);
    let mut c = h.connect();
    c.send(&request_bytes("GET", &format!("/api/big?bytes={BIG}"), &[], b""));
    let mut r = c.read_head();
    assert_eq!(r.status, 200);
    assert!(eventually(Duration::from_secs(10), || o.bytes_sent() > 0));
    // Stop reading for a while; a proxy without backpressure would pull the
    // whole body from the origin into its memory meanwhile.
    thread::sleep(Duration::from_secs(2));
    let sent = o.bytes_sent();
    let rss = h.rss_kb();
    assert!(rss < RSS_LIMIT_KB, "proxy RSS {rss} KiB while the client is not reading");
    assert!(sent < 48 * MIB, "origin pushed {sent} bytes with nobody reading: no backpressure");
    eprintln!("while stalled: origin sent {} MiB, proxy RSS {rss} KiB", sent / MIB);
    // Now read it all; nothing was lost.
    let mut off = 0u64;
    let mut ok = true;
    c.read_body_with(&mut r, false, &mut |b| {
        for x in b {
            ok &= *x == pattern_byte(off);
            off += 1;
        }
    });
    assert!(ok, "body corrupted");
    assert_eq!(off, BIG);
    assert_small(&h, "slow reader");
}
