//! PDU framing: the 6-byte header, our own size cap, and a decode that only
//! ever hands dicom-ul a complete PDU.

use dicom_ul::pdu::{read_pdu, write_pdu, Pdu, MAXIMUM_PDU_SIZE, PDU_HEADER_SIZE};

use crate::DimseError;

const HEADER: usize = PDU_HEADER_SIZE as usize;

/// The body length announced by a PDU header (PS3.8 §9.3.1: type, reserved,
/// 4-byte big-endian length), or `None` if fewer than 6 bytes are available.
pub fn pdu_length(buf: &[u8]) -> Option<u32> {
    let len: [u8; 4] = buf.get(2..HEADER)?.try_into().ok()?;
    Some(u32::from_be_bytes(len))
}

/// Cuts complete PDUs out of a byte stream and decodes them.
///
/// The caller keeps the buffer; `next` never consumes, it reports how many
/// bytes the PDU took. The cap is enforced from the header so a hostile peer
/// cannot make us buffer a 4 GiB "PDU".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameReader {
    /// Largest PDU body (length field value) we accept, for every PDU type.
    pub max_pdu: u32,
}

impl FrameReader {
    /// A reader that refuses PDUs whose body is longer than `max_pdu` bytes.
    pub fn new(max_pdu: u32) -> Self {
        FrameReader { max_pdu }
    }

    /// Decode the PDU at the start of `buf`.
    ///
    /// - `Ok(None)`: incomplete — read more and call again with the whole buffer.
    /// - `Ok(Some((pdu, n)))`: the first `n` bytes were this PDU.
    /// - `Err(e)`: answer with an A-ABORT from `e.abort_source()` and close.
    pub fn next(&mut self, buf: &[u8]) -> Result<Option<(Pdu, usize)>, DimseError> {
        let Some(&pdu_type) = buf.first() else {
            return Ok(None);
        };
        // Reject garbage on its first byte rather than waiting for a length
        // that may never make sense.
        if !(0x01..=0x07).contains(&pdu_type) {
            return Err(DimseError::UnrecognizedPdu(pdu_type));
        }
        let Some(length) = pdu_length(buf) else {
            return Ok(None);
        };
        if length > self.max_pdu {
            return Err(DimseError::PduTooLarge { length, max: self.max_pdu });
        }
        let total = HEADER + length as usize;
        if buf.len() < total {
            return Ok(None);
        }
        decode_complete(&buf[..total]).map(|pdu| Some((pdu, total)))
    }
}

/// Decode exactly one complete PDU. `read_pdu` consumes from its `Buf` even
/// when it returns `None`, so it is only ever given a whole PDU; and since it
/// is third-party code reading hostile bytes, a panic in it becomes an error.
fn decode_complete(pdu: &[u8]) -> Result<Pdu, DimseError> {
    let mut cursor = pdu;
    // Our cap was checked already; give dicom-ul the widest legal limit.
    let result = std::panic::catch_unwind(move || read_pdu(&mut cursor, MAXIMUM_PDU_SIZE, false));
    match result {
        Ok(Ok(Some(Pdu::Unknown { pdu_type, .. }))) => Err(DimseError::UnrecognizedPdu(pdu_type)),
        Ok(Ok(Some(pdu))) => Ok(pdu),
        Ok(Ok(None)) => Err(DimseError::MalformedPdu("item extends past the end of the PDU".into())),
        Ok(Err(e)) => Err(DimseError::MalformedPdu(e.to_string())),
        Err(_) => Err(DimseError::MalformedPdu("decoder panicked".into())),
    }
}

/// Encode a PDU (header included) with dicom-ul's writer.
///
/// Fails only for PDUs that cannot be represented on the wire, e.g. an AE
/// title that is empty or longer than 16 bytes.
pub fn encode(pdu: &Pdu) -> Result<Vec<u8>, DimseError> {
    let mut out = Vec::new();
    write_pdu(&mut out, pdu).map_err(|e| DimseError::Encode(e.to_string()))?;
    Ok(out)
}
