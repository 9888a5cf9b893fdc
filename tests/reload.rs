//! Hot reload: SIGHUP, file edits and POST /admin/reload swap in a new
//! generation; a broken script or pipeline file leaves the old one serving
//! with the error (file:line) in the answer, the status and the log;
//! listeners are diffed; in-flight requests finish on their generation; and
//! 50 reloads under steady traffic fail no request and leak no memory.

mod admin;
mod common;

use admin::*;
use common::origin::Origin;
use common::*;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Main file: scripts in `scripts/`, management on `default`.
fn main_toml(port: u16, proxy_extra: &str) -> String {
    format!("{}{}", base_config(port, &format!("scripts_path = \"scripts\"\n{proxy_extra}")), management(""))
}

/// harmony with `/api` (x-version from scripts/v.lua, x-cfg from the pipeline file).
fn start(tag: &str, o: &Origin, proxy_extra: &str) -> Proxy {
    let port = free_port();
    let pipe = api_pipeline_file(&o.base_url(), "c1");
    let files = [("pipelines/api.toml", pipe.as_str()), ("scripts/v.lua", &version_script("1"))];
    Proxy::start(tag, port, &main_toml(port, proxy_extra), &files)
}

/// GET /api/headers answers 200 with x-version `v` and x-cfg `c`.
fn expect(p: &Proxy, v: &str, c: &str) {
    let r = p.get("/api/headers");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!((r.header("x-version"), r.header("x-cfg")), (Some(v), Some(c)), "{:?}", r.headers);
}

fn last_reload(p: &Proxy) -> serde_json::Value {
    p.status()["last_reload"].clone()
}

#[test]
fn sighup_reloads_script_and_pipeline_file() {
    let o = Origin::start();
    let p = start("rl-hup", &o, "watch = false\n");
    expect(&p, "1", "c1");
    p.write("scripts/v.lua", &version_script("2"));
    p.write("pipelines/api.toml", &api_pipeline_file(&o.base_url(), "c2"));
    expect(&p, "1", "c1"); // watch = false: nothing happens until asked
    p.sighup();
    assert_eq!(p.wait_generation_above(1), 2);
    expect(&p, "2", "c2");
    let l = last_reload(&p);
    assert_eq!((&l["trigger"], &l["ok"]), (&"SIGHUP".into(), &true.into()), "{l}");
    assert_eq!(l["errors"], serde_json::json!([]), "{l}");
    p.log_line(&["reload (SIGHUP) ok: generation 2"]);
}

#[test]
fn file_edits_reload_scripts_pipeline_files_new_files_and_the_main_file() {
    let o = Origin::start();
    let p = start("rl-watch", &o, "watch_interval_ms = 100\n");
    expect(&p, "1", "c1");
    p.write("scripts/v.lua", &version_script("2"));
    assert_eq!(p.wait_generation_above(1), 2);
    expect(&p, "2", "c1");
    assert_eq!(last_reload(&p)["trigger"], "file change");
    p.write("pipelines/api.toml", &api_pipeline_file(&o.base_url(), "c2"));
    assert_eq!(p.wait_generation_above(2), 3);
    expect(&p, "2", "c2");
    // a new file in pipelines/
    assert_eq!(p.get("/echo/x").status, 404);
    p.write("pipelines/echo.toml", &echo_pipeline());
    assert_eq!(p.wait_generation_above(3), 4);
    assert_eq!(p.get("/echo/x").status, 200);
    // the main file
    let main = std::fs::read_to_string(&p.cfg).unwrap().replace("id = \"test-gw\"", "id = \"gw-two\"");
    p.write("harmony.toml", &main);
    assert_eq!(p.wait_generation_above(4), 5);
    assert_eq!(p.admin("GET", "/admin/info").json()["gateway_id"], "gw-two");
    expect(&p, "2", "c2");
    assert_eq!(p.status()["reloads_ok"], 4);
}

