//! A client (downstream) connection: reads request heads, runs exchanges one
//! at a time (pipelined requests wait in the input buffer), writes
//! responses, and closes gracefully (lingering so a final error response is
//! not destroyed by a reset).

use super::buf::{InBuf, OutBuf, ReadOutcome, WriteOutcome};
use super::exchange::Exchange;
use super::transport::Transport;
use super::upstream::UpstreamConn;
use super::worker::Worker;
use crate::pipeline::{Generation, ProxyError};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Stop producing output for a client once this much is queued for it.
pub(crate) const HIGH_WATER: usize = 64 * 1024;
/// How long a closing connection may keep sending before we give up on it.
const LINGER: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Waiting for (more of) a request head.
    Head,
    /// A request is being served.
    Exchange,
    /// Flushing the last response, then lingering before close.
    Closing,
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimeoutKind {
    Header,
    KeepAlive,
    ClientBody,
    ClientWrite,
    Connect,
    Upstream,
    Linger,
}

pub(crate) struct Client {
    pub(crate) sock: Transport,
    pub(crate) key: usize,
    pub(crate) peer: SocketAddr,
    /// `peer.ip()` as text, for X-Forwarded-For (formatted once per connection).
    pub(crate) peer_ip: String,
    /// Network index (in the generation) of the listener that accepted it.
    pub(crate) net: Arc<str>,
    pub(crate) rd: bool,
    pub(crate) wr: bool,
    pub(crate) eof: bool,
    /// The peer's FIN was reported: read until EOF even after a short read.
    pub(crate) hup: bool,
    pub(crate) rbuf: InBuf,
    pub(crate) wbuf: OutBuf,
    pub(crate) phase: Phase,
    /// The connection may serve another request after this one.
    pub(crate) keep_alive: bool,
    pub(crate) served: u32,
    pub(crate) accepted: Instant,
    /// When the first byte of the current head arrived.
    pub(crate) head_started: Option<Instant>,
    pub(crate) last_read: Instant,
    pub(crate) last_write: Instant,
    pub(crate) linger_until: Option<Instant>,
    pub(crate) armed: Option<Instant>,
    pub(crate) gen: Arc<Generation>,
    pub(crate) ex: Option<Box<Exchange>>,
    pub(crate) up: Option<UpstreamConn>,
}

impl Client {
    pub(crate) fn new(
        sock: Transport,
        key: usize,
        peer: SocketAddr,
        net: Arc<str>,
        now: Instant,
        gen: Arc<Generation>,
    ) -> Self {
        Client {
            sock,
            key,
            peer,
            peer_ip: peer.ip().to_string(),
            net,
            rd: true,
            wr: true,
            eof: false,
            hup: false,
            rbuf: InBuf::default(),
            wbuf: OutBuf::default(),
            phase: Phase::Head,
            keep_alive: true,
            served: 0,
            accepted: now,
            head_started: None,
            last_read: now,
            last_write: now,
            linger_until: None,
            armed: None,
            gen,
            ex: None,
            up: None,
        }
    }
}

/// What one read from a client did (its flags are already updated).
pub(crate) enum Read {
    /// This many bytes arrived (0: interrupted, try again).
    Got(usize),
    /// Nothing now (would block, or the buffer is full).
    Nothing,
    /// The client closed its side (`eof` is set).
    Eof,
    /// A socket error (logged).
    Failed,
}

impl Client {
    /// Read once into `rbuf`, keeping the readiness flags right: a short read
    /// means the socket is drained, unless a FIN was reported with the data.
    pub(crate) fn read_some(&mut self, bufs: &mut super::buf::BufPool, limit: usize, now: Instant) -> Read {
        match self.rbuf.read_from(&mut self.sock, bufs, limit) {
            ReadOutcome::Data { n, drained } => {
                if drained && !self.hup {
                    self.rd = false;
                }
                if n > 0 {
                    self.last_read = now;
                }
                Read::Got(n)
            }
            ReadOutcome::WouldBlock => {
                self.rd = false;
                Read::Nothing
            }
            ReadOutcome::NoRoom => Read::Nothing,
            ReadOutcome::Eof => {
                self.eof = true;
                Read::Eof
            }
            ReadOutcome::Error(e) => {
                log::debug!("read from {}: {e}", self.peer);
                Read::Failed
            }
        }
    }
}

