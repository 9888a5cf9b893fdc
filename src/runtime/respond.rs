//! Producing the response: the upstream head rewritten, response-side stages
//! (in reverse order; a Lua stage may wait for the body), the head emitted
//! with the right framing, local answers and errors, and the end of the
//! exchange (access log, upstream pooled or closed).

use super::client::{Client, Phase};
use super::forward::append_via;
use super::request_body::Sink;
use super::worker::Worker;
use crate::lua::{Body, Hook, Message, MessageState, Outcome, Pending};
use crate::pipeline::{LocalResponse, Middleware, ProxyError};
use http1::{BodyDecoder, BodyKind, Headers, Limits, ResponseHead, Version};
use std::cell::RefCell;
use std::rc::Rc;

fn unlimited() -> Limits {
    Limits { max_body_bytes: u64::MAX, ..Limits::default() }
}

/// A response on its way through the response-side stages.
pub(crate) struct RespStages {
    pub(crate) msg: Message,
    reason: String,
    /// Framing of the upstream body still to relay; None for a local answer.
    kind: Option<BodyKind>,
    /// Stages left: the next one to run is `next - 1`.
    next: usize,
    pending: Option<Pending>,
    /// Upstream body being buffered for a stage that reads `res.body`.
    pub(crate) collecting: Option<Vec<u8>>,
    /// The upstream body has been read completely into `msg.body`.
    pub(crate) upstream_body_read: bool,
    /// Transfer codings other than chunked, to relay.
    other_codings: Vec<u8>,
    /// The status before the stages ran (its reason phrase is only kept for it).
    status_in: u16,
}

impl Worker {
    /// An upstream response head arrived. False if the exchange failed.
    pub(crate) fn start_response(&mut self, c: &mut Client, head: ResponseHead) -> bool {
        let ex = c.ex.as_mut().expect("exchange");
        let kind = match http1::response_body_kind(&head, &ex.method) {
            Ok(k) => k,
            Err(e) => {
                self.fail_exchange(c, ProxyError::BadGateway(format!("upstream response framing: {e}")));
                return false;
            }
        };
        // codings other than chunked (e.g. "gzip, chunked") stay on the body:
        // relay them to HTTP/1.1 clients, refuse where the client cannot take them
        let other_codings = other_transfer_codings(&head.headers);
        if !other_codings.is_empty() && ex.client_version != Version::Http11 {
            self.fail_exchange(
                c,
                ProxyError::BadGateway("upstream used a transfer coding an HTTP/1.0 client cannot receive".into()),
            );
            return false;
        }
        ex.resp_keep_alive = head.keep_alive() && !matches!(kind, BodyKind::UntilClose);
        let mut h = head.headers;
        http1::remove_hop_by_hop(&mut h);
        if kind != BodyKind::Empty {
            h.remove("content-length"); // set again from the framing we send
        }
        append_via(&mut h);
        if !h.contains("x-request-id") {
            h.append("X-Request-Id", ex.request_id.as_bytes());
        }
        ex.resp_dec = Some(BodyDecoder::new(kind, &unlimited()));
        let has_body = !matches!(kind, BodyKind::Empty | BodyKind::Length(0));
        ex.resp = Some(RespStages {
            msg: response_message(head.status, h, if has_body { Body::Pending } else { Body::Loaded(Vec::new()) }),
            reason: head.reason,
            kind: Some(kind),
            next: ex.stages_run,
            pending: None,
            collecting: None,
            upstream_body_read: !has_body,
            other_codings,
            status_in: head.status,
        });
        if has_body && ex.stages_run > 0 {
            take_buffered_body(c, kind);
        }
        self.run_response_stages(c);
        true
    }

    /// Answer the request from the proxy itself (early answer, echo, error).
    /// `run_stages`: pass it through the response side of the stages that ran.
    pub(crate) fn local_response(&mut self, c: &mut Client, r: LocalResponse, run_stages: bool) {
        if let Some(up) = c.up.take() {
            self.close_upstream(up);
        }
        let ex = c.ex.as_mut().expect("exchange");
        if !ex.req_done {
            c.keep_alive = false;
            ex.sink = Sink::Discard;
        }
        let mut h = r.headers;
        if !h.contains("x-request-id") {
            h.append("X-Request-Id", ex.request_id.as_bytes());
        }
        ex.resp_keep_alive = false;
        ex.resp = Some(RespStages {
            msg: response_message(r.status, h, Body::Loaded(r.body)),
            reason: String::new(),
            kind: None,
            next: if run_stages { ex.stages_run } else { 0 },
            pending: None,
            collecting: None,
            upstream_body_read: true,
            other_codings: Vec::new(),
            status_in: r.status,
        });
        self.run_response_stages(c);
    }