#[test]
fn post_reload_answers_with_the_new_generation() {
    let o = Origin::start();
    let p = start("rl-post", &o, "watch = false\n");
    expect(&p, "1", "c1");
    p.write("scripts/v.lua", &version_script("2"));
    assert_eq!(p.post_reload(), (200, serde_json::json!({"ok": true, "generation": 2, "errors": []})));
    expect(&p, "2", "c1");
    assert_eq!(p.generation(), 2);
    assert_eq!(last_reload(&p)["trigger"], "management API");
    // a reload with nothing changed is still a new generation
    assert_eq!(p.post_reload().1["generation"], 3);
    expect(&p, "2", "c1");
}

#[test]
fn a_script_syntax_error_keeps_the_old_generation_until_fixed() {
    let o = Origin::start();
    let p = start("rl-luaerr", &o, "watch = false\n");
    // line 3 has one `end` too many
    let broken =
        "local V = \"2\"\nreturn {\n  on_response = function(res, ctx) res.headers[\"x-version\"] = V end end,\n}\n";
    p.write("scripts/v.lua", broken);
    let (st, v) = p.post_reload();
    assert_eq!(st, 422, "{v}");
    assert_eq!((&v["ok"], &v["generation"]), (&false.into(), &1.into()), "{v}");
    let errs = errors(&v);
    assert!(errs.iter().any(|e| e.contains("v.lua:3:")), "no v.lua:3: in {errs:?}");
    let l = last_reload(&p);
    assert_eq!((&l["ok"], &l["trigger"]), (&false.into(), &"management API".into()), "{l}");
    assert!(errors(&l).iter().any(|e| e.contains("v.lua:3:")), "{l}");
    assert_eq!(p.generation(), 1);
    p.log_line(&["reload (management API) failed, generation 1 keeps serving"]);
    p.log_line(&["v.lua:3:"]);
    expect(&p, "1", "c1");
    p.write("scripts/v.lua", &version_script("2"));
    assert_eq!(p.post_reload(), (200, serde_json::json!({"ok": true, "generation": 2, "errors": []})));
    expect(&p, "2", "c1");
    let s = p.status();
    assert_eq!((s["reloads_ok"].as_u64(), s["reloads_failed"].as_u64()), (Some(1), Some(1)), "{s}");
    assert_eq!(s["last_reload"]["ok"], true, "{s}");
}

#[test]
fn a_toml_error_in_a_pipeline_file_keeps_the_old_generation_until_fixed() {
    let o = Origin::start();
    let p = start("rl-tomlerr", &o, "watch_interval_ms = 100\n");
    let good = api_pipeline_file(&o.base_url(), "c2");
    let broken = good.replace("middleware = [\"ver\", \"tag\"]", "middleware = = [\"ver\", \"tag\"]");
    assert_eq!(broken.lines().nth(3), Some("middleware = = [\"ver\", \"tag\"]"), "line 4 is the broken one");
    p.write("pipelines/api.toml", &broken);
    // the watcher tries, fails, and says where
    let s = p.wait_failed(1);
    let l = &s["last_reload"];
    assert_eq!((&l["ok"], &l["trigger"]), (&false.into(), &"file change".into()), "{s}");
    assert!(errors(l).iter().any(|e| e.contains("pipelines/api.toml:4:")), "{s}");
    assert_eq!(s["generation"], 1, "{s}");
    p.log_line(&["reload (file change) failed, generation 1 keeps serving"]);
    p.log_line(&["pipelines/api.toml:4:"]);
    expect(&p, "1", "c1");
    // asking again gives the same answer
    let (st, v) = p.post_reload();
    assert_eq!((st, &v["generation"]), (422, &1.into()), "{v}");
    assert!(errors(&v).iter().any(|e| e.contains("pipelines/api.toml:4:")), "{v}");
    expect(&p, "1", "c1");
    p.write("pipelines/api.toml", &good);
    assert_eq!(p.wait_generation_above(1), 2);
    expect(&p, "1", "c2");
    assert_eq!(last_reload(&p)["ok"], true);
}

