//! DICOM relay: one association = a client socket (accepted on a
//! `[network.N.dicom]` listener) and, once routed, a backend socket, both on
//! the worker's poll.
//!
//! ```text
//! ReadRq ──RQ, routed──▶ Backend (connect, send RQ, await AC/RJ) ──AC──▶ Relay ──both closed──▶ Closed
//!    │                        │ RJ / down / timeout                      │ protocol error, DIMSE timeout
//!    └── unknown AE, limit ───┴──▶ Closing (flush RJ/A-ABORT, half-close, linger) ◀──┘
//! ```
//!
//! - `associate.rs`: reading the A-ASSOCIATE-RQ, routing (called AE, calling
//!   AE, peer, Lua `on_associate`, C-MOVE deliveries), limits, the backend's
//!   answer. The RQ and the answer are forwarded as the peers' own bytes
//!   with only the AE titles and the Maximum Length patched.
//! - `relay.rs`: after the AC, PDUs both ways. P-DATA is walked PDV by PDV
//!   without copying: data fragments are passed on as they are (fast path)
//!   unless a stage needs the data set; command sets are decoded for the
//!   per-message log, timeouts, local C-ECHO, C-MOVE destination rewriting
//!   and Lua `on_dimse`.
//! - `registry.rs`: association counts and proxied C-MOVEs across workers.

mod associate;
mod hooks;
mod registry;
mod relay;
mod side;

pub(crate) use registry::DicomShared;

use super::worker::{Slot, Worker, CONN_BASE};
use crate::lua::{LuaCtx, LuaHost};
use crate::pipeline::{DicomTarget, Generation};
use dimse::FrameReader;
use mio::net::TcpStream;
use mio::{Interest, Token};
use relay::Relay;
use side::{Side, CHUNK};
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest A-ASSOCIATE-RQ / -AC / -RJ body we buffer.
const MAX_ASSOCIATE_PDU: u32 = 1 << 20;
/// ARTIM: the A-ASSOCIATE-RQ must arrive within this.
const ARTIM: Duration = Duration::from_secs(30);
/// After our final PDU (RJ / A-ABORT), wait this long for the peer to close.
const LINGER: Duration = Duration::from_secs(2);
/// After one side of a relayed association closed, the other has this long.
const RELAY_LINGER: Duration = Duration::from_secs(10);
/// Stop reading from one side while this much is waiting for the other.
const HIGH_WATER: usize = 256 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    ReadRq,
    Backend,
    Relay,
    Closing,
    Closed,
}

struct Back {
    side: Side,
    key: usize,
    connected: bool,
    target: DicomTarget,
}

/// Where an admitted association was routed.
struct Routed {
    /// Index of the network in the generation and of the route in it
    /// (None: a C-MOVE delivery, which has no endpoint of its own).
    route: Option<(usize, usize)>,
    pipeline: usize,
    /// Counted against the listener limits (released at the end).
    admitted: bool,
}

pub(crate) struct DicomConn {
    key: usize,
    /// Association id for logs (like a request id).
    id: String,
    peer: SocketAddr,
    net: Arc<str>,
    /// The generation the association started on (routing, scripts).
    gen: Arc<Generation>,
    lua: Option<Rc<LuaHost>>,
    ctx: Option<LuaCtx>,
    started: Instant,
    phase: Phase,
    front: Side,
    back: Option<Back>,
    reader: FrameReader,
    deadline: Option<Instant>,
    armed: Option<Instant>,
    /// The client's own called + calling AE fields (32 raw bytes), put back
    /// into the backend's A-ASSOCIATE-AC.
    client_aes: [u8; 32],
    calling: String,
    called: String,
    backend: String,
    outcome: String,
    /// How it ended, for the metrics: completed (the AC was relayed and
    /// nothing failed), aborted, rejected, or failed (no AC relayed).
    result: &'static str,
    routed: Option<Routed>,
    relay: Option<Box<Relay>>,
    /// Bytes client → backend and backend → client.
    up_bytes: u64,
    down_bytes: u64,
}

