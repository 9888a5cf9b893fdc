//! Allocation-free number formatting for header values on the hot path.

/// A formatted decimal, borrowed as bytes.
pub(crate) struct Decimal {
    buf: [u8; 20],
    start: usize,
}

impl Decimal {
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

pub(crate) fn decimal(mut n: u64) -> Decimal {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    Decimal { buf, start: i }
}

#[cfg(test)]
mod tests {
    use super::decimal;

    #[test]
    fn formats() {
        assert_eq!(decimal(0).as_bytes(), b"0");
        assert_eq!(decimal(42).as_bytes(), b"42");
        assert_eq!(decimal(u64::MAX).as_bytes(), b"18446744073709551615");
    }
}