/// Main file with `/echo` on `default` and, if `extra` is set, also on network `extra` at that port.
fn listener_toml(port: u16, extra: Option<u16>) -> String {
    let (nets, more) = match extra {
        Some(e) => (
            "\"default\", \"extra\"",
            format!("\n[network.extra.http]\nbind_address = \"127.0.0.1\"\nbind_port = {e}\n"),
        ),
        None => ("\"default\"", String::new()),
    };
    format!(
        "{}{more}{}",
        main_toml(port, "watch = false\n"),
        echo_pipeline().replace("[\"default\"]", &format!("[{nets}]"))
    )
}

#[test]
fn listeners_are_diffed_kept_opened_and_closed() {
    let port = free_port();
    let extra = free_port();
    let p = Proxy::start("rl-listen", port, &listener_toml(port, None), &[]);
    let mut kept = p.h.connect();
    let mut on_kept = |what: &str| {
        kept.send(&request_bytes("GET", "/echo/kept", &[], b""));
        let r = kept.read_final(false);
        assert_eq!(r.status, 200, "kept-alive connection {what}: {}", r.text());
    };
    on_kept("before");
    assert!(!port_open(extra));

    p.write("harmony.toml", &listener_toml(port, Some(extra)));
    assert_eq!(p.post_reload().0, 200);
    assert_eq!(get(extra, "/echo/new").status, 200, "the new listener serves");
    let routes = p.admin("GET", "/admin/routes").json();
    assert!(
        routes["routes"].as_array().unwrap().iter().any(|r| r["listen"] == format!("127.0.0.1:{extra}")),
        "{routes}"
    );
    on_kept("after adding a listener");
    assert_eq!(p.get("/echo/fresh").status, 200);
    let mut on_extra = Conn::connect(extra); // kept alive across the removal
    on_extra.send(&request_bytes("GET", "/echo/x", &[], b""));
    assert_eq!(on_extra.read_final(false).status, 200);

    p.write("harmony.toml", &listener_toml(port, None));
    assert_eq!(p.post_reload().0, 200);
    let refused = TcpStream::connect(("127.0.0.1", extra)).map_err(|e| e.kind());
    assert_eq!(refused.err(), Some(std::io::ErrorKind::ConnectionRefused), "the removed listener is closed");
    on_kept("after removing a listener");
    assert_eq!(p.get("/echo/fresh").status, 200);
    // a connection accepted before the removal is still answered (its network is gone: 404)
    on_extra.send(&request_bytes("GET", "/echo/x", &[], b""));
    let r = on_extra.read_final(false);
    assert_eq!(r.status, 404, "{}", r.text());
    p.log_line(&[&format!("stopped listening on 127.0.0.1:{extra}")]);
}

#[test]
fn in_flight_requests_finish_on_the_generation_they_started_on() {
    let o = Origin::start();
    let p = start("rl-inflight", &o, "watch = false\n");
    let port = p.port();
    let slow = thread::spawn(move || get(port, "/api/slow?ms=800"));
    assert!(
        eventually(RELOAD_WAIT, || o.targets().iter().any(|t| t.starts_with("/slow"))),
        "slow request never arrived"
    );
    p.write("scripts/v.lua", &version_script("2"));
    p.write("pipelines/api.toml", &api_pipeline_file(&o.base_url(), "c2"));
    assert_eq!(p.post_reload(), (200, serde_json::json!({"ok": true, "generation": 2, "errors": []})));
    expect(&p, "2", "c2");
    let r = slow.join().expect("slow request");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "slow");
    assert_eq!((r.header("x-version"), r.header("x-cfg")), (Some("1"), Some("c1")), "{:?}", r.headers);
    expect(&p, "2", "c2");
}

/// One client thread: requests until `stop`, on one kept-alive connection or
/// a fresh connection each time; every answer must be a 200 that went
/// through both middleware. Counts requests in `served`.
struct Traffic {
    stop: AtomicBool,
    served: AtomicUsize,
    failures: Mutex<Vec<String>>,
}

