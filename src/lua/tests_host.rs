//! LuaHost end to end on real scripts: hooks, respond, body on demand, errors.

use super::cache::Cache;
use super::host::{Hook, LuaHost, Outcome, StageSpec};
use super::objects::{Body, MessageState};
use super::sandbox::LuaLimits;
use http1::Headers;
use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;

fn host(name: &str, script: &str, continue_on_error: bool) -> LuaHost {
    let dir = std::env::temp_dir().join(format!("harmony-host-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.lua"));
    std::fs::write(&path, script).unwrap();
    let source = std::sync::Arc::new(script.as_bytes().to_vec());
    let spec = StageSpec {
        mw: 0,
        name: name.into(),
        script: path,
        options: serde_json::json!({"greeting": "hi"}),
        continue_on_error,
        source,
    };
    LuaHost::build(
        &dir,
        &LuaLimits { instructions: 200_000, memory: 16 << 20 },
        &[spec],
        Rc::new(RefCell::new(Cache::new(100))),
    )
    .unwrap_or_else(|e| panic!("{:?}", e.0))
}

fn request(body: Body) -> Rc<RefCell<MessageState>> {
    let mut headers = Headers::new();
    headers.append("X-In", b"1");
    Rc::new(RefCell::new(MessageState {
        is_request: true,
        method: "POST".into(),
        path: "/api/x".into(),
        query: Some("a=1".into()),
        status: 0,
        headers,
        body,
        body_changed: false,
        path_changed: false,
        peer: Some("127.0.0.1:5".parse().unwrap()),
    }))
}

#[test]
fn request_hook_reads_and_changes_the_request() {
    let h = host(
        "rw",
        r#"local M = {}
        function M.init(opts) M.greeting = opts.greeting end
        function M.on_request(req, ctx)
          req.headers["x-greeting"] = M.greeting .. ":" .. req.method .. ":" .. req.path .. ":" .. req.query.a .. ":" .. req.headers["X-IN"]
          req.headers["x-in"] = nil
          ctx.vars.seen = true
        end
        return M"#,
        false,
    );
    let msg = request(Body::Loaded(Vec::new()));
    let ctx = h.new_ctx("gw", "p", "e", "rid").unwrap();
    assert!(matches!(h.call(0, Hook::Request, &msg, &ctx, "rid"), Outcome::Continue));
    let s = msg.borrow();
    assert_eq!(s.headers.get("x-greeting"), Some(&b"hi:POST:/api/x:1:1"[..]));
    assert!(!s.headers.contains("x-in"));
    let vars: mlua::Table = ctx.vars().expect("vars created by the script");
    assert!(vars.get::<bool>("seen").unwrap());
}