impl Worker {
    /// A connection accepted on a dicom listener.
    pub(crate) fn accept_dicom(&mut self, mut sock: TcpStream, peer: SocketAddr, net: Arc<str>) {
        let key = self.slab.insert(Slot::Dicom(None));
        if let Err(e) =
            self.poll.registry().register(&mut sock, Token(CONN_BASE + key), Interest::READABLE | Interest::WRITABLE)
        {
            log::warn!("register {peer}: {e}");
            self.slab.remove(key);
            return;
        }
        let _ = sock.set_nodelay(true);
        self.clients += 1;
        self.shared.open_connections[self.index].store(self.clients, Ordering::Relaxed);
        let d = Box::new(DicomConn {
            key,
            id: self.ids.next_id(),
            peer,
            net,
            gen: self.gen.clone(),
            lua: self.lua.clone(),
            ctx: None,
            started: self.now,
            phase: Phase::ReadRq,
            front: Side::new(sock),
            back: None,
            reader: FrameReader::new(MAX_ASSOCIATE_PDU),
            deadline: Some(self.now + ARTIM),
            armed: None,
            client_aes: [b' '; 32],
            calling: "-".into(),
            called: "-".into(),
            backend: "-".into(),
            outcome: "closed before A-ASSOCIATE-RQ".into(),
            result: "failed",
            routed: None,
            relay: None,
            up_bytes: 0,
            down_bytes: 0,
        });
        self.dicom_drive(key, d);
    }

    fn take_dicom(&mut self, key: usize) -> Option<Box<DicomConn>> {
        match self.slab.get_mut(key) {
            Some(Slot::Dicom(d)) => d.take(),
            _ => None,
        }
    }

    /// A poll event for a dicom socket (client side or backend side).
    /// Returns false if `key` is not a dicom socket.
    pub(crate) fn dicom_event(&mut self, key: usize, readable: bool, writable: bool, hup: bool) -> bool {
        let front_key = match self.slab.get(key) {
            Some(Slot::Dicom(_)) => key,
            Some(Slot::DicomBack(f)) => *f,
            _ => return false,
        };
        let Some(mut d) = self.take_dicom(front_key) else { return true };
        let side = if front_key == key {
            Some(&mut d.front)
        } else {
            d.back.as_mut().filter(|b| b.key == key).map(|b| &mut b.side)
        };
        if let Some(s) = side {
            s.rd |= readable;
            s.wr |= writable;
            s.hup |= hup;
        }
        self.dicom_drive(front_key, d);
        true
    }

    /// A timer entry for `key`. Returns false if `key` is not a dicom connection.
    pub(crate) fn dicom_timer(&mut self, key: usize) -> bool {
        match self.slab.get(key) {
            Some(Slot::Dicom(_)) => {}
            Some(Slot::DicomBack(_)) => return true,
            _ => return false,
        }
        let Some(mut d) = self.take_dicom(key) else { return true };
        d.armed = None;
        if d.deadline.is_some_and(|at| at <= self.now) {
            d.deadline = None;
            match d.phase {
                Phase::ReadRq => {
                    d.outcome = "ARTIM timeout: no A-ASSOCIATE-RQ".into();
                    d.phase = Phase::Closed;
                }
                Phase::Backend => self.backend_down(&mut d, "backend did not answer in time"),
                Phase::Relay => self.relay_timeout(&mut d),
                Phase::Closing | Phase::Closed => d.phase = Phase::Closed,
            }
        }
        self.dicom_drive(key, d);
        true
    }

    fn dicom_drive(&mut self, key: usize, mut d: Box<DicomConn>) {
        // every step either makes progress or waits for readiness
        loop {
            let progress = match self.dicom_step(&mut d) {
                Ok(p) => p,
                Err(e) => {
                    self.on_dicom_error(&mut d, e);
                    true
                }
            };
            if d.phase == Phase::Closed || !progress {
                break;
            }
        }
        if d.phase == Phase::Closed {
            self.destroy_dicom(key, d);
            return;
        }
        if let Some(at) = d.deadline {
            if d.armed.is_none_or(|a| at < a) {
                self.timers.push(at, key);
                d.armed = Some(at);
            }
        }
        if let Some(Slot::Dicom(slot)) = self.slab.get_mut(key) {
            *slot = Some(d);
        }
    }

