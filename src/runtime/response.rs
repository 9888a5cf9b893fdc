//! The response side of an exchange: upstream connect/flush/read, response
//! head rewriting and response-side middleware, body relay with
//! backpressure, and the end of the exchange (access log, pool or close).

use super::buf::{ReadOutcome, WriteOutcome, BUF_SIZE};
use super::client::{Client, Phase, HIGH_WATER};
use super::exchange::Sink;
use super::worker::Worker;
use crate::pipeline::{LocalResponse, ProxyError};
use http1::{BodyDecoder, BodyKind, Limits, ResponseHead, Version};

fn unlimited() -> Limits {
    Limits { max_body_bytes: u64::MAX, ..Limits::default() }
}

impl Worker {
    /// One pass over an exchange in progress.
    pub(crate) fn exchange_step(&mut self, c: &mut Client) -> bool {
        let mut moved = self.request_body_step(c);
        if c.phase != Phase::Exchange {
            return moved;
        }
        moved |= self.upstream_io(c);
        if c.phase != Phase::Exchange {
            return true;
        }
        moved |= self.response_step(c);
        if c.phase != Phase::Exchange {
            return true;
        }
        if c.ex.as_ref().is_some_and(|ex| ex.resp_done) {
            self.finish_exchange(c);
            moved = true;
        }
        moved
    }

    fn upstream_io(&mut self, c: &mut Client) -> bool {
        let Some(up) = c.up.as_mut() else { return false };
        let Some(ex) = c.ex.as_mut() else { return false };
        let mut moved = false;
        if !up.connected {
            if !(up.wr || up.rd) {
                return false;
            }
            match up.check_connected() {
                Ok(true) => {
                    ex.up_since = self.now;
                    moved = true;
                }
                Ok(false) => {
                    up.wr = false;
                    up.rd = false;
                    return false;
                }
                Err(e) => {
                    let addr = up.addr;
                    self.fail_exchange(c, ProxyError::BadGateway(format!("cannot connect to upstream {addr}: {e}")));
                    return true;
                }
            }
        }
        if up.wr && !up.wbuf.is_empty() && !up.eof {
            let (n, outcome) = up.wbuf.flush_to(&mut up.sock);
            if n > 0 {
                moved = true;
                ex.up_since = self.now;
            }
            match outcome {
                WriteOutcome::Done => {}
                WriteOutcome::Blocked => up.wr = false,
                WriteOutcome::Error(e) => {
                    // the upstream may still have answered (e.g. 413 then close): read what it sent
                    log::debug!("rid={} write to upstream {}: {e}", ex.request_id, up.addr);
                    up.wbuf.clear();
                    up.eof = true;
                    moved = true;
                }
            }
        }
        while up.rd && !up.eof && !ex.resp_done && c.wbuf.len() < HIGH_WATER {
            let limit = if ex.resp_dec.is_none() { self.gen.settings.limits.max_head_bytes + 1 } else { BUF_SIZE };
            match up.rbuf.read_from(&mut up.sock, &mut self.bufs, limit) {
                ReadOutcome::Data { n, drained } => {
                    if drained && !up.hup {
                        up.rd = false;
                    }
                    if n > 0 {
                        ex.up_since = self.now;
                        moved = true;
                    }
                    break;
                }
                ReadOutcome::WouldBlock => up.rd = false,
                ReadOutcome::NoRoom => break,
                ReadOutcome::Eof => {
                    up.eof = true;
                    moved = true;
                }
                ReadOutcome::Error(e) => {
                    log::debug!("rid={} read from upstream {}: {e}", ex.request_id, up.addr);
                    up.eof = true;
                    moved = true;
                }
            }
        }
        moved
    }

