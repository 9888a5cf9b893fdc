//! Arbitrary bytes as a DIMSE command set: decode must never panic, and
//! whatever decodes must re-encode to something that decodes the same.

#![no_main]

use dimse::Command;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(cmd) = Command::decode(data) {
        assert_eq!(Command::decode(&cmd.encode()), Ok(cmd));
    }
});
