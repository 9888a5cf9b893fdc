//! In-tree stand-in for the fuzz targets: many pseudo-random and mutated
//! inputs, asserting only "no panic" (and a decode/encode/decode fixpoint).

use crate::command::Command;
use crate::{encode, FrameReader};

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn mutate(&mut self, seed: &[u8]) -> Vec<u8> {
        let mut v = seed.to_vec();
        for _ in 0..(self.next() % 4 + 1) {
            if v.is_empty() {
                break;
            }
            let i = (self.next() as usize) % v.len();
            match self.next() % 3 {
                0 => v[i] = self.next() as u8,
                1 => v.truncate(i),
                _ => v.insert(i, self.next() as u8),
            }
        }
        v
    }
}

#[test]
fn framing_never_panics_on_mutated_pdus() {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let seeds: Vec<Vec<u8>> = [
        dicom_ul::pdu::Pdu::AssociationRQ(super::sample_rq()),
        dicom_ul::pdu::Pdu::ReleaseRQ,
        dicom_ul::pdu::Pdu::AbortRQ { source: dicom_ul::pdu::AbortRQSource::ServiceUser },
    ]
    .iter()
    .map(|p| encode(p).unwrap())
    .collect();
    for round in 0..20_000 {
        let input = rng.mutate(&seeds[round % seeds.len()]);
        let mut reader = FrameReader::new(1 << 16);
        let _ = reader.next(&input);
    }
}

#[test]
fn command_decode_never_panics_and_reencodes_stably() {
    let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
    let seed = Command::echo_rq(1).encode();
    for _ in 0..20_000 {
        let input = rng.mutate(&seed);
        if let Ok(cmd) = Command::decode(&input) {
            assert_eq!(Command::decode(&cmd.encode()).as_ref(), Ok(&cmd));
        }
    }
}
