//! P-DATA values (PS3.8 Annex E): reassembly of PDV fragments into complete
//! command sets and data sets, and fragmentation of outgoing ones.

use dicom_ul::pdu::{PDataValue, PDataValueType, Pdu, MAXIMUM_PDU_SIZE, PDV_HEADER_SIZE};

use crate::DimseError;

/// A complete command set or data set for one presentation context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assembled {
    /// The presentation context it was sent on.
    pub context_id: u8,
    /// Command set or data set.
    pub kind: PDataValueType,
    /// The reassembled bytes (command sets are implicit VR little endian;
    /// data sets use the context's transfer syntax).
    pub bytes: Vec<u8>,
}

#[derive(Debug)]
struct Partial {
    context_id: u8,
    kind: PDataValueType,
    bytes: Vec<u8>,
}

/// Joins PDV fragments. Fragments of different presentation contexts may
/// interleave; within one context a command set or data set must be
/// finished (last-fragment flag) before the other kind starts.
#[derive(Debug)]
pub struct Reassembler {
    max_buffered: usize,
    buffered: usize,
    partials: Vec<Partial>,
}

impl Reassembler {
    /// A reassembler that holds at most `max_buffered` bytes across all
    /// unfinished messages; beyond it [`DimseError::MessageTooLarge`].
    pub fn new(max_buffered: usize) -> Self {
        Reassembler { max_buffered, buffered: 0, partials: Vec::new() }
    }

    /// Bytes currently held in unfinished messages.
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    /// Add one PDV; returns the message it completes, if any.
    pub fn push(&mut self, pdv: PDataValue) -> Result<Option<Assembled>, DimseError> {
        if pdv.presentation_context_id.is_multiple_of(2) {
            return Err(DimseError::MalformedPdv("presentation context IDs are odd"));
        }
        let slot = self.partials.iter().position(|p| p.context_id == pdv.presentation_context_id);
        if let Some(i) = slot {
            if self.partials[i].kind != pdv.value_type {
                return Err(DimseError::MalformedPdv("command and data fragments interleaved on one context"));
            }
        }
        if self.buffered + pdv.data.len() > self.max_buffered {
            return Err(DimseError::MessageTooLarge { max: self.max_buffered });
        }
        match (slot, pdv.is_last) {
            (None, true) => {
                Ok(Some(Assembled { context_id: pdv.presentation_context_id, kind: pdv.value_type, bytes: pdv.data }))
            }
            (None, false) => {
                self.buffered += pdv.data.len();
                self.partials.push(Partial {
                    context_id: pdv.presentation_context_id,
                    kind: pdv.value_type,
                    bytes: pdv.data,
                });
                Ok(None)
            }
            (Some(i), last) => {
                self.buffered += pdv.data.len();
                self.partials[i].bytes.extend_from_slice(&pdv.data);
                if !last {
                    return Ok(None);
                }
                let done = self.partials.swap_remove(i);
                self.buffered -= done.bytes.len();
                Ok(Some(Assembled { context_id: done.context_id, kind: done.kind, bytes: done.bytes }))
            }
        }
    }

    /// Add every PDV of a P-DATA-TF PDU; returns the messages completed, in order.
    pub fn push_all(&mut self, pdvs: Vec<PDataValue>) -> Result<Vec<Assembled>, DimseError> {
        let mut done = Vec::new();
        for pdv in pdvs {
            if let Some(message) = self.push(pdv)? {
                done.push(message);
            }
        }
        Ok(done)
    }
}

/// Split a command set or data set into P-DATA-TF PDUs of one PDV each whose
/// body fits `peer_max_pdu` (the peer's Maximum Length; 0 = unlimited). Each
/// PDV costs 6 bytes of header (item length, context ID, control header).
/// An empty message still yields one (empty, last) PDV.
pub fn fragment(context_id: u8, kind: PDataValueType, bytes: &[u8], peer_max_pdu: u32) -> Vec<Pdu> {
    let max = if peer_max_pdu == 0 { MAXIMUM_PDU_SIZE } else { peer_max_pdu };
    // A peer announcing less than one PDV header plus a byte is broken;
    // still make progress rather than loop forever.
    let chunk = (max.saturating_sub(PDV_HEADER_SIZE) as usize).max(1);
    let pdu = |data: &[u8], is_last: bool| Pdu::PData {
        data: vec![PDataValue {
            presentation_context_id: context_id,
            value_type: kind.clone(),
            is_last,
            data: data.to_vec(),
        }],
    };
    if bytes.is_empty() {
        return vec![pdu(&[], true)];
    }
    let count = bytes.len().div_ceil(chunk);
    bytes.chunks(chunk).enumerate().map(|(i, data)| pdu(data, i + 1 == count)).collect()
}
