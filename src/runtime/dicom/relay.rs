//! The relay after the A-ASSOCIATE-AC: PDUs both ways.
//!
//! Each direction is a `Flow`: bytes read from its source are cut into PDUs
//! (capped by the listener's `max_pdu`, which both peers were told in the
//! Maximum Length they saw). A P-DATA PDU holding only data fragments of a
//! message being passed on is copied to the other side as it is — the fast
//! path. Command fragments are joined and decoded: that gives the
//! per-message access log, the DIMSE timeout, local C-ECHO, C-MOVE
//! destination rewriting and the Lua `on_dimse` stage (which may hold a
//! message's data set until it is complete, see `hooks.rs`).

use super::hooks::Held;
use super::{DicomConn, Phase, Worker, HIGH_WATER, RELAY_LINGER};
use crate::runtime::dicom::associate::encode;
use crate::runtime::dicom::registry::ActiveMove;
use dimse::command::Command;
use dimse::pdata::{self, ABORT, P_DATA, RELEASE_RP, RELEASE_RQ};
use dimse::pdu::{AbortRQServiceProviderReason, AbortRQSource, AssociationRQ, Pdu};
use dimse::CommandField;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

/// A command set larger than this is a protocol error (they are ~100 bytes).
const MAX_COMMAND: usize = 64 * 1024;

/// An accepted presentation context.
pub(super) struct PresCtx {
    pub id: u8,
    pub abstract_syntax: String,
    pub transfer_syntax: String,
}

/// A request waiting for its final response.
pub(super) struct Outstanding {
    /// Sent by the client (else by the backend, e.g. C-GET sub-operations).
    pub from_client: bool,
    pub message_id: u16,
    pub field: CommandField,
    pub started: Instant,
    /// Pending responses so far (C-FIND matches, C-GET/C-MOVE progress).
    pub responses: u32,
    /// The C-MOVE was registered for delivery through the proxy.
    pub proxied_move: bool,
    /// A pending response to it could not be passed on (too large for a
    /// stage): the final response carries this status instead.
    pub failed: Option<u16>,
}

/// What happens to the data set of the message in flight.
pub(super) enum Mode {
    /// Copied to the other side fragment by fragment.
    Pass,
    /// Read and thrown away; then `reply` (a refusal) goes back to the sender.
    Drop { reply: Option<Box<Command>> },
    /// Buffered for a stage that needs it.
    Hold(Box<Held>),
}

/// The message whose data set is in flight in one direction.
pub(super) struct Current {
    pub context_id: u8,
    pub mode: Mode,
}

/// One direction of the relay.
#[derive(Default)]
pub(super) struct Flow {
    /// Bytes read from the source, from the start of an unprocessed PDU.
    pub inb: Vec<u8>,
    cmd: Vec<u8>,
    pub cur: Option<Current>,
}

pub(super) struct Relay {
    /// Client → backend and backend → client.
    pub up: Flow,
    pub down: Flow,
    /// Maximum Length the client accepts (we fragment to it).
    pub front_max: u32,
    /// Maximum Length the backend accepts.
    pub back_max: u32,
    /// Our cap on PDUs either side sends.
    pub cap: u32,
    /// Proposed contexts until the AC, then the accepted ones.
    pub contexts: Vec<PresCtx>,
    pub outstanding: Vec<Outstanding>,
    /// DIMSE requests seen (both directions).
    pub messages: u64,
    /// Contexts the endpoint refused itself (added to the backend's AC).
    pub refused: Vec<(u8, dimse::pdu::PresentationContextResultReason)>,
}

impl Relay {
    pub(super) fn new(front_max: u32, cap: u32, rq: &AssociationRQ) -> Relay {
        Relay {
            up: Flow::default(),
            down: Flow::default(),
            front_max,
            back_max: cap,
            cap,
            contexts: rq
                .presentation_contexts
                .iter()
                .map(|p| PresCtx {
                    id: p.id,
                    abstract_syntax: p.abstract_syntax.trim_end_matches(['\0', ' ']).to_string(),
                    transfer_syntax: String::new(),
                })
                .collect(),
            outstanding: Vec::new(),
            messages: 0,
            refused: Vec::new(),
        }
    }

    pub(super) fn context(&self, id: u8) -> Option<&PresCtx> {
        self.contexts.iter().find(|c| c.id == id)
    }
}

/// Status codes of pending responses (PS3.7 C.4).
fn is_pending(status: u16) -> bool {
    status == 0xFF00 || status == 0xFF01
}

