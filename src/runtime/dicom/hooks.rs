//! The stages that look at DICOM messages: Lua `on_associate` when an
//! association is routed, Lua `on_dimse` for every DIMSE message (messages
//! from the client in pipeline order, from the backend in reverse order).
//!
//! A message waits here only if a script reads its data set: the command is
//! held (`Held`) until the data set is complete, then the remaining stages
//! run and the message is passed on — re-encoded only if a script changed
//! it — or refused with a DIMSE status. A script that never touches
//! `msg.dataset` costs no buffering: its data set streams (fast path).

use super::relay::{Current, Mode};
use super::{DicomConn, Worker};
use crate::lua::{
    AssocInfo, Dataset, DatasetState, DicomOutcome, DicomPending, DimseMsg, DimseState, Hook, LuaCtx, LuaHost,
    ProposedContext,
};
use crate::pipeline::Backend;
use dimse::command::Command;
use dimse::negotiate::RejectReason;
use dimse::pdata;
use dimse::pdu::{AssociationRQ, UserVariableItem};
use std::cell::RefCell;
use std::rc::Rc;

/// DIMSE status "Processing failure" (PS3.7 C.4), for a failing script.
const PROCESSING_FAILURE: u16 = 0x0110;
/// DIMSE status "Refused: Out of Resources".
pub(super) const OUT_OF_RESOURCES: u16 = 0xA700;

/// A message held for a stage until its data set is complete.
pub(super) struct Held {
    msg: DimseMsg,
    /// The command as received (forwarded as is when nothing changed it).
    raw: Vec<u8>,
    /// Changed before the scripts ran (C-MOVE destination).
    changed: bool,
    data: Vec<u8>,
    /// The listener's `buffered_dataset_bytes`.
    limit: usize,
    /// Middleware indexes of the `on_dimse` stages, in the order they run.
    stages: Vec<usize>,
    next: usize,
    pending: Option<DicomPending>,
}

impl Held {
    /// Add a data fragment; an error once the data set outgrows the limit.
    pub(super) fn push(&mut self, bytes: &[u8]) -> Result<(), String> {
        if self.data.len() + bytes.len() > self.limit {
            return Err(format!(
                "data set over buffered_dataset_bytes ({} bytes), which a script needs to read: refused",
                self.limit
            ));
        }
        self.data.extend_from_slice(bytes);
        Ok(())
    }
}

impl DicomConn {
    /// The association's `ctx` (made on first use).
    fn lua_ctx(&mut self, lua: &LuaHost, pipeline: &str, endpoint: &str) -> Option<LuaCtx> {
        if self.ctx.is_none() {
            let gateway = self.gen.settings.gateway_id.clone();
            self.ctx = lua.new_ctx(&gateway, pipeline, endpoint, &self.id).ok();
        }
        self.ctx.clone()
    }
}

impl Worker {
    fn names(d: &DicomConn) -> (String, String) {
        let Some(r) = d.routed.as_ref() else { return Default::default() };
        let pipeline = d.gen.pipelines.get(r.pipeline).map(|p| p.name.clone()).unwrap_or_default();
        let endpoint = r
            .route
            .and_then(|(ni, ri)| d.gen.networks.get(ni)?.dicom_routes.get(ri))
            .and_then(|rt| d.gen.endpoints.get(rt.endpoint).cloned())
            .unwrap_or_default();
        (pipeline, endpoint)
    }

    /// Lua `on_associate` of the route's pipeline: Ok(Some(backend index))
    /// when a script chose a backend with `ctx.route`.
    pub(super) fn run_on_associate(
        &mut self,
        d: &mut DicomConn,
        rq: &AssociationRQ,
        ni: usize,
        ri: usize,
    ) -> Result<Option<usize>, (RejectReason, String)> {
        let Some(lua) = d.lua.clone() else { return Ok(None) };
        let gen = d.gen.clone();
        let route = &gen.networks[ni].dicom_routes[ri];
        let pipeline = &gen.pipelines[route.pipeline];
        let stages: Vec<usize> = pipeline.middleware.iter().copied().filter(|&m| lua.has(m, Hook::Associate)).collect();
        if stages.is_empty() {
            return Ok(None);
        }
        let endpoint = gen.endpoints.get(route.endpoint).cloned().unwrap_or_default();
        let Some(ctx) = d.lua_ctx(&lua, &pipeline.name, &endpoint) else {
            return Err((RejectReason::NoReason, "Lua context could not be made".into()));
        };
        let info = assoc_info(d, rq);
        for mw in stages {
            match lua.call_associate(mw, &info, &ctx, &d.id) {
                DicomOutcome::Continue => {}
                DicomOutcome::Reject(reason) => {
                    return Err((reason, format!("by Lua on_associate ({})", gen.middleware[mw].0)));
                }
                DicomOutcome::Failed { error_id } => {
                    return Err((
                        RejectReason::NoReason,
                        format!("error_id={error_id} Lua on_associate failed ({})", gen.middleware[mw].0),
                    ));
                }
                DicomOutcome::Refuse(_) | DicomOutcome::NeedDataset(_) => {
                    return Err((RejectReason::NoReason, "Lua on_associate returned a DIMSE outcome".into()));
                }
            }
        }
        let Some(name) = ctx.route() else { return Ok(None) };
        pipeline
            .backends
            .iter()
            .copied()
            .find(|&b| gen.backends[b].0 == name && matches!(gen.backends[b].1, Backend::Dicom(_)))
            .map(Some)
            .ok_or_else(|| {
                (
                    RejectReason::NoReason,
                    format!("ctx.route = '{name}' is not a dicom backend of pipeline '{}'", pipeline.name),
                )
            })
    }