fn traffic(port: u16, keep_alive: bool, post: bool, t: &Traffic) {
    let mut conn: Option<Conn> = None;
    while !t.stop.load(Ordering::SeqCst) {
        let n = t.served.fetch_add(1, Ordering::SeqCst) + 1;
        let (method, target, body) =
            if post { ("POST", "/api/echo-body", &b"steady body"[..]) } else { ("GET", "/api/headers", &b""[..]) };
        let one = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let c = conn.get_or_insert_with(|| Conn::connect(port));
            c.send(&request_bytes(method, target, &[], body));
            c.read_final(false)
        }));
        let fail = match &one {
            Err(e) => Some(format!("request {n}: connection error: {:?}", e.downcast_ref::<String>())),
            Ok(r) if r.status != 200 => Some(format!("request {n}: status {} {}", r.status, r.text())),
            Ok(r) if r.header("x-version").is_none() || r.header("x-cfg").is_none() => {
                Some(format!("request {n}: middleware missing: {:?}", r.headers))
            }
            Ok(r) if post && r.body != b"steady body" => Some(format!("request {n}: body {:?}", r.text())),
            Ok(r) if r.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close")) => {
                Some(format!("request {n}: the proxy closed a keep-alive connection"))
            }
            Ok(_) => None,
        };
        if let Some(f) = fail {
            t.failures.lock().unwrap().push(f);
            conn = None;
        }
        if !keep_alive {
            conn = None;
        }
    }
}

#[test]
fn fifty_reloads_under_steady_traffic_fail_no_request_and_leak_no_memory() {
    let started = Instant::now();
    let o = Origin::start();
    let p = start("rl-fifty", &o, "watch_interval_ms = 50\n");
    let t = Arc::new(Traffic {
        stop: AtomicBool::new(false),
        served: AtomicUsize::new(0),
        failures: Mutex::new(Vec::new()),
    });
    // the sequential keep-alive client, a second keep-alive POST client, two fresh-connection clients
    let clients: Vec<_> = [(true, false), (true, true), (false, false), (false, false)]
        .into_iter()
        .map(|(keep, post)| {
            let (port, t) = (p.port(), t.clone());
            thread::spawn(move || traffic(port, keep, post, &t))
        })
        .collect();

    // let buffers and the allocator settle under traffic before the first reload
    assert!(eventually(RELOAD_WAIT, || t.served.load(Ordering::SeqCst) >= 2000), "no steady traffic");
    let (mut version, mut cfg, mut generation) = ("1".to_string(), "c1".to_string(), p.generation());
    let mut rss_warm = 0;
    for i in 1..=50u32 {
        // alternate between a script change and a pipeline-file change
        if i % 2 == 1 {
            version = format!("v{i}");
            p.replace("scripts/v.lua", &version_script(&version));
        } else {
            cfg = format!("c{i}");
            p.replace("pipelines/api.toml", &api_pipeline_file(&o.base_url(), &cfg));
        }
        // and between the three triggers
        match i % 3 {
            0 => p.sighup(),
            1 => {} // the file watcher
            _ => {
                let (st, v) = p.post_reload();
                assert_eq!((st, &v["ok"]), (200, &true.into()), "reload {i}: {v}");
            }
        }
        generation = p.wait_generation_above(generation);
        if i % 3 == 0 {
            // the watcher may have been quicker: let the SIGHUP reload finish too
            // before the next edit
            let done = eventually(RELOAD_WAIT, || last_reload(&p)["trigger"] == "SIGHUP");
            assert!(done, "reload {i}: the SIGHUP reload never ran: {}", p.status());
            generation = p.generation();
        }
        expect(&p, &version, &cfg);
        if i == 5 {
            rss_warm = p.h.rss_kb();
        }
        let f = t.failures.lock().unwrap();
        assert!(f.is_empty(), "after reload {i}: {} failed request(s): {:?}", f.len(), &f[..f.len().min(5)]);
    }
    let rss_end = p.h.rss_kb();
    t.stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().expect("client thread");
    }
    let f = t.failures.lock().unwrap();
    let total = t.served.load(Ordering::SeqCst);
    let s = p.status();
    println!(
        "50 reloads (generation {generation}) in {:.1} s with {total} requests; VmRSS after 5 reloads {rss_warm} KiB, after 50 {rss_end} KiB ({:+.1}%)",
        started.elapsed().as_secs_f64(),
        (rss_end as f64 - rss_warm as f64) * 100.0 / rss_warm as f64
    );
    assert!(f.is_empty(), "{} failed request(s): {:?}", f.len(), &f[..f.len().min(5)]);
    assert!(total >= 200, "traffic was not steady: only {total} requests");
    assert_eq!(s["reloads_failed"], 0, "{s}");
    assert!(s["reloads_ok"].as_u64() >= Some(50), "{s}");
    assert!(rss_end <= rss_warm + rss_warm / 10, "VmRSS grew more than 10%: {rss_warm} -> {rss_end} KiB");
    assert!(rss_end + rss_warm / 10 >= rss_warm, "VmRSS shrank more than 10%: {rss_warm} -> {rss_end} KiB");
    assert!(started.elapsed() < Duration::from_secs(60), "took {:?}", started.elapsed());
}

