//! Connection-level edges: several workers, drain on SIGTERM with idle and
//! busy connections, and the per-worker connection limit.
//! (Single-exchange edges are in proxy_edges.rs.)

mod common;

use common::origin::Origin;
use common::*;
use std::fs;
use std::io::Read;
use std::thread;
use std::time::Duration;

const GUARD: Duration = Duration::from_secs(10);

fn proxy(tag: &str, base_url: &str, proxy_extra: &str, backend_extra: &str) -> Harmony {
    let port = free_port();
    let cfg =
        format!("{}{}{}", base_config(port, proxy_extra), api_pipeline(base_url, &[], backend_extra), echo_pipeline());
    Harmony::start(tag, &cfg, port)
}

/// Threads of `pid` whose name starts with `prefix` (names are cut to 15 bytes).
fn threads_named(pid: u32, prefix: &str) -> usize {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    dir.filter_map(|e| e.ok())
        .filter(|e| fs::read_to_string(e.path().join("comm")).is_ok_and(|n| n.trim_end().starts_with(prefix)))
        .count()
}

/// The peer closed gracefully: a read returns EOF (not a reset, not data) within `within`.
fn eof_within(c: &mut Conn, within: Duration) -> bool {
    c.stream.set_read_timeout(Some(within)).unwrap();
    let mut b = [0u8; 1];
    let r = c.reader.read(&mut b);
    c.stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    match r {
        Ok(0) => true,
        other => {
            eprintln!("expected EOF, got {other:?}");
            false
        }
    }
}

// ---------------------------------------------------------------- 1. workers

#[test]
fn two_workers_serve_many_connections_then_exit_0() {
    let o = Origin::start();
    let mut h = proxy("edge-workers", &o.base_url(), "workers = 2\n", "");
    // The port is bound before the workers start: wait for both threads.
    let pid = h.pid();
    assert!(
        eventually(GUARD, || threads_named(pid, "harmony-worker") == 2),
        "expected two worker threads, found {}",
        threads_named(pid, "harmony-worker")
    );
    let port = h.port;
    let clients: Vec<_> = (0..40)
        .map(|ci| {
            thread::spawn(move || {
                let mut c = Conn::connect(port);
                let mut statuses = Vec::new();
                for ri in 0..5 {
                    let target = if ri % 2 == 0 { format!("/api/w/{ci}/{ri}") } else { format!("/echo/w/{ci}/{ri}") };
                    c.send(&request_bytes("GET", &target, &[], b""));
                    let r = c.read_final(false);
                    if r.status == 200 && ri % 2 == 0 {
                        assert_eq!(r.json()["target"], format!("/w/{ci}/{ri}"));
                    }
                    statuses.push(r.status);
                }
                statuses
            })
        })
        .collect();
    let mut total = 0;
    for (ci, t) in clients.into_iter().enumerate() {
        let statuses = t.join().unwrap_or_else(|_| panic!("client {ci} panicked"));
        assert!(statuses.iter().all(|s| *s == 200), "client {ci}: {statuses:?}");
        total += statuses.len();
    }
    assert_eq!(total, 200);
    assert_eq!(o.requests(), 120, "origin requests");
    let status = h.terminate(Duration::from_secs(15)).expect("no exit after SIGTERM");
    assert_eq!(status.code(), Some(0), "stderr:\n{}", h.stderr());
}

// ---------------------------------------------------------------- 9. drain

#[test]
fn sigterm_closes_idle_connections_and_finishes_in_flight_ones() {
    let o = Origin::start();
    let mut h = proxy(
        "edge-drain",
        &o.base_url(),
        "idle_timeout_ms = 60000\nheader_timeout_ms = 60000\n",
        "timeout_ms = 10000",
    );
    // An idle keep-alive connection that has served a request ...
    let mut idle = h.connect();
    idle.send(&request_bytes("GET", "/api/before", &[], b""));
    assert_eq!(idle.read_final(false).status, 200);
    // ... one that never sent anything ...
    let mut fresh = h.connect();
    // ... and one with a request in flight to a slow origin path.
    let port = h.port;
    let busy = thread::spawn(move || get(port, "/api/slow?ms=800"));
    assert!(
        eventually(GUARD, || o.targets().iter().any(|t| t.starts_with("/slow"))),
        "slow request never reached the origin"
    );
    signal(h.pid(), "TERM");

    assert!(eof_within(&mut idle, GUARD), "idle keep-alive connection not closed (EOF) on SIGTERM");
    assert!(eof_within(&mut fresh, GUARD), "fresh idle connection not closed (EOF) on SIGTERM");
    let r = busy.join().expect("client thread");
    assert_eq!(r.status, 200, "in-flight request cut off by the drain: {}", r.text());
    assert_eq!(r.text(), "slow");
    eprintln!("in-flight response Connection: {:?}", r.header("connection"));
    assert!(eventually(GUARD, || !port_open(port)), "still accepting connections while draining");
    let status = wait_exit(&mut h.child, Duration::from_secs(15)).expect("no exit after drain");
    assert_eq!(status.code(), Some(0), "stderr:\n{}", h.stderr());
}

// ---------------------------------------------------------------- 10. max_connections

#[test]
fn max_connections_pauses_accepting_instead_of_dropping() {
    let o = Origin::start();
    let mut h = proxy("edge-maxconn", &o.base_url(), "max_connections = 2\nidle_timeout_ms = 60000\n", "");
    let mut a = h.connect();
    let mut b = h.connect();
    for (name, c) in [("a", &mut a), ("b", &mut b)] {
        c.send(&request_bytes("GET", &format!("/api/{name}"), &[], b""));
        assert_eq!(c.read_final(false).status, 200, "connection {name}");
    }
    // The kernel completes the handshake, but the proxy does not take it yet.
    let mut third = h.connect();
    third.send(&request_bytes("GET", "/api/third", &[], b""));
    assert!(third.silent_for(Duration::from_millis(700)), "third connection served while two were open");
    assert!(!o.targets().iter().any(|t| t == "/third"), "{:?}", o.targets());

    drop(a);
    let r = third.read_final(false);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["target"], "/third");
    // b still works, and the limit still holds for a fourth connection.
    b.send(&request_bytes("GET", "/api/b2", &[], b""));
    assert_eq!(b.read_final(false).status, 200);
    let mut fourth = h.connect();
    fourth.send(&request_bytes("GET", "/api/fourth", &[], b""));
    assert!(fourth.silent_for(Duration::from_millis(500)), "fourth connection served while two were open");
    drop(third);
    assert_eq!(fourth.read_final(false).status, 200);
    assert!(h.alive(), "stderr:\n{}", h.stderr());
}
