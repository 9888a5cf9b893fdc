//! Arbitrary bytes as a peer's stream: framing must never panic, must give
//! the same PDUs whole and split in two, and every PDU it yields must drive
//! the association machine and the PDV reassembler without panicking.

#![no_main]

use std::time::{Duration, Instant};

use dimse::pdu::Pdu;
use dimse::{Association, Event, FrameReader, Reassembler};
use libfuzzer_sys::fuzz_target;

/// Decode `parts` like a connection loop: PDUs until incomplete or error.
fn frames(parts: &[&[u8]]) -> (Vec<Pdu>, bool) {
    let mut reader = FrameReader::new(64 * 1024);
    let (mut buf, mut out) = (Vec::new(), Vec::new());
    for part in parts {
        buf.extend_from_slice(part);
        loop {
            match reader.next(&buf) {
                Ok(Some((pdu, n))) => {
                    buf.drain(..n);
                    out.push(pdu);
                }
                Ok(None) => break,
                Err(_) => return (out, true),
            }
        }
    }
    (out, false)
}

fuzz_target!(|data: &[u8]| {
    let (whole, failed) = frames(&[data]);
    let mid = data.len() / 2;
    assert_eq!(frames(&[&data[..mid], &data[mid..]]), (whole.clone(), failed));

    let now = Instant::now();
    let mut assoc = Association::new(Duration::from_secs(30));
    let _ = assoc.handle(Event::TransportConnectIndication, now);
    let mut pdvs = Reassembler::new(1 << 20);
    for pdu in whole {
        if let Pdu::PData { data } = &pdu {
            let _ = pdvs.push_all(data.clone());
        }
        let _ = assoc.handle(Event::PduReceived(pdu), now);
        while assoc.poll_output().is_some() {}
    }
    assoc.on_timeout(now + Duration::from_secs(60));
});