    /// Run the `on_dimse` stages on a complete command, then forward it.
    pub(super) fn dimse_stages(
        &mut self,
        d: &mut DicomConn,
        up: bool,
        context_id: u8,
        cmd: Command,
        raw: Vec<u8>,
        changed: bool,
    ) -> Result<Option<Current>, String> {
        let stages = match (&d.lua, d.routed.as_ref()) {
            (Some(lua), Some(r)) => {
                let mut s: Vec<usize> = d.gen.pipelines[r.pipeline]
                    .middleware
                    .iter()
                    .copied()
                    .filter(|&m| lua.has(m, Hook::Dimse))
                    .collect();
                if !up {
                    s.reverse();
                }
                s
            }
            _ => Vec::new(),
        };
        if stages.is_empty() {
            return Ok(self.forward_command(d, up, context_id, &cmd, &raw, changed));
        }
        let relay = d.relay.as_ref().expect("relaying");
        let (abstract_syntax, transfer_syntax) = relay
            .context(context_id)
            .map(|c| (c.abstract_syntax.clone(), c.transfer_syntax.clone()))
            .unwrap_or_default();
        let has_data = cmd.has_data_set;
        let msg = Rc::new(RefCell::new(DimseState {
            id: crate::lua::next_message_id(),
            is_request: !cmd.field.is_response(),
            command: cmd,
            command_changed: false,
            dataset: if has_data { DatasetState::Pending } else { DatasetState::Absent },
            context_id,
            abstract_syntax,
            transfer_syntax,
        }));
        let limit = d
            .gen
            .networks
            .iter()
            .find(|n| *n.name == *d.net)
            .map_or(crate::config::DEFAULT_BUFFERED_DATASET_BYTES, |n| n.dicom_limits.buffered_dataset_bytes);
        let held = Held { msg, raw, changed, data: Vec::new(), limit, stages, next: 0, pending: None };
        self.run_stages(d, up, context_id, held, false)
    }

    /// The data set of a held message is complete: run the rest of the stages.
    pub(super) fn release_held(
        &mut self,
        d: &mut DicomConn,
        up: bool,
        context_id: u8,
        mut held: Held,
    ) -> Result<(), String> {
        let ts = held.msg.borrow().transfer_syntax.clone();
        held.msg.borrow_mut().dataset = DatasetState::Loaded(Dataset::new(std::mem::take(&mut held.data), &ts));
        match self.run_stages(d, up, context_id, held, true)? {
            None => Ok(()),
            Some(_) => Err("internal error: a message held twice".into()),
        }
    }

    fn run_stages(
        &mut self,
        d: &mut DicomConn,
        up: bool,
        context_id: u8,
        mut held: Held,
        complete: bool,
    ) -> Result<Option<Current>, String> {
        let Some(lua) = d.lua.clone() else { return Err("internal error: no Lua host".into()) };
        let (pipeline, endpoint) = Self::names(d);
        let Some(ctx) = d.lua_ctx(&lua, &pipeline, &endpoint) else {
            return Ok(self.refuse(
                d,
                up,
                context_id,
                held,
                PROCESSING_FAILURE,
                "Lua context could not be made",
                complete,
                false,
            ));
        };
        while held.next < held.stages.len() {
            let mw = held.stages[held.next];
            let outcome = match held.pending.take() {
                Some(p) => lua.resume_dicom(p),
                None => lua.call_dimse(mw, &held.msg, &ctx, &d.id),
            };
            match outcome {
                DicomOutcome::Continue => held.next += 1,
                DicomOutcome::NeedDataset(p) => {
                    held.pending = Some(p);
                    if complete {
                        // cannot happen: the data set is loaded
                        return Err("internal error: a script waits for a loaded data set".into());
                    }
                    return Ok(Some(Current { context_id, mode: Mode::Hold(Box::new(held)) }));
                }
                DicomOutcome::Refuse(status) => {
                    let why = format!("refused by Lua on_dimse ({})", d.gen.middleware[mw].0);
                    return Ok(self.refuse(d, up, context_id, held, status, &why, complete, true));
                }
                DicomOutcome::Failed { error_id } => {
                    let why = format!("error_id={error_id} Lua on_dimse failed ({})", d.gen.middleware[mw].0);
                    return Ok(self.refuse(d, up, context_id, held, PROCESSING_FAILURE, &why, complete, false));
                }
                DicomOutcome::Reject(_) => {
                    let why = "harmony.reject used in on_dimse".to_string();
                    return Ok(self.refuse(d, up, context_id, held, PROCESSING_FAILURE, &why, complete, false));
                }
            }
        }
        // every stage passed: forward (changed parts re-encoded)
        let mut m = held.msg.borrow_mut();
        let changed = held.changed || m.command_changed;
        let dataset = std::mem::replace(&mut m.dataset, DatasetState::Absent);
        let cmd = m.command.clone();
        drop(m);
        match dataset {
            DatasetState::Loaded(ds) => {
                let bytes = match ds.into_bytes() {
                    Ok(b) => b,
                    Err(e) => {
                        let why = format!("data set could not be encoded after on_dimse: {e}");
                        held.msg.borrow_mut().command = cmd;
                        return Ok(self.refuse(d, up, context_id, held, PROCESSING_FAILURE, &why, true, false));
                    }
                };
                self.forward_command(d, up, context_id, &cmd, &held.raw, changed);
                let max = d.max_of(!up);
                pdata::write_fragments(d.out(!up), context_id, false, &bytes, max);
                Ok(None)
            }
            // no script read the data set: it streams
            _ => Ok(self.forward_command(d, up, context_id, &cmd, &held.raw, changed)),
        }
    }

