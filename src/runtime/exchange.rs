//! One request/response exchange on a client connection: routing, the
//! request-side middleware, the backend choice, and the request body flowing
//! to the upstream (or into the echo buffer).

use super::buf::{ReadOutcome, BUF_SIZE};
use super::client::{Client, Phase, HIGH_WATER};
use super::ids::acceptable_request_id;
use super::worker::Worker;
use crate::pipeline::{normalize_path, Backend, Ctx, Flow, Generation, LocalResponse, ProxyError};
use http1::{BodyDecoder, BodyKind, Headers, RequestHead, Version};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where the request body goes.
pub(crate) enum Sink {
    /// To the upstream, with this framing.
    Upstream { chunked: bool },
    /// Collected for the echo backend, with the request head as JSON.
    Echo { head: Vec<u8>, body: Vec<u8> },
    /// Nobody wants it (the request was answered early).
    Discard,
}

pub(crate) struct Exchange {
    pub(crate) gen: Arc<Generation>,
    pub(crate) started: Instant,
    pub(crate) request_id: String,
    pub(crate) method: String,
    pub(crate) target: String,
    pub(crate) client_version: Version,
    pub(crate) ctx: Option<Ctx>,
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
}

fn is_idempotent(method: &str) -> bool {
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
        let limits = gen.settings.limits.clone();
        let mut ex = Box::new(Exchange {
            gen: gen.clone(),
            started: self.now,
            request_id,
            method: std::mem::take(&mut head.method),
            target: std::mem::take(&mut head.target),
            client_version: head.version,
            ctx: None,
            stages_run: 0,
            req_dec: BodyDecoder::new(BodyKind::Empty, &limits),
            req_done: true,
            sink: Sink::Discard,
            continue_owed: false,
            up_addr: None,
            up_since: self.now,
            up_timeout: Duration::from_secs(30),
            replay: None,
            resp_started: false,
            resp_dec: None,
            resp_chunked: false,
            resp_keep_alive: false,
            resp_done: false,
            status: 0,
            bytes_out: 0,
        });
        head.method = ex.method.clone();
        head.target = ex.target.clone();
        c.phase = Phase::Exchange;

        let kind = match http1::request_body_kind(&head, &limits) {
            Ok(k) => k,
            Err(e) => {
                c.keep_alive = false;
                c.ex = Some(ex);
                return self.fail_exchange(c, ProxyError::from_http1(&e));
            }
        };
        let has_body = !matches!(kind, BodyKind::Empty | BodyKind::Length(0));
        ex.req_dec = BodyDecoder::new(kind, &limits);
        ex.req_done = !has_body;
        c.ex = Some(ex);

        // route on the normalised path
        let authority = absolute_form_authority(&head.target).map(str::to_string);
        let path = if head.target.starts_with('/') || authority.is_some() {
            head.path().to_string()
        } else {
            return self.fail_exchange(
                c,
                ProxyError::BadRequest { status: 400, detail: "request target must be a path".into() },
            );
        };
        let Some(norm) = normalize_path(&path) else {
            return self.fail_exchange(
                c,
                ProxyError::BadRequest {
                    status: 400,
                    detail: "ambiguous or malformed percent-encoding in path".into(),
                },
            );
        };
        let Some(m) = gen.route(c.net, &norm) else {
            return self.fail_exchange(c, ProxyError::NoRoute);
        };
        let route_path = crate::pipeline::route_path(&norm, &m).to_string();
        if let Some(a) = authority {
            // RFC 9112 §3.2.2: the target's authority replaces any Host field
            head.headers.set("Host", a.as_bytes());
        }
        let ex = c.ex.as_mut().expect("exchange just set");
        let mut ctx = Ctx {
            request_id: ex.request_id.clone(),
            pipeline: m.pipeline,
            endpoint: m.endpoint,
            route_path,
            peer: c.peer,
        };
        let pipeline = &gen.pipelines[m.pipeline];
        for (i, &mi) in pipeline.middleware.iter().enumerate() {
            if let Flow::Respond(r) = gen.middleware[mi].1.on_request(&mut head, &mut ctx) {
                ex.stages_run = i;
                ex.ctx = Some(ctx);
                return self.local_response(c, r);
            }
        }
        ex.stages_run = pipeline.middleware.len();
        let expects_continue = head.expects_continue() && has_body;
        let backend = &gen.backends[pipeline.backends[0]].1;
        match backend {
            Backend::Echo => {
                ex.sink = Sink::Echo { head: echo_head_json(&head), body: Vec::new() };
                ex.continue_owed = expects_continue;
                ex.ctx = Some(ctx);
                if !has_body {
                    self.finish_echo(c);
                }
            }
            Backend::Http(upstream) => {
                let addr = upstream.pick();
                ex.up_addr = Some(addr);
                ex.up_timeout = upstream.timeout;
                ex.sink = Sink::Upstream { chunked: matches!(kind, BodyKind::Chunked) };
                ex.continue_owed = expects_continue;
                let query = head.query().map(str::to_string);
                let target = upstream.target(&ctx.route_path, query.as_deref());
                let up_head = upstream_head(&c.peer_ip, head, target, kind, upstream, &ctx.request_id);
                let ex = c.ex.as_mut().expect("exchange");
                ex.ctx = Some(ctx);
                let retryable = !has_body && is_idempotent(&up_head.method);
                self.send_upstream_head(c, addr, &up_head, retryable);
            }
        }
    }
}