    fn response_step(&mut self, c: &mut Client) -> bool {
        let Some(ex) = c.ex.as_mut() else { return false };
        if ex.resp_done || c.up.is_none() {
            return false;
        }
        let mut moved = false;
        if ex.resp_dec.is_none() {
            loop {
                let up = c.up.as_mut().expect("upstream");
                match http1::parse_response(up.rbuf.bytes(), &self.gen.settings.limits) {
                    Err(e) => {
                        let addr = up.addr;
                        self.fail_exchange(
                            c,
                            ProxyError::BadGateway(format!("malformed response from upstream {addr}: {e}")),
                        );
                        return true;
                    }
                    Ok(None) => {
                        if !up.eof {
                            return moved;
                        }
                        let ex = c.ex.as_mut().expect("exchange");
                        if up.rbuf.is_empty() && ex.replay.is_some() {
                            self.retry_upstream(c);
                            return true;
                        }
                        let addr = up.addr;
                        self.fail_exchange(
                            c,
                            ProxyError::BadGateway(format!("upstream {addr} closed the connection before responding")),
                        );
                        return true;
                    }
                    Ok(Some((head, n))) => {
                        up.rbuf.consume(n);
                        moved = true;
                        if head.status == 101 {
                            self.fail_exchange(
                                c,
                                ProxyError::BadGateway(
                                    "upstream switched protocols, which this proxy does not relay".into(),
                                ),
                            );
                            return true;
                        }
                        if head.is_informational() {
                            continue; // 100/102/103 are not relayed; we answered 100-continue ourselves
                        }
                        c.ex.as_mut().expect("exchange").replay = None;
                        if !self.start_response(c, head) {
                            return true;
                        }
                        break;
                    }
                }
            }
        }
        // relay body bytes while the client can take them
        loop {
            if c.wbuf.len() >= HIGH_WATER {
                return moved;
            }
            let ex = c.ex.as_mut().expect("exchange");
            let up = c.up.as_mut().expect("upstream");
            let dec = ex.resp_dec.as_mut().expect("decoder");
            let step = match dec.decode(up.rbuf.bytes()) {
                Ok(s) => s,
                Err(e) => {
                    log::warn!("rid={} upstream {} sent a malformed body: {e}", ex.request_id, up.addr);
                    self.abort_exchange(c);
                    c.phase = Phase::Closed;
                    return true;
                }
            };
            if step.consumed > 0 || step.done {
                let data = &up.rbuf.bytes()[step.data.clone()];
                let out = c.wbuf.vec(&mut self.bufs);
                let before = out.len();
                if ex.resp_chunked {
                    if !data.is_empty() {
                        http1::write_chunk_header(data.len(), out);
                        out.extend_from_slice(data);
                        http1::write_chunk_end(out);
                    }
                    if step.done {
                        let trailers = dec.take_trailers();
                        http1::write_last_chunk(trailers.as_ref(), out);
                    }
                } else {
                    out.extend_from_slice(data);
                }
                ex.bytes_out += (out.len() - before) as u64;
                up.rbuf.consume(step.consumed);
                moved = true;
                if step.done {
                    ex.resp_done = true;
                    return true;
                }
                continue;
            }
            if up.eof {
                if dec.finish_eof().is_ok() {
                    if ex.resp_chunked {
                        http1::write_last_chunk(None, c.wbuf.vec(&mut self.bufs));
                    }
                    ex.resp_keep_alive = false;
                    ex.resp_done = true;
                } else {
                    log::warn!(
                        "rid={} upstream {} closed mid-body; cutting the client connection",
                        ex.request_id,
                        up.addr
                    );
                    self.abort_exchange(c);
                    c.phase = Phase::Closed;
                }
                return true;
            }
            return moved;
        }
    }

    /// Rewrite and queue the response head. False if the exchange failed.
    fn start_response(&mut self, c: &mut Client, head: ResponseHead) -> bool {
        let ex = c.ex.as_mut().expect("exchange");
        let kind = match http1::response_body_kind(&head, &ex.method) {
            Ok(k) => k,
            Err(e) => {
                self.fail_exchange(c, ProxyError::BadGateway(format!("upstream response framing: {e}")));
                return false;
            }
        };
        let up_keep_alive = head.keep_alive();
        let client_11 = ex.client_version == Version::Http11;
        // codings other than chunked (e.g. "gzip, chunked") stay on the body:
        // relay them to HTTP/1.1 clients, refuse where the client cannot take them
        let other_codings = other_transfer_codings(&head.headers);
        if !other_codings.is_empty() && !client_11 {
            self.fail_exchange(
                c,
                ProxyError::BadGateway("upstream used a transfer coding an HTTP/1.0 client cannot receive".into()),
            );
            return false;
        }
        let mut h = head.headers;
        http1::remove_hop_by_hop(&mut h);
        ex.resp_chunked = false;
        match kind {
            BodyKind::Chunked | BodyKind::UntilClose => {
                h.remove("content-length");
                if client_11 {
                    let mut te = other_codings;
                    te.extend_from_slice(if te.is_empty() { b"chunked" } else { b", chunked" });
                    h.append("Transfer-Encoding", &te);
                    ex.resp_chunked = true;
                } else {
                    c.keep_alive = false;
                }
            }
            BodyKind::Length(n) => h.set("Content-Length", super::fmt::decimal(n).as_bytes()),
            BodyKind::Empty => {}
        }
        ex.resp_keep_alive = up_keep_alive && !matches!(kind, BodyKind::UntilClose);
        super::exchange::append_via(&mut h);
        if !h.contains("x-request-id") {
            h.append("X-Request-Id", ex.request_id.as_bytes());
        }
        self.response_stages(ex, &mut h);
        if !ex.req_done {
            // the upstream answered before the whole body arrived: finish, then close
            c.keep_alive = false;
        }
        connection_header(&mut h, c.keep_alive && !self.draining, ex.client_version);
        let out = c.wbuf.vec(&mut self.bufs);
        let before = out.len();
        http1::write_response_head(
            &ResponseHead { version: Version::Http11, status: head.status, reason: head.reason, headers: h },
            out,
        );
        ex.bytes_out += (out.len() - before) as u64;
        ex.status = head.status;
        ex.resp_started = true;
        ex.resp_dec = Some(BodyDecoder::new(kind, &unlimited()));
        true
    }

