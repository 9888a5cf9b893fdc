use crate::{Error, Headers};

/// Size limits applied while parsing; every one maps to a distinct status.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Request/status line plus header section, CRLFs included (431 beyond).
    pub max_head_bytes: usize,
    /// Number of header fields (431 beyond).
    pub max_headers: usize,
    /// Length of the request target (414 beyond).
    pub max_uri_len: usize,
    /// Body size, declared or streamed (413 beyond). `u64::MAX` = unlimited.
    pub max_body_bytes: u64,
}

impl Default for Limits {
    /// 32 KiB head, 100 fields, 8 KiB URI, unlimited body.
    fn default() -> Self { todo!() }
}

/// HTTP/1.0 or HTTP/1.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version { Http10, Http11 }

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: String,
    /// The request target as received (origin-form `/path?query`, or
    /// absolute-form / authority-form / `*`).
    pub target: String,
    pub version: Version,
    pub headers: Headers,
}

impl RequestHead {
    /// Path part of an origin-form target (before `?`); for absolute-form the
    /// path component ("/" if empty).
    pub fn path(&self) -> &str { todo!() }
    /// Query part after `?`, without the `?`, if any.
    pub fn query(&self) -> Option<&str> { todo!() }
    /// Persistent connection semantics: HTTP/1.1 unless `Connection: close`;
    /// HTTP/1.0 only with `Connection: keep-alive`.
    pub fn keep_alive(&self) -> bool { todo!() }
    /// `Expect: 100-continue` present (HTTP/1.1 only).
    pub fn expects_continue(&self) -> bool { todo!() }
    pub fn is_head(&self) -> bool { self.method == "HEAD" }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub version: Version,
    pub status: u16,
    pub reason: String,
    pub headers: Headers,
}

impl ResponseHead {
    /// Same rules as `RequestHead::keep_alive`, for the response.
    pub fn keep_alive(&self) -> bool { todo!() }
    /// 1xx.
    pub fn is_informational(&self) -> bool { (100..200).contains(&self.status) }
}

/// Parse a request head from the start of `buf`.
/// `Ok(None)` = incomplete (but if `buf` is already longer than the limits
/// allow, an error is returned instead of waiting forever: `UriTooLong` when
/// the request line is still unfinished past `max_uri_len` (+ method/version
/// slack), `HeadTooLarge` past `max_head_bytes`).
/// `Ok(Some((head, n)))` = complete, `n` bytes consumed (body follows).
/// Leading empty lines are skipped (RFC 9112 §2.2). Rejected with
/// `Malformed`: obs-fold, invalid bytes in names/values, missing/invalid
/// version, lone LF where CRLF required is allowed only as httparse allows.
pub fn parse_request(buf: &[u8], limits: &Limits) -> Result<Option<(RequestHead, usize)>, Error> { todo!() }

/// Parse a response head (status line + fields) from the start of `buf`.
/// Same contract as `parse_request` (the URI limit does not apply).
pub fn parse_response(buf: &[u8], limits: &Limits) -> Result<Option<(ResponseHead, usize)>, Error> { todo!() }
