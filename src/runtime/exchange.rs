//! One request/response exchange on a client connection: routing, the
//! request-side stages (built-in and Lua, resumable when a script waits for
//! the body), and the choice of backend.

use super::client::{Client, Phase};
use super::forward::absolute_form_authority;
use super::ids::acceptable_request_id;
use super::request_body::Sink;
use super::respond::RespStages;
use super::worker::Worker;
use crate::lua::{Body, Hook, LuaCtx, LuaHost, Message, MessageState, Outcome, Pending};
use crate::pipeline::{normalize_path, Backend, Ctx, Flow, Generation, LocalResponse, Middleware, ProxyError};
use http1::{BodyDecoder, BodyKind, RequestHead, Version};
use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) struct Exchange {
    pub(crate) gen: Arc<Generation>,
    pub(crate) lua: Option<Rc<LuaHost>>,
    pub(crate) started: Instant,
    pub(crate) request_id: String,
    /// As received, for the access log.
    pub(crate) method: String,
    pub(crate) target: String,
    pub(crate) client_version: Version,
    pub(crate) ctx: Option<Ctx>,
    /// The request while stages run (moved out at dispatch).
    pub(crate) req: Option<Message>,
    /// The endpoint prefix matched in `req.path` ("" for "/").
    pub(crate) prefix: String,
    pub(crate) kind: BodyKind,
    pub(crate) has_body: bool,
    pub(crate) expects_continue: bool,
    /// Next request-side stage to run.
    pub(crate) next_stage: usize,
    /// A Lua request stage waiting for the body.
    pub(crate) pending: Option<Pending>,
    /// The Lua `ctx` table, created by the first Lua stage.
    pub(crate) lua_ctx: Option<LuaCtx>,
    /// How many request-side stages ran (their response sides run in reverse).
    pub(crate) stages_run: usize,
    pub(crate) req_dec: BodyDecoder,
    pub(crate) req_done: bool,
    pub(crate) sink: Sink,
    /// `100 Continue` is owed before we start reading the body.
    pub(crate) continue_owed: bool,
    pub(crate) up_addr: Option<SocketAddr>,
    pub(crate) up_since: Instant,
    pub(crate) up_timeout: Duration,
    /// The serialized upstream head, kept to retry once on a stale pooled connection.
    pub(crate) replay: Option<Vec<u8>>,
    /// The request head as JSON, for the echo backend.
    pub(crate) echo: Option<serde_json::Value>,
    /// The response while response-side stages run.
    pub(crate) resp: Option<RespStages>,
    pub(crate) resp_started: bool,
    pub(crate) resp_dec: Option<BodyDecoder>,
    pub(crate) resp_chunked: bool,
    pub(crate) resp_keep_alive: bool,
    pub(crate) resp_done: bool,
    pub(crate) status: u16,
    pub(crate) bytes_out: u64,
}

impl Exchange {
    /// The client is expected to be sending body bytes right now.
    pub(crate) fn reading_body(&self) -> bool {
        !self.req_done && !matches!(self.sink, Sink::Discard)
    }

    /// The Lua `ctx` for this request (created on first use).
    pub(crate) fn lua_ctx(&mut self) -> Option<LuaCtx> {
        if self.lua_ctx.is_none() {
            let host = self.lua.as_ref()?;
            let ctx = self.ctx.as_ref()?;
            let t = host
                .new_ctx(
                    &self.gen.settings.gateway_id,
                    &self.gen.pipelines[ctx.pipeline].name,
                    &self.gen.endpoints[ctx.endpoint],
                    &self.request_id,
                )
                .ok()?;
            self.lua_ctx = Some(t);
        }
        self.lua_ctx.clone()
    }
}

pub(crate) fn is_idempotent(method: &str) -> bool {
    matches!(method, "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE" | "TRACE")
}

