//! Helpers for the Lua middleware tests: config text for `lua` middleware,
//! pipelines with several backends, and a proxy whose `scripts_path` is
//! either the repository's `scripts/` or a temp dir of ad-hoc scripts.

use super::{base_config, config_dir, Harmony};
use serde_json::Value;
use std::fs;
use std::path::PathBuf;

/// The repository's shipped scripts.
pub fn shipped_scripts() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts")
}

/// A TOML basic string.
pub fn toml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// `[middleware.NAME]` of type lua; `options` are extra lines of
/// `[middleware.NAME.options]` (e.g. `burst = 3`).
pub fn lua_mw(name: &str, script: &str, options: &str) -> String {
    format!(
        "\n[middleware.{name}]\ntype = \"lua\"\n\n[middleware.{name}.options]\nscript = {}\n{options}\n",
        toml_str(script)
    )
}

/// `[pipelines.NAME]` on the default network with an endpoint `NAME_in` at `prefix`.
pub fn pipeline(name: &str, prefix: &str, middleware: &[&str], backends: &[&str]) -> String {
    let list = |v: &[&str]| v.iter().map(|m| format!("\"{m}\"")).collect::<Vec<_>>().join(", ");
    format!(
        r#"
[pipelines.{name}]
networks = ["default"]
endpoints = ["{name}_in"]
middleware = [{}]
backends = [{}]

[endpoints.{name}_in]
service = "http"
options = {{ path_prefix = "{prefix}" }}
"#,
        list(middleware),
        list(backends)
    )
}

/// `[backends.NAME]` to an HTTP origin.
pub fn http_backend(name: &str, base_url: &str) -> String {
    format!("\n[backends.{name}]\nservice = \"http\"\noptions = {{ base_url = \"{base_url}\", timeout_ms = 5000 }}\n")
}

/// `[backends.NAME]`: the built-in echo backend.
pub fn echo_backend(name: &str) -> String {
    format!("\n[backends.{name}]\nservice = \"echo\"\n")
}

/// Start harmony with the shipped `scripts/` as `proxy.scripts_path`.
/// `proxy_extra` goes into `[proxy]`, `rest` after it (pipelines etc.).
pub fn start_shipped(tag: &str, proxy_extra: &str, rest: &str) -> Harmony {
    let port = super::free_port();
    let extra = format!("scripts_path = {}\n{proxy_extra}", toml_str(shipped_scripts().to_str().unwrap()));
    Harmony::start(tag, &format!("{}{rest}", base_config(port, &extra)), port)
}

/// Start harmony with `scripts` (name, source) written to a temp
/// `scripts/` dir next to the config, which is `proxy.scripts_path`.
pub fn start_with_scripts(tag: &str, scripts: &[(&str, &str)], proxy_extra: &str, rest: &str) -> Harmony {
    let port = super::free_port();
    let extra = format!("scripts_path = \"scripts\"\n{proxy_extra}");
    let (dir, cfg) = config_dir(tag, &format!("{}{rest}", base_config(port, &extra)));
    for (name, src) in scripts {
        dir.write(&format!("scripts/{name}"), src.as_bytes());
    }
    fs::create_dir_all(dir.join("scripts")).unwrap();
    let mut h = Harmony::spawn(&cfg, &dir.path, port);
    h._dir = Some(dir);
    h.wait_ready();
    h
}

/// The value of a header the test origin received (from its `/headers` JSON).
pub fn seen<'a>(v: &'a Value, name: &str) -> Option<&'a str> {
    v["headers"]
        .as_array()
        .unwrap_or_else(|| panic!("not an origin /headers answer: {v}"))
        .iter()
        .find(|p| p[0].as_str().unwrap().eq_ignore_ascii_case(name))
        .map(|p| p[1].as_str().unwrap())
}

/// Every value of a header the test origin received.
pub fn seen_all<'a>(v: &'a Value, name: &str) -> Vec<&'a str> {
    v["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p[0].as_str().unwrap().eq_ignore_ascii_case(name))
        .map(|p| p[1].as_str().unwrap())
        .collect()
}

/// The error id of a fail-closed script error (and check its shape):
/// 500 JSON {"error":"script_error","detail":"... (error_id ID)","request_id"}
/// with the same id in `X-Error-Id`.
pub fn script_error_id(r: &super::Response) -> String {
    let v = r.assert_error(500);
    assert_eq!(v["error"], "script_error", "{v}");
    let id = r.header("x-error-id").unwrap_or_else(|| panic!("no X-Error-Id: {:?}", r.headers)).to_string();
    assert!(id.starts_with("lua-"), "{id}");
    let detail = v["detail"].as_str().unwrap();
    assert!(detail.contains(&format!("(error_id {id})")), "{detail} vs {id}");
    assert_eq!(Some(v["request_id"].as_str().unwrap()), r.header("x-request-id"), "{v}");
    id
}

/// The first stderr line of `h` containing `needle`, waiting for the log to be flushed.
pub fn log_line(h: &Harmony, needle: &str) -> String {
    let mut found = String::new();
    let ok = super::eventually(std::time::Duration::from_secs(5), || {
        match h.stderr().lines().find(|l| l.contains(needle)) {
            Some(l) => {
                found = l.to_string();
                true
            }
            None => false,
        }
    });
    assert!(ok, "no log line contains {needle:?}; stderr:\n{}", h.stderr());
    found
}
