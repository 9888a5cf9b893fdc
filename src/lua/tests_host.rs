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

/// Run `on_request` of `script` on a fresh request; the request afterwards
/// and the error text when the hook failed.
fn run_request(name: &str, script: &str, prep: impl FnOnce(&mut MessageState)) -> (MessageState, Option<String>) {
    let h = host(name, script, false);
    let msg = request(Body::Loaded(Vec::new()));
    prep(&mut msg.borrow_mut());
    let ctx = h.new_ctx("gw", "p", "e", "rid").unwrap();
    let out = h.call(0, Hook::Request, &msg, &ctx, "rid");
    let err = match out {
        Outcome::Failed { .. } => Some("failed".to_string()),
        _ => None,
    };
    let s = Rc::try_unwrap(msg).expect("no other owner").into_inner();
    (s, err)
}

// The fast C paths of fast.rs handle the plain cases; everything else must
// behave as the mlua implementation did.
#[test]
fn header_access_fast_and_fallback_paths_agree() {
    let (s, err) = run_request(
        "hdrs",
        r#"return { on_request = function(req)
          local h = req.headers
          assert(type(h) == "userdata", type(h))
          assert(getmetatable(h) == false)
          assert(h["x-in"] == "1" and h["X-IN"] == "1")
          assert(h["absent"] == nil)
          assert(h[1] == nil)
          -- several fields read as one value
          assert(h["x-multi"] == "a, b", tostring(h["x-multi"]))
          -- non-string values and lists go to the slow path
          h["x-num"] = 5
          h["x-list"] = { "p", "q" }
          h["x-bool"] = true
          h["x-str"] = "s"
          h["x-in"] = nil
          local seen = {}
          for k, v in pairs(h) do seen[#seen + 1] = k .. "=" .. v end
          table.sort(seen)
          h["x-seen"] = table.concat(seen, ";")
          -- errors keep their words
          local ok, e = pcall(function() h["bad name"] = "x" end)
          assert(not ok and tostring(e):find("invalid header name 'bad name'"), tostring(e))
          ok, e = pcall(function() h["Content-Length"] = "5" end)
          assert(not ok and tostring(e):find("managed by the proxy"), tostring(e))
          ok, e = pcall(function() h["x-str"] = "a\r\nb" end)
          assert(not ok and tostring(e):find("CR, LF or NUL"), tostring(e))
          ok, e = pcall(function() h["x-tab"] = {} end)
          assert(ok, tostring(e))
          ok, e = pcall(function() h["x-fn"] = print end)
          assert(not ok and tostring(e):find("cannot use a function"), tostring(e))
          assert(not pcall(rawset, h, "x", "y"))
          -- method, path and the slow fields
          assert(req.method == "POST" and req.path == "/api/x")
          assert(req.status == nil and req.query.a == "1" and req.peer == "127.0.0.1:5")
          -- the proxy stays empty: assigning `headers` still replaces them all
          -- (and reading `headers` again gives the same object)
          assert(rawget(req, "headers") == nil and req.headers == h)
          req.headers = { ["x-all"] = "1", ["x-num"] = 5, ["x-list"] = { "p", "q" }, ["x-bool"] = true,
                          ["x-seen"] = h["x-seen"] }
          assert(h["x-all"] == "1" and req.headers["x-in"] == nil)
          h["x-all"] = nil
          assert(type(req.json) == "function" and req.nothing == nil)
        end }"#,
        |s| {
            s.headers.append("X-Multi", b"a");
            s.headers.append("x-multi", b"b");
        },
    );
    assert_eq!(err, None);
    assert_eq!(s.headers.get("x-num"), Some(&b"5"[..]));
    assert_eq!(s.headers.get_all("x-list").collect::<Vec<_>>(), vec![&b"p"[..], &b"q"[..]]);
    assert_eq!(s.headers.get("x-bool"), Some(&b"true"[..]));
    // an invalid value is refused after the old fields are gone (as before)
    assert!(!s.headers.contains("x-str"));
    assert!(!s.headers.contains("x-in"));
    assert!(!s.headers.contains("x-tab"));
    assert_eq!(s.headers.get("x-seen"), Some(&b"x-bool=true;x-list=p, q;x-multi=a, b;x-num=5;x-str=s"[..]));
}

