//! Zero-copy views for a relay: cut raw PDUs out of a stream, walk the PDV
//! items of a P-DATA-TF body by reference, write P-DATA PDUs straight into an
//! output buffer, and patch the Maximum Length of a raw A-ASSOCIATE-RQ/-AC in
//! place. Nothing here allocates per PDU except the caller's buffers.

use crate::DimseError;

/// PDU type of P-DATA-TF.
pub const P_DATA: u8 = 0x04;
/// PDU type of A-RELEASE-RQ.
pub const RELEASE_RQ: u8 = 0x05;
/// PDU type of A-RELEASE-RP.
pub const RELEASE_RP: u8 = 0x06;
/// PDU type of A-ABORT.
pub const ABORT: u8 = 0x07;

const HEADER: usize = 6;
/// Item length (4) + presentation context ID (1) + message control header (1).
pub const PDV_OVERHEAD: usize = 6;

/// The PDU at the start of `buf`: `Some((type, total length incl. header))`
/// once complete, `None` while incomplete. Body lengths above `max_body` and
/// unknown PDU types are errors, detected from the header alone.
pub fn split(buf: &[u8], max_body: u32) -> Result<Option<(u8, usize)>, DimseError> {
    let Some(&kind) = buf.first() else { return Ok(None) };
    if !(0x01..=0x07).contains(&kind) {
        return Err(DimseError::UnrecognizedPdu(kind));
    }
    let Some(len) = crate::pdu_length(buf) else { return Ok(None) };
    if len > max_body {
        return Err(DimseError::PduTooLarge { length: len, max: max_body });
    }
    let total = HEADER + len as usize;
    Ok(if buf.len() >= total { Some((kind, total)) } else { None })
}

/// One PDV of a P-DATA-TF PDU, borrowed from the PDU's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PdvRef<'a> {
    /// Presentation context ID.
    pub context_id: u8,
    /// Command fragment (else data set fragment).
    pub command: bool,
    /// Last fragment of its command or data set.
    pub last: bool,
    /// The fragment's bytes.
    pub data: &'a [u8],
}

/// The PDV items of a whole P-DATA-TF PDU (header included).
pub fn items(pdu: &[u8]) -> Items<'_> {
    Items { rest: pdu.get(HEADER..).unwrap_or_default() }
}

/// Iterator over PDV items; a malformed item ends it with an error.
pub struct Items<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Items<'a> {
    type Item = Result<PdvRef<'a>, DimseError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let r = self.rest;
        if r.len() < PDV_OVERHEAD {
            self.rest = &[];
            return Some(Err(DimseError::MalformedPdv("truncated PDV item header")));
        }
        let len = u32::from_be_bytes([r[0], r[1], r[2], r[3]]) as usize;
        if len < 2 || len > r.len() - 4 {
            self.rest = &[];
            return Some(Err(DimseError::MalformedPdv("PDV item length outside its PDU")));
        }
        let context_id = r[4];
        let control = r[5];
        if context_id.is_multiple_of(2) {
            self.rest = &[];
            return Some(Err(DimseError::MalformedPdv("presentation context IDs are odd")));
        }
        self.rest = &r[4 + len..];
        Some(Ok(PdvRef { context_id, command: control & 1 != 0, last: control & 2 != 0, data: &r[6..4 + len] }))
    }
}

/// Append one P-DATA-TF PDU holding one PDV.
pub fn write_pdv(out: &mut Vec<u8>, context_id: u8, command: bool, last: bool, data: &[u8]) {
    let item = data.len() + 2;
    out.reserve(HEADER + 4 + item);
    out.extend_from_slice(&[P_DATA, 0]);
    out.extend_from_slice(&((item + 4) as u32).to_be_bytes());
    out.extend_from_slice(&(item as u32).to_be_bytes());
    out.push(context_id);
    out.push(u8::from(command) | (u8::from(last) << 1));
    out.extend_from_slice(data);
}

/// Append `bytes` (a whole command set or data set) as P-DATA-TF PDUs of one
/// PDV each, every PDU body within `peer_max_pdu` (0 = unlimited). An empty
/// message still yields one empty last fragment.
pub fn write_fragments(out: &mut Vec<u8>, context_id: u8, command: bool, bytes: &[u8], peer_max_pdu: u32) {
    let max = if peer_max_pdu == 0 { u32::MAX as usize } else { peer_max_pdu as usize };
    let chunk = max.saturating_sub(PDV_OVERHEAD).max(1);
    if bytes.is_empty() {
        return write_pdv(out, context_id, command, true, &[]);
    }
    let mut rest = bytes;
    while !rest.is_empty() {
        let n = rest.len().min(chunk);
        write_pdv(out, context_id, command, n == rest.len(), &rest[..n]);
        rest = &rest[n..];
    }
}

/// Byte offset of the 4-byte Maximum Length value inside a raw, complete
/// A-ASSOCIATE-RQ or -AC PDU (header included), if it has one.
pub fn max_length_offset(pdu: &[u8]) -> Option<usize> {
    // fixed part: header 6 + version 2 + reserved 2 + AEs 32 + reserved 32
    let mut at = 74;
    while at + 4 <= pdu.len() {
        let kind = pdu[at];
        let len = u16::from_be_bytes([pdu[at + 2], pdu[at + 3]]) as usize;
        let end = at + 4 + len;
        if end > pdu.len() {
            return None;
        }
        if kind == 0x50 {
            let mut sub = at + 4;
            while sub + 4 <= end {
                let skind = pdu[sub];
                let slen = u16::from_be_bytes([pdu[sub + 2], pdu[sub + 3]]) as usize;
                if sub + 4 + slen > end {
                    return None;
                }
                if skind == 0x51 && slen == 4 {
                    return Some(sub + 4);
                }
                sub += 4 + slen;
            }
            return None;
        }
        at = end;
    }
    None
}

