//! The Lua API through the running proxy: every req/res/ctx field, body on
//! demand on both sides, harmony.respond on both sides, ctx.route, and the
//! harmony.* helpers. The scripts here are the examples of docs/lua.md.

mod common;

use common::lua::*;
use common::origin::Origin;
use common::*;
use serde_json::{json, Value};

/// One `/api` pipeline to a test origin with the given Lua middleware
/// (`(name, script file, options)`), plus `more` config text.
fn api(tag: &str, scripts: &[(&str, &str)], mws: &[(&str, &str, &str)], more: &str) -> (Origin, Harmony) {
    let o = Origin::start();
    let names: Vec<&str> = mws.iter().map(|m| m.0).collect();
    let mut rest = pipeline("api", "/api", &names, &["origin"]) + &http_backend("origin", &o.base_url());
    for (name, file, opts) in mws {
        if !more.contains(&format!("[middleware.{name}]")) {
            rest += &lua_mw(name, file, opts);
        }
    }
    rest += more;
    let h = start_with_scripts(tag, scripts, "", &rest);
    (o, h)
}

const INSPECT: &str = r#"
-- answers with what the script sees of the request
return {
  on_request = function(req, ctx)
    local names = {}
    for name, value in pairs(req.headers) do names[#names + 1] = name .. "=" .. value end
    table.sort(names)
    harmony.respond(200, { ["Content-Type"] = "application/json" }, harmony.json.encode({
      names = names, body = req.body,
      method = req.method, path = req.path, query = req.query, raw_query = req.raw_query,
      peer = req.peer, mixed = req.headers["X-MiXeD-Case"], multi = req.headers["x-multi"],
      missing = req.headers["x-missing"] == nil,
      gateway = ctx.gateway, pipeline = ctx.pipeline, endpoint = ctx.endpoint, request_id = ctx.request_id,
    }))
  end,
}
"#;

#[test]
fn request_fields_as_scripts_read_them() {
    let (o, h) = api("api-read", &[("inspect.lua", INSPECT)], &[("inspect", "inspect.lua", "")], "");
    let mut c = h.connect();
    let local = c.stream.local_addr().unwrap().to_string();
    c.send(&request_bytes(
        "PATCH",
        "/api//items/./7?a=1&b=x%20y&a=2&flag",
        &[("x-mixed-case", "yes"), ("X-Multi", "one"), ("x-multi", "two"), ("X-Request-Id", "rid-read-1")],
        b"",
    ));
    let r = c.read_final(false);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({
            "method": "PATCH", "path": "/api/items/7",
            "query": { "a": ["1", "2"], "b": "x y", "flag": "" }, "raw_query": "a=1&b=x%20y&a=2&flag",
            "peer": local, "mixed": "yes", "multi": "one, two", "missing": true,
            "gateway": "test-gw", "pipeline": "api", "endpoint": "api_in", "request_id": "rid-read-1",
            "names": ["content-length=0", "host=127.0.0.1", "x-mixed-case=yes", "x-multi=one, two", "x-request-id=rid-read-1"],
            "body": "",
        })
    );
    assert_eq!(r.header("x-request-id"), Some("rid-read-1"));
    assert_eq!(o.requests(), 0);
}

const REWRITE: &str = r#"
return {
  on_request = function(req, ctx)
    if req.headers["x-mode"] == "bad-header" then
      req.headers["Content-Length"] = "1" -- managed by the proxy: a script error
    end
    req.method = "PUT"
    req.path = "/api/v2" .. req.path:sub(5)  -- keep the endpoint prefix
    req.query = { q = "a b&c", n = 5, tag = { "x", "y" } }
    req.headers["X-Added"] = "1"
    req.headers["x-drop-me"] = nil
    req.headers["X-List"] = { "one", "two" }
  end,
}
"#;

