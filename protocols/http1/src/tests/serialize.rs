use super::{headers, req, res};
use crate::{
    reason_phrase, write_chunk_end, write_chunk_header, write_last_chunk, write_request_head, write_response_head,
    BodyKind, RequestHead, ResponseHead, Version,
};

#[test]
fn a_request_head_is_written_exactly() {
    let head = RequestHead {
        method: "POST".into(),
        target: "/a?b=c".into(),
        version: Version::Http11,
        headers: headers(&[("Host", "x"), ("Content-Length", "3"), ("host", "y")]),
    };
    let mut out = Vec::new();
    write_request_head(&head, &mut out);
    assert_eq!(out, b"POST /a?b=c HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nhost: y\r\n\r\n");
    assert_eq!(req(&out), head);
}

#[test]
fn a_response_head_round_trips() {
    let head = ResponseHead {
        version: Version::Http10,
        status: 503,
        reason: "Busy Right Now".into(),
        headers: headers(&[("Retry-After", "5"), ("X-Bin", "caf\u{e9}")]),
    };
    let mut out = Vec::new();
    write_response_head(&head, &mut out);
    assert_eq!(out, "HTTP/1.0 503 Busy Right Now\r\nRetry-After: 5\r\nX-Bin: caf\u{e9}\r\n\r\n".as_bytes());
    assert_eq!(res(&out), head);
}

#[test]
fn a_missing_reason_is_filled_from_the_table() {
    let head = ResponseHead { version: Version::Http11, status: 404, reason: String::new(), headers: headers(&[]) };
    let mut out = Vec::new();
    write_response_head(&head, &mut out);
    assert_eq!(out, b"HTTP/1.1 404 Not Found\r\n\r\n");
    let mut unknown = head.clone();
    unknown.status = 599;
    out.clear();
    write_response_head(&unknown, &mut out);
    assert_eq!(out, b"HTTP/1.1 599 \r\n\r\n");
    assert_eq!(res(&out).status, 599);
}

#[test]
fn removed_fields_are_not_written() {
    let mut head = req(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\nAccept: */*\r\n\r\n");
    head.headers.remove("connection");
    head.headers.set("Host", b"b");
    let mut out = Vec::new();
    write_request_head(&head, &mut out);
    assert_eq!(out, b"GET / HTTP/1.1\r\nAccept: */*\r\nHost: b\r\n\r\n");
}

#[test]
fn chunked_framing_round_trips_through_the_decoder() {
    let mut out = Vec::new();
    for piece in [&b"hello"[..], &[b'x'; 300][..]] {
        write_chunk_header(piece.len(), &mut out);
        out.extend_from_slice(piece);
        write_chunk_end(&mut out);
    }
    let trailers = headers(&[("X-Sum", "42")]);
    write_last_chunk(Some(&trailers), &mut out);
    assert!(out.starts_with(b"5\r\nhello\r\n12c\r\n"));
    assert!(out.ends_with(b"0\r\nX-Sum: 42\r\n\r\n"));
    let got = super::decode_all(BodyKind::Chunked, &out).unwrap();
    assert_eq!(got.payload.len(), 305);
    assert_eq!(got.trailers, Some(trailers));
    let mut last = Vec::new();
    write_last_chunk(None, &mut last);
    assert_eq!(last, b"0\r\n\r\n");
}

#[test]
fn reason_phrases_cover_the_common_codes() {
    assert_eq!(reason_phrase(200), "OK");
    assert_eq!(reason_phrase(101), "Switching Protocols");
    assert_eq!(reason_phrase(308), "Permanent Redirect");
    assert_eq!(reason_phrase(418), "I'm a teapot");
    assert_eq!(reason_phrase(431), "Request Header Fields Too Large");
    assert_eq!(reason_phrase(511), "Network Authentication Required");
    assert_eq!(reason_phrase(299), "");
    let known = [100, 101, 103, 421, 422, 425, 426, 428, 429, 431, 451, 511];
    let ranges = (200..=206).chain(300..=305).chain(307..=308).chain(400..=418).chain(500..=505);
    for status in ranges.chain(known) {
        assert!(!reason_phrase(status).is_empty(), "{status}");
    }
}

#[test]
fn fields_are_written_in_canonical_form_whatever_the_received_spacing() {
    // the first and last lines are canonical (copied as a block), the middle
    // ones are not (no space, extra OWS, tab): all are re-spaced on output
    let head = req(b"GET / HTTP/1.1\r\nHost: a\r\nX-A:b\r\nX-B:  c \t\r\nX-C:\td\r\nX-F: g \r\nX-D: e\r\n\r\n");
    assert_eq!(head.headers.get("x-f"), Some(&b"g"[..]));
    let mut out = Vec::new();
    write_request_head(&head, &mut out);
    assert_eq!(out, b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\nX-B: c\r\nX-C: d\r\nX-F: g\r\nX-D: e\r\n\r\n");
    let canonical = req(b"GET / HTTP/1.1\r\nHost: a\r\nX-D: e\r\nX-E: f g\r\n\r\n");
    assert_eq!(canonical.headers.get("x-e"), Some(&b"f g"[..]));
    assert_eq!(canonical.headers.len(), 3);
}

#[test]
fn bare_lf_lines_and_empty_values_are_written_with_crlf() {
    let head = req(b"GET / HTTP/1.1\nHost: a\nX-Empty: \r\nAccept: */*\n\n");
    assert_eq!(head.headers.get("x-empty"), Some(&b""[..]));
    let mut out = Vec::new();
    write_request_head(&head, &mut out);
    assert_eq!(out, b"GET / HTTP/1.1\r\nHost: a\r\nX-Empty: \r\nAccept: */*\r\n\r\n");
}

#[test]
fn gaps_left_by_removed_fields_split_the_copy_without_losing_lines() {
    let mut head =
        res(b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: x\r\nConnection: keep-alive\r\nA: 1\r\nB: 2\r\n\r\n");
    head.headers.remove("date");
    head.headers.remove("b");
    head.headers.append("X-Lua", b"1");
    head.headers.set("Server", b"h");
    let mut out = Vec::new();
    write_response_head(&head, &mut out);
    assert_eq!(out, b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nA: 1\r\nX-Lua: 1\r\nServer: h\r\n\r\n");
}

#[test]
fn status_codes_are_written_as_three_digits() {
    for (status, line) in [(200, "HTTP/1.1 200 OK\r\n"), (42, "HTTP/1.1 042 \r\n"), (999, "HTTP/1.1 999 \r\n")] {
        let head = ResponseHead { version: Version::Http11, status, reason: String::new(), headers: headers(&[]) };
        let mut out = Vec::new();
        write_response_head(&head, &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), format!("{line}\r\n"), "{status}");
    }
}
