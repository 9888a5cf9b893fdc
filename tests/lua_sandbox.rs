//! The Lua sandbox through the running proxy: what a script must not do
//! (files, processes, modules outside scripts_path, bytecode, memory and CPU
//! exhaustion) fails that request closed with a 500 and an error id that is
//! in the log next to the Lua error, and the proxy keeps serving. Also
//! on_error = "continue", the body buffering limits, and script load errors.

mod common;

use common::lua::*;
use common::origin::Origin;
use common::*;
use std::time::Duration;

const ATTACKS: &str = r#"
-- each ?attack=NAME tries something the sandbox forbids
local attacks = {
  io = function() return io.open("/etc/passwd") end,
  os = function() return os.execute("id") end,
  require = function() return require("../x") end,
  bytecode = function() return assert(load("\27Lua\84\0\25\147\13\10\26\10")) end,
  memory = function() local s = string.rep("x", 64 * 1024 * 1024) return #s end,
  loop = function() while true do end end,
  error = function() error("plain script error") end,
}

return {
  on_request = function(req, ctx)
    local name = req.query.attack
    if attacks[name] then attacks[name]() end
    -- what the sandbox does allow
    req.headers["x-clock-ok"] = tostring(os.time() > 0 and os.clock() >= 0)
    req.headers["x-load-ok"] = tostring(load("return 40 + 2")())
    req.headers["x-require-ok"] = tostring(require("lib.util").twice(21))
  end,
  on_response = function(res, ctx)
    if res.headers["x-origin-port"] and ctx.vars.fail_late then error("late failure") end
  end,
}
"#;

const LATE: &str = r#"
return { on_request = function(req, ctx) ctx.vars.fail_late = req.headers["x-fail-late"] ~= nil end }
"#;

const UTIL: &str = "return { twice = function(x) return 2 * x end }";

fn sandbox(tag: &str) -> (Origin, Harmony) {
    let o = Origin::start();
    let rest = pipeline("api", "/api", &["attacks", "late"], &["origin"])
        + &pipeline("soft", "/soft", &["attacks_soft"], &["origin"])
        + &http_backend("origin", &o.base_url())
        + &lua_mw("attacks", "attacks.lua", "")
        + &lua_mw("late", "late.lua", "")
        + &lua_mw("attacks_soft", "attacks.lua", "on_error = \"continue\"");
    let scripts = [("attacks.lua", ATTACKS), ("late.lua", LATE), ("lib/util.lua", UTIL)];
    let h = start_with_scripts(tag, &scripts, "lua_max_instructions = 100000\n", &rest);
    (o, h)
}

#[test]
fn forbidden_things_fail_closed_with_an_error_id_in_the_log() {
    let (o, h) = sandbox("sbx-closed");
    let r = get(h.port, "/api/headers");
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(seen(&v, "x-clock-ok"), Some("true"));
    assert_eq!(seen(&v, "x-load-ok"), Some("42"));
    assert_eq!(seen(&v, "x-require-ok"), Some("42"));

    let cases = [
        ("io", "global 'io'"),
        ("os", "field 'execute'"),
        ("require", "names are dot-separated words"),
        ("bytecode", "binary chunk"),
        ("memory", "not enough memory"),
        ("loop", "instruction budget exceeded (100000 instructions)"),
        ("error", "plain script error"),
    ];
    let mut ids = Vec::new();
    for (attack, message) in cases {
        let r = get(h.port, &format!("/api/headers?attack={attack}"));
        let id = script_error_id(&r);
        let line = log_line(&h, &format!("error_id={id}"));
        assert!(line.contains(message), "{attack}: {line}");
        assert!(line.contains("ERROR") && line.contains("attacks.lua"), "{line}");
        assert!(line.contains(&format!("rid={}", r.header("x-request-id").unwrap())), "{line}");
        ids.push(id);
        // and the proxy keeps serving
        assert_eq!(get(h.port, "/api/headers").status, 200, "after {attack}");
    }
    ids.dedup();
    assert_eq!(ids.len(), cases.len(), "error ids are unique");
    // the traceback is logged too
    assert!(h.stderr().contains("stack traceback"), "{}", h.stderr());
    assert_eq!(o.requests(), 1 + cases.len());
}

