//! Upstream URLs (`base_url`, `targets`) and endpoint path prefixes.

use std::net::SocketAddr;

use super::settings::parse_ip;

/// A parsed upstream URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Upstream {
    pub addr: SocketAddr,
    /// "host:port" as written (":80" omitted).
    pub host_header: String,
    /// Path without trailing "/"; "" for none or "/".
    pub path: String,
}

/// Parses `http://HOST[:PORT][/PATH]` where HOST is an IP literal (`[v6]`
/// for IPv6) or `localhost`.
pub(crate) fn parse_upstream(url: &str) -> Result<Upstream, String> {
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("https://") {
        return Err("https upstreams come with the TLS issue".into());
    }
    if !lower.starts_with("http://") {
        return Err(format!("invalid URL '{url}' (expected http://HOST[:PORT][/PATH])"));
    }
    let rest = &url["http://".len()..];
    if rest.contains(['?', '#']) {
        return Err(format!("invalid URL '{url}': query strings and fragments are not allowed"));
    }
    if rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("invalid URL '{url}': contains whitespace or control characters"));
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if authority.contains('@') {
        return Err(format!("invalid URL '{url}': credentials in URLs are not allowed"));
    }
    let (host, port) = split_host_port(authority).ok_or_else(|| format!("invalid URL '{url}': bad host or port"))?;
    let ip = parse_ip(host).ok_or_else(|| {
        format!("invalid URL '{url}': host must be an IP address or localhost (no DNS lookups in this build)")
    })?;
    if host.parse::<std::net::Ipv6Addr>().is_ok() {
        return Err(format!("invalid URL '{url}': write IPv6 addresses in brackets, e.g. http://[::1]:8080"));
    }
    let port = match port {
        None => 80,
        Some(p) => match p.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err(format!("invalid URL '{url}': port must be between 1 and 65535")),
        },
    };
    let host_header = if port == 80 { host.to_string() } else { format!("{host}:{port}") };
    Ok(Upstream { addr: SocketAddr::new(ip, port), host_header, path: path.trim_end_matches('/').to_string() })
}

/// Splits "host", "host:port", "[v6]" or "[v6]:port".
fn split_host_port(a: &str) -> Option<(&str, Option<&str>)> {
    if a.is_empty() {
        return None;
    }
    if a.starts_with('[') {
        let end = a.find(']')?;
        let host = &a[..=end];
        return match &a[end + 1..] {
            "" => Some((host, None)),
            p => Some((host, Some(p.strip_prefix(':')?))),
        };
    }
    match a.split_once(':') {
        Some((h, p)) if !h.is_empty() => Some((h, Some(p))),
        Some(_) => None,
        None => Some((a, None)),
    }
}

/// Validates and normalises an endpoint path prefix: leading "/", no
/// trailing "/" (except "/" itself), no empty, "." or ".." segments, no
/// query, fragment, wildcard, whitespace or control characters.
pub(crate) fn normalise_prefix(p: &str) -> Result<String, String> {
    if !p.starts_with('/') {
        return Err(format!("path prefix '{p}' must start with '/'"));
    }
    if p.chars().any(|c| c.is_whitespace() || c.is_control() || matches!(c, '?' | '#' | '*' | '%')) {
        return Err(format!("path prefix '{p}' must not contain whitespace, control characters, '?', '#', '*' or '%'"));
    }
    let trimmed = p.trim_end_matches('/');
    if trimmed.is_empty() {
        return Ok("/".into());
    }
    if trimmed[1..].split('/').any(|seg| seg.is_empty() || seg == "." || seg == "..") {
        return Err(format!("path prefix '{p}' has an empty, '.' or '..' segment"));
    }
    Ok(trimmed.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_urls() {
        let u = parse_upstream("http://127.0.0.1:8081").unwrap();
        assert_eq!(u.addr, "127.0.0.1:8081".parse().unwrap());
        assert_eq!((u.host_header.as_str(), u.path.as_str()), ("127.0.0.1:8081", ""));
        let u = parse_upstream("http://localhost/fhir/").unwrap();
        assert_eq!(u.addr, "127.0.0.1:80".parse().unwrap());
        assert_eq!((u.host_header.as_str(), u.path.as_str()), ("localhost", "/fhir"));
        let u = parse_upstream("http://[::1]:9000/a/b").unwrap();
        assert_eq!(u.addr, "[::1]:9000".parse().unwrap());
        assert_eq!((u.host_header.as_str(), u.path.as_str()), ("[::1]:9000", "/a/b"));
        assert_eq!(parse_upstream("http://10.0.0.1/").unwrap().path, "");
        for bad in [
            "http://example.com",
            "ftp://1.2.3.4",
            "http://1.2.3.4:0",
            "http://1.2.3.4:70000",
            "http://1.2.3.4/?q=1",
            "http://u@1.2.3.4",
            "http://::1",
            "http://",
            "http://:80",
        ] {
            assert!(parse_upstream(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_upstream("https://1.2.3.4").unwrap_err(), "https upstreams come with the TLS issue");
    }

    #[test]
    fn prefixes() {
        assert_eq!(normalise_prefix("/").unwrap(), "/");
        assert_eq!(normalise_prefix("//").unwrap(), "/");
        assert_eq!(normalise_prefix("/api/").unwrap(), "/api");
        assert_eq!(normalise_prefix("/a/b").unwrap(), "/a/b");
        for bad in ["api", "/a//b", "/a/../b", "/a?x", "/a b", "/a/*", ""] {
            assert!(normalise_prefix(bad).is_err(), "{bad}");
        }
    }
}
