//! Unit tests on byte vectors. Helpers here drive the parser and decoder the
//! way a connection loop would: keep unconsumed bytes, append more, retry.

mod chunked;
mod framing;
mod headers;
mod heads;
mod limits;
mod reject;
mod serialize;
mod split;

use crate::{parse_request, parse_response, BodyDecoder, BodyKind, Error, Headers, Limits, RequestHead, ResponseHead};

/// Parse a complete request head that must use all of `bytes`.
fn req(bytes: &[u8]) -> RequestHead {
    let (head, n) = parse_request(bytes, &Limits::default()).expect("valid request").expect("complete request");
    assert_eq!(n, bytes.len());
    head
}

/// Parse a complete response head that must use all of `bytes`.
fn res(bytes: &[u8]) -> ResponseHead {
    let (head, n) = parse_response(bytes, &Limits::default()).expect("valid response").expect("complete response");
    assert_eq!(n, bytes.len());
    head
}

fn req_err(bytes: &[u8]) -> Error {
    parse_request(bytes, &Limits::default()).expect_err("request must be rejected")
}

/// What a body decoder produced from a sequence of reads.
#[derive(Debug, PartialEq)]
struct Decoded {
    payload: Vec<u8>,
    trailers: Option<Headers>,
    done: bool,
    /// Bytes after the end of the body (the next message), or not yet used.
    leftover: Vec<u8>,
}

/// Feed `parts` one read at a time, buffering unconsumed bytes like a caller.
fn decode_parts(kind: BodyKind, limits: &Limits, parts: &[&[u8]]) -> Result<Decoded, Error> {
    let mut dec = BodyDecoder::new(kind, limits);
    let mut pending: Vec<u8> = Vec::new();
    let mut payload = Vec::new();
    for part in parts {
        pending.extend_from_slice(part);
        loop {
            let step = dec.decode(&pending)?;
            assert!(step.data.start <= step.data.end && step.data.end <= step.consumed);
            payload.extend_from_slice(&pending[step.data.clone()]);
            pending.drain(..step.consumed);
            assert_eq!(step.done, dec.is_done());
            if step.done || step.consumed == 0 {
                break;
            }
        }
    }
    assert_eq!(dec.decoded_len(), payload.len() as u64);
    Ok(Decoded { payload, done: dec.is_done(), trailers: dec.take_trailers(), leftover: pending })
}

fn decode_all(kind: BodyKind, input: &[u8]) -> Result<Decoded, Error> {
    decode_parts(kind, &Limits::default(), &[input])
}

fn headers(fields: &[(&str, &str)]) -> Headers {
    let mut h = Headers::new();
    for (name, value) in fields {
        h.append(name, value.as_bytes());
    }
    h
}
