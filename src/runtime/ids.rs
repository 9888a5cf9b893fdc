//! Request ids: 16 hex digits from a per-worker xorshift generator seeded
//! from the clock, the worker index and the process id. Not cryptographic;
//! unique enough to correlate logs.

use std::time::{SystemTime, UNIX_EPOCH};

pub(crate) struct RequestIds {
    state: u64,
}

impl RequestIds {
    pub(crate) fn new(worker: usize) -> Self {
        let t = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
        let seed = t ^ ((worker as u64) << 48) ^ ((std::process::id() as u64) << 20) ^ 0x9E37_79B9_7F4A_7C15;
        RequestIds { state: seed | 1 }
    }

    pub(crate) fn next_id(&mut self) -> String {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        let v = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut digits = [0u8; 16];
        for (i, d) in digits.iter_mut().enumerate() {
            *d = HEX[((v >> ((15 - i) * 4)) & 0xf) as usize];
        }
        // hex digits are ASCII: the conversion cannot fail
        std::str::from_utf8(&digits).unwrap_or_default().to_owned()
    }
}

/// A client-supplied request id is kept only if it is short, visible ASCII.
pub(crate) fn acceptable_request_id(v: &[u8]) -> bool {
    !v.is_empty() && v.len() <= 128 && v.iter().all(|&b| (0x21..0x7f).contains(&b) && b != b'"' && b != b'\\')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_16_hex_and_differ() {
        let mut g = RequestIds::new(0);
        let a = g.next_id();
        let b = g.next_id();
        assert_eq!(a.len(), 16);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn client_ids_are_checked() {
        assert!(acceptable_request_id(b"abc-123"));
        assert!(!acceptable_request_id(b""));
        assert!(!acceptable_request_id(b"a b"));
        assert!(!acceptable_request_id(&[b'a'; 200]));
    }
}