impl Worker {
    pub(crate) fn start_exchange(&mut self, c: &mut Client, mut head: RequestHead) {
        c.gen = self.gen.clone();
        let gen = c.gen.clone();
        let request_id = match head.headers.get("x-request-id") {
            Some(v) if acceptable_request_id(v) => String::from_utf8_lossy(v).into_owned(),
            _ => self.ids.next_id(),
        };
        c.keep_alive = c.keep_alive && head.keep_alive() && !self.draining;
        let limits = &gen.settings.limits;
        c.phase = Phase::Exchange;
        let kind = http1::request_body_kind(&head, limits);
        let has_body = matches!(kind, Ok(k) if !matches!(k, BodyKind::Empty | BodyKind::Length(0)));
        // what routing needs from the target, read before the target moves into the exchange
        let authority = absolute_form_authority(&head.target).map(str::to_string);
        let origin_form = head.target.starts_with('/');
        let norm = normalize_path(head.path()).map(|p| p.into_owned());
        let query = head.query().map(str::to_string);
        let expects_continue = has_body && head.expects_continue();
        let ex = Box::new(Exchange {
            gen: gen.clone(),
            lua: self.lua.clone(),
            started: self.now,
            request_id,
            method: head.method.clone(),
            target: std::mem::take(&mut head.target),
            client_version: head.version,
            ctx: None,
            req: None,
            prefix: String::new(),
            kind: *kind.as_ref().unwrap_or(&BodyKind::Empty),
            has_body,
            expects_continue,
            next_stage: 0,
            pending: None,
            lua_ctx: None,
            stages_run: 0,
            req_dec: BodyDecoder::new(*kind.as_ref().unwrap_or(&BodyKind::Empty), limits),
            req_done: !has_body,
            sink: Sink::Discard,
            continue_owed: false,
            up_addr: None,
            up_since: self.now,
            up_timeout: Duration::from_secs(30),
            replay: None,
            echo: None,
            resp: None,
            resp_started: false,
            resp_dec: None,
            resp_chunked: false,
            resp_keep_alive: false,
            resp_done: false,
            status: 0,
            bytes_out: 0,
        });
        c.ex = Some(ex);
        if let Err(e) = kind {
            c.keep_alive = false;
            return self.fail_exchange(c, ProxyError::from_http1(&e));
        }

        // route on the normalised path
        if !origin_form && authority.is_none() {
            return self.fail_exchange(
                c,
                ProxyError::BadRequest { status: 400, detail: "request target must be a path".into() },
            );
        }
        let Some(norm) = norm else {
            let detail = "ambiguous or malformed percent-encoding in path".into();
            return self.fail_exchange(c, ProxyError::BadRequest { status: 400, detail });
        };
        if let Some((mgmt, rest)) = self.management_path(c, &norm) {
            let rest = rest.to_string();
            return self.management(c, &mgmt, &head.method, &rest, &head.headers);
        }
        let Some(m) = gen.route(&c.net, &norm) else {
            return self.fail_exchange(c, ProxyError::NoRoute);
        };
        if let Some(a) = authority {
            // RFC 9112 §3.2.2: the target's authority replaces any Host field
            head.headers.set("Host", a.as_bytes());
        }
        let route_path = crate::pipeline::route_path(&norm, &m).to_string();
        let ex = c.ex.as_mut().expect("exchange just set");
        ex.prefix = norm[..m.prefix_len].to_string();
        ex.ctx = Some(Ctx {
            request_id: ex.request_id.clone(),
            pipeline: m.pipeline,
            endpoint: m.endpoint,
            route_path,
            peer: c.peer,
        });
        ex.req = Some(Rc::new(RefCell::new(MessageState {
            is_request: true,
            method: std::mem::take(&mut head.method),
            path: norm,
            query,
            status: 0,
            headers: head.headers,
            body: if has_body { Body::Pending } else { Body::Loaded(Vec::new()) },
            body_changed: false,
            path_changed: false,
            peer: Some(c.peer),
        })));
        self.run_request_stages(c);
    }

    /// Run request-side stages from where we are; may stop to wait for the body.
    pub(crate) fn run_request_stages(&mut self, c: &mut Client) {
        loop {
            let ex = c.ex.as_mut().expect("exchange");
            let gen = ex.gen.clone();
            let ctx = ex.ctx.as_mut().expect("routed");
            let pipeline = &gen.pipelines[ctx.pipeline];
            let msg = ex.req.clone().expect("request in stages");
            let outcome = if let Some(p) = ex.pending.take() {
                let host = ex.lua.clone().expect("lua host");
                let o = host.resume(p);
                sync_route_path(ex);
                self.count_lua(&host);
                o
            } else if ex.next_stage == pipeline.middleware.len() {
                break;
            } else {
                let mi = pipeline.middleware[ex.next_stage];
                match &gen.middleware[mi].1 {
                    Middleware::Lua => match (ex.lua.clone(), ex.lua_ctx()) {
                        (Some(host), Some(lctx)) if host.has(mi, Hook::Request) => {
                            let o = host.call(mi, Hook::Request, &msg, &lctx, &ex.request_id);
                            sync_route_path(ex);
                            self.count_lua(&host);
                            o
                        }
                        _ => Outcome::Continue,
                    },
                    builtin => {
                        let ctx = ex.ctx.as_mut().expect("routed");
                        match builtin.on_request(&mut msg.borrow_mut().headers, ctx) {
                            Flow::Continue => Outcome::Continue,
                            Flow::Respond(r) => Outcome::Respond(r),
                        }
                    }
                }
            };
            let ex = c.ex.as_mut().expect("exchange");
            match outcome {
                Outcome::Continue => ex.next_stage += 1,
                Outcome::Respond(r) => {
                    ex.stages_run = ex.next_stage;
                    return self.local_response(c, r, true);
                }
                Outcome::Failed { error_id } => {
                    ex.stages_run = ex.next_stage;
                    return self.stage_failed(c, &error_id, true);
                }
                Outcome::NeedBody(p) => {
                    // if the body never comes, the stages before this one still answer
                    ex.stages_run = ex.next_stage;
                    if !matches!(msg.borrow().body, Body::Pending) {
                        // the body is here: only a script yielding on its own gets here
                        log::error!("rid={} a Lua stage yielded with the body already loaded", ex.request_id);
                        return self.stage_failed(c, "lua-yield", true);
                    }
                    ex.pending = Some(p);
                    ex.sink = Sink::Collect { buf: Vec::new(), for_stage: true };
                    ex.continue_owed = ex.expects_continue;
                    return; // request_body_step collects, then calls us again
                }
            }
        }
        let ex = c.ex.as_mut().expect("exchange");
        ex.stages_run = ex.next_stage;
        self.dispatch(c);
    }