impl DicomConn {
    /// The output buffer toward the client (`to_client`) or the backend.
    pub(super) fn out(&mut self, to_client: bool) -> &mut Vec<u8> {
        if to_client {
            &mut self.front.out
        } else {
            &mut self.back.as_mut().expect("relay has a backend").side.out
        }
    }

    /// Maximum Length of the client (`to_client`) or of the backend.
    pub(super) fn max_of(&self, to_client: bool) -> u32 {
        let r = self.relay.as_ref().expect("relaying");
        if to_client {
            r.front_max
        } else {
            r.back_max
        }
    }

    /// Send a command set (no data set) to the client or the backend.
    pub(super) fn send_command(&mut self, to_client: bool, context_id: u8, cmd: &[u8]) {
        let max = self.max_of(to_client);
        pdata::write_fragments(self.out(to_client), context_id, true, cmd, max);
    }
}

impl Worker {
    /// Phase::Relay: move PDUs both ways.
    pub(super) fn relay_step(&mut self, d: &mut DicomConn) -> io::Result<bool> {
        let mut progress = false;
        let cap = d.relay.as_ref().map_or(0, |r| r.cap) as usize;
        // read only what one more PDU needs beyond what waits to be written
        let read_limit = (cap + 6).max(HIGH_WATER);
        {
            let back = d.back.as_mut().expect("relay has a backend");
            let relay = d.relay.as_mut().expect("relaying");
            if back.side.pending() < HIGH_WATER {
                let n = d.front.fill(&mut relay.up.inb, read_limit)?;
                d.up_bytes += n as u64;
                progress |= n > 0;
            }
            if d.front.pending() < HIGH_WATER {
                let n = back.side.fill(&mut relay.down.inb, read_limit)?;
                d.down_bytes += n as u64;
                progress |= n > 0;
            }
        }
        for up in [true, false] {
            if let Err(why) = self.process(d, up) {
                self.relay_abort(d, &why);
                return Ok(true);
            }
            if d.phase != Phase::Relay {
                return Ok(true);
            }
        }
        let back = d.back.as_mut().expect("relay has a backend");
        let relay = d.relay.as_mut().expect("relaying");
        progress |= back.side.flush()? > 0;
        progress |= d.front.flush()? > 0;
        if d.front.eof && relay.up.inb.is_empty() && back.side.pending() == 0 && !back.side.shut {
            back.side.shutdown_write();
            progress = true;
        }
        if back.side.eof && relay.down.inb.is_empty() && d.front.pending() == 0 && !d.front.shut {
            d.front.shutdown_write();
            progress = true;
        }
        // a truncated PDU at EOF can never complete
        if (d.front.eof && !relay.up.inb.is_empty()) || (back.side.eof && !relay.down.inb.is_empty()) {
            relay.up.inb.clear();
            relay.down.inb.clear();
            d.outcome.push_str(", a peer closed in the middle of a PDU");
            d.result = "aborted";
            progress = true;
        }
        // an idle association (or one half-closed side that stays silent)
        // does not hold its sockets forever; traffic pushes the deadline
        let window = if d.front.shut || back.side.shut {
            RELAY_LINGER
        } else if !relay.outstanding.is_empty() {
            back.target.dimse_timeout
        } else {
            d.gen.settings.idle_timeout
        };
        if progress || d.deadline.is_none() {
            d.deadline = Some(self.now + window);
        }
        if d.front.shut && back.side.shut {
            d.phase = Phase::Closed;
        }
        Ok(progress)
    }

    /// The relay deadline passed.
    pub(super) fn relay_timeout(&mut self, d: &mut DicomConn) {
        let waiting = d.relay.as_ref().and_then(|r| r.outstanding.first()).map(|o| (o.field.name(), o.message_id));
        let half_closed = d.front.shut || d.back.as_ref().is_some_and(|b| b.side.shut);
        match waiting {
            Some((name, id)) if !half_closed => {
                let t = d.back.as_ref().map(|b| b.target.dimse_timeout).unwrap_or_default();
                self.relay_abort(d, &format!("DIMSE timeout: no response to {name} (message {id}) within {t:?}"));
            }
            _ => {
                d.outcome.push_str(if half_closed { ", closed after linger" } else { ", idle timeout" });
                if !half_closed {
                    d.result = "aborted";
                }
                d.phase = Phase::Closed;
            }
        }
    }