/// Read the Maximum Length of a raw A-ASSOCIATE-RQ/-AC (0 = unlimited).
pub fn max_length(pdu: &[u8]) -> Option<u32> {
    let at = max_length_offset(pdu)?;
    Some(u32::from_be_bytes(pdu[at..at + 4].try_into().ok()?))
}

/// Lower the Maximum Length of a raw A-ASSOCIATE-RQ/-AC to `cap` when it is
/// unlimited (0) or larger, in place. Returns the value now in the PDU.
pub fn cap_max_length(pdu: &mut [u8], cap: u32) -> Option<u32> {
    let at = max_length_offset(pdu)?;
    let v = u32::from_be_bytes(pdu[at..at + 4].try_into().ok()?);
    if v == 0 || v > cap {
        pdu[at..at + 4].copy_from_slice(&cap.to_be_bytes());
        return Some(cap);
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdu::{AssociationRQ, PDataValue, PDataValueType, Pdu, PresentationContextProposed, UserVariableItem};

    fn rq(max: u32) -> Vec<u8> {
        crate::encode(&Pdu::AssociationRQ(AssociationRQ {
            protocol_version: 1,
            calling_ae_title: "A".into(),
            called_ae_title: "B".into(),
            application_context_name: "1.2.840.10008.3.1.1.1".into(),
            presentation_contexts: vec![PresentationContextProposed {
                id: 1,
                abstract_syntax: "1.2.840.10008.1.1".into(),
                transfer_syntaxes: vec!["1.2.840.10008.1.2".into()],
            }],
            user_variables: vec![
                UserVariableItem::MaxLength(max),
                UserVariableItem::ImplementationClassUID("1.2.3".into()),
            ],
        }))
        .unwrap()
    }

    #[test]
    fn max_length_is_found_and_capped_in_place() {
        let mut b = rq(0);
        assert_eq!(max_length(&b), Some(0));
        assert_eq!(cap_max_length(&mut b, 65536), Some(65536));
        let Ok(Some((Pdu::AssociationRQ(r), _))) = crate::FrameReader::new(1 << 20).next(&b) else { panic!() };
        assert_eq!(crate::negotiate::peer_max_pdu(&r), Some(65536));
        let mut b = rq(16384);
        assert_eq!(cap_max_length(&mut b, 65536), Some(16384));
        assert_eq!(max_length(&b), Some(16384));
        assert_eq!(max_length(&b[..80]), None);
    }

    #[test]
    fn written_pdus_read_back_with_dicom_ul() {
        let mut out = Vec::new();
        let data: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        write_fragments(&mut out, 3, false, &data, 256);
        let mut at = 0;
        let mut joined = Vec::new();
        let mut n = 0;
        while at < out.len() {
            let (kind, total) = split(&out[at..], 256).unwrap().unwrap();
            assert_eq!(kind, P_DATA);
            let Ok(Some((Pdu::PData { data: pdvs }, used))) = crate::FrameReader::new(256).next(&out[at..]) else {
                panic!()
            };
            assert_eq!(used, total);
            for (p, r) in pdvs.iter().zip(items(&out[at..at + total])) {
                let r = r.unwrap();
                assert_eq!(p.data, r.data);
                assert_eq!(p.is_last, r.last);
                assert_eq!(p.value_type == PDataValueType::Command, r.command);
                joined.extend_from_slice(r.data);
            }
            n += 1;
            at += total;
        }
        assert_eq!(joined, data);
        assert_eq!(n, 1000usize.div_ceil(250));
    }

    #[test]
    fn items_match_dicom_ul_encoding_with_several_pdvs() {
        let pdu = crate::encode(&Pdu::PData {
            data: vec![
                PDataValue {
                    presentation_context_id: 1,
                    value_type: PDataValueType::Command,
                    is_last: true,
                    data: vec![1, 2, 3],
                },
                PDataValue {
                    presentation_context_id: 1,
                    value_type: PDataValueType::Data,
                    is_last: false,
                    data: vec![],
                },
            ],
        })
        .unwrap();
        let v: Vec<_> = items(&pdu).collect::<Result<_, _>>().unwrap();
        assert_eq!(v.len(), 2);
        assert!(v[0].command && v[0].last && v[0].data == [1, 2, 3]);
        assert!(!v[1].command && !v[1].last && v[1].data.is_empty());
    }

    #[test]
    fn malformed_items_are_errors_never_panics() {
        for bad in [
            vec![4, 0, 0, 0, 0, 3, 0, 0, 0],
            vec![4, 0, 0, 0, 0, 6, 0, 0, 0, 9, 1, 3],
            vec![4, 0, 0, 0, 0, 6, 0, 0, 0, 1, 1, 3],
            vec![4, 0, 0, 0, 0, 6, 0, 0, 0, 2, 2, 3],
        ] {
            assert!(items(&bad).any(|r| r.is_err()), "{bad:?}");
        }
        // every prefix and every byte value: no panic
        let mut good = Vec::new();
        write_pdv(&mut good, 1, true, true, &[9; 20]);
        for cut in 0..good.len() {
            let _ = split(&good[..cut], 100);
            let _ = items(&good[..cut]).count();
            let _ = max_length_offset(&good[..cut]);
        }
        assert!(matches!(split(&[9, 0, 0, 0, 0, 0], 10), Err(DimseError::UnrecognizedPdu(9))));
        assert!(matches!(split(&[4, 0, 0, 0, 1, 0], 10), Err(DimseError::PduTooLarge { .. })));
    }
}