// ------------------------------------------------------------ races with slow builds

/// Like `version_script`, but `init` busy-waits one second, so every build of
/// a generation (start-up check, worker start, reload check, worker swap) is slow.
fn slow_script(v: &str) -> String {
    format!(
        "local V = \"{v}\"\nreturn {{\n  init = function(opts) local t = harmony.now() + 1.0 while harmony.now() < t do end end,\n  \
         on_response = function(res, ctx) res.headers[\"x-version\"] = V end,\n}}\n"
    )
}

fn start_slow(tag: &str, o: &Origin, wait_started: bool) -> Proxy {
    let port = free_port();
    let pipe = api_pipeline_file(&o.base_url(), "c1");
    let files = [("pipelines/api.toml", pipe.as_str()), ("scripts/v.lua", &slow_script("1"))];
    let main = main_toml(port, "watch_interval_ms = 50\nlua_max_instructions = 100_000_000_000\n");
    if wait_started {
        Proxy::start(tag, port, &main, &files)
    } else {
        Proxy::start_listening(tag, port, &main, &files)
    }
}

#[test]
fn an_edit_during_start_up_is_not_lost() {
    let o = Origin::start();
    // the port opens before the workers have built their Lua (one second here)
    let p = start_slow("rl-edit-start", &o, false);
    p.write("pipelines/api.toml", &api_pipeline_file(&o.base_url(), "c2"));
    let ok = eventually(RELOAD_WAIT, || p.get("/api/headers").header("x-cfg") == Some("c2"));
    assert!(ok, "the edit was never loaded; status: {}", p.status());
}

#[test]
fn an_edit_during_a_reload_is_not_lost() {
    let o = Origin::start();
    let p = start_slow("rl-edit-reload", &o, true);
    p.sighup(); // reads the files at once, then spends a second in init
    thread::sleep(Duration::from_millis(300));
    p.write("pipelines/api.toml", &api_pipeline_file(&o.base_url(), "c2"));
    p.wait_generation_above(1);
    let ok = eventually(RELOAD_WAIT, || p.get("/api/headers").header("x-cfg") == Some("c2"));
    assert!(ok, "the edit was never loaded; status: {}", p.status());
}

#[test]
fn the_worker_runs_the_scripts_that_were_validated() {
    let o = Origin::start();
    let p = start_slow("rl-toctou", &o, true);
    p.sighup(); // the coordinator reads v.lua at once, then spends a second in init
    thread::sleep(Duration::from_millis(300));
    p.write("scripts/v.lua", "return {\n  on_response = function(res) end end\n}\n");
    // the files changed while the reload was being built: it is redone on
    // what is on disk now (a broken script), fails, and generation 1 keeps
    // serving; whatever happens, workers serve what status reports
    let done = eventually(RELOAD_WAIT, || p.status()["last_reload"]["ok"] == false);
    assert!(done, "the reload of the broken script never finished: {}", p.status());
    let g = p.status()["generation"].clone();
    let ok = eventually(RELOAD_WAIT, || p.admin("GET", "/admin/pipelines").json()["generation"] == g);
    assert!(
        ok,
        "status says generation {g} is loaded, the worker serves {}",
        p.admin("GET", "/admin/pipelines").json()["generation"]
    );
    expect(&p, "1", "c1");
}