    /// Abort the association on both sides (A-ABORT from the service provider).
    pub(super) fn relay_abort(&mut self, d: &mut DicomConn, why: &str) {
        log::warn!("dicom {} assoc={}: {why}; aborting", d.peer, d.id);
        d.outcome = why.to_string();
        d.result = "aborted";
        let abort = encode(Pdu::AbortRQ {
            source: AbortRQSource::ServiceProvider(AbortRQServiceProviderReason::ReasonNotSpecified),
        });
        d.front.out.extend_from_slice(&abort);
        if let Some(b) = d.back.as_mut() {
            b.side.out.extend_from_slice(&abort);
        }
        if let Some(r) = d.relay.as_mut() {
            r.up.inb.clear();
            r.down.inb.clear();
        }
        self.start_closing(d);
    }

    /// Handle every complete PDU read from the client (`up`) or the backend.
    fn process(&mut self, d: &mut DicomConn, up: bool) -> Result<(), String> {
        let relay = d.relay.as_mut().expect("relaying");
        let cap = relay.cap;
        let mut flow = std::mem::take(if up { &mut relay.up } else { &mut relay.down });
        let r = self.process_flow(d, &mut flow, up, cap);
        let relay = d.relay.as_mut().expect("relaying");
        *(if up { &mut relay.up } else { &mut relay.down }) = flow;
        r
    }

    fn process_flow(&mut self, d: &mut DicomConn, flow: &mut Flow, up: bool, cap: u32) -> Result<(), String> {
        let from = if up { "client" } else { "backend" };
        let mut at = 0;
        let result = loop {
            let (kind, total) = match pdata::split(&flow.inb[at..], cap) {
                Ok(Some(x)) => x,
                Ok(None) => break Ok(()),
                Err(e) => break Err(format!("protocol error from the {from}: {e}")),
            };
            let range = at..at + total;
            at += total;
            if kind != P_DATA {
                match kind {
                    RELEASE_RQ => d.outcome = format!("release requested by the {from}"),
                    RELEASE_RP => d.outcome = "released".into(),
                    ABORT => {
                        d.outcome = format!("aborted by the {from}");
                        d.result = "aborted";
                    }
                    _ => {
                        break Err(format!(
                            "protocol error: the {from} sent PDU type {kind:#04x} after the association was set up"
                        ))
                    }
                }
                d.out(!up).extend_from_slice(&flow.inb[range]);
                continue;
            }
            if let Err(e) = self.pdata(d, flow, range, up) {
                break Err(e);
            }
            if d.phase != Phase::Relay {
                break Ok(());
            }
        };
        flow.inb.drain(..at.min(flow.inb.len()));
        result
    }