#[test]
fn stashed_objects_fail_outside_their_call_on_the_fast_paths_too() {
    // `req` points at no message while on_response runs
    let h = host(
        "stash",
        r#"local saved
        return {
          on_request = function(req) saved = req end,
          on_response = function(res)
            local ok1, e1 = pcall(function() return saved.headers["x-in"] end)
            local ok2, e2 = pcall(function() saved.headers["x-y"] = "1" end)
            local ok3, e3 = pcall(function() return saved.method end)
            res.headers["x-r"] = tostring(ok1) .. tostring(ok2) .. tostring(ok3)
            assert(tostring(e1):find("only valid during the hook call"), tostring(e1))
            assert(tostring(e2):find("only valid during the hook call"), tostring(e2))
            assert(tostring(e3):find("only valid during the hook call"), tostring(e3))
          end,
        }"#,
        false,
    );
    let ctx = h.new_ctx("gw", "p", "e", "rid").unwrap();
    let req = request(Body::Loaded(Vec::new()));
    assert!(matches!(h.call(0, Hook::Request, &req, &ctx, "rid"), Outcome::Continue));
    let res = request(Body::Loaded(Vec::new()));
    res.borrow_mut().is_request = false;
    assert!(matches!(h.call(0, Hook::Response, &res, &ctx, "rid"), Outcome::Continue));
    assert_eq!(res.borrow().headers.get("x-r"), Some(&b"falsefalsefalse"[..]));
}

#[test]
fn response_status_and_headers_on_the_fast_paths() {
    let h = host(
        "res",
        r#"return { on_response = function(res)
          assert(res.status == 201, tostring(res.status))
          assert(res.method == nil and res.path == nil)
          res.headers["x-status"] = tostring(res.status)
          res.headers["server"] = nil
          res.status = 202
        end }"#,
        false,
    );
    let mut headers = Headers::new();
    headers.append("Server", b"x");
    let msg = Rc::new(RefCell::new(MessageState {
        is_request: false,
        method: String::new(),
        path: String::new(),
        query: None,
        status: 201,
        headers,
        body: Body::Loaded(Vec::new()),
        body_changed: false,
        path_changed: false,
        peer: None,
    }));
    let ctx = h.new_ctx("gw", "p", "e", "rid").unwrap();
    for _ in 0..3 {
        msg.borrow_mut().status = 201;
        assert!(matches!(h.call(0, Hook::Response, &msg, &ctx, "rid"), Outcome::Continue));
        let s = msg.borrow();
        assert_eq!(s.status, 202);
        assert_eq!(s.headers.get("x-status"), Some(&b"201"[..]));
        assert!(!s.headers.contains("server"));
    }
}

/// Pooled hook coroutines are reused after every way a call can end.
#[test]
fn coroutines_are_reused_after_errors_kills_and_waits() {
    let h = host(
        "reuse",
        r#"return { on_request = function(req)
          local mode = req.headers["x-mode"]
          if mode == "error" then error("boom") end
          if mode == "loop" then while true do pcall(function() while true do end end) end end
          if mode == "body" then req.headers["x-len"] = tostring(#req.body) end
          if mode == "yield" then coroutine.yield(1) end
          if mode == "respond" then return harmony.respond(418) end
          req.headers["x-ok"] = req.method
        end }"#,
        true,
    );
    let ctx = h.new_ctx("gw", "p", "e", "rid").unwrap();
    let run = |mode: &str| {
        let msg = request(Body::Pending);
        msg.borrow_mut().headers.append("x-mode", mode.as_bytes());
        let mut out = h.call(0, Hook::Request, &msg, &ctx, "rid");
        if let Outcome::NeedBody(p) = out {
            msg.borrow_mut().body = Body::Loaded(b"abc".to_vec());
            out = h.resume(p);
        }
        (msg, out)
    };
    for _ in 0..20 {
        for mode in ["error", "loop", "body", "yield", "respond", "plain"] {
            let (msg, out) = run(mode);
            let s = msg.borrow();
            match mode {
                "body" => assert_eq!(s.headers.get("x-len"), Some(&b"3"[..])),
                "respond" => assert!(matches!(out, Outcome::Respond(ref r) if r.status == 418)),
                "plain" => assert_eq!(s.headers.get("x-ok"), Some(&b"POST"[..])),
                _ => assert!(matches!(out, Outcome::Continue)), // continue on error
            }
        }
    }
    assert_eq!(h.budget_kills(), 20);
    assert_eq!(h.error_count(), 60);
}

