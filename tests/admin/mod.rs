//! Helpers shared by tests/reload.rs and tests/management.rs: a harmony in a
//! temp dir whose files the test rewrites (main file, pipelines/, scripts/),
//! the management API client, and Prometheus text parsing.
#![allow(dead_code)]

use crate::common::*;
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

/// How long a reload may take to show up (a failure guard, not a timing claim).
pub const RELOAD_WAIT: Duration = Duration::from_secs(10);

/// `[management]` on network `default` under `/admin`; `extra` adds lines (token, ...).
pub fn management(extra: &str) -> String {
    format!("\n[management]\nenabled = true\nnetwork = \"default\"\nbase_path = \"admin\"\n{extra}\n")
}

/// A Lua script whose `on_response` sets `x-version` to `v` (a string literal
/// in the script itself, on line 2).
pub fn version_script(v: &str) -> String {
    format!(
        "local V = \"{v}\"\nreturn {{\n  on_response = function(res, ctx) res.headers[\"x-version\"] = V end,\n}}\n"
    )
}

/// `/api` to `base_url` through the lua middleware `ver` (script `v.lua`)
/// and a `headers` middleware setting `x-cfg: cfg` on responses.
pub fn api_pipeline_file(base_url: &str, cfg: &str) -> String {
    format!(
        r#"[pipelines.api]
networks = ["default"]
endpoints = ["api_in"]
middleware = ["ver", "tag"]
backends = ["origin"]

[endpoints.api_in]
service = "http"
options = {{ path_prefix = "/api" }}

[middleware.ver]
type = "lua"
options = {{ script = "v.lua" }}

[middleware.tag]
type = "headers"
options = {{ response_set = {{ "x-cfg" = "{cfg}" }} }}

[backends.origin]
service = "http"
options = {{ base_url = "{base_url}", timeout_ms = 5000 }}
"#
    )
}

/// A running harmony plus the directory holding its files.
/// Field order matters: the process is stopped before the dir is removed.
pub struct Proxy {
    pub h: Harmony,
    pub dir: TempDir,
    pub cfg: PathBuf,
}

impl Proxy {
    /// Main file `main` (which must bind `port`), plus files (relative path, text)
    /// such as `pipelines/api.toml` or `scripts/v.lua`.
    /// Returns once the reload coordinator runs (see `start_listening`).
    pub fn start(tag: &str, port: u16, main: &str, files: &[(&str, &str)]) -> Proxy {
        let p = Proxy::start_listening(tag, port, main, files);
        // The file watcher takes its first look only after start-up; an edit
        // made before that is never loaded (see reload.rs, edit_during_start_up).
        p.log_line(&["harmony 'test-gw' started with"]);
        p
    }

    /// Returns as soon as the port accepts connections.
    pub fn start_listening(tag: &str, port: u16, main: &str, files: &[(&str, &str)]) -> Proxy {
        let (dir, cfg) = config_dir(tag, main);
        std::fs::create_dir_all(dir.join("scripts")).unwrap();
        for (name, text) in files {
            dir.write(name, text.as_bytes());
        }
        let mut h = Harmony::spawn(&cfg, &dir.path, port);
        h.wait_ready();
        Proxy { h, dir, cfg }
    }

    pub fn port(&self) -> u16 {
        self.h.port
    }

    pub fn write(&self, name: &str, text: &str) {
        self.dir.write(name, text.as_bytes());
    }

    /// Replace a file atomically (write a temp file, rename it over): under
    /// heavy load an in-place write can stall between truncation and data
    /// longer than two watcher looks, and an empty pipeline file is valid.
    pub fn replace(&self, name: &str, text: &str) {
        let tmp = format!("{name}.tmp");
        self.write(&tmp, text);
        std::fs::rename(self.dir.join(&tmp), self.dir.join(name)).unwrap();
    }

    pub fn get(&self, path: &str) -> Response {
        get(self.port(), path)
    }

    pub fn admin(&self, method: &str, path: &str) -> Response {
        admin(self.port(), method, path, None)
    }

    pub fn status(&self) -> Value {
        let r = self.admin("GET", "/admin/status");
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
    }

    pub fn generation(&self) -> u64 {
        self.status()["generation"].as_u64().expect("status.generation")
    }

    /// POST /admin/reload: (status, body).
    pub fn post_reload(&self) -> (u16, Value) {
        let r = self.admin("POST", "/admin/reload");
        (r.status, r.json())
    }

    pub fn sighup(&self) {
        signal(self.h.pid(), "HUP");
    }

    /// Wait until status.generation > `than`; returns it.
    pub fn wait_generation_above(&self, than: u64) -> u64 {
        let mut g = 0;
        let ok = eventually(RELOAD_WAIT, || {
            g = self.generation();
            g > than
        });
        assert!(ok, "generation stayed at {g} (waiting for > {than}); status: {}", self.status());
        g
    }

    /// Wait until status.reloads_failed reaches `n`; returns the status.
    pub fn wait_failed(&self, n: u64) -> Value {
        let mut s = Value::Null;
        let ok = eventually(RELOAD_WAIT, || {
            s = self.status();
            s["reloads_failed"].as_u64() >= Some(n)
        });
        assert!(ok, "reloads_failed did not reach {n}: {s}");
        s
    }

    /// Wait until a stderr line contains every needle; returns it.
    pub fn log_line(&self, needles: &[&str]) -> String {
        let mut found = None;
        let ok = eventually(Duration::from_secs(5), || {
            found = self.h.stderr().lines().find(|l| needles.iter().all(|n| l.contains(n))).map(str::to_string);
            found.is_some()
        });
        assert!(ok, "no log line contains all of {needles:?}; stderr:\n{}", self.h.stderr());
        found.unwrap()
    }

    pub fn metrics(&self) -> String {
        let r = self.admin("GET", "/admin/metrics");
        assert_eq!(r.status, 200, "{}", r.text());
        r.text()
    }
}

/// One management request with an optional bearer token.
pub fn admin(port: u16, method: &str, path: &str, token: Option<&str>) -> Response {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    request(port, method, path, &headers, b"")
}

/// The value of the sample `series` (e.g. `harmony_requests_total{pipeline="api",status="200"}`
/// or `harmony_generation`) in Prometheus text; 0 when absent.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map(|v| v.trim().parse().unwrap_or_else(|_| panic!("bad value for {series}: {v:?}")))
        .unwrap_or(0.0)
}

/// Every error of a reload answer / last_reload as strings.
pub fn errors(v: &Value) -> Vec<String> {
    v["errors"].as_array().unwrap_or_else(|| panic!("no errors array: {v}")).iter().map(|e| e.to_string()).collect()
}