    /// Run response-side stages (reverse order) from where we are.
    pub(crate) fn run_response_stages(&mut self, c: &mut Client) {
        loop {
            let ex = c.ex.as_mut().expect("exchange");
            let Some(rs) = ex.resp.as_mut() else { return };
            let gen = ex.gen.clone();
            let outcome = if let Some(p) = rs.pending.take() {
                let host = ex.lua.clone().expect("lua host");
                let o = host.resume(p);
                self.count_lua(&host);
                o
            } else if rs.next == 0 {
                break;
            } else {
                let Some(ctx) = ex.ctx.as_ref() else { break };
                let mi = gen.pipelines[ctx.pipeline].middleware[rs.next - 1];
                let msg = rs.msg.clone();
                match &gen.middleware[mi].1 {
                    Middleware::Lua => match (ex.lua.clone(), ex.lua_ctx()) {
                        (Some(host), Some(lctx)) if host.has(mi, Hook::Response) => {
                            let o = host.call(mi, Hook::Response, &msg, &lctx, &ex.request_id);
                            self.count_lua(&host);
                            o
                        }
                        _ => Outcome::Continue,
                    },
                    builtin => {
                        builtin.on_response(&mut msg.borrow_mut().headers, ctx);
                        Outcome::Continue
                    }
                }
            };
            let ex = c.ex.as_mut().expect("exchange");
            let rs = ex.resp.as_mut().expect("stages");
            match outcome {
                Outcome::Continue => rs.next -= 1,
                Outcome::Respond(r) => {
                    // the script replaces the response; earlier stages still see it
                    let mut h = r.headers;
                    if !h.contains("x-request-id") {
                        h.append("X-Request-Id", ex.request_id.as_bytes());
                    }
                    {
                        let mut s = rs.msg.borrow_mut();
                        s.status = r.status;
                        s.headers = h;
                        s.body = Body::Loaded(r.body);
                        s.body_changed = true;
                    }
                    rs.reason = String::new();
                    rs.next -= 1;
                }
                Outcome::Failed { error_id } => {
                    ex.resp = None;
                    if let Some(up) = c.up.take() {
                        self.close_upstream(up);
                    }
                    return self.stage_failed(c, &error_id, false);
                }
                Outcome::NeedBody(p) => {
                    if !matches!(rs.msg.borrow().body, Body::Pending) {
                        // the body is here: only a script yielding on its own gets here
                        log::error!("rid={} a Lua stage yielded with the body already loaded", ex.request_id);
                        ex.resp = None;
                        if let Some(up) = c.up.take() {
                            self.close_upstream(up);
                        }
                        return self.stage_failed(c, "lua-yield", false);
                    }
                    rs.pending = Some(p);
                    rs.collecting = Some(Vec::new());
                    return; // response_step collects, then calls us again
                }
            }
        }
        self.emit_response(c);
    }

