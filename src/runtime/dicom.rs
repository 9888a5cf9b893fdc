//! DICOM relay: one association = a client socket (accepted on a
//! `[network.N.dicom]` listener) and, once routed, a backend socket, both on
//! the worker's poll.
//!
//! ```text
//! ReadRq ──RQ, routed──▶ Backend (connect, send RQ, await AC/RJ) ──AC──▶ Relay ──both closed──▶ Closed
//!    │                        │ RJ / down / timeout
//!    └── unknown AE ──────────┴──▶ Closing (flush our RJ/A-ABORT, half-close, linger) ──▶ Closed
//! ```
//!
//! The A-ASSOCIATE-RQ is framed and decoded with `protocols/dimse` (capped),
//! then forwarded as the client's own bytes with only the 16-byte AE title
//! fields rewritten; the answer is forwarded likewise. After the AC, bytes
//! are relayed both ways as they are (no PDU re-encoding), with a high-water
//! mark on each direction's output buffer.

use super::worker::{Slot, Worker, CONN_BASE};
use crate::pipeline::{Backend, DicomTarget, Generation};
use dimse::negotiate::{reject, RejectReason};
use dimse::pdu::{AbortRQServiceProviderReason, AbortRQSource, Pdu};
use dimse::FrameReader;
use mio::net::TcpStream;
use mio::{Interest, Token};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
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
const CHUNK: usize = 16 * 1024;

/// Byte offsets of the called / calling AE title fields in an
/// A-ASSOCIATE-RQ or -AC PDU (PS3.8 §9.3.2, §9.3.3).
const CALLED: std::ops::Range<usize> = 10..26;
const CALLING: std::ops::Range<usize> = 26..42;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    ReadRq,
    Backend,
    Relay,
    Closing,
    Closed,
}

/// One socket of an association.
struct Side {
    sock: TcpStream,
    rd: bool,
    wr: bool,
    hup: bool,
    /// Read EOF seen.
    eof: bool,
    /// We shut down our write side.
    shut: bool,
    /// Bytes read and not yet passed on (before the relay starts).
    inb: Vec<u8>,
    /// Bytes to write to this socket, from `pos`.
    out: Vec<u8>,
    pos: usize,
}

impl Side {
    fn new(sock: TcpStream) -> Side {
        Side {
            sock,
            rd: false,
            wr: false,
            hup: false,
            eof: false,
            shut: false,
            inb: Vec::new(),
            out: Vec::new(),
            pos: 0,
        }
    }

    fn pending(&self) -> usize {
        self.out.len() - self.pos
    }

