//! The process: logs to stderr, and SIGTERM drains in-flight work and exits 0.

mod common;

use common::origin::Origin;
use common::*;
use std::thread;
use std::time::Duration;

#[test]
fn logs_requests_to_stderr_and_exits_0_on_sigterm() {
    let port = free_port();
    let cfg = format!("{}{}", base_config(port, ""), echo_pipeline());
    let mut h = Harmony::start("sigterm", &cfg, port);
    assert_eq!(get(port, "/echo/logged-path").status, 200);
    assert!(
        eventually(Duration::from_secs(10), || h.stderr().contains("/echo/logged-path")),
        "no access log line for the request; stderr:\n{}",
        h.stderr()
    );
    let status = h.terminate(Duration::from_secs(15)).expect("harmony did not exit after SIGTERM");
    assert_eq!(status.code(), Some(0), "stderr:\n{}", h.stderr());
}

#[test]
fn sigterm_lets_an_in_flight_request_finish() {
    let o = Origin::start();
    let port = free_port();
    let cfg = format!("{}{}", base_config(port, ""), api_pipeline(&o.base_url(), &[], "timeout_ms = 10000"));
    let mut h = Harmony::start("drain", &cfg, port);
    let client = thread::spawn(move || get(port, "/api/slow?ms=1500"));
    // The request has reached the origin: it is in flight.
    assert!(eventually(Duration::from_secs(10), || o.requests() == 1));
    signal(h.pid(), "TERM");
    let r = client.join().expect("client thread");
    assert_eq!(r.status, 200, "in-flight request cut off by SIGTERM: {}", r.text());
    assert_eq!(r.text(), "slow");
    let status = wait_exit(&mut h.child, Duration::from_secs(15)).expect("no exit after drain");
    assert_eq!(status.code(), Some(0), "stderr:\n{}", h.stderr());
}