#[test]
fn request_fields_as_scripts_change_them() {
    let (o, h) = api("api-write", &[("rewrite.lua", REWRITE)], &[("rewrite", "rewrite.lua", "")], "");
    let r = request(h.port, "GET", "/api/items?old=1", &[("X-Drop-Me", "1"), ("X-List", "client")], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["method"], "PUT");
    assert_eq!(v["target"], "/v2/items?n=5&q=a%20b%26c&tag=x&tag=y", "{v}");
    assert_eq!(seen(&v, "x-added"), Some("1"));
    assert_eq!(seen(&v, "x-drop-me"), None);
    assert_eq!(seen_all(&v, "x-list"), vec!["one", "two"], "{v}");
    // a managed header cannot be set: the request fails closed
    let r = request(h.port, "GET", "/api/items", &[("X-Mode", "bad-header")], b"");
    let id = script_error_id(&r);
    let line = log_line(&h, &id);
    assert!(line.contains("managed by the proxy"), "{line}");
    assert_eq!(o.requests(), 1);
}

const BODY: &str = r#"
-- reads the JSON body, adds a field, sends the new JSON on
return {
  on_request = function(req, ctx)
    if req.headers["x-raw"] then
      req.body = req.body .. "|seen " .. #req.body
      return
    end
    local t = req:json()
    t.full_name = t.first .. " " .. t.last
    t.first, t.last = nil, nil
    req:set_json(t)
  end,
}
"#;

