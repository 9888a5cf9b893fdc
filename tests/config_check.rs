//! `harmony --check` and start-up report every config error as
//! "file:line: key: message"; the shipped default config works with curl.

mod common;

use common::*;
use std::path::PathBuf;
use std::time::Duration;

const RUN_LIMIT: Duration = Duration::from_secs(15);

fn good_config(port: u16) -> String {
    format!("{}{}", base_config(port, ""), echo_pipeline())
}

/// A config with five independent mistakes.
const BAD: &str = r#"[proxy]
id = "test-gw"
workers = 0

[network.default.http]
bind_address = "127.0.0.1"
bind_port = 70000

[pipelines.api]
networks = ["default"]
endpoints = ["missing_ep"]
middleware = ["m"]
backends = ["origin"]

[backends.origin]
service = "http"
options = { base_url = "ftp://nowhere.invalid/x" }

[middleware.m]
type = "no_such_type"
"#;

/// (key text the error names, first line, last line) of each mistake's table.
fn expected_errors() -> Vec<(&'static str, usize, usize)> {
    let line_of = |needle: &str| BAD.lines().position(|l| l.contains(needle)).unwrap() + 1;
    vec![
        ("workers", line_of("[proxy]"), line_of("workers")),
        ("bind_port", line_of("[network.default.http]"), line_of("bind_port")),
        ("endpoints", line_of("[pipelines.api]"), line_of("backends = [\"origin\"]")),
        ("base_url", line_of("[backends.origin]"), line_of("ftp://")),
        ("type", line_of("[middleware.m]"), line_of("no_such_type")),
    ]
}

/// Check that `stderr` has a "harmony.toml:LINE: ...KEY..." line for every mistake.
fn assert_reports_every_error(stderr: &str) {
    let lines: Vec<(usize, &str)> = stderr
        .lines()
        .filter_map(|l| {
            let rest = &l[l.find("harmony.toml:")? + "harmony.toml:".len()..];
            let (num, msg) = rest.split_once(':')?;
            Some((num.trim().parse().ok()?, msg))
        })
        .collect();
    for (key, first, last) in expected_errors() {
        assert!(
            lines.iter().any(|(n, msg)| (first..=last).contains(n) && msg.contains(key)),
            "no `harmony.toml:{first}..{last}: {key}: ...` error in stderr:\n{stderr}"
        );
    }
}

#[test]
fn check_accepts_a_good_config() {
    let (_dir, cfg) = config_dir("check-good", &good_config(free_port()));
    let (st, _out, err) = run_harmony(&["--check", "-c", cfg.to_str().unwrap()], RUN_LIMIT);
    assert_eq!(st.code(), Some(0), "stderr:\n{err}");
}

#[test]
fn check_lists_every_error_with_file_and_line() {
    let (_dir, cfg) = config_dir("check-bad", BAD);
    let (st, _out, err) = run_harmony(&["--check", "-c", cfg.to_str().unwrap()], RUN_LIMIT);
    assert_eq!(st.code(), Some(1), "stderr:\n{err}");
    assert_reports_every_error(&err);
}

#[test]
fn start_up_with_a_bad_config_fails_with_the_same_messages() {
    let (_dir, cfg) = config_dir("start-bad", BAD);
    let (st, _out, err) = run_harmony(&["-c", cfg.to_str().unwrap()], RUN_LIMIT);
    assert!(!st.success(), "harmony started with a bad config; stderr:\n{err}");
    assert_reports_every_error(&err);
}

#[test]
fn toml_syntax_error_names_file_and_line() {
    let text = "[proxy]\nid = \"x\"\n\n[network.default.http\nbind_port = 1\n";
    let (_dir, cfg) = config_dir("check-syntax", text);
    let (st, _out, err) = run_harmony(&["--check", "-c", cfg.to_str().unwrap()], RUN_LIMIT);
    assert_eq!(st.code(), Some(1), "stderr:\n{err}");
    assert!(err.contains("harmony.toml:4:") || err.contains("harmony.toml:5:"), "stderr:\n{err}");
}

#[test]
fn missing_config_file_fails() {
    let dir = TempDir::new("check-missing");
    let path = dir.join("nope.toml");
    let (st, _out, err) = run_harmony(&["--check", "-c", path.to_str().unwrap()], RUN_LIMIT);
    assert!(!st.success());
    assert!(err.contains("nope.toml"), "stderr:\n{err}");
}

fn shipped_config() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/harmony.toml")
}

#[test]
fn shipped_default_config_passes_check() {
    let cfg = shipped_config();
    let (st, _out, err) = run_harmony(&["--check", "-c", cfg.to_str().unwrap()], RUN_LIMIT);
    assert_eq!(st.code(), Some(0), "stderr:\n{err}");
}

#[test]
fn curl_against_the_shipped_default_config() {
    if port_open(8080) {
        eprintln!("SKIP: 127.0.0.1:8080 is busy; cannot start the default config");
        return;
    }
    if !have_curl() {
        eprintln!("SKIP: curl not installed (tests/run.sh installs it)");
        return;
    }
    let dir = TempDir::new("default-config");
    let mut h = Harmony::spawn(&shipped_config(), &dir.path, 8080);
    h.wait_ready();
    let (st, out, err) = curl(&["-sS", "-w", "\n%{http_code}", "http://127.0.0.1:8080/echo/hello"]);
    assert!(st.success(), "{err}");
    let text = String::from_utf8_lossy(&out);
    let (body, code) = text.rsplit_once('\n').unwrap();
    assert_eq!(code, "200", "{text}");
    let v: serde_json::Value = serde_json::from_str(body).expect("JSON from the echo endpoint");
    assert!(v["path"].as_str().unwrap_or("").contains("hello"), "{v}");
    assert_eq!(h.terminate(Duration::from_secs(10)).and_then(|s| s.code()), Some(0));
}