    /// Stages are done: queue the head (and the body, if it is complete).
    fn emit_response(&mut self, c: &mut Client) {
        let ex = c.ex.as_mut().expect("exchange");
        let Some(rs) = ex.resp.take() else { return };
        let state = Rc::try_unwrap(rs.msg).map(RefCell::into_inner).unwrap_or_else(|rc| {
            let s = rc.borrow();
            MessageState {
                headers: s.headers.clone(),
                body: s.body.clone(),
                body_changed: s.body_changed,
                ..response_state(s.status)
            }
        });
        let mut h = state.headers;
        let status = state.status;
        // a stage that changed the status changed the meaning of the reason phrase
        let reason = if status == rs.status_in { rs.reason } else { String::new() };
        let bodiless = status < 200 || status == 204 || status == 304;
        let complete = match state.body {
            Body::Loaded(b) if rs.kind.is_none() || state.body_changed || rs.upstream_body_read => Some(b),
            _ => None,
        };
        if complete.is_some() && !rs.upstream_body_read {
            // a script replaced the body without reading the upstream's: drop that connection
            ex.resp_keep_alive = false;
            if let Some(up) = c.up.take() {
                self.close_upstream(up);
            }
        }
        ex.resp_chunked = false;
        // the framing field we set, written after the others (not stored in `h`)
        let mut length = None;
        let mut coding = None;
        match (&complete, rs.kind) {
            // HEAD, 204, 304: the upstream's Content-Length describes a body nobody sends
            (Some(_), Some(BodyKind::Empty)) if !state.body_changed => {}
            (Some(b), _) => {
                h.remove("transfer-encoding");
                if !bodiless {
                    h.remove("content-length");
                    length = Some(super::fmt::decimal(b.len() as u64));
                }
            }
            (None, Some(BodyKind::Length(n))) => {
                h.remove("content-length");
                length = Some(super::fmt::decimal(n));
            }
            (None, Some(BodyKind::Chunked | BodyKind::UntilClose)) => {
                if ex.client_version == Version::Http11 {
                    let mut te = rs.other_codings;
                    te.extend_from_slice(if te.is_empty() { b"chunked" } else { b", chunked" });
                    h.remove("transfer-encoding");
                    coding = Some(te);
                    ex.resp_chunked = true;
                } else {
                    c.keep_alive = false;
                }
            }
            (None, _) => {}
        }
        if !ex.req_done {
            // the response is ready before the whole body arrived: finish, then close
            c.keep_alive = false;
        }
        let connection = connection_field(c.keep_alive && !self.draining, ex.client_version);
        if connection.is_some() {
            h.remove("connection");
        }
        let out = c.wbuf.vec(&mut self.bufs);
        let before = out.len();
        http1::write_status_line(Version::Http11, status, &reason, out);
        h.write_lines(out);
        if let Some(n) = &length {
            http1::write_field("Content-Length", &[n.as_bytes()], out);
        }
        if let Some(te) = &coding {
            http1::write_field("Transfer-Encoding", &[te], out);
        }
        if let Some(value) = connection {
            http1::write_field("Connection", &[value], out);
        }
        out.extend_from_slice(b"\r\n");
        if let Some(b) = &complete {
            if !bodiless && ex.method != "HEAD" {
                out.extend_from_slice(b);
            }
        }
        ex.bytes_out += (out.len() - before) as u64;
        ex.status = status;
        ex.resp_started = true;
        if complete.is_some() {
            ex.resp_done = true;
        }
    }

    /// An error during an exchange: answer it if no response has started,
    /// otherwise the only honest thing left is to cut the connection.
    pub(crate) fn fail_exchange(&mut self, c: &mut Client, err: ProxyError) {
        let Some(ex) = c.ex.as_mut() else {
            return self.write_error(c, &err, "-", true);
        };
        if let Some(up) = c.up.take() {
            self.close_upstream(up);
        }
        if ex.resp_started {
            log::warn!("rid={} {} after the response started; closing connection", ex.request_id, err);
            self.abort_exchange(c);
            c.phase = Phase::Closed;
            return;
        }
        if err.status() >= 500 {
            log::warn!("rid={} {}", ex.request_id, err);
        }
        if matches!(err.status(), 502 | 504) {
            if let Ok(mut m) = self.shared.metrics[self.index].lock() {
                m.upstream_errors += 1;
            }
        }
        // a failure inside the response stages does not run them again
        let run_stages = ex.resp.take().is_none();
        let rid = ex.request_id.clone();
        let r = LocalResponse::json_error(err.status(), err.code(), &err.detail(), &rid);
        self.local_response(c, r, run_stages);
    }

    /// The response is complete: log, recycle the upstream, go on or close.
    pub(crate) fn finish_exchange(&mut self, c: &mut Client) {
        let Some(ex) = c.ex.take() else { return };
        if !ex.req_done {
            c.keep_alive = false;
        }
        if let Some(up) = c.up.take() {
            let reusable = ex.resp_keep_alive
                && ex.req_done
                && up.connected
                && up.rbuf.is_empty()
                && up.wbuf.is_empty()
                && up.idle_clean();
            if reusable {
                self.release_upstream(up);
            } else {
                self.close_upstream(up);
            }
        }
        self.access_log(c, &ex, ex.status);
        c.served += 1;
        c.phase = if c.keep_alive && !self.draining { Phase::Head } else { Phase::Closing };
    }