    /// Response-side middleware, in reverse order over the stages that ran.
    fn response_stages(&self, ex: &super::exchange::Exchange, h: &mut http1::Headers) {
        if let Some(ctx) = ex.ctx.as_ref() {
            let pipeline = &ex.gen.pipelines[ctx.pipeline];
            for &mi in pipeline.middleware[..ex.stages_run].iter().rev() {
                ex.gen.middleware[mi].1.on_response(h, ctx);
            }
        }
    }

    /// Answer the request from the proxy itself (early answer, echo, error).
    pub(crate) fn local_response(&mut self, c: &mut Client, r: LocalResponse) {
        if let Some(up) = c.up.take() {
            self.close_upstream(up);
        }
        let ex = c.ex.as_mut().expect("exchange");
        let mut h = r.headers;
        let bodiless = r.status < 200 || r.status == 204 || r.status == 304;
        if !bodiless {
            h.set("Content-Length", super::fmt::decimal(r.body.len() as u64).as_bytes());
        }
        if !h.contains("x-request-id") {
            h.append("X-Request-Id", ex.request_id.as_bytes());
        }
        self.response_stages(ex, &mut h);
        if !ex.req_done {
            c.keep_alive = false;
            ex.sink = Sink::Discard;
        }
        connection_header(&mut h, c.keep_alive && !self.draining, ex.client_version);
        let out = c.wbuf.vec(&mut self.bufs);
        let before = out.len();
        http1::write_response_head(
            &ResponseHead { version: Version::Http11, status: r.status, reason: String::new(), headers: h },
            out,
        );
        if !bodiless && ex.method != "HEAD" {
            out.extend_from_slice(&r.body);
        }
        ex.bytes_out += (out.len() - before) as u64;
        ex.status = r.status;
        ex.resp_started = true;
        ex.resp_done = true;
    }

    /// The pooled connection was stale: send the same head on a fresh one.
    fn retry_upstream(&mut self, c: &mut Client) {
        if let Some(up) = c.up.take() {
            self.close_upstream(up);
        }
        let ex = c.ex.as_mut().expect("exchange");
        let bytes = ex.replay.take().unwrap_or_default();
        let addr = ex.up_addr.expect("upstream address");
        log::debug!("rid={} pooled connection to {addr} was stale; retrying on a new one", ex.request_id);
        match self.new_upstream(addr, c.key) {
            Ok(mut up) => {
                up.wbuf.vec(&mut self.bufs).extend_from_slice(&bytes);
                ex.up_since = self.now;
                c.up = Some(up);
            }
            Err(e) => self.fail_exchange(c, ProxyError::BadGateway(format!("cannot connect to upstream {addr}: {e}"))),
        }
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
                && !up.eof
                && up.rbuf.is_empty()
                && up.wbuf.is_empty();
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
        if !self.gen.settings.access_log {
            return;
        }
        let upstream = match (ex.up_addr, &ex.ctx) {
            (Some(a), _) => a.to_string(),
            (None, Some(ctx)) if ex.status != 0 => ex.gen.pipelines[ctx.pipeline].name.clone(),
            _ => "-".to_string(),
        };
        let us = std::time::Instant::now().saturating_duration_since(ex.started).as_micros();
        log::info!(target: "access", "{} {} {} {} {}B {}us up={} rid={}", c.peer.ip(), ex.method, ex.target, status, ex.bytes_out, us, upstream, ex.request_id);
    }
}

/// The transfer codings of a response other than `chunked`, comma-joined.
fn other_transfer_codings(h: &http1::Headers) -> Vec<u8> {
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

/// Tell the client whether the connection stays open.
fn connection_header(h: &mut http1::Headers, keep_alive: bool, client: Version) {
    if !keep_alive {
        h.set("Connection", b"close");
    } else if client == Version::Http10 {
        h.set("Connection", b"keep-alive");
    }
}