    /// Carry a host's failure and budget-kill counts into the metrics.
    pub(crate) fn count_lua(&self, host: &LuaHost) {
        let (errors, kills) = host.take_counts();
        if errors + kills > 0 {
            if let Ok(mut m) = self.shared.metrics[self.index].lock() {
                m.lua_errors += errors;
                m.lua_budget_kills += kills;
            }
        }
    }

    /// A Lua stage failed closed: 500 with the error id (details are in the log).
    /// `run_stages`: false when the failure happened on the response side
    /// (running those stages again on the error would fail the same way).
    pub(crate) fn stage_failed(&mut self, c: &mut Client, error_id: &str, run_stages: bool) {
        let rid = c.ex.as_ref().map(|e| e.request_id.clone()).unwrap_or_default();
        let mut r = LocalResponse::json_error(
            500,
            "script_error",
            &format!("a pipeline script failed (error_id {error_id})"),
            &rid,
        );
        r.headers.append("X-Error-Id", error_id.as_bytes());
        self.local_response(c, r, run_stages);
    }

    /// All request stages passed: send the request where it goes.
    fn dispatch(&mut self, c: &mut Client) {
        let ex = c.ex.as_mut().expect("exchange");
        let gen = ex.gen.clone();
        let ctx = ex.ctx.as_ref().expect("routed");
        let pipeline = &gen.pipelines[ctx.pipeline];
        // ctx.route (set by a script) picks one of the pipeline's backends
        let mut backend_index = pipeline.backends[0];
        if let Some(route) = ex.lua_ctx.as_ref().and_then(LuaCtx::route) {
            match pipeline.backends.iter().find(|&&b| gen.backends[b].0 == route) {
                Some(&b) => backend_index = b,
                None => {
                    log::error!(
                        "rid={} ctx.route = '{route}' is not a backend of pipeline '{}'",
                        ex.request_id,
                        pipeline.name
                    );
                    return self.stage_failed(c, "invalid-route", true);
                }
            }
        }
        let msg = ex.req.take().expect("request");
        let mut state = Rc::try_unwrap(msg).map(RefCell::into_inner).unwrap_or_else(|rc| clone_state(&rc.borrow()));
        if state.body_changed {
            // the framing fields described the old body
            state.headers.remove("content-length");
            state.headers.remove("transfer-encoding");
        }
        let buffered = match &state.body {
            Body::Loaded(b) if ex.has_body || state.body_changed => Some(b.clone()),
            _ => None,
        };
        match &gen.backends[backend_index].1 {
            Backend::Echo => self.dispatch_echo(c, state, buffered),
            Backend::Http(upstream) => self.dispatch_http(c, state, buffered, upstream),
            // validation keeps dicom backends out of HTTP pipelines
            Backend::Dicom(d) => {
                log::error!("rid={} backend '{}' is a dicom backend", ex.request_id, d.name);
                self.stage_failed(c, "invalid-route", true)
            }
        }
    }
}

/// A script changed `req.path`: recompute the path behind the endpoint.
fn sync_route_path(ex: &mut Exchange) {
    let Some(msg) = ex.req.as_ref() else { return };
    let mut s = msg.borrow_mut();
    if !s.path_changed {
        return;
    }
    s.path_changed = false;
    let Some(ctx) = ex.ctx.as_mut() else { return };
    // keep the endpoint prefix semantics: strip it if the new path still has it
    let rest = match s.path.strip_prefix(ex.prefix.as_str()) {
        Some(r) if r.is_empty() || r.starts_with('/') => r,
        _ => s.path.as_str(),
    };
    ctx.route_path = if rest.is_empty() { "/".to_string() } else { rest.to_string() };
}

fn clone_state(s: &MessageState) -> MessageState {
    MessageState {
        is_request: s.is_request,
        method: s.method.clone(),
        path: s.path.clone(),
        query: s.query.clone(),
        status: s.status,
        headers: s.headers.clone(),
        body: s.body.clone(),
        body_changed: s.body_changed,
        path_changed: s.path_changed,
        peer: s.peer,
    }
}
