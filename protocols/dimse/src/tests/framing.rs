use dicom_ul::pdu::{AbortRQServiceProviderReason, AbortRQSource, PDataValue, PDataValueType, Pdu};

use super::sample_rq;
use crate::{encode, pdu_length, DimseError, FrameReader};

fn stream() -> (Vec<Pdu>, Vec<u8>) {
    let pdus = vec![
        Pdu::AssociationRQ(sample_rq()),
        Pdu::PData {
            data: vec![PDataValue {
                presentation_context_id: 1,
                value_type: PDataValueType::Command,
                is_last: true,
                data: vec![1, 2, 3, 4],
            }],
        },
        Pdu::ReleaseRQ,
        Pdu::ReleaseRP,
        Pdu::AbortRQ { source: AbortRQSource::ServiceUser },
    ];
    let bytes = pdus.iter().flat_map(|p| encode(p).unwrap()).collect();
    (pdus, bytes)
}

fn drain(reader: &mut FrameReader, buf: &mut Vec<u8>, out: &mut Vec<Pdu>) {
    while let Some((pdu, n)) = reader.next(buf).unwrap() {
        buf.drain(..n);
        out.push(pdu);
    }
}

#[test]
fn header_length_is_big_endian_after_two_bytes() {
    assert_eq!(pdu_length(&[0x05, 0, 0, 0, 0, 4]), Some(4));
    assert_eq!(pdu_length(&[0x04, 0, 0x01, 0x02, 0x03, 0x04, 0xFF]), Some(0x0102_0304));
    assert_eq!(pdu_length(&[0x05, 0, 0, 0, 0]), None);
}

#[test]
fn release_rq_bytes_decode() {
    let mut r = FrameReader::new(16384);
    let (pdu, n) = r.next(&[0x05, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0xAA]).unwrap().unwrap();
    assert_eq!((pdu, n), (Pdu::ReleaseRQ, 10));
}

#[test]
fn a_stream_decodes_in_order_and_round_trips() {
    let (pdus, bytes) = stream();
    let mut buf = bytes.clone();
    let mut out = Vec::new();
    drain(&mut FrameReader::new(65536), &mut buf, &mut out);
    assert_eq!(out, pdus);
    assert!(buf.is_empty());
}

#[test]
fn split_at_every_boundary_gives_the_same_pdus() {
    let (pdus, bytes) = stream();
    for split in 0..=bytes.len() {
        let mut reader = FrameReader::new(65536);
        let mut buf = bytes[..split].to_vec();
        let mut out = Vec::new();
        drain(&mut reader, &mut buf, &mut out);
        buf.extend_from_slice(&bytes[split..]);
        drain(&mut reader, &mut buf, &mut out);
        assert_eq!(out, pdus, "split at {split}");
        assert!(buf.is_empty());
    }
}

#[test]
fn byte_at_a_time_gives_the_same_pdus() {
    let (pdus, bytes) = stream();
    let mut reader = FrameReader::new(65536);
    let (mut buf, mut out) = (Vec::new(), Vec::new());
    for b in bytes {
        buf.push(b);
        drain(&mut reader, &mut buf, &mut out);
    }
    assert_eq!(out, pdus);
}

#[test]
fn oversized_pdu_is_refused_from_the_header_alone() {
    let mut r = FrameReader::new(1024);
    // P-DATA-TF announcing 1 MiB, with only the header present.
    let err = r.next(&[0x04, 0, 0x00, 0x10, 0x00, 0x00]).unwrap_err();
    assert_eq!(err, DimseError::PduTooLarge { length: 0x10_0000, max: 1024 });
    assert_eq!(
        err.abort_source(),
        Some(AbortRQSource::ServiceProvider(AbortRQServiceProviderReason::InvalidPduParameter))
    );
    // Exactly at the cap is fine (still incomplete).
    assert_eq!(r.next(&[0x04, 0, 0, 0, 0x04, 0x00]).unwrap(), None);
}

#[test]
fn unknown_pdu_type_is_refused_on_its_first_byte() {
    let mut r = FrameReader::new(1024);
    let err = r.next(&[0x09]).unwrap_err();
    assert_eq!(err, DimseError::UnrecognizedPdu(0x09));
    assert_eq!(err.abort_source(), Some(AbortRQSource::ServiceProvider(AbortRQServiceProviderReason::UnrecognizedPdu)));
    assert!(r.next(&[0x00, 0, 0, 0, 0, 0]).is_err());
}

#[test]
fn complete_but_malformed_pdu_is_an_error_not_incomplete() {
    let mut r = FrameReader::new(1024);
    // A-ABORT with a 2-byte body: too short for its fixed fields.
    assert!(matches!(r.next(&[0x07, 0, 0, 0, 0, 2, 0, 0]), Err(DimseError::MalformedPdu(_))));
    // A-ASSOCIATE-RQ with a 4-byte body.
    assert!(matches!(r.next(&[0x01, 0, 0, 0, 0, 4, 0, 1, 0, 0]), Err(DimseError::MalformedPdu(_))));
    // P-DATA-TF whose PDV claims more than the PDU holds.
    let bad = [0x04, 0, 0, 0, 0, 6, 0, 0, 0, 9, 1, 3];
    assert!(matches!(r.next(&bad), Err(DimseError::MalformedPdu(_))));
}

#[test]
fn empty_buffer_is_incomplete() {
    assert_eq!(FrameReader::new(1024).next(&[]).unwrap(), None);
}

#[test]
fn unencodable_pdu_is_an_error() {
    let mut rq = sample_rq();
    rq.called_ae_title = "A_TITLE_FAR_TOO_LONG_FOR_SIXTEEN".into();
    assert!(matches!(encode(&Pdu::AssociationRQ(rq)), Err(DimseError::Encode(_))));
}
