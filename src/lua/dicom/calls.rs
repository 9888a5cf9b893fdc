//! `LuaHost::call_associate`, `call_dimse` and `resume_dicom`: the DICOM
//! hooks on the same coroutine, budget and fail-closed machinery as the
//! HTTP hooks.

use super::assoc::{assoc_table, reject_reason, AssocInfo, REJECT_REASONS};
use super::msg::DimseMsg;
use crate::lua::coro::Arg;
use crate::lua::ctx::LuaCtx;
use crate::lua::host::{error_text, Call, Ended, Hook, LuaHost, Mode};
use dimse::negotiate::RejectReason;
use mlua::{Function, Lua, Value};
use std::cell::Cell;
use std::rc::Rc;

/// What a DICOM hook call decided.
#[derive(Debug)]
pub enum DicomOutcome {
    Continue,
    /// on_associate: refuse the association (`harmony.reject(reason)`).
    Reject(RejectReason),
    /// on_dimse: refuse this one message with this DIMSE status (the hook
    /// returned a non-zero integer, e.g. 0xA700).
    Refuse(u16),
    /// on_dimse read `msg.dataset` while it was `DatasetState::Pending`:
    /// buffer the data set, set `DatasetState::Loaded`, then `resume_dicom`.
    NeedDataset(DicomPending),
    /// The hook failed (and the stage does not continue on error).
    Failed {
        error_id: String,
    },
}

/// A suspended on_dimse call.
pub struct DicomPending {
    call: Call,
    msg: DimseMsg,
}

impl std::fmt::Debug for DicomPending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DicomPending").field("mw", &self.call.mw).field("id", &self.call.request_id).finish()
    }
}

impl DicomPending {
    /// The message whose data set the call waits for.
    pub fn msg(&self) -> &DimseMsg {
        &self.msg
    }
}

/// `set_reject(reason)` for the prelude's `harmony.reject`.
pub(crate) fn reject_function(
    lua: &Lua,
    mode: Rc<Cell<Mode>>,
    slot: Rc<Cell<Option<RejectReason>>>,
) -> mlua::Result<Function> {
    lua.create_function(move |_, reason: Value| {
        if mode.get() != Mode::Associate {
            return Err(mlua::Error::runtime("harmony.reject can only be used in on_associate"));
        }
        let name = match &reason {
            Value::String(s) => s.to_string_lossy(),
            Value::Nil => "no-reason".to_string(),
            other => {
                return Err(mlua::Error::runtime(format!(
                    "harmony.reject: reason must be a string, not a {}",
                    other.type_name()
                )))
            }
        };
        let r = reject_reason(&name).ok_or_else(|| {
            mlua::Error::runtime(format!("harmony.reject: unknown reason '{name}' (one of: {REJECT_REASONS})"))
        })?;
        slot.set(Some(r));
        Ok(())
    })
}

impl LuaHost {
    /// Run `on_associate(assoc, ctx)` of middleware `mw`.
    pub fn call_associate(&self, mw: usize, info: &AssocInfo, ctx: &LuaCtx, assoc_id: &str) -> DicomOutcome {
        if !self.has(mw, Hook::Associate) {
            return DicomOutcome::Continue;
        }
        let assoc = match assoc_table(self.lua(), info) {
            Ok(t) => t,
            Err(e) => return self.dicom_failed(mw, assoc_id, &e.to_string()),
        };
        self.reject_slot.set(None);
        let assoc = Value::Table(assoc);
        // nothing in an association request is read later: never waits
        let ended = self.run_hook(mw, Hook::Associate, Mode::Associate, ctx, assoc_id, Arg::Value(&assoc), false);
        self.settle_dicom(mw, assoc_id, None, ended)
    }

    /// Run `on_dimse(msg, ctx)` of middleware `mw`.
    pub fn call_dimse(&self, mw: usize, msg: &DimseMsg, ctx: &LuaCtx, assoc_id: &str) -> DicomOutcome {
        if !self.has(mw, Hook::Dimse) {
            return DicomOutcome::Continue;
        }
        *self.dimse_slot.borrow_mut() = Some(msg.clone());
        self.reject_slot.set(None);
        let ended = self.run_hook(mw, Hook::Dimse, Mode::Dimse, ctx, assoc_id, Arg::Anchored(self.dimse_proxy), true);
        *self.dimse_slot.borrow_mut() = None;
        self.settle_dicom(mw, assoc_id, Some(msg.clone()), ended)
    }

    /// Continue an on_dimse call that waited for its data set.
    pub fn resume_dicom(&self, p: DicomPending) -> DicomOutcome {
        let (mw, id) = (p.call.mw, p.call.request_id.clone());
        *self.dimse_slot.borrow_mut() = Some(p.msg.clone());
        self.reject_slot.set(None);
        let ended = self.continue_call(p.call, Mode::Dimse);
        *self.dimse_slot.borrow_mut() = None;
        self.settle_dicom(mw, &id, Some(p.msg), Some(ended))
    }

    fn dicom_failed(&self, mw: usize, id: &str, msg: &str) -> DicomOutcome {
        match self.failed(mw, id, msg) {
            Some(error_id) => DicomOutcome::Failed { error_id },
            None => DicomOutcome::Continue,
        }
    }

    /// `msg` is Some for on_dimse, None for on_associate.
    fn settle_dicom(&self, mw: usize, id: &str, msg: Option<DimseMsg>, ended: Option<Ended>) -> DicomOutcome {
        let reject = self.reject_slot.take();
        let Some(ended) = ended else { return DicomOutcome::Continue };
        match (ended, msg) {
            (Ended::Waiting(call), Some(msg)) => DicomOutcome::NeedDataset(DicomPending { call, msg }),
            (Ended::Waiting(_), None) => self.dicom_failed(mw, id, "on_associate cannot wait"),
            (Ended::Returned(value), Some(_)) => match &value {
                Value::Integer(0) => DicomOutcome::Continue,
                Value::Integer(n) if (1..=0xFFFF).contains(n) => DicomOutcome::Refuse(*n as u16),
                Value::Integer(n) => {
                    self.dicom_failed(mw, id, &format!("on_dimse returned {n}, not a DIMSE status (0..0xFFFF)"))
                }
                _ => DicomOutcome::Continue,
            },
            // `harmony.reject` inside pcall still counts
            (Ended::Returned(_), None) => reject.map_or(DicomOutcome::Continue, DicomOutcome::Reject),
            (Ended::Raised(err), msg) => {
                if msg.is_none() && err.equals(&self.prelude.reject).unwrap_or(false) {
                    if let Some(r) = reject {
                        return DicomOutcome::Reject(r);
                    }
                }
                self.dicom_failed(mw, id, &error_text(&err))
            }
            (Ended::Broken(m), _) => self.dicom_failed(mw, id, &m),
        }
    }
}