    /// Refuse a held message: a request is answered to its sender with
    /// `status` (after its data set, if one is still arriving); a final
    /// response goes on with `status` and without its data set; a pending
    /// response (a C-FIND match, a C-GET/C-MOVE progress report) is dropped
    /// — as a script's choice (`by_script`), or else with the request marked
    /// failed so its final response carries `status` (nothing lost silently).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn refuse(
        &mut self,
        d: &mut DicomConn,
        up: bool,
        context_id: u8,
        held: Held,
        status: u16,
        why: &str,
        complete: bool,
        by_script: bool,
    ) -> Option<Current> {
        log::warn!("dicom {} assoc={}: {why}: status {status:#06x}", d.peer, d.id);
        let m = held.msg.borrow();
        let has_data = m.command.has_data_set;
        let still_arriving = has_data && !complete;
        if m.command.field.is_response() {
            let pending = m.command.status.is_some_and(|s| s == 0xFF00 || s == 0xFF01);
            if pending && !by_script {
                let id = m.command.message_id_being_responded_to.unwrap_or(0);
                if let Some(o) = d
                    .relay
                    .as_mut()
                    .and_then(|r| r.outstanding.iter_mut().find(|o| o.from_client != up && o.message_id == id))
                {
                    o.failed = Some(status);
                }
            }
            if !pending {
                let mut cmd = m.command.clone();
                cmd.status = Some(status);
                cmd.has_data_set = false;
                drop(m);
                self.track(d, up, &cmd);
                d.send_command(!up, context_id, &cmd.encode());
            }
            return still_arriving.then_some(Current { context_id, mode: Mode::Drop { reply: None } });
        }
        let mut rsp = Command::response_to(&m.command, status);
        rsp.error_comment = Some(why.chars().filter(|c| c.is_ascii() && !c.is_control()).take(64).collect());
        let message_id = m.command.message_id.unwrap_or(0);
        drop(m);
        self.finish(d, up, message_id, status, " refused=stage");
        if still_arriving {
            return Some(Current { context_id, mode: Mode::Drop { reply: Some(Box::new(rsp)) } });
        }
        d.send_command(up, context_id, &rsp.encode());
        None
    }
}

/// What on_associate sees of an A-ASSOCIATE-RQ.
fn assoc_info(d: &DicomConn, rq: &AssociationRQ) -> AssocInfo {
    let trim = |s: &str| s.trim_end_matches(['\0', ' ']).to_string();
    let mut implementation_class_uid = String::new();
    let mut implementation_version = None;
    for item in &rq.user_variables {
        match item {
            UserVariableItem::ImplementationClassUID(u) => implementation_class_uid = trim(u),
            UserVariableItem::ImplementationVersionName(v) => implementation_version = Some(trim(v)),
            _ => {}
        }
    }
    AssocInfo {
        calling_ae: d.calling.clone(),
        called_ae: d.called.clone(),
        peer: d.peer,
        contexts: rq
            .presentation_contexts
            .iter()
            .map(|p| ProposedContext {
                id: p.id,
                abstract_syntax: trim(&p.abstract_syntax),
                transfer_syntaxes: p.transfer_syntaxes.iter().map(|t| trim(t)).collect(),
            })
            .collect(),
        identity: dimse::negotiate::user_identity(rq).map(|(id, _)| id),
        max_pdu: dimse::negotiate::peer_max_pdu(rq).unwrap_or(0),
        implementation_class_uid,
        implementation_version,
    }
}
