//! The response side of an exchange: upstream connect/flush/read, response
//! head rewriting and response-side middleware, body relay with
//! backpressure, and the end of the exchange (access log, pool or close).

use super::buf::{ReadOutcome, WriteOutcome, BUF_SIZE};
use super::client::{Client, Phase, HIGH_WATER};
use super::worker::Worker;
use crate::pipeline::ProxyError;

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
        if up.wr && !up.wbuf.is_empty() && !up.write_closed {
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
                    up.write_closed = true;
                    up.rd = true; // look for its answer (or the EOF/RST) now
                    moved = true;
                }
            }
        }
        while up.rd && !up.eof && !ex.resp_done && c.wbuf.len() < HIGH_WATER {
            // a head, or a chunked trailer section, may need up to max_head_bytes at once
            let limit = BUF_SIZE.max(self.gen.settings.limits.max_head_bytes + 1);
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
        // relay body bytes while the client can take them (or collect them for a stage)
        loop {
            let ex = c.ex.as_mut().expect("exchange");
            if ex.resp_done || c.up.is_none() {
                return true;
            }
            let collecting = ex.resp.as_ref().is_some_and(|r| r.collecting.is_some());
            if ex.resp.is_some() && !collecting {
                return moved;
            }
            if !collecting && c.wbuf.len() >= HIGH_WATER {
                return moved;
            }
            let up = c.up.as_mut().expect("upstream");
            let dec = ex.resp_dec.as_mut().expect("decoder");
            let step = match dec.decode(up.rbuf.bytes()) {
                Ok(s) => s,
                Err(e) => {
                    let addr = up.addr;
                    if collecting {
                        self.fail_exchange(
                            c,
                            ProxyError::BadGateway(format!("upstream {addr} sent a malformed body: {e}")),
                        );
                        return true;
                    }
                    log::warn!("rid={} upstream {addr} sent a malformed body: {e}", ex.request_id);
                    self.abort_exchange(c);
                    c.phase = Phase::Closed;
                    return true;
                }
            };
            if collecting && (step.consumed > 0 || step.done || up.eof) {
                let rs = ex.resp.as_mut().expect("stages");
                let buf = rs.collecting.as_mut().expect("collecting");
                buf.extend_from_slice(&up.rbuf.bytes()[step.data.clone()]);
                up.rbuf.consume(step.consumed);
                let limit = ex.gen.settings.buffered_body_bytes;
                if buf.len() > limit {
                    let detail = format!("upstream response body is larger than proxy.buffered_body_bytes ({limit}), which a stage needs to buffer");
                    self.fail_exchange(c, ProxyError::BadGateway(detail));
                    return true;
                }
                let finished = step.done || (step.consumed == 0 && up.eof && dec.finish_eof().is_ok());
                if step.consumed == 0 && up.eof && !finished {
                    let addr = up.addr;
                    self.fail_exchange(c, ProxyError::BadGateway(format!("upstream {addr} closed mid-body")));
                    return true;
                }
                if finished {
                    if !step.done {
                        ex.resp_keep_alive = false; // close-delimited
                    }
                    let body = rs.collecting.take().unwrap_or_default();
                    rs.msg.borrow_mut().body = crate::lua::Body::Loaded(body);
                    rs.upstream_body_read = true;
                    self.run_response_stages(c);
                    return true;
                }
                moved = true;
                if step.consumed == 0 {
                    return moved;
                }
                continue;
            }
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
}