    /// Read into `into` until WouldBlock, EOF, or `into` holds `limit` bytes.
    /// Returns the number of bytes read.
    fn fill(&mut self, into: &mut Vec<u8>, limit: usize) -> io::Result<usize> {
        let mut total = 0;
        let mut chunk = [0u8; CHUNK];
        while self.rd && !self.eof && into.len() < limit {
            let want = CHUNK.min(limit - into.len());
            match self.sock.read(&mut chunk[..want]) {
                Ok(0) => {
                    self.eof = true;
                    self.rd = false;
                }
                Ok(n) => {
                    into.extend_from_slice(&chunk[..n]);
                    total += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.rd = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(total)
    }

    /// Write pending bytes until WouldBlock or done. Returns bytes written.
    fn flush(&mut self) -> io::Result<usize> {
        let mut total = 0;
        while self.wr && self.pos < self.out.len() {
            match self.sock.write(&self.out[self.pos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.pos += n;
                    total += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.wr = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.pos == self.out.len() {
            self.out.clear();
            self.pos = 0;
        } else if self.pos > HIGH_WATER {
            self.out.drain(..self.pos);
            self.pos = 0;
        }
        Ok(total)
    }

    fn shutdown_write(&mut self) {
        if !self.shut {
            self.shut = true;
            let _ = self.sock.shutdown(Shutdown::Write);
        }
    }
}

struct Back {
    side: Side,
    key: usize,
    connected: bool,
    target: DicomTarget,
}

pub(crate) struct DicomConn {
    key: usize,
    peer: SocketAddr,
    net: Arc<str>,
    /// The generation the association started on (routing).
    gen: Arc<Generation>,
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
    /// Bytes client → backend and backend → client.
    up_bytes: u64,
    down_bytes: u64,
}

/// An AE title as its 16-byte, space-padded field.
fn ae_field(ae: &str) -> [u8; 16] {
    let mut f = [b' '; 16];
    let b = ae.as_bytes();
    let n = b.len().min(16);
    f[..n].copy_from_slice(&b[..n]);
    f
}

fn encode(pdu: Pdu) -> Vec<u8> {
    dimse::encode(&pdu).unwrap_or_default()
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
        self.clients += 1;
        self.shared.open_connections[self.index].store(self.clients, Ordering::Relaxed);
        let d = Box::new(DicomConn {
            key,
            peer,
            net,
            gen: self.gen.clone(),
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
                Phase::Relay => {
                    let half_closed = d.front.shut || d.back.as_ref().is_some_and(|b| b.side.shut);
                    d.outcome.push_str(if half_closed { ", closed after linger" } else { ", idle timeout" });
                    d.phase = Phase::Closed;
                }
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
                } else if d.phase == Phase::ReadRq {
                    d.outcome = format!("client: {e}");
                }
                d.phase = Phase::Closed;
            }
        }
    }

    /// One pass over the association; true if anything moved.
    fn dicom_step(&mut self, d: &mut DicomConn) -> io::Result<bool> {
        let mut progress = false;
        match d.phase {
            Phase::ReadRq => {
                let limit = MAX_ASSOCIATE_PDU as usize + 6;
                let mut inb = std::mem::take(&mut d.front.inb);
                let r = d.front.fill(&mut inb, limit);
                d.front.inb = inb;
                progress |= r? > 0;
                match d.reader.next(&d.front.inb) {
                    Ok(Some((Pdu::AssociationRQ(rq), n))) => {
                        d.calling = rq.calling_ae_title.trim().to_string();
                        d.called = rq.called_ae_title.trim().to_string();
                        let rq_bytes: Vec<u8> = d.front.inb.drain(..n).collect();
                        self.route_association(d, rq_bytes);
                        return Ok(true);
                    }
                    Ok(Some((other, _))) => {
                        d.outcome =
                            format!("protocol error: expected A-ASSOCIATE-RQ, got {}", other.short_description());
                        self.abort_front(d, AbortRQServiceProviderReason::UnexpectedPdu);
                        return Ok(true);
                    }
                    Err(e) => {
                        d.outcome = format!("protocol error: {e}");
                        let reason = match e.abort_source() {
                            Some(AbortRQSource::ServiceProvider(r)) => r,
                            _ => AbortRQServiceProviderReason::ReasonNotSpecified,
                        };
                        self.abort_front(d, reason);
                        return Ok(true);
                    }
                    Ok(None) if d.front.eof => {
                        if !d.front.inb.is_empty() {
                            d.outcome = "client closed in the middle of the A-ASSOCIATE-RQ".into();
                        }
                        d.phase = Phase::Closed;
                        return Ok(true);
                    }
                    Ok(None) => {}
                }
            }
            Phase::Backend => {
                let back = d.back.as_mut().expect("backend phase has a backend");
                if !back.connected {
                    if !(back.side.wr || back.side.rd) {
                        return Ok(progress);
                    }
                    if let Some(e) = back.side.sock.take_error()? {
                        return Err(e);
                    }
                    match back.side.sock.peer_addr() {
                        Ok(_) => back.connected = true,
                        Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                            back.side.wr = false;
                            back.side.rd = false;
                            return Ok(progress);
                        }
                        Err(e) => return Err(e),
                    }
                    progress = true;
                }
                progress |= back.side.flush()? > 0;
                let limit = MAX_ASSOCIATE_PDU as usize + 6;
                let mut inb = std::mem::take(&mut back.side.inb);
                let r = back.side.fill(&mut inb, limit);
                back.side.inb = inb;
                progress |= r? > 0;
                match d.reader.next(&back.side.inb) {
                    Ok(Some((pdu, n))) => {
                        let mut bytes: Vec<u8> = back.side.inb.drain(..n).collect();
                        let rest = std::mem::take(&mut back.side.inb);
                        match pdu {
                            Pdu::AssociationAC(_) => {
                                bytes[CALLED.start..CALLING.end].copy_from_slice(&d.client_aes);
                                d.outcome = "accepted".into();
                                d.phase = Phase::Relay;
                                d.deadline = None;
                                d.down_bytes += (bytes.len() + rest.len()) as u64;
                                d.front.out.extend_from_slice(&bytes);
                                d.front.out.extend_from_slice(&rest);
                                // anything the client sent early goes on now
                                let early = std::mem::take(&mut d.front.inb);
                                d.up_bytes += early.len() as u64;
                                back.side.out.extend_from_slice(&early);
                            }
                            Pdu::AssociationRJ(rj) => {
                                d.outcome = format!("rejected by backend ({:?}, {:?})", rj.result, rj.source);
                                d.down_bytes += bytes.len() as u64;
                                d.front.out.extend_from_slice(&bytes);
                                self.close_dicom_back(d);
                                self.start_closing(d);
                            }
                            Pdu::AbortRQ { .. } => {
                                d.outcome = "aborted by backend".into();
                                d.down_bytes += bytes.len() as u64;
                                d.front.out.extend_from_slice(&bytes);
                                self.close_dicom_back(d);
                                self.start_closing(d);
                            }
                            other => {
                                let why = format!(
                                    "backend sent {} instead of an association answer",
                                    other.short_description()
                                );
                                self.backend_down(d, &why);
                            }
                        }
                        return Ok(true);
                    }
                    Err(e) => {
                        self.backend_down(d, &format!("backend: {e}"));
                        return Ok(true);
                    }
                    Ok(None) if back.side.eof => {
                        self.backend_down(d, "backend closed before answering the A-ASSOCIATE-RQ");
                        return Ok(true);
                    }
                    Ok(None) => {}
                }
                // the client may abort or close while we wait
                let mut inb = std::mem::take(&mut d.front.inb);
                let r = d.front.fill(&mut inb, 64 * 1024);
                d.front.inb = inb;
                progress |= r? > 0;
                if d.front.eof {
                    d.outcome = "client closed during association negotiation".into();
                    d.phase = Phase::Closed;
                    return Ok(true);
                }
            }
            Phase::Relay => {
                let back = d.back.as_mut().expect("relay has a backend");
                // client → backend
                if back.side.pending() < HIGH_WATER {
                    let n = d.front.fill(&mut back.side.out, back.side.pos + HIGH_WATER)?;
                    d.up_bytes += n as u64;
                    progress |= n > 0;
                }
                // backend → client
                if d.front.pending() < HIGH_WATER {
                    let n = back.side.fill(&mut d.front.out, d.front.pos + HIGH_WATER)?;
                    d.down_bytes += n as u64;
                    progress |= n > 0;
                }
                progress |= back.side.flush()? > 0;
                progress |= d.front.flush()? > 0;
                let mut closed_one = false;
                if d.front.eof && back.side.pending() == 0 && !back.side.shut {
                    back.side.shutdown_write();
                    closed_one = true;
                }
                if back.side.eof && d.front.pending() == 0 && !d.front.shut {
                    d.front.shutdown_write();
                    closed_one = true;
                }
                if closed_one {
                    progress = true;
                }
                // an idle association (or one half-closed side that stays silent)
                // does not hold its sockets forever; traffic pushes the deadline
                let window = if d.front.shut || back.side.shut { RELAY_LINGER } else { self.gen.settings.idle_timeout };
                if progress || d.deadline.is_none() {
                    d.deadline = Some(self.now + window);
                }
                if d.front.shut && back.side.shut {
                    d.phase = Phase::Closed;
                    return Ok(true);
                }
            }
            Phase::Closing => {
                match d.front.flush() {
                    Ok(n) => progress |= n > 0,
                    Err(_) => {
                        d.phase = Phase::Closed;
                        return Ok(true);
                    }
                }
                if d.front.pending() == 0 && !d.front.shut {
                    d.front.shutdown_write();
                    progress = true;
                }
                // discard whatever the peer still sends until it closes
                let mut sink = Vec::new();
                match d.front.fill(&mut sink, CHUNK) {
                    Ok(n) => progress |= n > 0,
                    Err(_) => d.front.eof = true,
                }
                if d.front.eof && d.front.pending() == 0 {
                    d.phase = Phase::Closed;
                    return Ok(true);
                }
            }
            Phase::Closed => {}
        }
        Ok(progress)
    }

    /// Route a complete A-ASSOCIATE-RQ (its bytes) and open the backend.
    fn route_association(&mut self, d: &mut DicomConn, mut rq: Vec<u8>) {
        d.client_aes.copy_from_slice(&rq[CALLED.start..CALLING.end]);
        let gen = d.gen.clone();
        let Some(route) = gen.dicom_route(&d.net, &d.called) else {
            d.outcome = "rejected: called AE title not recognized".into();
            return self.reject_front(d, RejectReason::CalledAeNotRecognized);
        };
        if !route.allowed_calling_aes.is_empty() && !route.allowed_calling_aes.contains(&d.calling) {
            d.outcome = "rejected: calling AE title not allowed".into();
            return self.reject_front(d, RejectReason::CallingAeNotRecognized);
        }
        let Backend::Dicom(target) = &gen.backends[route.backend].1 else {
            d.outcome = "rejected: route has no dicom backend".into();
            return self.reject_front(d, RejectReason::NoReason);
        };
        d.backend = target.name.clone();
        rq[CALLED].copy_from_slice(&ae_field(&target.aet));
        if let Some(local) = &target.local_aet {
            rq[CALLING].copy_from_slice(&ae_field(local));
        }
        let bkey = self.slab.insert(Slot::DicomBack(d.key));
        let sock = TcpStream::connect(target.addr).and_then(|mut s| {
            s.set_nodelay(true)?;
            self.poll.registry().register(&mut s, Token(CONN_BASE + bkey), Interest::READABLE | Interest::WRITABLE)?;
            Ok(s)
        });
        let sock = match sock {
            Ok(s) => s,
            Err(e) => {
                self.slab.remove(bkey);
                return self.backend_down(d, &format!("connect to {}: {e}", target.addr));
            }
        };
        d.up_bytes += rq.len() as u64;
        let mut side = Side::new(sock);
        side.out = rq;
        d.back = Some(Back { side, key: bkey, connected: false, target: target.clone() });
        d.phase = Phase::Backend;
        d.deadline = Some(self.now + target.timeout);
    }

    /// The backend cannot take the association: a transient rejection
    /// (never a silent close).
    fn backend_down(&mut self, d: &mut DicomConn, why: &str) {
        let addr = d.back.as_ref().map(|b| b.target.addr.to_string()).unwrap_or_default();
        log::warn!("dicom {}: backend '{}' ({addr}) unavailable: {why}", d.peer, d.backend);
        d.outcome = format!("rejected: backend unavailable ({why})");
        self.close_dicom_back(d);
        self.reject_front(d, RejectReason::TemporaryCongestion);
    }

    fn reject_front(&mut self, d: &mut DicomConn, reason: RejectReason) {
        d.front.out.extend_from_slice(&encode(Pdu::AssociationRJ(reject(reason))));
        self.start_closing(d);
    }

    fn abort_front(&mut self, d: &mut DicomConn, reason: AbortRQServiceProviderReason) {
        d.front.out.extend_from_slice(&encode(Pdu::AbortRQ { source: AbortRQSource::ServiceProvider(reason) }));
        self.start_closing(d);
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
        let quiet = d.calling == "-" && d.front.inb.is_empty() && d.outcome.starts_with("closed before");
        if self.gen.settings.access_log && !quiet {
            log::info!(
                target: "access",
                "dicom {} calling={} called={} backend={} outcome=\"{}\" up={}B down={}B {}us",
                d.peer,
                d.calling,
                d.called,
                d.backend,
                d.outcome,
                d.up_bytes,
                d.down_bytes,
                self.now.saturating_duration_since(d.started).as_micros()
            );
        }
    }
}