impl Worker {
    /// Move a client's work forward until nothing more can happen now.
    /// Returns true if it stopped only because its turn was used up (the
    /// caller queues it to run again, since no new event will come).
    pub(crate) fn progress(&mut self, c: &mut Client) -> bool {
        for _ in 0..64 {
            let mut moved = match c.phase {
                Phase::Head => self.head_phase(c),
                Phase::Exchange => self.exchange_step(c),
                Phase::Closing => self.closing_phase(c),
                Phase::Closed => return false,
            };
            moved |= self.flush_client(c);
            if c.phase == Phase::Closed || !moved {
                return false;
            }
        }
        true
    }

    fn head_phase(&mut self, c: &mut Client) -> bool {
        if c.wbuf.len() >= HIGH_WATER {
            // the client is not reading its answers: take no new request
            // (pipelined ones wait in the buffer) until it catches up
            return false;
        }
        if !c.rbuf.is_empty() {
            let limits = &self.gen.settings.limits;
            match http1::parse_request(c.rbuf.bytes(), limits) {
                Err(e) => {
                    self.fail_before_exchange(c, ProxyError::from_http1(&e));
                    return true;
                }
                Ok(Some((head, n))) => {
                    c.rbuf.consume(n);
                    c.head_started = None;
                    self.start_exchange(c, head);
                    return true;
                }
                Ok(None) => {}
            }
        } else {
            c.rbuf.release(&mut self.bufs);
            if self.draining || !c.keep_alive {
                c.phase = Phase::Closing;
                return true;
            }
        }
        if c.eof {
            // the client half-closed: finish sending what it asked for, then close
            // (a partial head followed by EOF gets no answer)
            c.phase = if c.wbuf.is_empty() { Phase::Closed } else { Phase::Closing };
            return true;
        }
        if !c.rd || c.wbuf.len() >= HIGH_WATER {
            return false;
        }
        let limit = self.gen.settings.limits.max_head_bytes + 1;
        match c.read_some(&mut self.bufs, limit, self.now) {
            Read::Got(n) => {
                if n > 0 {
                    c.head_started.get_or_insert(self.now);
                }
                true
            }
            Read::Nothing => false,
            Read::Eof => true,
            Read::Failed => {
                c.phase = Phase::Closed;
                true
            }
        }
    }

    /// Answer an error that happened before any exchange existed, then close.
    fn fail_before_exchange(&mut self, c: &mut Client, err: ProxyError) {
        let rid = self.ids.next_id();
        self.write_error(c, &err, &rid, true);
        if self.gen.settings.access_log {
            log::info!(target: "access", "{} - - {} 0B 0us up=- rid={rid} err={}", c.peer.ip(), err.status(), err.code());
        }
        c.keep_alive = false;
        c.rbuf.consume(c.rbuf.len());
        c.phase = Phase::Closing;
    }

    /// Queue a JSON error response on the client.
    pub(crate) fn write_error(&mut self, c: &mut Client, err: &ProxyError, rid: &str, close: bool) {
        let body = err.body(rid);
        let mut head = http1::ResponseHead {
            version: http1::Version::Http11,
            status: err.status(),
            reason: String::new(),
            headers: http1::Headers::with_capacity(6, 128),
        };
        head.headers.append("Content-Type", b"application/json");
        head.headers.append("Content-Length", super::fmt::decimal(body.len() as u64).as_bytes());
        head.headers.append("X-Request-Id", rid.as_bytes());
        if close {
            head.headers.append("Connection", b"close");
        }
        let out = c.wbuf.vec(&mut self.bufs);
        http1::write_response_head(&head, out);
        out.extend_from_slice(&body);
    }

    pub(crate) fn flush_client(&mut self, c: &mut Client) -> bool {
        if !c.wr || c.wbuf.is_empty() {
            return false;
        }
        let (n, outcome) = c.wbuf.flush_to(&mut c.sock);
        if n > 0 {
            c.last_write = self.now;
            if let Some(ex) = c.ex.as_mut() {
                // the upstream's silence while we waited on the client is not its fault
                ex.up_since = self.now;
            }
        }
        match outcome {
            WriteOutcome::Done => {}
            WriteOutcome::Blocked => c.wr = false,
            WriteOutcome::Error(e) => {
                log::debug!("write to {}: {e}", c.peer);
                c.phase = Phase::Closed;
                return true;
            }
        }
        n > 0
    }