/// A hook whose body is loaded runs as a plain protected call (coro::call),
/// one whose body may still come as a coroutine (coro::start): every way a
/// call can end gives the same outcome both ways, and the pooled coroutines
/// go from one kind of call to the other.
#[test]
fn direct_and_coroutine_calls_end_the_same_ways() {
    let h = host(
        "direct",
        r#"return { on_request = function(req)
          local mode = req.headers["x-mode"]
          if mode == "error" then error("boom") end
          if mode == "loop" then while true do end end
          if mode == "body" then req.headers["x-len"] = tostring(#req.body) end
          if mode == "yield" then coroutine.yield(1) end
          if mode == "running" then req.headers["x-yieldable"] = tostring(coroutine.isyieldable()) end
          if mode == "respond" then return harmony.respond(418) end
          if mode == "bad" then return function() end end
          req.headers["x-ok"] = req.method
        end }"#,
        false,
    );
    let ctx = h.new_ctx("gw", "p", "e", "rid").unwrap();
    let run = |mode: &str, loaded: bool| {
        let msg = request(if loaded { Body::Loaded(b"abc".to_vec()) } else { Body::Pending });
        msg.borrow_mut().headers.append("x-mode", mode.as_bytes());
        let mut out = h.call(0, Hook::Request, &msg, &ctx, "rid");
        if let Outcome::NeedBody(p) = out {
            assert!(!loaded, "a loaded body is never waited for");
            msg.borrow_mut().body = Body::Loaded(b"abc".to_vec());
            out = h.resume(p);
        }
        (msg, out)
    };
    for round in 0..10 {
        for mode in ["error", "loop", "body", "yield", "running", "respond", "bad", "plain"] {
            let loaded = (round + mode.len()) % 2 == 0;
            let (msg, out) = run(mode, loaded);
            let s = msg.borrow();
            match mode {
                "body" => assert_eq!(s.headers.get("x-len"), Some(&b"3"[..])),
                "running" => {
                    // only a call that may wait runs where it could yield
                    let expected = if loaded { &b"false"[..] } else { &b"true"[..] };
                    assert_eq!(s.headers.get("x-yieldable"), Some(expected), "loaded={loaded}");
                }
                "respond" => assert!(matches!(out, Outcome::Respond(ref r) if r.status == 418)),
                "plain" => assert_eq!(s.headers.get("x-ok"), Some(&b"POST"[..])),
                // a result that is not harmony.respond's is ignored
                "bad" => assert!(matches!(out, Outcome::Continue), "loaded={loaded}"),
                // fail closed, with an error id, whichever way it ran
                _ => assert!(matches!(out, Outcome::Failed { .. }), "{mode} loaded={loaded}"),
            }
        }
    }
    assert_eq!(h.budget_kills(), 10);
    assert_eq!(h.error_count(), 30);
}

// ---------------------------------------------------------------------------
// Review: the fast C paths (fast.rs) against hostile scripts.

#[test]
fn review_finalizers_touching_req_while_a_borrow_is_held_do_not_crash() {
    // `req.query` (slow path) holds the message borrowed while it allocates
    // Lua tables and strings; a collection there runs finalizers that read
    // and write req.headers (fast path: try_borrow fails -> slow path)
    let h = host(
        "gc",
        r#"return { on_request = function(req)
          local mt = { __gc = function() req.headers["x-gc"] = "1"; local _ = req.headers["x-in"] end }
          for i = 1, 2000 do
            setmetatable({}, mt)
            local q = req.query
            local m = req.method
          end
        end }"#,
        true,
    );
    let msg = request(Body::Loaded(Vec::new()));
    let ctx = h.new_ctx("gw", "p", "e", "rid").unwrap();
    let _ = h.call(0, Hook::Request, &msg, &ctx, "rid");
    // a later call still works; the message is intact
    let _ = h.call(0, Hook::Request, &msg, &ctx, "rid");
    assert_eq!(msg.borrow().headers.get("x-in"), Some(&b"1"[..]));
}

