//! Association set-up: read the client's A-ASSOCIATE-RQ, route it, open the
//! backend, forward the RQ and the backend's answer. Both are forwarded as
//! the peers' own bytes with only the AE title fields and the Maximum Length
//! patched in place.

use super::registry::OverLimit;
use super::relay::{PresCtx, Relay};
use super::side::Side;
use super::{Back, DicomConn, Phase, Routed, Worker, MAX_ASSOCIATE_PDU};
use crate::pipeline::{Backend, DicomRoute, DicomTarget};
use crate::runtime::worker::{Slot, CONN_BASE};
use dimse::negotiate::{reject, RejectReason};
use dimse::pdata;
use dimse::pdu::{
    AbortRQServiceProviderReason, AbortRQSource, AssociationRQ, Pdu, PresentationContextResult,
    PresentationContextResultReason,
};
use mio::net::TcpStream;
use mio::{Interest, Token};
use std::io;

/// Byte offsets of the called / calling AE title fields in an
/// A-ASSOCIATE-RQ or -AC PDU (PS3.8 §9.3.2, §9.3.3).
const CALLED: std::ops::Range<usize> = 10..26;
const CALLING: std::ops::Range<usize> = 26..42;

/// An AE title as its 16-byte, space-padded field.
fn ae_field(ae: &str) -> [u8; 16] {
    let mut f = [b' '; 16];
    let b = ae.as_bytes();
    let n = b.len().min(16);
    f[..n].copy_from_slice(&b[..n]);
    f
}

/// Encode a PDU the proxy makes itself (RJ, A-ABORT: these always encode).
pub(super) fn encode(pdu: Pdu) -> Vec<u8> {
    dimse::encode(&pdu).unwrap_or_default()
}

/// Re-encode a peer's A-ASSOCIATE-RQ/-AC after changing it; None when it
/// cannot be encoded again (e.g. an AE title dicom-ul refuses to write),
/// or is too short to patch.
fn reencode(pdu: Pdu) -> Option<Vec<u8>> {
    dimse::encode(&pdu).ok().filter(|b| b.len() >= 74)
}

/// Presentation contexts the proxy answers itself: (id, reason).
type Refused = Vec<(u8, PresentationContextResultReason)>;

/// Where an association goes.
struct Decision {
    target: DicomTarget,
    routed: Routed,
    /// The RQ re-encoded without the presentation contexts the endpoint
    /// refuses itself, and those contexts with their reasons.
    filtered: Option<(Vec<u8>, Refused)>,
}

/// Apply an endpoint's `sop_classes` / `transfer_syntaxes` to the proposed
/// contexts: the ones it refuses, with the reason, and the RQ without them.
fn filter_contexts(rq: &AssociationRQ, route: &DicomRoute) -> Option<(AssociationRQ, Refused)> {
    if route.sop_classes.is_none() && route.transfer_syntaxes.is_none() {
        return None;
    }
    let uid = |s: &str| s.trim_end_matches(['\0', ' ']).to_string();
    let mut kept = rq.clone();
    kept.presentation_contexts.clear();
    let mut refused = Vec::new();
    for pc in &rq.presentation_contexts {
        if let Some(list) = &route.sop_classes {
            if !list.contains(&uid(&pc.abstract_syntax)) {
                refused.push((pc.id, PresentationContextResultReason::AbstractSyntaxNotSupported));
                continue;
            }
        }
        let mut pc = pc.clone();
        if let Some(list) = &route.transfer_syntaxes {
            pc.transfer_syntaxes.retain(|t| list.contains(&uid(t)));
            if pc.transfer_syntaxes.is_empty() {
                refused.push((pc.id, PresentationContextResultReason::TransferSyntaxesNotSupported));
                continue;
            }
        }
        kept.presentation_contexts.push(pc);
    }
    Some((kept, refused))
}

