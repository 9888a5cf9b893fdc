//! Input arrives in arbitrary pieces: every split point must give the same
//! result as the whole message at once.

use super::chunked::WITH_TRAILERS;
use super::{decode_parts, Decoded};
use crate::{parse_request, parse_response, BodyKind, Limits};

const REQUESTS: &[&[u8]] = &[
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n",
    b"GET /index.html?x=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n",
    b"POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"HEAD http://example.com/x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"\r\nOPTIONS * HTTP/1.1\r\nX-Empty:\r\nX-Obs: caf\xc3\xa9 \xff\r\n\r\n",
];

const RESPONSES: &[&[u8]] = &[
    b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 5\r\n\r\n",
    b"HTTP/1.0 404 Not Found\r\n\r\n",
    b"HTTP/1.1 204 \r\nX-A: b\r\n\r\n",
];

const CHUNKED: &[&[u8]] =
    &[WITH_TRAILERS, b"1\r\na\r\n0\r\n\r\n", b"10\r\n0123456789abcdef\r\n3;x=y\r\nend\r\n0\r\n\r\n", b"0\r\n\r\n"];

/// Every proper prefix is incomplete; the whole message parses the same as
/// when it arrives at once (a parser that re-reads the buffer, fed byte by
/// byte, sees exactly these prefixes).
#[test]
fn request_heads_parse_identically_at_every_boundary() {
    let limits = Limits::default();
    for msg in REQUESTS {
        let whole = parse_request(msg, &limits).unwrap().unwrap();
        assert_eq!(whole.1, msg.len());
        for cut in 0..msg.len() {
            assert_eq!(parse_request(&msg[..cut], &limits), Ok(None), "cut {cut}");
        }
        let mut with_body = msg.to_vec();
        with_body.extend_from_slice(b"body");
        assert_eq!(parse_request(&with_body, &limits).unwrap().unwrap(), whole);
    }
}

#[test]
fn response_heads_parse_identically_at_every_boundary() {
    let limits = Limits::default();
    for msg in RESPONSES {
        let whole = parse_response(msg, &limits).unwrap().unwrap();
        assert_eq!(whole.1, msg.len());
        for cut in 0..msg.len() {
            assert_eq!(parse_response(&msg[..cut], &limits), Ok(None), "cut {cut}");
        }
    }
}

fn whole(input: &[u8]) -> Decoded {
    decode_parts(BodyKind::Chunked, &Limits::default(), &[input]).unwrap()
}

#[test]
fn chunked_bodies_decode_identically_split_in_two_anywhere() {
    for input in CHUNKED {
        let expected = whole(input);
        assert!(expected.done);
        for cut in 0..=input.len() {
            let (a, b) = input.split_at(cut);
            let got = decode_parts(BodyKind::Chunked, &Limits::default(), &[a, b]).unwrap();
            assert_eq!(got, expected, "cut {cut}");
        }
    }
}

#[test]
fn chunked_bodies_decode_identically_byte_by_byte() {
    for input in CHUNKED {
        let parts: Vec<&[u8]> = input.chunks(1).collect();
        let got = decode_parts(BodyKind::Chunked, &Limits::default(), &parts).unwrap();
        assert_eq!(got, whole(input));
    }
}

#[test]
fn fixed_length_bodies_decode_identically_byte_by_byte() {
    let input = b"0123456789trailing";
    let parts: Vec<&[u8]> = input.chunks(1).collect();
    let got = decode_parts(BodyKind::Length(10), &Limits::default(), &parts).unwrap();
    assert_eq!(got.payload, b"0123456789");
    assert!(got.done);
    assert_eq!(got.leftover, b"trailing");
}

#[test]
fn broken_chunked_bodies_fail_at_every_boundary() {
    let input: &[u8] = b"3\r\nabcX\r\n0\r\n\r\n";
    for cut in 0..=input.len() {
        let (a, b) = input.split_at(cut);
        assert!(decode_parts(BodyKind::Chunked, &Limits::default(), &[a, b]).is_err());
    }
}