/// Build the head we send upstream: hop-by-hop fields dropped, framing
/// recomputed, forwarding fields added.
fn upstream_head(
    peer_ip: &str,
    head: RequestHead,
    target: String,
    kind: BodyKind,
    upstream: &crate::pipeline::HttpUpstream,
    request_id: &str,
) -> RequestHead {
    let mut h = head.headers;
    let client_host = h.get("host").map(|v| v.to_vec());
    http1::remove_hop_by_hop(&mut h);
    h.remove("content-length");
    h.remove("expect");
    if !upstream.preserve_host || client_host.is_none() {
        h.set("Host", upstream.host_header.as_bytes());
    }
    match h.get("x-forwarded-for") {
        Some(prev) => {
            let mut v = prev.to_vec();
            v.extend_from_slice(b", ");
            v.extend_from_slice(peer_ip.as_bytes());
            h.set("X-Forwarded-For", &v);
        }
        None => h.append("X-Forwarded-For", peer_ip.as_bytes()),
    }
    h.set("X-Forwarded-Proto", b"http");
    if let Some(host) = client_host {
        h.set("X-Forwarded-Host", &host);
    }
    append_via(&mut h);
    h.set("X-Request-Id", request_id.as_bytes());
    match kind {
        BodyKind::Length(n) => h.append("Content-Length", super::fmt::decimal(n).as_bytes()),
        BodyKind::Chunked => h.append("Transfer-Encoding", b"chunked"),
        _ => {}
    }
    RequestHead { method: head.method, target, version: Version::Http11, headers: h }
}

/// The authority of an absolute-form target (`http://host:port/...`, scheme
/// case-insensitive), or None for origin-form.
fn absolute_form_authority(target: &str) -> Option<&str> {
    let (scheme, rest) = target.split_once("://")?;
    if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
        return None;
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    (!authority.is_empty() && !authority.contains('@')).then_some(authority)
}

/// Add our hop to `Via` (RFC 9110 §7.6.3).
pub(crate) fn append_via(h: &mut Headers) {
    match h.get("via") {
        Some(prev) => {
            let mut v = prev.to_vec();
            v.extend_from_slice(b", 1.1 harmony");
            h.set("Via", &v);
        }
        None => h.append("Via", b"1.1 harmony"),
    }
}

impl Worker {
    /// Attach an upstream connection (pooled or new) and queue the head.
    pub(crate) fn send_upstream_head(&mut self, c: &mut Client, addr: SocketAddr, head: &RequestHead, retryable: bool) {
        let up = match self.pooled_upstream(addr, c.key) {
            Some(up) => Some(up),
            None => match self.new_upstream(addr, c.key) {
                Ok(up) => Some(up),
                Err(e) => {
                    return self
                        .fail_exchange(c, ProxyError::BadGateway(format!("cannot connect to upstream {addr}: {e}")))
                }
            },
        };
        let mut up = up.expect("upstream");
        let ex = c.ex.as_mut().expect("exchange");
        ex.up_since = self.now;
        let out = up.wbuf.vec(&mut self.bufs);
        let start = out.len();
        http1::write_request_head(head, out);
        if up.reused && retryable {
            ex.replay = Some(out[start..].to_vec());
        }
        c.up = Some(up);
    }

