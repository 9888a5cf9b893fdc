use super::headers;
use crate::{is_hop_by_hop, is_valid_field_name, is_valid_field_value, remove_hop_by_hop, Headers};

#[test]
fn lookups_are_case_insensitive_and_ordered() {
    let h = headers(&[("Accept", "a"), ("X-A", "1"), ("accept", "b")]);
    assert_eq!(h.len(), 3);
    assert_eq!(h.get("ACCEPT"), Some(&b"a"[..]));
    assert_eq!(h.get_all("Accept").collect::<Vec<_>>(), [&b"a"[..], b"b"]);
    assert!(h.contains("x-a"));
    assert!(!h.contains("x-b"));
    let names: Vec<&str> = h.iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["Accept", "X-A", "accept"]);
}

#[test]
fn set_remove_retain_and_clear() {
    let mut h = headers(&[("A", "1"), ("B", "2"), ("a", "3")]);
    h.set("a", b"4");
    assert_eq!(h, headers(&[("B", "2"), ("a", "4")]));
    assert!(h.remove("B"));
    assert!(!h.remove("B"));
    h.append("C", b"5");
    h.retain(|name, _| name != "a");
    assert_eq!(h, headers(&[("C", "5")]));
    h.clear();
    assert!(h.is_empty());
    assert_eq!(h, Headers::new());
    assert_eq!(format!("{:?}", headers(&[("A", "1")])), r#"[("A", "1")]"#);
}

#[test]
fn tokens_and_text_are_trimmed() {
    let h = headers(&[("Connection", " keep-alive ,Upgrade"), ("X-T", " text\t")]);
    assert!(h.has_token("connection", "upgrade"));
    assert!(h.has_token("Connection", "KEEP-ALIVE"));
    assert!(!h.has_token("connection", "close"));
    assert_eq!(h.get_str("x-t"), Some("text"));
    let bin = headers(&[]);
    let mut bin = bin;
    bin.append("X-Bin", b"\xff");
    assert_eq!(bin.get_str("x-bin"), None);
}

#[test]
fn hop_by_hop_fields_and_those_named_in_connection_are_removed() {
    let mut h = headers(&[
        ("Host", "a"),
        ("Connection", "close, X-Secret"),
        ("Keep-Alive", "timeout=5"),
        ("x-secret", "1"),
        ("Transfer-Encoding", "chunked"),
        ("TE", "trailers"),
        ("Trailer", "X-Sum"),
        ("Upgrade", "h2c"),
        ("Proxy-Connection", "keep-alive"),
        ("Accept", "*/*"),
        ("Connection", "x-other"),
        ("X-Other", "2"),
    ]);
    remove_hop_by_hop(&mut h);
    assert_eq!(h, headers(&[("Host", "a"), ("Accept", "*/*")]));
    assert!(is_hop_by_hop("TRANSFER-ENCODING"));
    assert!(!is_hop_by_hop("Content-Length"));
}

#[test]
fn field_validity_helpers_guard_against_injection() {
    assert!(is_valid_field_name("X-Request-Id"));
    assert!(!is_valid_field_name(""));
    assert!(!is_valid_field_name("X A"));
    assert!(!is_valid_field_name("X:A"));
    assert!(is_valid_field_value(b"a b\tc \xff"));
    assert!(!is_valid_field_value(b"a\r\nX-Injected: 1"));
    assert!(!is_valid_field_value(b"a\0"));
}

#[test]
fn tchar_table_is_the_rfc_9110_set() {
    // every byte: ALPHA / DIGIT / the 15 listed symbols, nothing else
    for b in 0..=255u8 {
        let rfc = b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        assert_eq!(crate::headers::is_tchar(b), rfc, "byte {b:#04x}");
    }
}

#[test]
fn word_at_a_time_comparison_agrees_with_std_on_every_byte() {
    use crate::headers::eq_ignore_case;
    // every pair of bytes, at each position of names 1 to 17 bytes long
    // (both the byte loop and the word path with its overlapping tail)
    for len in 1..=17usize {
        for pos in [0, len / 2, len - 1] {
            for x in 0..=255u8 {
                for y in [x, x ^ 0x20, x.wrapping_add(1), b'a', b'Z', 0x80 | (x & 0x7f)] {
                    let mut a = b"Transfer-Encoding".to_vec();
                    a.truncate(len);
                    let mut b = a.to_ascii_lowercase();
                    a[pos] = x;
                    b[pos] = y;
                    assert_eq!(eq_ignore_case(&a, &b), a.eq_ignore_ascii_case(&b), "{a:?} {b:?}");
                }
            }
        }
    }
    assert!(!eq_ignore_case(b"connection", b"connectio"));
    assert!(eq_ignore_case(b"", b""));
}