#[test]
fn body_is_read_on_demand_and_json_helpers_work() {
    let h = host(
        "body",
        r#"return { on_request = function(req)
          local t = req:json()
          req:set_json({ name = t.first .. " " .. t.last })
        end }"#,
        false,
    );
    let msg = request(Body::Pending);
    let ctx = h.new_ctx("gw", "p", "e", "rid").unwrap();
    let Outcome::NeedBody(p) = h.call(0, Hook::Request, &msg, &ctx, "rid") else { panic!("expected NeedBody") };
    msg.borrow_mut().body = Body::Loaded(br#"{"first":"Ada","last":"Lovelace"}"#.to_vec());
    assert!(matches!(h.resume(p), Outcome::Continue));
    let s = msg.borrow();
    assert_eq!(s.body, Body::Loaded(br#"{"name":"Ada Lovelace"}"#.to_vec()));
    assert!(s.body_changed);
    assert_eq!(s.headers.get("content-type"), Some(&b"application/json"[..]));
}

#[test]
fn respond_ends_the_stage_even_inside_pcall() {
    let h = host(
        "deny",
        r#"return { on_request = function(req)
          if req.method == "POST" then
            pcall(function() harmony.respond(403, { ["content-type"] = "text/plain" }, "no") end)
          end
        end }"#,
        false,
    );
    let msg = request(Body::Loaded(Vec::new()));
    let ctx = h.new_ctx("gw", "p", "e", "rid").unwrap();
    match h.call(0, Hook::Request, &msg, &ctx, "rid") {
        Outcome::Respond(r) => {
            assert_eq!(r.status, 403);
            assert_eq!(r.body, b"no");
        }
        _ => panic!("expected a response"),
    }
}

#[test]
fn failures_fail_closed_or_continue() {
    let src = r#"return { on_request = function(req) local x = nil; return x.y end }"#;
    let msg = request(Body::Loaded(Vec::new()));
    let closed = host("fail", src, false);
    let ctx = closed.new_ctx("gw", "p", "e", "rid").unwrap();
    assert!(matches!(closed.call(0, Hook::Request, &msg, &ctx, "rid"), Outcome::Failed { .. }));
    let open = host("cont", src, true);
    let ctx = open.new_ctx("gw", "p", "e", "rid").unwrap();
    assert!(matches!(open.call(0, Hook::Request, &msg, &ctx, "rid"), Outcome::Continue));
    assert_eq!(open.error_count(), 1);
}

#[test]
fn budget_stops_an_infinite_loop_and_the_host_keeps_working() {
    let h = host(
        "loop",
        r#"return { on_request = function(req) if req.headers["x-loop"] then while true do end end end }"#,
        false,
    );
    let msg = request(Body::Loaded(Vec::new()));
    msg.borrow_mut().headers.append("X-Loop", b"1");
    let ctx = h.new_ctx("gw", "p", "e", "rid").unwrap();
    assert!(matches!(h.call(0, Hook::Request, &msg, &ctx, "rid"), Outcome::Failed { .. }));
    assert_eq!(h.budget_kills(), 1);
    let msg = request(Body::Loaded(Vec::new()));
    assert!(matches!(h.call(0, Hook::Request, &msg, &ctx, "rid"), Outcome::Continue));
}

#[test]
fn load_errors_name_file_and_line() {
    let dir = std::env::temp_dir().join(format!("harmony-host-{}-syntax", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path: PathBuf = dir.join("bad.lua");
    std::fs::write(&path, "local M = {}\nfunction M.on_request(req)\n  if then end\nend\nreturn M\n").unwrap();
    let spec = StageSpec {
        mw: 0,
        name: "bad".into(),
        script: path.clone(),
        options: serde_json::json!({}),
        continue_on_error: false,
        source: std::sync::Arc::new(std::fs::read(&path).unwrap()),
    };
    let err = LuaHost::build(
        &dir,
        &LuaLimits { instructions: 1000, memory: 1 << 20 },
        &[spec],
        Rc::new(RefCell::new(Cache::new(1))),
    )
    .err()
    .expect("syntax error");
    let msg = err.0.join("\n");
    assert!(msg.contains("bad.lua:3:"), "{msg}");
}

#[test]
fn a_respond_made_by_one_request_never_answers_another() {
    let h = host(
        "slot",
        r#"return { on_request = function(req)
          if req.method == "POST" then local _ = req.body end
          if req.headers["x-b"] then
            pcall(harmony.respond, 403, {}, "for-B-only")
            error("boom")
          end
        end }"#,
        false,
    );
    let a = request(Body::Pending);
    let ctx_a = h.new_ctx("gw", "p", "e", "a").unwrap();
    let Outcome::NeedBody(pa) = h.call(0, Hook::Request, &a, &ctx_a, "a") else { panic!("A should wait for its body") };
    let b = request(Body::Loaded(Vec::new()));
    b.borrow_mut().method = "GET".into();
    b.borrow_mut().headers.append("X-B", b"1");
    let ctx_b = h.new_ctx("gw", "p", "e", "b").unwrap();
    assert!(matches!(h.call(0, Hook::Request, &b, &ctx_b, "b"), Outcome::Failed { .. }));
    a.borrow_mut().body = Body::Loaded(b"{}".to_vec());
    assert!(matches!(h.resume(pa), Outcome::Continue), "A must not get B's response");
}

#[test]
fn pcall_cannot_outlive_the_budget() {
    let h = host(
        "spin",
        r#"return { on_request = function(req)
          while true do pcall(function() while true do end end) end
        end }"#,
        false,
    );
    let msg = request(Body::Loaded(Vec::new()));
    let ctx = h.new_ctx("gw", "p", "e", "rid").unwrap();
    assert!(matches!(h.call(0, Hook::Request, &msg, &ctx, "rid"), Outcome::Failed { .. }));
    assert_eq!(h.budget_kills(), 1);
}