    fn on_dicom_error(&mut self, d: &mut DicomConn, e: io::Error) {
        match d.phase {
            // the backend socket failed before it answered
            Phase::Backend => self.backend_down(d, &format!("backend: {e}")),
            _ => {
                if d.phase == Phase::Relay {
                    d.outcome = format!("{}, then {e}", d.outcome);
                    d.result = "aborted";
                } else if d.phase == Phase::ReadRq {
                    d.outcome = format!("client: {e}");
                }
                d.phase = Phase::Closed;
            }
        }
    }

    /// One pass over the association; true if anything moved.
    fn dicom_step(&mut self, d: &mut DicomConn) -> io::Result<bool> {
        match d.phase {
            Phase::ReadRq => self.read_rq(d),
            Phase::Backend => self.await_answer(d),
            Phase::Relay => self.relay_step(d),
            Phase::Closing => Ok(self.closing_step(d)),
            Phase::Closed => Ok(false),
        }
    }

    /// Flush what is left for each side (our RJ / A-ABORT), half-close, and
    /// discard what the peers still send until they close or LINGER ends.
    fn closing_step(&mut self, d: &mut DicomConn) -> bool {
        let mut progress = false;
        let mut done = true;
        for side in std::iter::once(&mut d.front).chain(d.back.as_mut().map(|b| &mut b.side)) {
            if side.eof && side.shut {
                continue;
            }
            match side.flush() {
                Ok(n) => progress |= n > 0,
                Err(_) => {
                    side.eof = true;
                    side.shut = true;
                    continue;
                }
            }
            if side.pending() == 0 && !side.shut {
                side.shutdown_write();
                progress = true;
            }
            let mut sink = Vec::new();
            match side.fill(&mut sink, CHUNK) {
                Ok(n) => progress |= n > 0,
                Err(_) => side.eof = true,
            }
            if !(side.eof && side.pending() == 0) {
                done = false;
            }
        }
        if done {
            d.phase = Phase::Closed;
            return true;
        }
        progress
    }

    fn start_closing(&mut self, d: &mut DicomConn) {
        d.phase = Phase::Closing;
        d.deadline = Some(self.now + LINGER);
    }

    fn close_dicom_back(&mut self, d: &mut DicomConn) {
        if let Some(mut b) = d.back.take() {
            let _ = self.poll.registry().deregister(&mut b.side.sock);
            self.slab.remove(b.key);
            // keep the target name for the log line
            d.backend = b.target.name.clone();
        }
    }

    fn destroy_dicom(&mut self, key: usize, mut d: Box<DicomConn>) {
        self.close_dicom_back(&mut d);
        let _ = self.poll.registry().deregister(&mut d.front.sock);
        self.slab.remove(key);
        self.clients -= 1;
        self.shared.open_connections[self.index].store(self.clients, Ordering::Relaxed);
        self.shared.dicom.end_moves_of(self.index, key);
        if let Some(r) = d.relay.as_mut() {
            self.log_unanswered(&d.id, &d.peer, r);
        }
        let pipeline = match &d.routed {
            Some(r) => {
                if r.admitted {
                    self.shared.dicom.release(&d.net, &d.calling);
                }
                d.gen.pipelines.get(r.pipeline).map(|p| p.name.clone()).unwrap_or_default()
            }
            None => String::new(),
        };
        let quiet = d.calling == "-" && d.front.inb.is_empty() && d.outcome.starts_with("closed before");
        if !quiet {
            let result = d.result;
            if let Ok(mut m) = self.shared.metrics[self.index].lock() {
                m.record_association(&pipeline, result, d.up_bytes, d.down_bytes);
            }
        }
        if d.gen.settings.access_log && !quiet {
            let messages = d.relay.as_ref().map_or(0, |r| r.messages);
            log::info!(
                target: "access",
                "dicom {} assoc={} calling={} called={} backend={} outcome=\"{}\" messages={} up={}B down={}B {}us",
                d.peer,
                d.id,
                d.calling,
                d.called,
                d.backend,
                d.outcome,
                messages,
                d.up_bytes,
                d.down_bytes,
                self.now.saturating_duration_since(d.started).as_micros()
            );
        }
    }
}
