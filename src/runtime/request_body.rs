//! The request body on its way: read from the client, decoded, and re-framed
//! to the upstream, or collected (for a stage that reads it, or for echo).

use super::buf::BUF_SIZE;
use super::client::{Client, Phase, Read, HIGH_WATER};
use super::worker::Worker;
use crate::lua::Body;
use crate::pipeline::ProxyError;
use http1::Version;

/// Where the request body goes.
pub(crate) enum Sink {
    /// To the upstream, with this framing.
    Upstream { chunked: bool },
    /// Collected whole: for a Lua stage that reads `req.body`, or for echo.
    Collect { buf: Vec<u8>, for_stage: bool },
    /// Nobody wants it (not yet, or the request was answered early).
    Discard,
}

impl Worker {
    /// One pass over the request side: owe 100-continue, read and forward body.
    pub(crate) fn request_body_step(&mut self, c: &mut Client) -> bool {
        let Some(ex) = c.ex.as_mut() else { return false };
        if ex.req_done || matches!(ex.sink, Sink::Discard) {
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
                Sink::Collect { .. } => true,
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
                        Sink::Upstream { .. } if c.up.as_ref().is_some_and(|u| u.write_closed) => {
                            // the upstream stopped reading (it answered early): drop the rest
                        }
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
                        Sink::Collect { buf, .. } => {
                            if buf.len() + data.len() > ex.gen.settings.buffered_body_bytes {
                                c.keep_alive = false;
                                let detail = format!(
                                    "request body is larger than proxy.buffered_body_bytes ({}), which a stage or the echo backend needs to buffer",
                                    ex.gen.settings.buffered_body_bytes
                                );
                                self.fail_exchange(c, ProxyError::BadRequest { status: 413, detail });
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
                        if let Sink::Collect { buf, for_stage } = std::mem::replace(&mut ex.sink, Sink::Discard) {
                            if for_stage {
                                if let Some(msg) = ex.req.as_ref() {
                                    msg.borrow_mut().body = Body::Loaded(buf);
                                }
                                self.run_request_stages(c);
                            } else {
                                self.finish_echo(c, buf);
                            }
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
            // chunked trailers may need up to max_head_bytes at once
            let limit = BUF_SIZE.max(ex_limit(c));
            match c.read_some(&mut self.bufs, limit, self.now) {
                Read::Got(n) => moved |= n > 0,
                Read::Nothing => return moved,
                Read::Eof => {}
                Read::Failed => {
                    self.abort_exchange(c);
                    c.phase = Phase::Closed;
                    return true;
                }
            }
        }
    }
}

fn ex_limit(c: &Client) -> usize {
    c.ex.as_ref().map_or(BUF_SIZE, |ex| ex.gen.settings.limits.max_head_bytes + 1)
}
