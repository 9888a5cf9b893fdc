use super::{decode_all, headers};
use crate::{BodyDecoder, BodyKind, Error, Limits};

/// Two chunks with extensions, then two trailer fields, then the next request.
pub(super) const WITH_TRAILERS: &[u8] = b"5;name=value\r\nhello\r\n6 ; foo ;bar=\"x\"\r\n world\r\n\
0\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\nGET /next HTTP/1.1\r\n\r\n";

#[test]
fn chunks_with_extensions_and_trailers_decode() {
    let got = decode_all(BodyKind::Chunked, WITH_TRAILERS).unwrap();
    assert_eq!(got.payload, b"hello world");
    assert!(got.done);
    assert_eq!(got.trailers, Some(headers(&[("X-Checksum", "abc"), ("X-Other", "1")])));
    assert_eq!(got.leftover, b"GET /next HTTP/1.1\r\n\r\n");
}

#[test]
fn a_body_without_trailers_has_none() {
    let got = decode_all(BodyKind::Chunked, b"A\r\n0123456789\r\n0\r\n\r\n").unwrap();
    assert_eq!(got.payload, b"0123456789");
    assert!(got.done);
    assert_eq!(got.trailers, None);
    assert!(got.leftover.is_empty());
}

#[test]
fn hex_sizes_are_case_insensitive_and_may_have_leading_zeros() {
    let got = decode_all(BodyKind::Chunked, b"000a\r\n0123456789\r\n00\r\n\r\n").unwrap();
    assert_eq!(got.payload, b"0123456789");
    let got = decode_all(BodyKind::Chunked, b"B\r\n0123456789a\r\n0\r\n\r\n").unwrap();
    assert_eq!(got.payload, b"0123456789a");
}

#[test]
fn data_ranges_point_into_the_input() {
    let input = b"3\r\nabc\r\n0\r\n\r\n";
    let mut dec = BodyDecoder::new(BodyKind::Chunked, &Limits::default());
    let step = dec.decode(input).unwrap();
    assert_eq!((step.consumed, step.data.clone(), step.done), (6, 3..6, false));
    let step = dec.decode(&input[6..]).unwrap();
    assert_eq!((step.consumed, step.data.is_empty(), step.done), (7, true, true));
    let again = dec.decode(b"more").unwrap();
    assert_eq!((again.consumed, again.done), (0, true));
}

fn rejects(input: &[u8]) -> bool {
    matches!(decode_all(BodyKind::Chunked, input), Err(Error::Malformed(_)))
}

#[test]
fn broken_chunk_framing_is_rejected() {
    let cases: [&[u8]; 13] = [
        b"3\r\nabcX\r\n0\r\n\r\n",
        b"3\r\nabc\n0\r\n\r\n",
        b"3\nabc\r\n0\r\n\r\n",
        b"g\r\nabc\r\n0\r\n\r\n",
        b"\r\nabc\r\n0\r\n\r\n",
        b"-3\r\nabc\r\n0\r\n\r\n",
        b"0x3\r\nabc\r\n0\r\n\r\n",
        b"3 4\r\nabc\r\n0\r\n\r\n",
        b"3;a\rb\r\nabc\r\n0\r\n\r\n",
        b"fffffffffffffffff\r\n",
        b"0\r\nX: a\r\n\n",
        b"0\r\nX : a\r\n\r\n",
        b"0\r\n\n",
    ];
    for input in cases {
        assert!(rejects(input), "{:?} accepted", String::from_utf8_lossy(input));
    }
}

#[test]
fn chunk_size_lines_are_limited_to_4_kib() {
    let mut line = b"5;".to_vec();
    line.resize(4094, b'x');
    line.extend_from_slice(b"\r\nhello\r\n0\r\n\r\n");
    assert_eq!(decode_all(BodyKind::Chunked, &line).unwrap().payload, b"hello");
    line.insert(3, b'x');
    assert!(rejects(&line));
    // Without a line end, waiting stops at the limit too.
    let endless = vec![b'0'; 5000];
    assert!(rejects(&endless));
    let mut dec = BodyDecoder::new(BodyKind::Chunked, &Limits::default());
    assert_eq!(dec.decode(&endless[..4095]).unwrap().consumed, 0);
}

#[test]
fn the_trailer_section_is_limited() {
    let small = Limits { max_head_bytes: 64, ..Limits::default() };
    let mut input = b"0\r\n".to_vec();
    for _ in 0..10 {
        input.extend_from_slice(b"X-Trailer: 0123456789\r\n");
    }
    let got = super::decode_parts(BodyKind::Chunked, &small, &[&input]);
    assert!(matches!(got, Err(Error::Malformed(_))));
    input.extend_from_slice(b"\r\n");
    assert!(super::decode_parts(BodyKind::Chunked, &small, &[&input]).is_err());
    assert!(decode_all(BodyKind::Chunked, &input).unwrap().trailers.is_some());
}