#[test]
fn review_fast_paths_keep_the_slow_semantics() {
    let h = host(
        "fastedge",
        r#"local stash
        return { on_request = function(req, ctx)
          local v = ctx.vars
          if stash then
            -- the object points at the current message: the stashed one is this one
            v.stashed_method = stash.method
          end
          stash = req
          v.num = pcall(function() return req.headers[1] end)
          v.bad_name = tostring(select(2, pcall(function() req.headers["bad name"] = "x" end)))
          v.framing = tostring(select(2, pcall(function() req.headers["Content-Length"] = "1" end)))
          v.crlf = tostring(select(2, pcall(function() req.headers["x-a"] = "a\r\nb" end)))
          req.headers["x-multi"] = { "a", "b" }
          v.multi = req.headers["X-MULTI"]
          local co = coroutine.wrap(function() coroutine.yield(req.headers["x-in"]) end)
          v.co = co()
          local n = 0
          for k in pairs(req.headers) do n = n + 1 end
          v.pairs = n
          v.get_num = req[1]
        end }"#,
        false,
    );
    let msg = request(Body::Loaded(Vec::new()));
    let ctx = h.new_ctx("gw", "p", "e", "rid").unwrap();
    assert!(matches!(h.call(0, Hook::Request, &msg, &ctx, "rid"), Outcome::Continue));
    let v: mlua::Table = ctx.vars().unwrap();
    assert!(v.get::<String>("bad_name").unwrap().contains("invalid header name"));
    assert!(v.get::<String>("framing").unwrap().contains("managed by the proxy"));
    assert!(v.get::<String>("crlf").unwrap().contains("CR, LF or NUL"));
    assert_eq!(v.get::<String>("multi").unwrap(), "a, b");
    assert_eq!(v.get::<String>("co").unwrap(), "1");
    assert_eq!(v.get::<i64>("pairs").unwrap(), 2);
    // a stashed req is the next call's req; outside a call it is an error
    let ctx2 = h.new_ctx("gw", "p", "e", "rid2").unwrap();
    assert!(matches!(h.call(0, Hook::Request, &msg, &ctx2, "rid2"), Outcome::Continue));
    let v2: mlua::Table = ctx2.vars().unwrap();
    assert_eq!(v2.get::<String>("stashed_method").unwrap(), "POST");
}

#[test]
fn review_headers_cannot_escape_the_memory_limit() {
    // 16 MiB Lua limit; 1 MiB string, 200 copies = 200 MiB of headers, ~1,000 instructions
    let h = host(
        "hdrbomb",
        r#"return { on_request = function(req)
          local s = string.rep("a", 1 << 20)
          for i = 1, 200 do req.headers["x-" .. i] = s end
        end }"#,
        false,
    );
    let msg = request(Body::Loaded(Vec::new()));
    let ctx = h.new_ctx("gw", "p", "e", "rid").unwrap();
    let out = h.call(0, Hook::Request, &msg, &ctx, "rid");
    let total: usize = msg.borrow().headers.iter().map(|(_, v)| v.len()).sum();
    assert!(!matches!(out, Outcome::Continue), "the call went through with {total} bytes of headers");
}

#[test]
fn scripts_cannot_resume_or_close_a_hooks_own_coroutine() {
    let h = host(
        "hijack",
        r#"local saved
        return { on_request = function(req)
          local mode = req.headers["x-mode"]
          if mode == "wait" then
            saved = coroutine.running()
            req.headers["x-len"] = tostring(#req.body) -- waits for the body
          elseif mode == "hijack" then
            local ok1, e1 = coroutine.resume(saved)
            local ok2, e2 = pcall(coroutine.close, saved)
            req.headers["x-resume"] = tostring(ok1) .. ":" .. tostring(e1)
            req.headers["x-close"] = tostring(ok2) .. ":" .. tostring(e2)
            -- a script's own coroutines still work
            local co = coroutine.create(function(a) local b = coroutine.yield(a + 1) return b * 2 end)
            local _, x = coroutine.resume(co, 1)
            local _, y = coroutine.resume(co, 5)
            local gen = coroutine.wrap(function() coroutine.yield("w") end)
            req.headers["x-own"] = x .. ":" .. y .. ":" .. gen() .. ":" .. coroutine.status(co)
          end
        end }"#,
        false,
    );
    let ctx = h.new_ctx("gw", "p", "e", "rid").unwrap();
    let a = request(Body::Pending);
    a.borrow_mut().headers.append("x-mode", b"wait");
    let Outcome::NeedBody(pending) = h.call(0, Hook::Request, &a, &ctx, "a") else { panic!("a should wait") };
    let b = request(Body::Loaded(b"bbbbb".to_vec()));
    b.borrow_mut().headers.append("x-mode", b"hijack");
    assert!(matches!(h.call(0, Hook::Request, &b, &ctx, "b"), Outcome::Continue));
    let s = b.borrow();
    for field in ["x-resume", "x-close"] {
        let v = String::from_utf8_lossy(s.headers.get(field).unwrap()).into_owned();
        assert!(v.starts_with("false:") && v.contains("cannot be resumed or closed"), "{field}: {v}");
    }
    assert_eq!(s.headers.get("x-own"), Some(&b"2:10:w:dead"[..]));
    // the waiting call was left alone and finishes on its own body
    a.borrow_mut().body = Body::Loaded(b"abc".to_vec());
    assert!(matches!(h.resume(pending), Outcome::Continue));
    assert_eq!(a.borrow().headers.get("x-len"), Some(&b"3"[..]));
}