    /// One P-DATA-TF PDU (`flow.inb[range]`).
    fn pdata(
        &mut self,
        d: &mut DicomConn,
        flow: &mut Flow,
        range: std::ops::Range<usize>,
        up: bool,
    ) -> Result<(), String> {
        let from = if up { "client" } else { "backend" };
        let perr = |e: dimse::DimseError| format!("protocol error from the {from}: {e}");
        let Flow { inb, cmd, cur } = flow;
        let pdu = &inb[range];
        // fast path: only data fragments of the message being passed on
        if let Some(Current { context_id, mode: Mode::Pass }) = cur {
            let mut last = false;
            let mut plain = true;
            for item in pdata::items(pdu) {
                let item = item.map_err(perr)?;
                if item.command || item.context_id != *context_id || last {
                    plain = false;
                    break;
                }
                last = item.last;
            }
            if plain {
                d.out(!up).extend_from_slice(pdu);
                if last {
                    *cur = None;
                }
                return Ok(());
            }
        }
        for item in pdata::items(pdu) {
            let item = item.map_err(perr)?;
            if item.command {
                if cur.is_some() {
                    return Err(format!("protocol error: the {from} started a command before the data set ended"));
                }
                if cmd.len() + item.data.len() > MAX_COMMAND {
                    return Err(format!("protocol error: command set from the {from} over {MAX_COMMAND} bytes"));
                }
                cmd.extend_from_slice(item.data);
                if item.last {
                    let raw = std::mem::take(cmd);
                    *cur = self.on_command(d, up, item.context_id, raw)?;
                    if d.phase != Phase::Relay {
                        return Ok(());
                    }
                }
                continue;
            }
            let Some(c) = cur.as_mut() else {
                return Err(format!("protocol error: data fragment from the {from} without a command"));
            };
            if item.context_id != c.context_id {
                return Err(format!("protocol error: data fragment from the {from} on another presentation context"));
            }
            match &mut c.mode {
                Mode::Pass => {
                    let max = d.max_of(!up);
                    let out = d.out(!up);
                    if item.data.len() + pdata::PDV_OVERHEAD <= max as usize || max == 0 {
                        pdata::write_pdv(out, item.context_id, false, item.last, item.data);
                    } else {
                        // cannot happen with peers that keep to their Maximum Length
                        return Err(format!("protocol error: the {from} sent a PDV larger than its peer accepts"));
                    }
                    if item.last {
                        *cur = None;
                    }
                }
                Mode::Drop { reply } => {
                    if item.last {
                        if let Some(rsp) = reply.take() {
                            d.send_command(up, item.context_id, &rsp.encode());
                        }
                        *cur = None;
                    }
                }
                Mode::Hold(held) => {
                    if let Err(e) = held.push(item.data) {
                        // too large for a stage: refuse the message like a script would
                        let Some(Current { mode: Mode::Hold(held), context_id }) = cur.take() else { unreachable!() };
                        let why = format!("dicom {} assoc={}: {e}", d.peer, d.id);
                        *cur = self.refuse(
                            d,
                            up,
                            context_id,
                            *held,
                            super::hooks::OUT_OF_RESOURCES,
                            &why,
                            item.last,
                            false,
                        );
                        continue;
                    }
                    if item.last {
                        let Some(Current { mode: Mode::Hold(held), context_id }) = cur.take() else { unreachable!() };
                        self.release_held(d, up, context_id, *held)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// A complete command set from the client (`up`) or the backend.
    /// Returns what happens to its data set, if it has one.
    fn on_command(
        &mut self,
        d: &mut DicomConn,
        up: bool,
        context_id: u8,
        raw: Vec<u8>,
    ) -> Result<Option<Current>, String> {
        let from = if up { "client" } else { "backend" };
        let cmd = Command::decode(&raw).map_err(|e| format!("protocol error from the {from}: {e}"))?;
        let has_data = cmd.has_data_set;
        // requests are tracked now, responses as they are passed on (a
        // stage may change or drop them)
        if !cmd.field.is_response() {
            self.track(d, up, &cmd);
        }
        if up && cmd.field == CommandField::CEchoRq && self.route_of(d).is_some_and(|r| r.local_echo) {
            let rsp = Command::response_to(&cmd, 0x0000);
            self.finish(d, true, cmd.message_id.unwrap_or(0), 0x0000, " answered=local");
            if has_data {
                return Ok(Some(Current { context_id, mode: Mode::Drop { reply: Some(Box::new(rsp)) } }));
            }
            d.send_command(true, context_id, &rsp.encode());
            return Ok(None);
        }
        self.dimse_stages(d, up, context_id, cmd, raw, false)
    }

    /// Pass a command (and say how its data set follows) once every stage
    /// that looks at the command alone is done. A C-MOVE-RQ from the client
    /// to a destination the endpoint delivers to (as the scripts left it) is
    /// rewritten to go through the proxy here.
    pub(super) fn forward_command(
        &mut self,
        d: &mut DicomConn,
        up: bool,
        context_id: u8,
        cmd: &Command,
        raw: &[u8],
        changed: bool,
    ) -> Option<Current> {
        if cmd.field.is_response() {
            // a request some pending response of which was lost ends failed
            let id = cmd.message_id_being_responded_to.unwrap_or(0);
            let failed = d
                .relay
                .as_ref()
                .and_then(|r| r.outstanding.iter().find(|o| o.from_client != up && o.message_id == id))
                .and_then(|o| o.failed);
            let final_status = cmd.status.is_some_and(|s| s != 0xFF00 && s != 0xFF01);
            if let (Some(status), true) = (failed, final_status) {
                let mut failed_cmd = cmd.clone();
                failed_cmd.status = Some(status);
                failed_cmd.has_data_set = false;
                self.track(d, up, &failed_cmd);
                d.send_command(!up, context_id, &failed_cmd.encode());
                return cmd.has_data_set.then_some(Current { context_id, mode: Mode::Drop { reply: None } });
            }
            self.track(d, up, cmd);
        }
        if up && cmd.field == CommandField::CMoveRq {
            let mut moved = cmd.clone();
            if self.proxy_move(d, &mut moved) {
                d.send_command(!up, context_id, &moved.encode());
                return moved.has_data_set.then_some(Current { context_id, mode: Mode::Pass });
            }
        }
        if changed {
            d.send_command(!up, context_id, &cmd.encode());
        } else {
            d.send_command(!up, context_id, raw);
        }
        cmd.has_data_set.then_some(Current { context_id, mode: Mode::Pass })
    }

    /// Rewrite the Move Destination of a C-MOVE-RQ to the proxy when the
    /// destination is one the endpoint delivers to. True if changed.
    fn proxy_move(&mut self, d: &mut DicomConn, cmd: &mut Command) -> bool {
        let Some(route) = self.route_of(d) else { return false };
        let Some(dest) = cmd.move_destination.as_deref().map(|s| s.trim_matches([' ', '\0']).to_string()) else {
            return false;
        };
        let via = route.ae_title.clone();
        let found = route.move_destinations.iter().find_map(|&b| match &d.gen.backends[b].1 {
            crate::pipeline::Backend::Dicom(t) if t.aet == dest => Some(d.gen.backends[b].0.clone()),
            _ => None,
        });
        let (Some(dest_backend), Some(back)) = (found, d.back.as_ref()) else { return false };
        let message_id = cmd.message_id.unwrap_or(0);
        self.shared.dicom.add_move(ActiveMove {
            net: d.net.to_string(),
            via_ae: via.clone(),
            source_aet: back.target.aet.clone(),
            dest_backend,
            owner: (self.index, d.key, message_id),
        });
        if let Some(o) = d
            .relay
            .as_mut()
            .and_then(|r| r.outstanding.iter_mut().rev().find(|o| o.from_client && o.message_id == message_id))
        {
            o.proxied_move = true;
        }
        log::debug!("dicom assoc={}: C-MOVE {message_id} to {dest} delivered through {via}", d.id);
        cmd.move_destination = Some(via);
        true
    }

    /// The endpoint route of an association (None for C-MOVE deliveries).
    pub(super) fn route_of<'g>(&self, d: &'g DicomConn) -> Option<&'g crate::pipeline::DicomRoute> {
        let (ni, ri) = d.routed.as_ref()?.route?;
        d.gen.networks.get(ni)?.dicom_routes.get(ri)
    }

    /// Requests in, responses out: the per-message log and the timeout.
    pub(super) fn track(&mut self, d: &mut DicomConn, up: bool, cmd: &Command) {
        let now = self.now;
        let relay = d.relay.as_mut().expect("relaying");
        if !cmd.field.is_response() {
            if cmd.field != CommandField::CCancelRq {
                relay.messages += 1;
                relay.outstanding.push(Outstanding {
                    from_client: up,
                    message_id: cmd.message_id.unwrap_or(0),
                    field: cmd.field,
                    started: now,
                    responses: 0,
                    proxied_move: false,
                    failed: None,
                });
            }
            return;
        }
        let status = cmd.status.unwrap_or(0xFFFF);
        let id = cmd.message_id_being_responded_to.unwrap_or(0);
        if is_pending(status) {
            if let Some(o) = relay.outstanding.iter_mut().find(|o| o.from_client != up && o.message_id == id) {
                o.responses += 1;
            }
            return;
        }
        self.finish(d, !up, id, status, "");
    }

    /// The final response to request `message_id` (sent by the client if
    /// `from_client`): one access-log line, metrics.
    pub(super) fn finish(&mut self, d: &mut DicomConn, from_client: bool, message_id: u16, status: u16, note: &str) {
        let relay = d.relay.as_mut().expect("relaying");
        let Some(i) = relay.outstanding.iter().position(|o| o.from_client == from_client && o.message_id == message_id)
        else {
            return;
        };
        let o = relay.outstanding.remove(i);
        if o.proxied_move {
            self.shared.dicom.end_move((self.index, d.key, message_id));
        }
        let pipeline = d.routed.as_ref().and_then(|r| d.gen.pipelines.get(r.pipeline)).map(|p| p.name.as_str());
        if let Ok(mut m) = self.shared.metrics[self.index].lock() {
            m.record_dimse(pipeline.unwrap_or(""), o.field.name(), status);
        }
        if d.gen.settings.access_log {
            log_message(&d.peer, &d.id, &o, Some(status), self.now, note);
        }
    }

    /// Requests still waiting when the association ends.
    pub(super) fn log_unanswered(&self, id: &str, peer: &SocketAddr, r: &Relay) {
        if self.gen.settings.access_log {
            for o in &r.outstanding {
                log_message(peer, id, o, None, self.now, "");
            }
        }
    }
}

fn log_message(peer: &SocketAddr, id: &str, o: &Outstanding, status: Option<u16>, now: Instant, note: &str) {
    if !log::log_enabled!(target: "access", log::Level::Info) {
        return;
    }
    let status = status.map_or("none".to_string(), |s| format!("{s:#06x}"));
    log::info!(
        target: "access",
        "dimse {peer} assoc={id} {} msg={} from={} status={status} responses={}{note} {}us",
        o.field.name(),
        o.message_id,
        if o.from_client { "client" } else { "backend" },
        o.responses,
        now.saturating_duration_since(o.started).as_micros()
    );
}
