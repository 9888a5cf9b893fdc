use dicom_ul::pdu::{PDataValue, PDataValueType, Pdu};

use crate::pdv::{fragment, Assembled, Reassembler};
use crate::{encode, DimseError, FrameReader};

fn pdv(ctx: u8, kind: PDataValueType, last: bool, data: &[u8]) -> PDataValue {
    PDataValue { presentation_context_id: ctx, value_type: kind, is_last: last, data: data.to_vec() }
}

#[test]
fn single_fragment_messages_pass_straight_through() {
    let mut r = Reassembler::new(1024);
    let got = r.push(pdv(1, PDataValueType::Command, true, b"cmd")).unwrap();
    assert_eq!(got, Some(Assembled { context_id: 1, kind: PDataValueType::Command, bytes: b"cmd".to_vec() }));
    assert_eq!(r.buffered(), 0);
}

#[test]
fn fragments_join_per_context_even_when_interleaved() {
    let mut r = Reassembler::new(1024);
    assert_eq!(r.push(pdv(1, PDataValueType::Data, false, b"ab")).unwrap(), None);
    assert_eq!(r.push(pdv(3, PDataValueType::Command, false, b"xy")).unwrap(), None);
    assert_eq!(r.buffered(), 4);
    let done = r.push_all(vec![pdv(1, PDataValueType::Data, true, b"cd"), pdv(3, PDataValueType::Command, true, b"z")]);
    assert_eq!(
        done.unwrap(),
        vec![
            Assembled { context_id: 1, kind: PDataValueType::Data, bytes: b"abcd".to_vec() },
            Assembled { context_id: 3, kind: PDataValueType::Command, bytes: b"xyz".to_vec() },
        ]
    );
    assert_eq!(r.buffered(), 0);
}

#[test]
fn cap_and_protocol_violations() {
    let mut r = Reassembler::new(4);
    r.push(pdv(1, PDataValueType::Data, false, b"abc")).unwrap();
    assert_eq!(r.push(pdv(1, PDataValueType::Data, true, b"de")), Err(DimseError::MessageTooLarge { max: 4 }));
    assert!(matches!(r.push(pdv(1, PDataValueType::Command, true, b"")), Err(DimseError::MalformedPdv(_))));
    assert!(matches!(r.push(pdv(2, PDataValueType::Command, true, b"")), Err(DimseError::MalformedPdv(_))));
}

#[test]
fn fragments_fit_the_peer_max_pdu_and_reassemble() {
    let message: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
    let max = 1024;
    let pdus = fragment(5, PDataValueType::Data, &message, max);
    assert_eq!(pdus.len(), 5000usize.div_ceil(1018));
    let mut r = Reassembler::new(1 << 20);
    let mut out = None;
    for (i, pdu) in pdus.iter().enumerate() {
        let bytes = encode(pdu).unwrap();
        // The PDU body, i.e. what the peer's Maximum Length bounds.
        assert!(bytes.len() - 6 <= max as usize);
        let Some((Pdu::PData { data }, _)) = FrameReader::new(max).next(&bytes).unwrap() else { panic!() };
        assert_eq!(data[0].is_last, i + 1 == pdus.len());
        for assembled in r.push_all(data).unwrap() {
            out = Some(assembled.bytes);
        }
    }
    assert_eq!(out, Some(message));
}

#[test]
fn exact_fit_and_empty_messages() {
    assert_eq!(fragment(1, PDataValueType::Command, &[7; 1018], 1024).len(), 1);
    assert_eq!(fragment(1, PDataValueType::Command, &[7; 1019], 1024).len(), 2);
    let empty = fragment(1, PDataValueType::Data, &[], 1024);
    assert_eq!(empty, vec![Pdu::PData { data: vec![pdv(1, PDataValueType::Data, true, &[])] }]);
    // Unlimited (0) puts everything in one PDU.
    assert_eq!(fragment(1, PDataValueType::Data, &[0; 100_000], 0).len(), 1);
}