#[test]
fn a_failing_response_hook_fails_closed_too() {
    let (o, h) = sandbox("sbx-late");
    let r = request(h.port, "GET", "/api/headers", &[("X-Fail-Late", "1")], b"");
    let id = script_error_id(&r);
    assert!(log_line(&h, &id).contains("late failure"));
    assert_eq!(o.requests(), 1, "the upstream was asked; its answer is dropped");
    assert_eq!(get(h.port, "/api/headers").status, 200);
}

#[test]
fn on_error_continue_lets_the_request_pass() {
    let (o, h) = sandbox("sbx-continue");
    for attack in ["io", "loop", "memory"] {
        let r = get(h.port, &format!("/soft/headers?attack={attack}"));
        assert_eq!(r.status, 200, "{attack}: {}", r.text());
        assert!(r.header("x-error-id").is_none());
        // the hook stopped at the error: nothing after it ran
        assert_eq!(seen(&r.json(), "x-load-ok"), None);
    }
    let line = log_line(&h, "continuing (on_error = \"continue\")");
    assert!(line.contains("error_id=lua-"), "{line}");
    assert_eq!(o.requests(), 3);
}

const BODY: &str = r#"
return {
  on_request = function(req) req.headers["x-len"] = tostring(#req.body) end,
  on_response = function(res) res.headers["x-len"] = tostring(#res.body) end,
}
"#;

#[test]
fn bodies_beyond_buffered_body_bytes_are_413_and_502() {
    let o = Origin::start();
    let rest = pipeline("api", "/api", &["body"], &["origin"])
        + &http_backend("origin", &o.base_url())
        + &lua_mw("body", "body.lua", "");
    let h = start_with_scripts("sbx-limits", &[("body.lua", BODY)], "buffered_body_bytes = 1024\n", &rest);
    let r = request(h.port, "POST", "/api/headers", &[], &[b'x'; 1024]);
    assert_eq!(r.status, 200);
    assert_eq!(seen(&r.json(), "x-len"), Some("1024"));
    request(h.port, "POST", "/api/headers", &[], &[b'x'; 1025]).assert_error(413);
    let mut c = h.connect();
    let mut raw = b"POST /api/headers HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    raw.extend_from_slice(&chunked(&[b'y'; 4000], 500, &[]));
    c.send(&raw);
    c.read_final(false).assert_error(413);
    assert_eq!(o.requests(), 1, "oversized requests are not forwarded");
    // response side
    let r = get(h.port, "/api/big?bytes=1024");
    assert_eq!(r.header("x-len"), Some("1024"));
    get(h.port, "/api/big?bytes=1025").assert_error(502);
    get(h.port, "/api/big?bytes=5000&chunked=1").assert_error(502);
    assert_eq!(get(h.port, "/api/status/200").status, 200);
}

/// A config using `script` from a temp scripts dir; returns (dir, config path).
fn config_with(script: &str, src: &str, options: &str) -> (TempDir, std::path::PathBuf) {
    let rest = pipeline("api", "/api", &["s"], &["e"]) + &echo_backend("e") + &lua_mw("s", script, options);
    let (dir, cfg) = config_dir("sbx-check", &(base_config(free_port(), "scripts_path = \"scripts\"\n") + &rest));
    dir.write(&format!("scripts/{script}"), src.as_bytes());
    (dir, cfg)
}

#[test]
fn syntax_errors_are_reported_by_check_and_at_start_up() {
    let src = "return {\n  on_request = function(req, ctx)\n    if req.method == then\n  end,\n}\n";
    let (dir, cfg) = config_with("bad.lua", src, "");
    let cfg = cfg.to_str().unwrap();
    let script = dir.join("scripts/bad.lua");
    let (st, _, err) = run_harmony(&["--check", cfg], Duration::from_secs(20));
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(err.contains(&format!("{}: middleware 's'", script.display())), "{err}");
    assert!(err.contains("bad.lua:3: unexpected symbol near 'then'"), "{err}");
    assert!(err.contains("1 script error(s)"), "{err}");
    let (st, _, err) = run_harmony(&["-c", cfg], Duration::from_secs(20));
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(err.contains("bad.lua:3: unexpected symbol near 'then'"), "{err}");
}

#[test]
fn syntax_errors_name_the_full_path_with_the_line() {
    let src = "return {\n  on_request = function(req, ctx)\n    if req.method == then\n  end,\n}\n";
    let (dir, cfg) = config_with("a-script-with-a-rather-long-name-to-show-the-problem.lua", src, "");
    let script = dir.join("scripts/a-script-with-a-rather-long-name-to-show-the-problem.lua");
    let (st, _, err) = run_harmony(&["--check", cfg.to_str().unwrap()], Duration::from_secs(20));
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(err.contains(&format!("{}:3:", script.display())), "{err}");
}

#[test]
fn init_errors_and_bad_shapes_are_reported_by_check() {
    let cases = [
        (
            "deny_opts.lua",
            "return { init = function(opts) assert(opts.limit, 'deny_opts: options.limit is required') end }",
            "",
            "options.limit is required",
        ),
        ("shape.lua", "return 42", "", "must return a table"),
        ("hook.lua", "return { on_request = 'nope' }", "", "'on_request' must be a function"),
        ("loop.lua", "while true do end", "", "instruction budget exceeded"),
    ];
    for (name, src, opts, want) in cases {
        let (_dir, cfg) = config_with(name, src, opts);
        let (st, _, err) = run_harmony(&["--check", cfg.to_str().unwrap()], Duration::from_secs(20));
        assert_eq!(st.code(), Some(1), "{name}: {err}");
        assert!(err.contains(name) && err.contains(want), "{name}: {err}");
    }
    // and a good one passes, with its options reaching init
    let src = "return { init = function(opts) assert(opts.limit == 5 and opts.names[2] == 'b' and opts.nested.x == true) end }";
    let (_dir, cfg) = config_with("good.lua", src, "limit = 5\nnames = [\"a\", \"b\"]\nnested = { x = true }");
    let (st, out, err) = run_harmony(&["--check", cfg.to_str().unwrap()], Duration::from_secs(20));
    assert!(st.success(), "{err}");
    assert!(out.contains("configuration OK"), "{out}");
}

const FRAMING: &str = r#"
-- replaces the whole header table, framing headers included
return {
  on_response = function(res, ctx)
    res.headers = { ["Content-Type"] = "text/plain", [ctx.vars.name or "Content-Length"] = ctx.vars.value or "5" }
  end,
  on_request = function(req, ctx)
    ctx.vars.name, ctx.vars.value = req.headers["x-name"], req.headers["x-value"]
  end,
}
"#;

#[test]
fn assigning_the_whole_header_table_cannot_set_framing_headers() {
    let o = Origin::start();
    let rest = pipeline("api", "/api", &["framing"], &["origin"])
        + &http_backend("origin", &o.base_url())
        + &lua_mw("framing", "framing.lua", "");
    let h = start_with_scripts("sbx-framing", &[("framing.lua", FRAMING)], "", &rest);
    for (target, name, value) in
        [("/api/chunked", "Content-Length", "5"), ("/api/big?bytes=100", "Transfer-Encoding", "chunked")]
    {
        let mut c = h.connect();
        c.send(&request_bytes("GET", target, &[("X-Name", name), ("X-Value", value)], b""));
        let r = c.read_head();
        // either the script fails closed (a managed header) or the proxy's framing wins
        if r.status == 200 {
            let cl = r.header("content-length");
            let te = r.header("transfer-encoding");
            assert!(
                !(cl.is_some() && te.is_some()),
                "{target}: both Content-Length and Transfer-Encoding: {:?}",
                r.headers
            );
            if target.contains("big") {
                assert_eq!(cl, Some("100"), "{target}: {:?}", r.headers);
            }
        } else {
            assert_eq!(r.status, 500, "{target}");
        }
    }
}