impl Worker {
    /// Phase::ReadRq: wait for the whole A-ASSOCIATE-RQ (capped), then route.
    pub(super) fn read_rq(&mut self, d: &mut DicomConn) -> io::Result<bool> {
        let limit = MAX_ASSOCIATE_PDU as usize + 6;
        let mut inb = std::mem::take(&mut d.front.inb);
        let r = d.front.fill(&mut inb, limit);
        d.front.inb = inb;
        let progress = r? > 0;
        match d.reader.next(&d.front.inb) {
            Ok(Some((Pdu::AssociationRQ(rq), n))) => {
                d.calling = rq.calling_ae_title.trim().to_string();
                d.called = rq.called_ae_title.trim().to_string();
                let rq_bytes: Vec<u8> = d.front.inb.drain(..n).collect();
                self.route_association(d, &rq, rq_bytes);
                Ok(true)
            }
            Ok(Some((other, _))) => {
                d.outcome = format!("protocol error: expected A-ASSOCIATE-RQ, got {}", other.short_description());
                self.abort_front(d, AbortRQServiceProviderReason::UnexpectedPdu);
                Ok(true)
            }
            Err(e) => {
                d.outcome = format!("protocol error: {e}");
                let reason = match e.abort_source() {
                    Some(AbortRQSource::ServiceProvider(r)) => r,
                    _ => AbortRQServiceProviderReason::ReasonNotSpecified,
                };
                self.abort_front(d, reason);
                Ok(true)
            }
            Ok(None) if d.front.eof => {
                if !d.front.inb.is_empty() {
                    d.outcome = "client closed in the middle of the A-ASSOCIATE-RQ".into();
                }
                d.phase = Phase::Closed;
                Ok(true)
            }
            Ok(None) => Ok(progress),
        }
    }

    /// Decide where a complete A-ASSOCIATE-RQ goes, or reject it.
    fn decide(&mut self, d: &mut DicomConn, rq: &AssociationRQ) -> Result<Decision, (RejectReason, String)> {
        let gen = d.gen.clone();
        // a backend delivering the sub-operations of a C-MOVE we rewrote
        if let Some(dest) = self.shared.dicom.move_destination(&d.net, &d.called, &d.calling) {
            let found = gen.backends.iter().position(|(n, b)| *n == dest && matches!(b, Backend::Dicom(_)));
            if let Some(bi) = found {
                let Backend::Dicom(t) = &gen.backends[bi].1 else { unreachable!() };
                let pipeline = gen
                    .networks
                    .iter()
                    .find(|n| *n.name == *d.net)
                    .and_then(|n| n.dicom_routes.iter().find(|r| r.ae_title == d.called))
                    .map_or(0, |r| r.pipeline);
                return Ok(Decision {
                    target: t.clone(),
                    routed: Routed { route: None, pipeline, admitted: false },
                    filtered: None,
                });
            }
        }
        let Some(ni) = gen.networks.iter().position(|n| *n.name == *d.net) else {
            return Err((RejectReason::CalledAeNotRecognized, "network gone".into()));
        };
        let net = &gen.networks[ni];
        let Some(ri) = net.dicom_routes.iter().position(|r| r.ae_title == d.called) else {
            return Err((RejectReason::CalledAeNotRecognized, "called AE title not recognized".into()));
        };
        let route = &net.dicom_routes[ri];
        if !route.allowed_calling_aes.is_empty() && !route.allowed_calling_aes.contains(&d.calling) {
            return Err((RejectReason::CallingAeNotRecognized, "calling AE title not allowed".into()));
        }
        let mut backend = route
            .calling_ae_routes
            .iter()
            .find(|(ae, _)| *ae == d.calling)
            .map(|(_, b)| *b)
            .or_else(|| route.peer_routes.iter().find(|(n, _)| n.contains(d.peer.ip())).map(|(_, b)| *b))
            .unwrap_or(route.backend);
        let pipeline = route.pipeline;
        let filtered = match filter_contexts(rq, route) {
            Some((kept, _)) if kept.presentation_contexts.is_empty() => {
                return Err((
                    RejectReason::NoReason,
                    "none of the proposed presentation contexts is accepted by the endpoint".into(),
                ));
            }
            Some((kept, refused)) => match reencode(Pdu::AssociationRQ(kept)) {
                Some(bytes) => Some((bytes, refused)),
                None => {
                    return Err((
                        RejectReason::CallingAeNotRecognized,
                        "the A-ASSOCIATE-RQ cannot be re-encoded (blank or invalid AE title)".into(),
                    ))
                }
            },
            None => None,
        };
        if let Some(chosen) = self.run_on_associate(d, rq, ni, ri)? {
            backend = chosen;
        }
        if let Err(over) = self.shared.dicom.admit(&d.net, &d.calling, &net.dicom_limits) {
            let why = match over {
                OverLimit::Total(n) => format!("local limit exceeded ({n} associations on this listener)"),
                OverLimit::PerCallingAe(n) => format!("local limit exceeded ({n} associations from this calling AE)"),
            };
            return Err((RejectReason::LocalLimitExceeded, why));
        }
        let Backend::Dicom(target) = &gen.backends[backend].1 else {
            self.shared.dicom.release(&d.net, &d.calling);
            return Err((RejectReason::NoReason, "route has no dicom backend".into()));
        };
        Ok(Decision {
            target: target.clone(),
            routed: Routed { route: Some((ni, ri)), pipeline, admitted: true },
            filtered,
        })
    }

