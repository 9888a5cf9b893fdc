//! The stages that look at DICOM messages: Lua `on_associate` when an
//! association is routed, Lua `on_dimse` for every DIMSE message. A message
//! whose data set a script reads is held (`Held`) until the data set is
//! complete, then passed on — changed or not — or refused.

use super::relay::Current;
use super::{DicomConn, Worker};
use dimse::command::Command;
use dimse::negotiate::RejectReason;
use dimse::pdu::AssociationRQ;

/// A message held for a stage until its data set is complete.
pub(super) struct Held {
    cmd: Command,
    data: Vec<u8>,
    limit: usize,
}

impl Held {
    /// Add a data fragment; an error once the data set outgrows the limit.
    pub(super) fn push(&mut self, bytes: &[u8]) -> Result<(), String> {
        if self.data.len() + bytes.len() > self.limit {
            return Err(format!("data set over {} bytes: too large for a stage", self.limit));
        }
        self.data.extend_from_slice(bytes);
        Ok(())
    }

    /// The response that refuses the held request (None for a response).
    pub(super) fn refusal(&self, status: u16) -> Option<Command> {
        (!self.cmd.field.is_response()).then(|| Command::response_to(&self.cmd, status))
    }
}

impl Worker {
    /// Lua `on_associate` of the route's pipeline: Ok(Some(backend index))
    /// when a script chose a backend with `ctx.route`.
    pub(super) fn run_on_associate(
        &mut self,
        _d: &mut DicomConn,
        _rq: &AssociationRQ,
        _ni: usize,
        _ri: usize,
    ) -> Result<Option<usize>, (RejectReason, String)> {
        Ok(None)
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
        Ok(self.forward_command(d, up, context_id, &cmd, &raw, changed))
    }

    /// The data set of a held message is complete.
    pub(super) fn release_held(
        &mut self,
        d: &mut DicomConn,
        up: bool,
        context_id: u8,
        held: Held,
    ) -> Result<(), String> {
        let _ = (d, up, context_id, held);
        Ok(())
    }
}
