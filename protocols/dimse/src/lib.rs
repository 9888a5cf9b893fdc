//! Sans-IO DICOM upper layer for Harmony, on top of dicom-ul's PDU types.
//!
//! - [`framing`]: cut PDUs out of a byte stream, with our own size cap
//!   enforced from the header; encode PDUs.
//! - [`association`]: the PS3.8 §9.2 state machine, both roles; time is passed in.
//! - [`negotiate`]: acceptor-side evaluation of an A-ASSOCIATE-RQ against a policy.
//! - [`pdv`]: P-DATA reassembly into command/data sets and fragmentation.
//! - [`pdata`]: zero-copy PDU splitting and PDV walking for a relay.
//! - [`command`]: DIMSE command sets (group 0000, implicit VR little endian).
//!
//! No sockets, no clock: bytes in, values out. See `LIFECYCLE.md`.

#![warn(missing_docs)]

pub mod association;
pub mod command;
mod error;
pub mod framing;
pub mod negotiate;
pub mod pdata;
pub mod pdv;
#[cfg(test)]
mod tests;

pub use association::{AbortIndication, Association, Event, Indication, Output, Role, State};
pub use command::{Command, CommandField};
pub use error::DimseError;
pub use framing::{encode, pdu_length, FrameReader};
pub use negotiate::{evaluate, Identity, Negotiated, Outcome, Policy};
pub use pdv::{fragment, Assembled, Reassembler};

/// Re-export of the PDU types this crate speaks in.
pub use dicom_ul::pdu;
