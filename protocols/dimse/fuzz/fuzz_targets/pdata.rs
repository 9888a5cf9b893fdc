//! Arbitrary bytes through the relay's zero-copy views: PDU splitting, PDV
//! walking and the Maximum Length patch must never panic; PDVs written with
//! `write_fragments` must read back as the bytes that went in.

#![no_main]

use dimse::pdata::{cap_max_length, items, max_length_offset, split, write_fragments};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut at = 0;
    while let Ok(Some((_, total))) = split(&data[at..], 1 << 16) {
        let pdu = &data[at..at + total];
        for item in items(pdu) {
            if item.is_err() {
                break;
            }
        }
        let _ = max_length_offset(pdu);
        let mut copy = pdu.to_vec();
        let _ = cap_max_length(&mut copy, 16384);
        at += total;
    }
    // round trip: fragment the input as a data set and join it again
    let max = 64 + (data.first().copied().unwrap_or(0) as u32) * 4;
    let mut out = Vec::new();
    write_fragments(&mut out, 1, false, data, max);
    let mut joined = Vec::new();
    let mut at = 0;
    while at < out.len() {
        let (_, total) = split(&out[at..], max).expect("a complete PDU").expect("within the cap");
        for item in items(&out[at..at + total]) {
            joined.extend_from_slice(item.expect("a valid PDV").data);
        }
        at += total;
    }
    assert_eq!(joined, data);
});
