//! Arbitrary bytes into every parser: heads must never panic, and a chunked
//! body must decode to the same payload whole and when fed in two parts.

#![no_main]

use http1::{
    parse_request, parse_response, request_body_kind, response_body_kind, BodyDecoder, BodyKind,
    Limits,
};
use libfuzzer_sys::fuzz_target;

/// Decode `parts` like a connection loop; `None` on a decoding error.
fn decode(parts: &[&[u8]], limits: &Limits) -> Option<(Vec<u8>, bool)> {
    let mut dec = BodyDecoder::new(BodyKind::Chunked, limits);
    let mut pending = Vec::new();
    let mut payload = Vec::new();
    for part in parts {
        pending.extend_from_slice(part);
        loop {
            let step = dec.decode(&pending).ok()?;
            assert!(step.data.end <= step.consumed && step.consumed <= pending.len());
            payload.extend_from_slice(&pending[step.data.clone()]);
            pending.drain(..step.consumed);
            if step.done || step.consumed == 0 {
                break;
            }
        }
    }
    assert_eq!(dec.decoded_len(), payload.len() as u64);
    Some((payload, dec.is_done()))
}

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_head_bytes: 4096,
        max_headers: 32,
        max_uri_len: 1024,
        max_body_bytes: 1 << 20,
    };
    if let Ok(Some((head, n))) = parse_request(data, &limits) {
        assert!(n <= data.len());
        let _ = request_body_kind(&head, &limits);
        let _ = (
            head.path(),
            head.query(),
            head.keep_alive(),
            head.expects_continue(),
        );
    }
    if let Ok(Some((head, n))) = parse_response(data, &limits) {
        assert!(n <= data.len());
        let _ = response_body_kind(&head, "GET");
    }
    let whole = decode(&[data], &limits);
    let cut = data
        .first()
        .map_or(0, |&b| usize::from(b) % (data.len() + 1));
    let (a, b) = data.split_at(cut);
    let split = decode(&[a, b], &limits);
    // An error may surface at a different point, but a success must agree.
    if let (Some(whole), Some(split)) = (whole, split) {
        if whole.1 {
            assert_eq!(whole, split);
        }
    }
});