    fn closing_phase(&mut self, c: &mut Client) -> bool {
        if !c.wbuf.is_empty() {
            return false; // flush_client moves it; the write deadline bounds it
        }
        if c.linger_until.is_none() {
            let _ = c.sock.shutdown_write();
            c.linger_until = Some(self.now + LINGER);
            if c.eof {
                c.phase = Phase::Closed;
                return true;
            }
        }
        // discard whatever the client still sends until it closes its side
        let mut moved = false;
        while c.rd && !c.eof {
            c.rbuf.consume(c.rbuf.len());
            match c.rbuf.read_from(&mut c.sock, &mut self.bufs, super::buf::BUF_SIZE) {
                ReadOutcome::Data { .. } => moved = true,
                ReadOutcome::WouldBlock | ReadOutcome::NoRoom => c.rd = false,
                ReadOutcome::Eof | ReadOutcome::Error(_) => c.eof = true,
            }
        }
        c.rbuf.consume(c.rbuf.len());
        if c.eof {
            c.phase = Phase::Closed;
            return true;
        }
        moved
    }

    /// The earliest deadline that applies to this client now, and what it is.
    pub(crate) fn client_deadline(&self, c: &Client) -> Option<(Instant, TimeoutKind)> {
        let s = &self.gen.settings;
        let mut best: Option<(Instant, TimeoutKind)> = None;
        let mut consider = |at: Instant, k: TimeoutKind| {
            if best.is_none_or(|(b, _)| at < b) {
                best = Some((at, k));
            }
        };
        if !c.wbuf.is_empty() {
            consider(c.last_write + s.idle_timeout, TimeoutKind::ClientWrite);
        }
        match c.phase {
            Phase::Head => match c.head_started {
                Some(t) => consider(t + s.header_timeout, TimeoutKind::Header),
                None if c.served == 0 => consider(c.accepted + s.header_timeout, TimeoutKind::Header),
                None => consider(c.last_write.max(c.last_read) + s.idle_timeout, TimeoutKind::KeepAlive),
            },
            Phase::Exchange => {
                if let Some(ex) = c.ex.as_deref() {
                    if ex.reading_body() {
                        consider(c.last_read.max(ex.started) + s.idle_timeout, TimeoutKind::ClientBody);
                    }
                    if let Some(up) = c.up.as_ref() {
                        if !up.connected {
                            consider(ex.up_since + s.connect_timeout, TimeoutKind::Connect);
                        } else if !ex.resp_done {
                            // the upstream is on the clock while it has bytes of ours to take,
                            // or owes us a response we have room for; not while we wait
                            // for the client to send its body or to read what we relayed
                            let upstream_owes = !up.wbuf.is_empty()
                                || (ex.req_done && c.wbuf.len() < HIGH_WATER)
                                || ex.resp.as_ref().is_some_and(|r| r.collecting.is_some());
                            if upstream_owes {
                                consider(ex.up_since + ex.up_timeout, TimeoutKind::Upstream);
                            }
                        }
                    }
                }
            }
            Phase::Closing => {
                if let Some(t) = c.linger_until {
                    consider(t, TimeoutKind::Linger);
                }
            }
            Phase::Closed => {}
        }
        best
    }

    /// A timer fired for this client: act on whatever deadline has passed.
    pub(crate) fn on_client_timer(&mut self, c: &mut Client) {
        let Some((at, kind)) = self.client_deadline(c) else { return };
        if at > self.now {
            return; // not yet; drive() re-arms
        }
        match kind {
            TimeoutKind::KeepAlive | TimeoutKind::Linger | TimeoutKind::ClientWrite => {
                if kind == TimeoutKind::ClientWrite {
                    log::debug!("client {} stopped reading; closing", c.peer);
                }
                c.phase = Phase::Closed;
            }
            TimeoutKind::Header => {
                if c.rbuf.is_empty() && c.served > 0 {
                    c.phase = Phase::Closed;
                } else {
                    self.fail_before_exchange(c, ProxyError::HeaderTimeout);
                }
            }
            TimeoutKind::ClientBody => self.fail_exchange(c, ProxyError::BodyTimeout),
            TimeoutKind::Connect => self
                .fail_exchange(c, ProxyError::GatewayTimeout("upstream did not accept the connection in time".into())),
            TimeoutKind::Upstream => {
                self.fail_exchange(c, ProxyError::GatewayTimeout("upstream did not respond in time".into()))
            }
        }
    }
}
