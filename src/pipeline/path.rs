//! Request path normalisation, so routing and path filters see the same path
//! the upstream will act on ("/api/public/../admin" must not slip past a
//! filter on "/api/public").

/// The canonical form of a request path, used for routing, for path
/// filters, and as the path sent upstream, so every party acts on the same
/// path. Percent-encoded unreserved characters are decoded (`%73` → `s`,
/// RFC 3986 §6.2.2.2), empty segments are merged (`//` → `/`, as most origins
/// do), and "." / ".." segments are resolved (§5.2.4).
///
/// Returns None — the caller answers 400 — for what we refuse to guess about:
/// an encoded slash or backslash, a raw backslash, an encoded NUL, a
/// malformed `%` escape, or an encoded dot segment (`%2e%2e`).
pub fn normalize_path(path: &str) -> Option<std::borrow::Cow<'_, str>> {
    let b = path.as_bytes();
    if b.contains(&b'\\') {
        return None;
    }
    let simple = !b.contains(&b'%')
        && !b.windows(2).any(|w| w == b"//" || w == b"/.")
        && !path.ends_with("/.")
        && path.starts_with('/');
    if simple {
        return Some(std::borrow::Cow::Borrowed(path));
    }
    // 1. percent-decoding of unreserved characters (except '.', see below)
    let mut decoded = String::with_capacity(path.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = |c: u8| (c as char).to_digit(16);
            let (Some(h), Some(l)) = (b.get(i + 1).and_then(|&c| hex(c)), b.get(i + 2).and_then(|&c| hex(c))) else {
                return None;
            };
            let c = (h * 16 + l) as u8;
            match c {
                b'/' | b'\\' | 0 => return None,
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'~' => decoded.push(c as char),
                _ => decoded.push_str(&path[i..i + 3]),
            }
            i += 3;
        } else {
            let ch = path[i..].chars().next()?;
            decoded.push(ch);
            i += ch.len_utf8();
        }
    }
    // 2. merge empty segments, resolve dot segments
    let segs: Vec<&str> = decoded.split('/').filter(|s| !s.is_empty()).collect();
    let trailing = decoded.ends_with('/') || decoded.ends_with("/.") || decoded.ends_with("/..");
    let mut out: Vec<&str> = Vec::with_capacity(segs.len());
    for seg in segs {
        if seg.contains('%') && is_encoded_dot_segment(seg) {
            return None;
        }
        match seg {
            "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut s = String::with_capacity(decoded.len());
    for seg in &out {
        s.push('/');
        s.push_str(seg);
    }
    if s.is_empty() || (trailing && !s.ends_with('/')) {
        s.push('/');
    }
    Some(std::borrow::Cow::Owned(s))
}

fn is_encoded_dot_segment(seg: &str) -> bool {
    let lower = seg.to_ascii_lowercase();
    let decoded = lower.replace("%2e", ".");
    decoded == "." || decoded == ".."
}

#[cfg(test)]
mod tests {
    use super::normalize_path;

    #[test]
    fn dot_segments_are_resolved() {
        assert_eq!(normalize_path("/a/b").unwrap(), "/a/b");
        assert_eq!(normalize_path("/a/./b").unwrap(), "/a/b");
        assert_eq!(normalize_path("/a/../b").unwrap(), "/b");
        assert_eq!(normalize_path("/../../b").unwrap(), "/b");
        assert_eq!(normalize_path("/a/b/..").unwrap(), "/a/");
        assert_eq!(normalize_path("/").unwrap(), "/");
        assert_eq!(normalize_path("/..").unwrap(), "/");
    }

    #[test]
    fn encoded_tricks_are_refused() {
        assert!(normalize_path("/a/%2e%2e/b").is_none());
        assert!(normalize_path("/a/%2E/b").is_none());
        assert!(normalize_path("/a%2fb").is_none());
        assert!(normalize_path("/a\\b").is_none());
        assert!(normalize_path("/a/%2").is_none());
        assert!(normalize_path("/a/%zz").is_none());
        assert!(normalize_path("/a/%00").is_none());
    }

    #[test]
    fn unreserved_escapes_are_decoded_and_slashes_merged() {
        assert_eq!(normalize_path("/a/%41").unwrap(), "/a/A");
        assert_eq!(normalize_path("/allowed/%73ecret").unwrap(), "/allowed/secret");
        assert_eq!(normalize_path("/allowed//secret").unwrap(), "/allowed/secret");
        assert_eq!(normalize_path("//a///b/").unwrap(), "/a/b/");
        assert_eq!(normalize_path("/a/%20b").unwrap(), "/a/%20b");
        assert_eq!(normalize_path("/a%2eb").unwrap(), "/a%2eb");
        assert_eq!(normalize_path("/caf%C3%A9").unwrap(), "/caf%C3%A9");
    }
}
