//! Request path normalisation, so routing and path filters see the same path
//! the upstream will act on ("/api/public/../admin" must not slip past a
//! filter on "/api/public").

/// Resolve "." and ".." segments (RFC 3986 §5.2.4). Returns None when a
/// segment is a percent-encoded dot segment ("%2e", "%2e%2e", ...) or the
/// path contains an encoded slash or backslash, which we refuse rather than
/// guess how the upstream decodes them.
pub fn normalize_path(path: &str) -> Option<std::borrow::Cow<'_, str>> {
    let lower_has =
        |needle: &str| path.as_bytes().windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle.as_bytes()));
    if lower_has("%2f") || lower_has("%5c") || path.contains('\\') {
        return None;
    }
    let needs_work =
        path.split('/').any(|seg| seg == "." || seg == ".." || (seg.contains('%') && is_encoded_dot_segment(seg)));
    if !needs_work {
        return Some(std::borrow::Cow::Borrowed(path));
    }
    let mut out: Vec<&str> = Vec::new();
    let segs: Vec<&str> = path.split('/').skip(1).collect();
    let n = segs.len();
    for (i, seg) in segs.iter().enumerate() {
        if seg.contains('%') && is_encoded_dot_segment(seg) {
            return None;
        }
        match *seg {
            "." => {
                if i == n - 1 {
                    out.push("");
                }
            }
            ".." => {
                out.pop();
                if i == n - 1 {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    let mut s = String::with_capacity(path.len());
    for seg in &out {
        s.push('/');
        s.push_str(seg);
    }
    if s.is_empty() {
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
        assert!(normalize_path("/a/%41").is_some());
    }
}
