//! Standard base64 (RFC 4648, with padding) for binary bodies in JSON.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub fn encode(input: &[u8]) -> String {
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64. Padding is optional, but if present it must
/// complete the final 4-character group; characters outside the alphabet
/// (including whitespace) and non-zero trailing bits are rejected.
pub fn decode(input: &[u8]) -> Result<Vec<u8>, String> {
    let pad = input.iter().rev().take_while(|&&b| b == b'=').count();
    if pad > 2 || (pad > 0 && !input.len().is_multiple_of(4)) {
        return Err("invalid base64 padding".to_string());
    }
    let data = &input[..input.len() - pad];
    if data.len() % 4 == 1 {
        return Err("invalid base64 length".to_string());
    }
    let mut out = Vec::with_capacity(data.len() / 4 * 3 + 2);
    let (mut acc, mut bits) = (0u32, 0u32);
    for (i, &c) in data.iter().enumerate() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return Err(format!("invalid base64 character at offset {i}")),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if acc != 0 {
        return Err("invalid base64: non-zero trailing bits".to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::{decode, encode};

    #[test]
    fn decode_vectors() {
        for (plain, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(decode(enc.as_bytes()).unwrap(), plain.as_bytes(), "{enc}");
            // Missing padding is accepted.
            assert_eq!(decode(enc.trim_end_matches('=').as_bytes()).unwrap(), plain.as_bytes());
        }
        let all: Vec<u8> = (0..=255u8).collect();
        assert_eq!(decode(encode(&all).as_bytes()).unwrap(), all);
        assert_eq!(decode(b"+/+/").unwrap(), vec![0xfb, 0xff, 0xbf]);
    }

    #[test]
    fn decode_rejects_invalid() {
        for bad in ["Zg=", "Zg===", "Z", "Zm9vY", "Zm9v\n", "Zm 9v", "Zm-v", "Zh==", "Zm9=", "=", "Zg==Zg=="] {
            assert!(decode(bad.as_bytes()).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn rfc4648_vectors() {
        assert_eq!(encode(b""), "");
        assert_eq!(encode(b"f"), "Zg==");
        assert_eq!(encode(b"fo"), "Zm8=");
        assert_eq!(encode(b"foo"), "Zm9v");
        assert_eq!(encode(b"foob"), "Zm9vYg==");
        assert_eq!(encode(b"fooba"), "Zm9vYmE=");
        assert_eq!(encode(b"foobar"), "Zm9vYmFy");
    }
}
