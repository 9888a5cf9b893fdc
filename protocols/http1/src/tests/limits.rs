use super::{decode_all, decode_parts, req};
use crate::{parse_request, parse_response, request_body_kind, BodyKind, Error, Limits};

fn limits() -> Limits {
    Limits { max_head_bytes: 256, max_headers: 4, max_uri_len: 32, max_body_bytes: 10 }
}

fn with_fields(n: usize) -> Vec<u8> {
    let mut msg = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..n {
        msg.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    msg.extend_from_slice(b"\r\n");
    msg
}

#[test]
fn too_many_headers_is_431() {
    assert!(parse_request(&with_fields(4), &limits()).unwrap().is_some());
    assert_eq!(parse_request(&with_fields(5), &limits()), Err(Error::TooManyHeaders));
    assert_eq!(Error::TooManyHeaders.status(), 431);
}

#[test]
fn limits_above_the_stack_array_still_bind_exactly() {
    let big = Limits { max_headers: 200, ..Limits::default() };
    let (head, _) = parse_request(&with_fields(200), &big).unwrap().unwrap();
    assert_eq!(head.headers.len(), 200);
    assert_eq!(parse_request(&with_fields(201), &big), Err(Error::TooManyHeaders));
    assert_eq!(parse_request(&with_fields(101), &Limits::default()), Err(Error::TooManyHeaders));
}

#[test]
fn an_unfinished_head_past_the_limit_is_too_large() {
    let mut msg = b"GET / HTTP/1.1\r\n".to_vec();
    while msg.len() <= 256 {
        msg.extend_from_slice(b"X-Pad: 0123456789\r\n");
    }
    let few = Limits { max_headers: 100, ..limits() };
    assert_eq!(parse_request(&msg, &few), Err(Error::HeadTooLarge));
    assert_eq!(parse_request(&msg[..200], &few), Ok(None));
    let mut res = b"HTTP/1.1 200 OK\r\n".to_vec();
    res.extend_from_slice(&msg[16..]);
    assert_eq!(parse_response(&res, &few), Err(Error::HeadTooLarge));
}

#[test]
fn a_complete_head_past_the_limit_is_too_large() {
    let few = Limits { max_headers: 100, ..limits() };
    let mut msg = b"GET / HTTP/1.1\r\nX-Pad: ".to_vec();
    msg.resize(256 - 4, b'a');
    msg.extend_from_slice(b"\r\n\r\n");
    assert_eq!(msg.len(), 256);
    assert!(parse_request(&msg, &few).unwrap().is_some());
    msg.insert(30, b'a');
    assert_eq!(parse_request(&msg, &few), Err(Error::HeadTooLarge));
}

#[test]
fn a_long_target_is_414_whether_or_not_the_line_is_finished() {
    let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(32));
    assert_eq!(parse_request(long.as_bytes(), &limits()), Err(Error::UriTooLong));
    let ok = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(31));
    assert!(parse_request(ok.as_bytes(), &limits()).unwrap().is_some());
    // Unfinished, within the slack: wait. Past it: give up.
    let unfinished = format!("GET /{}", "a".repeat(80));
    assert_eq!(parse_request(unfinished.as_bytes(), &limits()), Ok(None));
    let unfinished = format!("GET /{}", "a".repeat(200));
    assert_eq!(parse_request(unfinished.as_bytes(), &limits()), Err(Error::UriTooLong));
    // The target is known but the head is still incomplete.
    let partial = format!("GET /{} HTTP/1.1\r\nHost: a\r\n", "a".repeat(40));
    assert_eq!(parse_request(partial.as_bytes(), &limits()), Err(Error::UriTooLong));
    assert_eq!(Error::UriTooLong.status(), 414);
}

#[test]
fn a_declared_body_over_the_limit_is_413() {
    let head = req(b"POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n");
    assert_eq!(request_body_kind(&head, &limits()), Err(Error::BodyTooLarge));
    let head = req(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n");
    assert_eq!(request_body_kind(&head, &limits()), Ok(BodyKind::Length(10)));
    let got = decode_parts(BodyKind::Length(11), &limits(), &[b"01234567890"]);
    assert_eq!(got, Err(Error::BodyTooLarge));
}

#[test]
fn a_streamed_body_over_the_limit_is_413() {
    let one_chunk = decode_parts(BodyKind::Chunked, &limits(), &[b"b\r\n01234567890\r\n0\r\n\r\n"]);
    assert_eq!(one_chunk, Err(Error::BodyTooLarge));
    let two_chunks = decode_parts(BodyKind::Chunked, &limits(), &[b"6\r\n012345\r\n6\r\n012345\r\n"]);
    assert_eq!(two_chunks, Err(Error::BodyTooLarge));
    let exact = decode_parts(BodyKind::Chunked, &limits(), &[b"5\r\n01234\r\n5\r\n56789\r\n0\r\n\r\n"]);
    assert_eq!(exact.unwrap().payload, b"0123456789");
    let close = decode_parts(BodyKind::UntilClose, &limits(), &[b"012345", b"678901"]);
    assert_eq!(close, Err(Error::BodyTooLarge));
    assert!(decode_all(BodyKind::UntilClose, b"unlimited by default").is_ok());
}