    /// One pass over the request side: owe 100-continue, read and forward body.
    pub(crate) fn request_body_step(&mut self, c: &mut Client) -> bool {
        let Some(ex) = c.ex.as_mut() else { return false };
        if ex.req_done {
            return false;
        }
        if matches!(ex.sink, Sink::Discard) {
            return false;
        }
        let mut moved = false;
        if ex.continue_owed {
            ex.continue_owed = false;
            if ex.client_version == Version::Http11 {
                c.wbuf.vec(&mut self.bufs).extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                moved = true;
            }
        }
        loop {
            let ex = c.ex.as_mut().expect("exchange");
            // backpressure: stop when the sink is full
            let room = match &ex.sink {
                Sink::Upstream { .. } => c.up.as_ref().is_some_and(|u| u.wbuf.len() < HIGH_WATER),
                Sink::Echo { .. } => true,
                Sink::Discard => false,
            };
            if !room {
                return moved;
            }
            if !c.rbuf.is_empty() {
                let step = match ex.req_dec.decode(c.rbuf.bytes()) {
                    Ok(s) => s,
                    Err(e) => {
                        c.keep_alive = false;
                        self.fail_exchange(c, ProxyError::from_http1(&e));
                        return true;
                    }
                };
                if step.consumed > 0 || step.done {
                    let data = &c.rbuf.bytes()[step.data.clone()];
                    match &mut ex.sink {
                        Sink::Upstream { chunked } => {
                            let up = c.up.as_mut().expect("upstream");
                            let out = up.wbuf.vec(&mut self.bufs);
                            if *chunked {
                                if !data.is_empty() {
                                    http1::write_chunk_header(data.len(), out);
                                    out.extend_from_slice(data);
                                    http1::write_chunk_end(out);
                                }
                                if step.done {
                                    let trailers = ex.req_dec.take_trailers();
                                    http1::write_last_chunk(trailers.as_ref(), out);
                                }
                            } else {
                                out.extend_from_slice(data);
                            }
                        }
                        Sink::Echo { body: buf, .. } => {
                            if buf.len() + data.len() > ex.gen.settings.buffered_body_bytes {
                                c.keep_alive = false;
                                self.fail_exchange(
                                    c,
                                    ProxyError::BadRequest {
                                        status: 413,
                                        detail: "request body is larger than the echo backend buffers".into(),
                                    },
                                );
                                return true;
                            }
                            buf.extend_from_slice(data);
                        }
                        Sink::Discard => {}
                    }
                    c.rbuf.consume(step.consumed);
                    moved = true;
                    if step.done {
                        ex.req_done = true;
                        if matches!(ex.sink, Sink::Echo { .. }) {
                            self.finish_echo(c);
                        }
                        return true;
                    }
                    continue;
                }
            }
            // need more input
            if c.eof {
                // the client went away mid-body
                c.keep_alive = false;
                let ex = c.ex.as_mut().expect("exchange");
                if ex.req_dec.finish_eof().is_err() {
                    self.abort_exchange(c);
                    c.phase = Phase::Closed;
                    return true;
                }
                return moved;
            }
            if !c.rd {
                return moved;
            }
            match c.rbuf.read_from(&mut c.sock, &mut self.bufs, BUF_SIZE) {
                ReadOutcome::Data { n, drained } => {
                    if drained && !c.hup {
                        c.rd = false;
                    }
                    if n > 0 {
                        c.last_read = self.now;
                        moved = true;
                    }
                }
                ReadOutcome::WouldBlock => {
                    c.rd = false;
                    return moved;
                }
                ReadOutcome::Eof => c.eof = true,
                ReadOutcome::NoRoom => return moved,
                ReadOutcome::Error(e) => {
                    log::debug!("read body from {}: {e}", c.peer);
                    self.abort_exchange(c);
                    c.phase = Phase::Closed;
                    return true;
                }
            }
        }
    }

    /// The echo backend answers with the request it received, as JSON.
    fn finish_echo(&mut self, c: &mut Client) {
        let ex = c.ex.as_mut().expect("exchange");
        let (head_json, body) = match std::mem::replace(&mut ex.sink, Sink::Discard) {
            Sink::Echo { head, body } => (head, body),
            _ => (Vec::new(), Vec::new()),
        };
        let mut v: serde_json::Value = serde_json::from_slice(&head_json).unwrap_or_default();
        match String::from_utf8(body) {
            Ok(s) => v["body"] = serde_json::Value::String(s),
            Err(e) => {
                v["body"] = serde_json::Value::String(crate::base64::encode(e.as_bytes()));
                v["body_encoding"] = "base64".into();
            }
        }
        v["request_id"] = ex.request_id.clone().into();
        v["peer"] = c.peer.to_string().into();
        if let Some(ctx) = ex.ctx.as_ref() {
            v["pipeline"] = ex.gen.pipelines[ctx.pipeline].name.clone().into();
            v["endpoint"] = ex.gen.endpoints[ctx.endpoint].clone().into();
            v["route_path"] = ctx.route_path.clone().into();
        }
        let mut body = serde_json::to_vec_pretty(&v).unwrap_or_default();
        body.push(b'\n');
        let mut headers = Headers::with_capacity(4, 64);
        headers.append("Content-Type", b"application/json");
        self.local_response(c, LocalResponse { status: 200, headers, body });
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
        let rid = ex.request_id.clone();
        let mut r = LocalResponse::json_error(err.status(), err.code(), &err.detail(), &rid);
        r.headers.append("X-Request-Id", rid.as_bytes());
        self.local_response(c, r);
    }
}

/// The request head as the echo backend reports it.
fn echo_head_json(head: &RequestHead) -> Vec<u8> {
    let mut headers = serde_json::Map::new();
    for (name, value) in head.headers.iter() {
        let key = name.to_ascii_lowercase();
        let val = String::from_utf8_lossy(value).into_owned();
        match headers.get_mut(&key) {
            Some(serde_json::Value::String(prev)) => {
                prev.push_str(", ");
                prev.push_str(&val);
            }
            _ => {
                headers.insert(key, val.into());
            }
        }
    }
    let v = serde_json::json!({
        "method": head.method,
        "path": head.path(),
        "query": head.query().unwrap_or(""),
        "version": if head.version == Version::Http10 { "HTTP/1.0" } else { "HTTP/1.1" },
        "headers": headers,
    });
    serde_json::to_vec(&v).unwrap_or_default()
}
