//! The management API: the shape of every endpoint, the bearer token (inline
//! and from a file), 405/404, and the Prometheus counters moving with the
//! traffic, upstream failures, reloads and Lua failures they count.

mod admin;
mod common;

use admin::*;
use common::origin::Origin;
use common::*;
use serde_json::Value;

/// `/api` to `base_url`, `/echo`, `/down` to a closed port, management on
/// `default`; `proxy_extra` goes into `[proxy]`, `mgmt_extra` into `[management]`.
fn start(tag: &str, base_url: &str, proxy_extra: &str, mgmt_extra: &str, files: &[(&str, &str)]) -> Proxy {
    let port = free_port();
    let down = format!("http://127.0.0.1:{}", closed_port());
    let main = format!(
        "{}{}{}{}{}",
        base_config(port, &format!("scripts_path = \"scripts\"\nwatch = false\n{proxy_extra}")),
        management(mgmt_extra),
        api_pipeline(base_url, &[], ""),
        echo_pipeline(),
        api_pipeline(&down, &[], "").replace("api", "down").replace("origin", "down_be")
    );
    Proxy::start(tag, port, &main, files)
}

fn json_ok(r: &Response) -> Value {
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    r.json()
}

#[test]
fn every_endpoint_has_its_documented_shape() {
    let o = Origin::start();
    let p = start("mg-shape", &o.base_url(), "", "", &[]);

    let v = json_ok(&p.admin("GET", "/admin/info"));
    assert_eq!(v["name"], "harmony", "{v}");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"), "{v}");
    assert_eq!(v["gateway_id"], "test-gw", "{v}");
    assert!(v["uptime_seconds"].as_f64().is_some_and(|u| (0.0..60.0).contains(&u)), "{v}");
    assert_eq!(v["workers"], 1, "{v}");

    let v = json_ok(&p.admin("GET", "/admin/status"));
    assert_eq!(v["generation"], 1, "{v}");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let loaded = v["loaded_at"].as_f64().unwrap_or_else(|| panic!("loaded_at: {v}"));
    assert!(loaded <= now + 1.0 && loaded > now - 60.0, "loaded_at {loaded} vs now {now}");
    assert!(v["last_reload"].is_null(), "no reload yet: {v}");
    assert_eq!(v["reloads_ok"], 0, "{v}");
    assert_eq!(v["reloads_failed"], 0, "{v}");

    let v = json_ok(&p.admin("GET", "/admin/pipelines"));
    assert_eq!(v["generation"], 1, "{v}");
    let pipes = v["pipelines"].as_array().unwrap_or_else(|| panic!("{v}"));
    let mut names: Vec<&str> = pipes.iter().map(|p| p["name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["api", "down", "echo"], "{v}");
    let api = pipes.iter().find(|p| p["name"] == "api").unwrap();
    assert_eq!(api["middleware"], serde_json::json!([]), "{api}");
    let be = &api["backends"][0];
    assert_eq!(be["name"], "origin", "{api}");
    assert_eq!(be["service"], "http", "{api}");
    assert_eq!(be["targets"], serde_json::json!([format!("127.0.0.1:{}", o.port)]), "{api}");
    assert_eq!(be["timeout_ms"], 2000, "{api}");
    let echo = pipes.iter().find(|p| p["name"] == "echo").unwrap();
    assert_eq!(echo["backends"][0]["service"], "echo", "{echo}");

    let v = json_ok(&p.admin("GET", "/admin/routes"));
    assert_eq!(v["generation"], 1, "{v}");
    let routes = v["routes"].as_array().unwrap_or_else(|| panic!("{v}"));
    assert_eq!(routes.len(), 3, "{v}");
    let r = routes.iter().find(|r| r["pipeline"] == "api").unwrap_or_else(|| panic!("{v}"));
    assert_eq!(r["network"], "default", "{r}");
    assert_eq!(r["listen"], format!("127.0.0.1:{}", p.port()), "{r}");
    assert_eq!(r["path_prefix"], "/api", "{r}");
    assert_eq!(r["endpoint"], "api_in", "{r}");

    let r = p.admin("GET", "/admin/metrics");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap_or("").starts_with("text/plain"), "{:?}", r.headers);
    let m = r.text();
    for (name, kind) in [
        ("harmony_requests_total", "counter"),
        ("harmony_request_duration_seconds", "histogram"),
        ("harmony_upstream_errors_total", "counter"),
        ("harmony_lua_errors_total", "counter"),
        ("harmony_lua_budget_kills_total", "counter"),
        ("harmony_reloads_ok_total", "counter"),
        ("harmony_reloads_failed_total", "counter"),
        ("harmony_open_connections", "gauge"),
        ("harmony_generation", "gauge"),
    ] {
        assert!(m.contains(&format!("# TYPE {name} {kind}\n")), "no TYPE line for {name}:\n{m}");
    }
    assert_eq!(metric(&m, "harmony_generation"), 1.0, "{m}");
    assert!(m.contains("harmony_request_duration_seconds_bucket{le=\"+Inf\"}"), "{m}");
    // a trailing slash is the same endpoint
    json_ok(&p.admin("GET", "/admin/info/"));
}

#[test]
fn wrong_method_is_405_and_unknown_path_is_404() {
    let p = start("mg-405", "http://127.0.0.1:9", "", "", &[]);
    for path in ["/admin/info", "/admin/status", "/admin/pipelines", "/admin/routes", "/admin/metrics"] {
        let r = p.admin("POST", path);
        assert_eq!(r.status, 405, "POST {path}: {}", r.text());
        assert_eq!(r.header("allow"), Some("GET"), "POST {path}");
        assert_eq!(p.admin("DELETE", path).status, 405, "DELETE {path}");
    }
    let r = p.admin("GET", "/admin/reload");
    assert_eq!(r.status, 405, "{}", r.text());
    assert_eq!(r.header("allow"), Some("POST"));
    for path in ["/admin/nope", "/admin", "/admin/", "/admin/info/x"] {
        let r = p.admin("GET", path);
        assert_eq!(r.status, 404, "GET {path}: {}", r.text());
        assert_eq!(r.json()["error"], "not_found", "{path}");
    }
    // /adminx is not under the base path: it is routed like any other path (no pipeline: 404)
    assert_eq!(p.get("/adminx/info").status, 404);
    assert_eq!(p.status()["reloads_ok"], 0, "a GET /admin/reload must not reload");
}

fn assert_unauthorized(r: &Response, what: &str) {
    assert_eq!(r.status, 401, "{what}: {}", r.text());
    assert_eq!(r.header("www-authenticate"), Some("Bearer"), "{what}: {:?}", r.headers);
    r.assert_error(401);
}

#[test]
fn a_token_is_required_when_configured() {
    let p = start("mg-token", "http://127.0.0.1:9", "", "token = \"s3cret-token\"", &[]);
    let port = p.port();
    for path in ["/admin/info", "/admin/status", "/admin/pipelines", "/admin/routes", "/admin/metrics", "/admin/x"] {
        assert_unauthorized(&admin(port, "GET", path, None), &format!("{path} without a token"));
        assert_unauthorized(&admin(port, "GET", path, Some("wrong")), &format!("{path} wrong token"));
        assert_unauthorized(&admin(port, "GET", path, Some("s3cret-token2")), &format!("{path} longer token"));
        assert_unauthorized(&admin(port, "GET", path, Some("s3cret-toke")), &format!("{path} prefix of token"));
    }
    let r = request(port, "GET", "/admin/info", &[("Authorization", "Basic s3cret-token")], b"");
    assert_unauthorized(&r, "Basic scheme");
    for path in ["/admin/info", "/admin/status", "/admin/pipelines", "/admin/routes", "/admin/metrics"] {
        let r = admin(port, "GET", path, Some("s3cret-token"));
        assert_eq!(r.status, 200, "{path}: {}", r.text());
    }
    assert_eq!(admin(port, "GET", "/admin/x", Some("s3cret-token")).status, 404);
    assert_eq!(admin(port, "POST", "/admin/info", Some("s3cret-token")).status, 405);
    // an unauthorised reload does nothing; an authorised one reloads
    assert_unauthorized(&admin(port, "POST", "/admin/reload", None), "reload without token");
    let s = admin(port, "GET", "/admin/status", Some("s3cret-token")).json();
    assert_eq!((s["generation"].as_u64(), s["reloads_ok"].as_u64()), (Some(1), Some(0)), "{s}");
    let r = admin(port, "POST", "/admin/reload", Some("s3cret-token"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["generation"], 2);
    // the pipelines are not behind the token
    assert_eq!(p.get("/echo/x").status, 200);
}

#[test]
fn token_file_is_read_relative_to_the_main_file() {
    let files = [("secrets/token.txt", "from-a-file\n")];
    let p = start("mg-tokfile", "http://127.0.0.1:9", "", "token_file = \"secrets/token.txt\"", &files);
    assert_unauthorized(&admin(p.port(), "GET", "/admin/info", None), "no token");
    assert_unauthorized(&admin(p.port(), "GET", "/admin/info", Some("wrong")), "wrong");
    let r = admin(p.port(), "GET", "/admin/info", Some("from-a-file"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["gateway_id"], "test-gw");
}

#[test]
fn request_upstream_error_and_connection_metrics_move() {
    let o = Origin::start();
    let p = start("mg-reqs", &o.base_url(), "", "", &[]);
    let ok = "harmony_requests_total{pipeline=\"api\",status=\"200\"}";
    let bad = "harmony_requests_total{pipeline=\"down\",status=\"502\"}";
    let m0 = p.metrics();
    for _ in 0..3 {
        assert_eq!(p.get("/api/headers").status, 200);
    }
    let m1 = p.metrics();
    assert_eq!(metric(&m1, ok) - metric(&m0, ok), 3.0, "{m1}");
    assert_eq!(metric(&m1, "harmony_upstream_errors_total"), metric(&m0, "harmony_upstream_errors_total"));
    let count = "harmony_request_duration_seconds_count";
    assert!(metric(&m1, count) - metric(&m0, count) >= 3.0, "{m1}");

    p.get("/down/x").assert_error(502);
    let m2 = p.metrics();
    assert_eq!(metric(&m2, bad) - metric(&m1, bad), 1.0, "{m2}");
    assert_eq!(metric(&m2, "harmony_upstream_errors_total") - metric(&m1, "harmony_upstream_errors_total"), 1.0);
    assert_eq!(metric(&m2, ok), metric(&m1, ok), "{m2}");
    // histogram buckets are cumulative and end at the count
    let inf = metric(&m2, "harmony_request_duration_seconds_bucket{le=\"+Inf\"}");
    assert_eq!(inf, metric(&m2, count), "{m2}");
    assert!(metric(&m2, "harmony_request_duration_seconds_bucket{le=\"0.001\"}") <= inf);

    // open connections: two idle clients are counted while they stay open.
    // The clients of the requests above may still be closing: wait until
    // the gauge has settled at one (the management API shares the proxy's
    // network here, so the connection asking is counted), so the baseline
    // is not one that is about to fall.
    let mut before = 0.0;
    let settled = eventually(RELOAD_WAIT, || {
        before = metric(&p.metrics(), "harmony_open_connections");
        before == 1.0
    });
    assert!(settled, "open_connections stayed at {before} with only the asking client connected");
    let held = [p.h.connect(), p.h.connect()];
    let mut now = 0.0;
    let counted = eventually(RELOAD_WAIT, || {
        now = metric(&p.metrics(), "harmony_open_connections");
        now >= before + 2.0
    });
    assert!(counted, "open_connections {now}, was {before} before opening 2");
    drop(held);
    let released = eventually(RELOAD_WAIT, || metric(&p.metrics(), "harmony_open_connections") <= before);
    assert!(released, "open_connections did not fall back to {before}");
}

#[test]
fn reload_counters_and_generation_move() {
    let o = Origin::start();
    let p = start("mg-reloads", &o.base_url(), "", "", &[]);
    let m = p.metrics();
    assert_eq!(metric(&m, "harmony_reloads_ok_total"), 0.0, "{m}");
    assert_eq!(metric(&m, "harmony_reloads_failed_total"), 0.0, "{m}");
    assert_eq!(p.post_reload(), (200, serde_json::json!({"ok": true, "generation": 2, "errors": []})));
    let m = p.metrics();
    assert_eq!(metric(&m, "harmony_reloads_ok_total"), 1.0, "{m}");
    assert_eq!(metric(&m, "harmony_generation"), 2.0, "{m}");
    p.write("pipelines/broken.toml", "[pipelines.x\n");
    let (st, v) = p.post_reload();
    assert_eq!((st, &v["ok"], &v["generation"]), (422, &Value::Bool(false), &Value::from(2)), "{v}");
    let m = p.metrics();
    assert_eq!(metric(&m, "harmony_reloads_ok_total"), 1.0, "{m}");
    assert_eq!(metric(&m, "harmony_reloads_failed_total"), 1.0, "{m}");
    assert_eq!(metric(&m, "harmony_generation"), 2.0, "{m}");
    let s = p.status();
    assert_eq!((s["reloads_ok"].as_u64(), s["reloads_failed"].as_u64()), (Some(1), Some(1)), "{s}");
    std::fs::remove_file(p.dir.join("pipelines/broken.toml")).unwrap();
    p.sighup();
    p.wait_generation_above(2);
    assert_eq!(metric(&p.metrics(), "harmony_reloads_ok_total"), 2.0);
    // the info/pipelines/routes generation follows too
    assert_eq!(p.admin("GET", "/admin/pipelines").json()["generation"], 3);
    assert_eq!(p.admin("GET", "/admin/routes").json()["generation"], 3);
}

/// `/lua` answered by echo through the lua middleware `m` running `script`.
fn lua_proxy(tag: &str, script: &str, proxy_extra: &str) -> Proxy {
    let pipe = "\n[pipelines.lua]\nnetworks = [\"default\"]\nendpoints = [\"lua_in\"]\nmiddleware = [\"m\"]\n\
                backends = [\"echo_be\"]\n\n[endpoints.lua_in]\nservice = \"http\"\noptions = { path_prefix = \"/lua\" }\n\n\
                [middleware.m]\ntype = \"lua\"\noptions = { script = \"m.lua\" }\n";
    start(tag, "http://127.0.0.1:9", proxy_extra, "", &[("scripts/m.lua", script), ("pipelines/lua.toml", pipe)])
}

#[test]
fn lua_error_counter_moves_after_a_failing_script() {
    let script =
        "return { on_request = function(req, ctx)\n  if req.path:find(\"boom\") then error(\"boom\") end\nend }\n";
    let p = lua_proxy("mg-luaerr", script, "");
    let m0 = p.metrics();
    assert_eq!(p.get("/lua/fine").status, 200);
    assert_eq!(p.get("/lua/boom").assert_error(500)["error"], "script_error");
    p.log_line(&["boom"]);
    let m1 = p.metrics();
    let st = "harmony_requests_total{pipeline=\"lua\",status=\"500\"}";
    assert_eq!(metric(&m1, st) - metric(&m0, st), 1.0, "{m1}");
    let e = "harmony_lua_errors_total";
    assert_eq!(metric(&m1, e) - metric(&m0, e), 1.0, "lua_errors_total after one failing hook:\n{m1}");
}

#[test]
fn lua_budget_kill_counter_moves_after_an_endless_loop() {
    let script =
        "return { on_request = function(req, ctx)\n  if req.path:find(\"spin\") then while true do end end\nend }\n";
    let p = lua_proxy("mg-luakill", script, "lua_max_instructions = 100000\n");
    let m0 = p.metrics();
    assert_eq!(p.get("/lua/fine").status, 200);
    assert_eq!(p.get("/lua/spin").assert_error(500)["error"], "script_error");
    // the worker survived the loop
    assert_eq!(p.get("/lua/fine").status, 200);
    let m1 = p.metrics();
    let k = "harmony_lua_budget_kills_total";
    assert_eq!(metric(&m1, k) - metric(&m0, k), 1.0, "lua_budget_kills_total after one endless loop:\n{m1}");
}