#[test]
fn request_body_on_demand_json_and_chunked() {
    let (o, h) = api("api-body", &[("body.lua", BODY)], &[("body", "body.lua", "")], "");
    let r = request(h.port, "POST", "/api/echo-body", &[], br#"{"first":"Ada","last":"Lovelace","n":1}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({ "full_name": "Ada Lovelace", "n": 1 }));
    // set_json adds a content-type when there is none
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = request(h.port, "POST", "/api/headers", &[("Content-Type", "text/x-json")], br#"{"first":"A","last":"B"}"#)
        .json();
    let expected_len = br#"{"full_name":"A B"}"#.len().to_string();
    assert_eq!(seen(&v, "content-length"), Some(expected_len.as_str()), "{v}");
    assert_eq!(v["body_bytes"].to_string(), expected_len);
    assert_eq!(seen(&v, "content-type"), Some("text/x-json"), "an existing content-type is kept");

    // a chunked body read by the script goes upstream with Content-Length
    let mut c = h.connect();
    let mut raw = b"POST /api/headers HTTP/1.1\r\nHost: x\r\nX-Raw: 1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    raw.extend_from_slice(&chunked(b"hello chunked world", 5, &[]));
    c.send(&raw);
    let v = c.read_final(false).json();
    assert_eq!(seen(&v, "transfer-encoding"), None, "{v}");
    assert_eq!(seen(&v, "content-length"), Some("27"), "{v}");
    assert_eq!(v["body_bytes"], 27);
    // same connection, once more, to the echo-body path
    let mut raw = b"POST /api/echo-body HTTP/1.1\r\nHost: x\r\nX-Raw: 1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    raw.extend_from_slice(&chunked(b"abc", 1, &[]));
    c.send(&raw);
    let r = c.read_final(false);
    assert_eq!(r.text(), "abc|seen 3");
    assert_eq!(o.requests(), 4);
}

const RESPONSE: &str = r#"
return {
  on_response = function(res, ctx)
    local mode = ctx.vars.mode or "upper"
    if res.status == 404 then
      res.status = 410
      res:set_json({ gone = true, upstream_said = res.body })
    elseif mode == "upper" then
      res.body = string.upper(res.body)
      res.headers["x-body-was"] = tostring(#res.body)
    end
  end,
}
"#;

#[test]
fn response_status_and_body_on_demand() {
    let (_o, h) = api("api-resp", &[("resp.lua", RESPONSE)], &[("resp", "resp.lua", "")], "");
    // chunked upstream body, buffered for the script, sent with Content-Length
    let r = get(h.port, "/api/chunked");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "HELLO CHUNKED WORLD!");
    assert_eq!(r.framing, "length");
    assert_eq!(r.header("x-body-was"), Some("20"));
    let r = get(h.port, "/api/status/404");
    assert_eq!(r.status, 410);
    assert_eq!(r.json(), json!({ "gone": true, "upstream_said": "status 404\n" }));
    assert_eq!(r.header("content-length"), Some(r.body.len().to_string().as_str()));
    // keep-alive still works after buffered bodies
    let mut c = h.connect();
    for _ in 0..3 {
        c.send(&request_bytes("GET", "/api/big?bytes=1000", &[], b""));
        let r = c.read_final(false);
        assert_eq!(r.body.len(), 1000);
    }
}

const HEADERS_ONLY: &str = r#"
-- touches only headers: the body passes through untouched
return {
  on_response = function(res, ctx)
    res.headers["x-lua"] = "1"
    res.headers["server"] = nil
  end,
}
"#;

/// A response-side stage that never reads the body: a small body that came
/// with the head is handed over whole (one write, the hook without a
/// coroutine), a slow one and one over `buffered_body_bytes` stream as they
/// come; every byte arrives, framing is right, and both connections live on.
#[test]
fn response_bodies_pass_a_headers_only_stage_whole_or_streamed() {
    let o = Origin::start();
    let rest = pipeline("api", "/api", &["hdr"], &["origin"])
        + &http_backend("origin", &o.base_url())
        + &lua_mw("hdr", "hdr.lua", "");
    let h = start_with_scripts("api-hdr", &[("hdr.lua", HEADERS_ONLY)], "buffered_body_bytes = 100000\n", &rest);
    let mut c = h.connect();
    for (target, len) in [
        ("/api/status/200", None),
        ("/api/big?bytes=1000", Some(1000)),
        ("/api/slow?ms=50", None),
        ("/api/big?bytes=300000", Some(300_000)),
        ("/api/big?bytes=5000&chunked=1", Some(5000)),
        ("/api/big?bytes=100000", Some(100_000)),
        ("/api/status/200", None),
    ] {
        c.send(&request_bytes("GET", target, &[], b""));
        let r = c.read_final(false);
        assert_eq!(r.status, 200, "{target}");
        assert_eq!(r.header("x-lua"), Some("1"), "{target}");
        assert_eq!(r.header("server"), None, "{target}");
        if let Some(n) = len {
            assert_eq!(r.body.len(), n, "{target}");
            assert!(r.body.iter().enumerate().all(|(i, &b)| b == pattern_byte(i as u64)), "{target}");
        }
        if r.framing == "length" {
            assert_eq!(r.header("content-length"), Some(r.body.len().to_string().as_str()), "{target}");
        }
    }
    assert_eq!(get(h.port, "/api/slow?ms=1").text(), "slow");
    // one upstream connection served the keep-alive client's requests in turn
    assert!(o.connections() <= 2, "{} upstream connections", o.connections());
}

const REPLACE: &str = r#"
-- replaces the upstream's body without ever reading it
return {
  on_response = function(res, ctx)
    if res.status == 404 then
      res.status = 410
      res:set_json({ gone = true })
    else
      res.body = "replaced"
    end
  end,
}
"#;

#[test]
fn response_body_replaced_without_reading_it() {
    let (_o, h) = api("api-replace", &[("replace.lua", REPLACE)], &[("replace", "replace.lua", "")], "");
    let r = get(h.port, "/api/status/404");
    assert_eq!(r.status, 410);
    assert_eq!(r.text(), r#"{"gone":true}"#);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let r = get(h.port, "/api/big?bytes=5000");
    assert_eq!(r.text(), "replaced");
    // the connection to the proxy is still usable
    assert_eq!(get(h.port, "/api/status/200").status, 200);
}

#[test]
fn response_status_change_updates_the_reason_phrase() {
    let (_o, h) = api("api-reason", &[("resp.lua", RESPONSE)], &[("resp", "resp.lua", "")], "");
    let r = get(h.port, "/api/status/404");
    assert_eq!(r.status, 410);
    assert_ne!(r.reason, "Not Found");
}

const FIRST: &str = r#"
return {
  on_request = function(req, ctx)
    ctx.vars.started = "first:" .. ctx.request_id
    ctx.vars.count = 1
  end,
  on_response = function(res, ctx)
    -- runs last: sees what the second script left
    res.headers["x-first-saw"] = ctx.vars.second_saw .. "/" .. ctx.vars.count
  end,
}
"#;

const SECOND: &str = r#"
return {
  on_request = function(req, ctx)
    ctx.vars.second_saw = ctx.vars.started
    ctx.vars.count = ctx.vars.count + 1
  end,
  on_response = function(res, ctx)
    res.headers["x-second-saw"] = ctx.vars.started
    ctx.vars.count = ctx.vars.count + 1
  end,
}
"#;

#[test]
fn ctx_vars_are_shared_between_hooks_and_middleware() {
    let (_o, h) = api(
        "api-vars",
        &[("first.lua", FIRST), ("second.lua", SECOND)],
        &[("first", "first.lua", ""), ("second", "second.lua", "")],
        "",
    );
    for rid in ["rid-a", "rid-b"] {
        let r = request(h.port, "GET", "/api/headers", &[("X-Request-Id", rid)], b"");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-second-saw"), Some(format!("first:{rid}").as_str()));
        // ctx is per request: count starts again at 1 each time
        assert_eq!(r.header("x-first-saw"), Some(format!("first:{rid}/3").as_str()));
    }
}

const ROUTE: &str = r#"
return {
  on_request = function(req, ctx)
    ctx.route = req.headers["x-backend"]  -- nil keeps the first backend
  end,
}
"#;

#[test]
fn ctx_route_picks_a_backend_and_unknown_names_fail() {
    let (a, b) = (Origin::start(), Origin::start());
    let rest = pipeline("api", "/api", &["route"], &["one", "two"])
        + &http_backend("one", &a.base_url())
        + &http_backend("two", &b.base_url())
        + &echo_backend("three")
        + &pipeline("other", "/other", &[], &["three"])
        + &lua_mw("route", "route.lua", "");
    let h = start_with_scripts("api-route", &[("route.lua", ROUTE)], "", &rest);
    let to = |name: &str| request(h.port, "GET", "/api/headers", &[("X-Backend", name)], b"");
    assert_eq!(to("two").header("x-origin-port"), Some(b.port.to_string().as_str()));
    assert_eq!(to("one").header("x-origin-port"), Some(a.port.to_string().as_str()));
    assert_eq!(get(h.port, "/api/headers").header("x-origin-port"), Some(a.port.to_string().as_str()));
    // a backend of another pipeline is not a choice
    for bad in ["three", "nope"] {
        let r = to(bad);
        let v = r.assert_error(500);
        assert_eq!(v["error"], "script_error", "{v}");
        assert!(r.header("x-error-id").is_some());
        log_line(&h, &format!("ctx.route = '{bad}' is not a backend of pipeline 'api'"));
    }
    assert_eq!(a.requests() + b.requests(), 3);
}

const RESPOND: &str = r#"
return {
  on_request = function(req, ctx)
    if req.headers["x-teapot"] then
      harmony.respond(418, { ["Content-Type"] = "text/plain", ["X-Teapot"] = "yes" }, "short and stout\n")
    end
  end,
  on_response = function(res, ctx)
    if res.status == 500 then
      local said = res.body -- (reading it first works around a bug, see docs/lua.md)
      harmony.respond(503, { ["Content-Type"] = "application/json", ["Retry-After"] = "5" },
        harmony.json.encode({ error = "upstream_unavailable", upstream_said = said, request_id = ctx.request_id }))
    elseif res.status == 503 then
      harmony.respond(502, { ["Content-Type"] = "text/plain" }, "replaced\n")
    end
  end,
}
"#;

#[test]
fn harmony_respond_on_both_sides_and_outer_stages_still_run() {
    let hdrs = "\n[middleware.outer]\ntype = \"headers\"\noptions = { response_set = { \"x-outer\" = \"1\" } }\n";
    let (o, h) =
        api("api-respond", &[("respond.lua", RESPOND)], &[("outer", "", ""), ("respond", "respond.lua", "")], hdrs);
    let r = request(h.port, "GET", "/api/headers", &[("X-Teapot", "1")], b"");
    assert_eq!(r.status, 418);
    assert_eq!(r.text(), "short and stout\n");
    assert_eq!(r.header("x-teapot"), Some("yes"));
    assert_eq!(r.header("x-outer"), Some("1"), "the headers middleware before the script still runs");
    assert!(r.header("x-request-id").is_some());
    assert_eq!(o.requests(), 0);
    // response side: the script replaces the upstream's 500
    let r = get(h.port, "/api/status/500");
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("5"));
    assert_eq!(r.header("x-outer"), Some("1"));
    let v = r.json();
    assert_eq!(v["error"], "upstream_unavailable", "{v}");
    assert_eq!(v["upstream_said"], "status 500\n", "{v}");
    assert_eq!(get(h.port, "/api/headers").header("x-outer"), Some("1"));
}

#[test]
fn harmony_respond_on_response_side_without_reading_the_body() {
    let (_o, h) = api("api-respond2", &[("respond.lua", RESPOND)], &[("respond", "respond.lua", "")], "");
    let r = get(h.port, "/api/status/503");
    assert_eq!(r.status, 502);
    assert_eq!(r.text(), "replaced\n");
}

const HELPERS: &str = r#"
return {
  on_request = function(req, ctx)
    local hits = harmony.cache.incr("hits", 1)          -- 1, 2, 3, ... per worker
    harmony.cache.set("last_path", req.path, 60)        -- expires after 60 s
    harmony.log.warn("helpers-marker hits=" .. hits, req.path)
    print("print-marker", hits)
    local bin = "\0\1\2\255"
    local doc = harmony.json.decode('{"a":[1,2],"n":null}')
    harmony.respond(200, { ["Content-Type"] = "application/json" }, harmony.json.encode({
      hits = hits,
      last_path = harmony.cache.get("last_path"),
      deleted = harmony.cache.delete("never-set"),
      b64 = harmony.base64.encode("hello"),
      b64_roundtrip = harmony.base64.decode(harmony.base64.encode(bin)) == bin,
      sha = harmony.sha256("abc"),
      hmac = harmony.hmac_sha256("key", "The quick brown fox jumps over the lazy dog"),
      uuid = harmony.uuid(),
      now = harmony.now(),
      null_is_null = doc.n == harmony.json.null,
      second = doc.a[2],
      encoded = harmony.json.encode({ x = harmony.json.null }),
    }))
  end,
}
"#;

#[test]
fn harmony_helpers() {
    let (_o, h) = api("api-helpers", &[("helpers.lua", HELPERS)], &[("helpers", "helpers.lua", "")], "");
    let mut uuids = Vec::new();
    for n in 1..=3u64 {
        let v: Value = get(h.port, &format!("/api/p{n}")).json();
        assert_eq!(v["hits"], n, "{v}");
        assert_eq!(v["last_path"], format!("/api/p{n}"));
        assert_eq!(v["deleted"], false);
        assert_eq!(v["b64"], "aGVsbG8=");
        assert_eq!(v["b64_roundtrip"], true);
        assert_eq!(v["sha"], "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(v["hmac"], "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8");
        assert_eq!(v["null_is_null"], true);
        assert_eq!(v["second"], 2);
        assert_eq!(v["encoded"], r#"{"x":null}"#);
        let sys = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        assert!((v["now"].as_f64().unwrap() - sys).abs() < 60.0, "{v}");
        let id = v["uuid"].as_str().unwrap().to_string();
        assert!(id.len() == 36 && &id[14..15] == "4", "{id}");
        uuids.push(id);
    }
    uuids.dedup();
    assert_eq!(uuids.len(), 3);
    let line = log_line(&h, "helpers-marker hits=3 /api/p3");
    assert!(line.contains("WARN"), "{line}");
    log_line(&h, "print-marker\t2");
}
