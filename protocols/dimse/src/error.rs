use dicom_ul::pdu::{AbortRQServiceProviderReason, AbortRQSource};
use std::fmt;

use crate::association::State;

/// Everything that can go wrong in the DICOM upper layer. Errors caused by
/// what the peer sent know the A-ABORT they should be answered with
/// ([`DimseError::abort_source`]); errors caused by the local caller (a
/// primitive issued in the wrong state, an unencodable PDU) do not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DimseError {
    /// The PDU header announces a body longer than our own cap. Detected from
    /// the 6-byte header alone, before any of the body is buffered.
    PduTooLarge {
        /// Length announced by the PDU header (body only, header excluded).
        length: u32,
        /// Our cap ([`crate::FrameReader::max_pdu`]).
        max: u32,
    },
    /// A PDU type byte that PS3.8 §9.3 does not define.
    UnrecognizedPdu(u8),
    /// A complete PDU whose body dicom-ul could not decode. The text says why.
    MalformedPdu(String),
    /// A P-DATA value stream that breaks PS3.8 Annex E (e.g. a data fragment
    /// for a context that was mid-way through a command). The text says what.
    MalformedPdv(&'static str),
    /// Reassembled command/data set would exceed the configured cap.
    MessageTooLarge {
        /// The cap in bytes.
        max: usize,
    },
    /// A DIMSE command set that cannot be decoded. The text says what.
    MalformedCommand(&'static str),
    /// A PDU could not be encoded (e.g. an empty or over-long AE title).
    Encode(String),
    /// A local primitive issued in a state where PS3.8 Table 9-10 has no
    /// action for it. The association is left unchanged.
    NotApplicable {
        /// The state the machine was in.
        state: State,
        /// The primitive or event that was refused.
        event: &'static str,
    },
}

impl DimseError {
    /// The A-ABORT source to send to the peer for this error, or `None` when
    /// the error is local (the peer did nothing wrong).
    pub fn abort_source(&self) -> Option<AbortRQSource> {
        let reason = match self {
            DimseError::PduTooLarge { .. } | DimseError::MalformedPdu(_) | DimseError::MessageTooLarge { .. } => {
                AbortRQServiceProviderReason::InvalidPduParameter
            }
            DimseError::UnrecognizedPdu(_) => AbortRQServiceProviderReason::UnrecognizedPdu,
            DimseError::MalformedPdv(_) => AbortRQServiceProviderReason::UnexpectedPduParameter,
            DimseError::MalformedCommand(_) => AbortRQServiceProviderReason::InvalidPduParameter,
            DimseError::Encode(_) | DimseError::NotApplicable { .. } => return None,
        };
        Some(AbortRQSource::ServiceProvider(reason))
    }
}

impl fmt::Display for DimseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DimseError::PduTooLarge { length, max } => write!(f, "PDU of {length} bytes exceeds the cap of {max}"),
            DimseError::UnrecognizedPdu(t) => write!(f, "unrecognized PDU type 0x{t:02X}"),
            DimseError::MalformedPdu(why) => write!(f, "malformed PDU: {why}"),
            DimseError::MalformedPdv(why) => write!(f, "malformed P-DATA stream: {why}"),
            DimseError::MessageTooLarge { max } => write!(f, "reassembled DIMSE message exceeds {max} bytes"),
            DimseError::MalformedCommand(why) => write!(f, "malformed DIMSE command set: {why}"),
            DimseError::Encode(why) => write!(f, "cannot encode PDU: {why}"),
            DimseError::NotApplicable { state, event } => write!(f, "{event} is not applicable in {state:?}"),
        }
    }
}

impl std::error::Error for DimseError {}