    /// The exchange ends without a complete response (client gone, upstream
    /// cut mid-body). The caller decides the connection's fate.
    pub(crate) fn abort_exchange(&mut self, c: &mut Client) {
        c.keep_alive = false;
        if let Some(up) = c.up.take() {
            self.close_upstream(up);
        }
        if let Some(ex) = c.ex.take() {
            let status = if ex.resp_started { ex.status } else { 499 };
            self.access_log(c, &ex, status);
        }
    }

    fn access_log(&self, c: &Client, ex: &super::exchange::Exchange, status: u16) {
        let elapsed = std::time::Instant::now().saturating_duration_since(ex.started);
        if let Ok(mut m) = self.shared.metrics[self.index].lock() {
            let pipeline = ex.ctx.as_ref().map_or("-", |x| ex.gen.pipelines[x.pipeline].name.as_str());
            m.record(pipeline, status, elapsed.as_secs_f64());
        }
        if !ex.gen.settings.access_log || !log::log_enabled!(target: "access", log::Level::Info) {
            return;
        }
        let upstream = match (ex.up_addr, &ex.ctx) {
            (Some(a), _) => a.to_string(),
            (None, Some(ctx)) if ex.status != 0 => ex.gen.pipelines[ctx.pipeline].name.clone(),
            _ => "-".to_string(),
        };
        let us = elapsed.as_micros();
        log::info!(
            target: "access",
            "{} {} {} {} {}B {}us up={} rid={}",
            c.peer.ip(),
            ex.method,
            ex.target,
            status,
            ex.bytes_out,
            us,
            upstream,
            ex.request_id
        );
    }
}

fn response_state(status: u16) -> MessageState {
    MessageState {
        is_request: false,
        method: String::new(),
        path: String::new(),
        query: None,
        status,
        headers: Headers::new(),
        body: Body::Loaded(Vec::new()),
        body_changed: false,
        path_changed: false,
        peer: None,
    }
}

fn response_message(status: u16, headers: Headers, body: Body) -> Message {
    Rc::new(RefCell::new(MessageState { headers, body, ..response_state(status) }))
}

/// The transfer codings of a response other than `chunked`, comma-joined.
fn other_transfer_codings(h: &Headers) -> Vec<u8> {
    let mut out = Vec::new();
    for v in h.get_all("transfer-encoding") {
        for t in v.split(|&b| b == b',') {
            let t = t.trim_ascii();
            if !t.is_empty() && !t.eq_ignore_ascii_case(b"chunked") {
                if !out.is_empty() {
                    out.extend_from_slice(b", ");
                }
                out.extend_from_slice(t);
            }
        }
    }
    out
}

/// A fixed-length body that has already arrived whole with the head (a small
/// response, usually): hand it to the response stages as loaded, as if a
/// stage had read it. A stage then has nothing to wait for (its hook runs as
/// a plain call, not a coroutine) and the response goes out in one piece.
/// Bodies still on their way, chunked ones and any larger than
/// `proxy.buffered_body_bytes` stream as before.
fn take_buffered_body(c: &mut Client, kind: BodyKind) {
    let (Some(ex), Some(up)) = (c.ex.as_mut(), c.up.as_mut()) else { return };
    let BodyKind::Length(n) = kind else { return };
    let whole = usize::try_from(n).is_ok_and(|n| n <= ex.gen.settings.buffered_body_bytes && n <= up.rbuf.len());
    let (Some(rs), Some(dec)) = (ex.resp.as_mut(), ex.resp_dec.as_mut()) else { return };
    if !whole {
        return;
    }
    let Ok(step) = dec.decode(up.rbuf.bytes()) else { return };
    // a fixed length that is all here decodes in one step
    let body = up.rbuf.bytes().get(step.data.clone()).map(<[u8]>::to_vec).unwrap_or_default();
    up.rbuf.consume(step.consumed);
    rs.msg.borrow_mut().body = Body::Loaded(body);
    rs.upstream_body_read = true;
}

/// Tell the client whether the connection stays open: the `Connection`
/// field it gets, if any: `close` when we close,
/// `keep-alive` for an HTTP/1.0 client we keep.
fn connection_field(keep_alive: bool, client: Version) -> Option<&'static [u8]> {
    if !keep_alive {
        Some(b"close")
    } else if client == Version::Http10 {
        Some(b"keep-alive")
    } else {
        None
    }
}