    /// Route a complete A-ASSOCIATE-RQ (its bytes) and open the backend.
    fn route_association(&mut self, d: &mut DicomConn, rq: &AssociationRQ, mut bytes: Vec<u8>) {
        d.client_aes.copy_from_slice(&bytes[CALLED.start..CALLING.end]);
        let decision = match self.decide(d, rq) {
            Ok(x) => x,
            Err((reason, why)) => {
                d.outcome = format!("rejected: {why}");
                return self.reject_front(d, reason);
            }
        };
        let target = decision.target;
        d.routed = Some(decision.routed);
        let mut refused = Vec::new();
        if let Some((filtered, r)) = decision.filtered {
            bytes = filtered;
            refused = r;
        }
        d.backend = target.name.clone();
        bytes[CALLED].copy_from_slice(&ae_field(&target.aet));
        if let Some(local) = &target.local_aet {
            bytes[CALLING].copy_from_slice(&ae_field(local));
        }
        // the backend may send us no PDU larger than our cap
        let cap = self.dicom_cap(d);
        let front_max = pdata::cap_max_length(&mut bytes, cap).unwrap_or(cap);
        let mut relay = Box::new(Relay::new(front_max, cap, rq));
        relay.refused = refused;
        d.relay = Some(relay);
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
                let why = format!("connect to {}: {e}", target.addr);
                return self.backend_down(d, &why);
            }
        };
        d.up_bytes += bytes.len() as u64;
        let mut side = Side::new(sock);
        side.out = bytes;
        d.deadline = Some(self.now + target.timeout);
        d.back = Some(Back { side, key: bkey, connected: false, target });
        d.phase = Phase::Backend;
    }

    /// Our PDU cap for this association's listener.
    pub(super) fn dicom_cap(&self, d: &DicomConn) -> u32 {
        d.gen
            .networks
            .iter()
            .find(|n| *n.name == *d.net)
            .map_or(crate::config::DEFAULT_MAX_PDU, |n| n.dicom_limits.max_pdu)
    }

    /// Phase::Backend: connect, send the RQ, wait for AC / RJ / A-ABORT.
    pub(super) fn await_answer(&mut self, d: &mut DicomConn) -> io::Result<bool> {
        // the client may abort or close while we connect or wait (what it
        // sends early is kept and relayed after the AC)
        let mut inb = std::mem::take(&mut d.front.inb);
        let r = d.front.fill(&mut inb, 64 * 1024);
        d.front.inb = inb;
        let mut progress = r? > 0;
        if d.front.eof {
            d.outcome = "client closed during association negotiation".into();
            d.phase = Phase::Closed;
            return Ok(true);
        }
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
                    Pdu::AssociationAC(mut ac) => {
                        let relay = d.relay.as_mut().expect("routed associations have a relay");
                        if !relay.refused.is_empty() {
                            // the contexts the endpoint refused itself, answered with the backend's
                            for (id, reason) in std::mem::take(&mut relay.refused) {
                                ac.presentation_contexts.push(PresentationContextResult {
                                    id,
                                    reason,
                                    transfer_syntax: "1.2.840.10008.1.2".into(),
                                });
                            }
                            ac.presentation_contexts.sort_by_key(|p| p.id);
                            match reencode(Pdu::AssociationAC(ac.clone())) {
                                Some(b) => bytes = b,
                                None => {
                                    self.backend_down(d, "its A-ASSOCIATE-AC cannot be re-encoded");
                                    return Ok(true);
                                }
                            }
                        }
                        bytes[CALLED.start..CALLING.end].copy_from_slice(&d.client_aes);
                        relay.back_max = pdata::cap_max_length(&mut bytes, relay.cap).unwrap_or(relay.cap);
                        relay.accepted(&ac);
                        d.outcome = "accepted".into();
                        d.result = "completed";
                        d.phase = Phase::Relay;
                        d.deadline = None;
                        d.down_bytes += bytes.len() as u64;
                        d.front.out.extend_from_slice(&bytes);
                        // PDUs that followed the AC, and what the client sent early, go through the relay
                        d.down_bytes += rest.len() as u64;
                        relay.down.inb = rest;
                        relay.up.inb = std::mem::take(&mut d.front.inb);
                        d.up_bytes += relay.up.inb.len() as u64;
                    }
                    Pdu::AssociationRJ(rj) => {
                        d.outcome = format!("rejected by backend ({:?}, {:?})", rj.result, rj.source);
                        d.result = "rejected";
                        d.down_bytes += bytes.len() as u64;
                        d.front.out.extend_from_slice(&bytes);
                        self.close_dicom_back(d);
                        self.start_closing(d);
                    }
                    Pdu::AbortRQ { .. } => {
                        d.outcome = "aborted by backend".into();
                        d.result = "aborted";
                        d.down_bytes += bytes.len() as u64;
                        d.front.out.extend_from_slice(&bytes);
                        self.close_dicom_back(d);
                        self.start_closing(d);
                    }
                    other => {
                        let why =
                            format!("backend sent {} instead of an association answer", other.short_description());
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
        Ok(progress)
    }

    /// The backend cannot take the association: a transient rejection
    /// (never a silent close).
    pub(super) fn backend_down(&mut self, d: &mut DicomConn, why: &str) {
        let addr = d.back.as_ref().map(|b| b.target.addr.to_string()).unwrap_or_default();
        log::warn!("dicom {} assoc={}: backend '{}' ({addr}) unavailable: {why}", d.peer, d.id, d.backend);
        d.outcome = format!("rejected: backend unavailable ({why})");
        d.relay = None;
        self.close_dicom_back(d);
        self.reject_front(d, RejectReason::TemporaryCongestion);
    }

    pub(super) fn reject_front(&mut self, d: &mut DicomConn, reason: RejectReason) {
        d.result = "rejected";
        d.front.out.extend_from_slice(&encode(Pdu::AssociationRJ(reject(reason))));
        self.start_closing(d);
    }

    pub(super) fn abort_front(&mut self, d: &mut DicomConn, reason: AbortRQServiceProviderReason) {
        d.result = "aborted";
        d.front.out.extend_from_slice(&encode(Pdu::AbortRQ { source: AbortRQSource::ServiceProvider(reason) }));
        self.start_closing(d);
    }
}

impl Relay {
    /// The presentation contexts the backend accepted, with their transfer
    /// syntaxes (the abstract syntax comes from the RQ).
    fn accepted(&mut self, ac: &dimse::pdu::AssociationAC) {
        let proposed = std::mem::take(&mut self.contexts);
        for pc in &ac.presentation_contexts {
            if pc.reason != dimse::pdu::PresentationContextResultReason::Acceptance {
                continue;
            }
            let abstract_syntax =
                proposed.iter().find(|p| p.id == pc.id).map(|p| p.abstract_syntax.clone()).unwrap_or_default();
            self.contexts.push(PresCtx {
                id: pc.id,
                abstract_syntax,
                transfer_syntax: pc.transfer_syntax.trim_end_matches(['\0', ' ']).to_string(),
            });
        }
    }
}
