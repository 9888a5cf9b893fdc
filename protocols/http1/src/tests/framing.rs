use super::{decode_all, req, res};
use crate::{request_body_kind, response_body_kind, BodyDecoder, BodyKind, Error, Limits};

fn request_kind(msg: &[u8]) -> Result<BodyKind, Error> {
    request_body_kind(&req(msg), &Limits::default())
}

fn response_kind(msg: &[u8], method: &str) -> Result<BodyKind, Error> {
    response_body_kind(&res(msg), method)
}

#[test]
fn request_framing_follows_the_fields() {
    assert_eq!(request_kind(b"GET / HTTP/1.1\r\n\r\n"), Ok(BodyKind::Empty));
    assert_eq!(request_kind(b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n"), Ok(BodyKind::Length(0)));
    assert_eq!(request_kind(b"POST / HTTP/1.1\r\nContent-Length: 42\r\n\r\n"), Ok(BodyKind::Length(42)));
    assert_eq!(request_kind(b"POST / HTTP/1.1\r\nContent-Length: 007\r\n\r\n"), Ok(BodyKind::Length(7)));
    assert_eq!(request_kind(b"POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n"), Ok(BodyKind::Chunked));
}

#[test]
fn repeated_identical_content_lengths_are_one_length() {
    assert_eq!(request_kind(b"POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n"), Ok(BodyKind::Length(5)));
    assert_eq!(
        request_kind(b"POST / HTTP/1.1\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n"),
        Ok(BodyKind::Length(5))
    );
}

#[test]
fn responses_to_head_and_bodiless_statuses_are_empty() {
    let with_cl = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
    assert_eq!(response_kind(with_cl, "HEAD"), Ok(BodyKind::Empty));
    assert_eq!(response_kind(with_cl, "GET"), Ok(BodyKind::Length(10)));
    for status in ["100 Continue", "101 Switching Protocols", "103 Early Hints", "204 No Content", "304 Not Modified"] {
        let msg = format!("HTTP/1.1 {status}\r\nContent-Length: 10\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(response_kind(msg.as_bytes(), "GET"), Ok(BodyKind::Empty), "{status}");
    }
}

#[test]
fn response_framing_follows_the_fields() {
    let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(response_kind(chunked, "GET"), Ok(BodyKind::Chunked));
    let gzip_chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n";
    assert_eq!(response_kind(gzip_chunked, "GET"), Ok(BodyKind::Chunked));
    let gzip = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n";
    assert_eq!(response_kind(gzip, "GET"), Ok(BodyKind::UntilClose));
    let neither = b"HTTP/1.0 200 OK\r\n\r\n";
    assert_eq!(response_kind(neither, "GET"), Ok(BodyKind::UntilClose));
    let both = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert!(matches!(response_kind(both, "GET"), Err(Error::Malformed(_))));
    let differing = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n";
    assert!(matches!(response_kind(differing, "GET"), Err(Error::Malformed(_))));
}

#[test]
fn response_bodies_are_not_limited_by_framing() {
    let big = b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n";
    assert_eq!(response_kind(big, "GET"), Ok(BodyKind::Length(99_999_999_999)));
}

#[test]
fn a_fixed_length_body_stops_at_its_length() {
    let got = decode_all(BodyKind::Length(5), b"helloGET / HTTP/1.1").unwrap();
    assert_eq!(got.payload, b"hello");
    assert!(got.done);
    assert_eq!(got.leftover, b"GET / HTTP/1.1");
}

#[test]
fn empty_bodies_are_done_before_any_input() {
    for kind in [BodyKind::Empty, BodyKind::Length(0)] {
        let mut dec = BodyDecoder::new(kind, &Limits::default());
        let step = dec.decode(b"next message").unwrap();
        assert_eq!((step.consumed, step.data.len(), step.done), (0, 0, true));
        assert!(dec.finish_eof().is_ok());
    }
}

#[test]
fn close_delimited_bodies_end_only_at_eof() {
    let mut dec = BodyDecoder::new(BodyKind::UntilClose, &Limits::default());
    let step = dec.decode(b"all of this").unwrap();
    assert_eq!((step.consumed, step.data, step.done), (11, 0..11, false));
    assert_eq!(dec.decode(b"").unwrap().consumed, 0);
    assert!(!dec.is_done());
    assert!(dec.finish_eof().is_ok());
    assert!(dec.is_done());
}

#[test]
fn eof_inside_a_framed_body_is_an_error() {
    let mut dec = BodyDecoder::new(BodyKind::Length(10), &Limits::default());
    dec.decode(b"12345").unwrap();
    assert_eq!(dec.finish_eof(), Err(Error::Malformed("incomplete body")));
    let mut dec = BodyDecoder::new(BodyKind::Chunked, &Limits::default());
    dec.decode(b"5\r\nab").unwrap();
    assert!(dec.finish_eof().is_err());
}
