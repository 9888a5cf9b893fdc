use super::{req, req_err};
use crate::{parse_response, request_body_kind, Error, Limits};

fn is_malformed(e: Error) -> bool {
    matches!(e, Error::Malformed(_))
}

fn body_err(msg: &[u8]) -> Error {
    request_body_kind(&req(msg), &Limits::default()).expect_err("framing must be rejected")
}

#[test]
fn content_length_with_transfer_encoding_is_a_smuggling_attempt() {
    let e = body_err(b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert!(is_malformed(e));
}

#[test]
fn differing_content_lengths_are_rejected() {
    assert!(is_malformed(body_err(b"POST / HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\n")));
    assert!(is_malformed(body_err(b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n")));
}

#[test]
fn bad_content_length_values_are_rejected() {
    for value in ["", "+5", "-5", "5a", "0x5", "5 5", "5,", ",5", "1.0", "18446744073709551616"] {
        let msg = format!("POST / HTTP/1.1\r\nContent-Length: {value}\r\n\r\n");
        assert!(is_malformed(body_err(msg.as_bytes())), "{value:?} accepted");
    }
}

#[test]
fn transfer_encoding_must_end_in_a_single_chunked() {
    for te in ["chunked, gzip", "gzip", "identity", "chunked, chunked", "chunked\r\nTransfer-Encoding: chunked"] {
        let msg = format!("POST / HTTP/1.1\r\nTransfer-Encoding: {te}\r\n\r\n");
        assert!(is_malformed(body_err(msg.as_bytes())), "{te:?} accepted");
    }
}

#[test]
fn other_codings_before_chunked_are_not_implemented() {
    let e = body_err(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
    assert_eq!(e, Error::UnsupportedTransferCoding);
    assert_eq!(e.status(), 501);
    let e = body_err(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert_eq!(e, Error::UnsupportedTransferCoding);
}

#[test]
fn transfer_encoding_in_http10_is_rejected() {
    let e = body_err(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert!(is_malformed(e));
}

#[test]
fn obs_fold_is_rejected() {
    assert!(is_malformed(req_err(b"GET / HTTP/1.1\r\nX-A: a\r\n  b\r\n\r\n")));
    assert!(is_malformed(req_err(b"GET / HTTP/1.1\r\nX-A: a\r\n\tb\r\n\r\n")));
    let e = parse_response(b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\n\r\n", &Limits::default());
    assert!(is_malformed(e.unwrap_err()));
}

#[test]
fn invalid_bytes_in_names_and_values_are_rejected() {
    let cases: [&[u8]; 7] = [
        b"GET / HTTP/1.1\r\nX\0A: b\r\n\r\n",
        b"GET / HTTP/1.1\r\nX-A: b\0c\r\n\r\n",
        b"GET / HTTP/1.1\r\nX-A: b\rc\r\n\r\n",
        b"GET / HTTP/1.1\r\nX A: b\r\n\r\n",
        b"GET / HTTP/1.1\r\nX-A : b\r\n\r\n",
        b"GET / HTTP/1.1\r\n: b\r\n\r\n",
        b"GET / HTTP/1.1\r\nX(A): b\r\n\r\n",
    ];
    for msg in cases {
        assert!(is_malformed(req_err(msg)), "{:?} accepted", String::from_utf8_lossy(msg));
    }
}

#[test]
fn invalid_request_lines_are_rejected() {
    let cases: [&[u8]; 6] = [
        b"GET / HTTP/2.0\r\n\r\n",
        b"GET /\r\n\r\n",
        b"GET  / HTTP/1.1\r\n\r\n",
        b"G\xc3\xa9T / HTTP/1.1\r\n\r\n",
        b"GET /\xff HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1 extra\r\n\r\n",
    ];
    for msg in cases {
        assert!(is_malformed(req_err(msg)), "{:?} accepted", String::from_utf8_lossy(msg));
    }
}

#[test]
fn invalid_status_lines_are_rejected() {
    let cases: [&[u8]; 3] = [b"HTTP/1.1 20 OK\r\n\r\n", b"HTTP/1.1 000 Zero\r\n\r\n", b"HTTP/3 200 OK\r\n\r\n"];
    for msg in cases {
        let e = parse_response(msg, &Limits::default()).unwrap_err();
        assert!(is_malformed(e), "{:?} accepted", String::from_utf8_lossy(msg));
    }
}

#[test]
fn every_error_knows_its_status_and_says_what_it_is() {
    let cases = [
        (Error::Malformed("x"), 400),
        (Error::UriTooLong, 414),
        (Error::HeadTooLarge, 431),
        (Error::TooManyHeaders, 431),
        (Error::BodyTooLarge, 413),
        (Error::UnsupportedTransferCoding, 501),
    ];
    for (e, status) in cases {
        assert_eq!(e.status(), status);
        assert!(!e.to_string().is_empty());
    }
    assert!(Error::Malformed("invalid chunk size").to_string().contains("invalid chunk size"));
}
