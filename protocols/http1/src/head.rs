use crate::headers::trim_ows;
use crate::{Error, Headers};
use std::mem::MaybeUninit;

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
    fn default() -> Self {
        Self { max_head_bytes: 32 * 1024, max_headers: 100, max_uri_len: 8 * 1024, max_body_bytes: u64::MAX }
    }
}

/// HTTP/1.0 or HTTP/1.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// `HTTP/1.0`.
    Http10,
    /// `HTTP/1.1`.
    Http11,
}

/// A parsed request line and header section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// The method token, case preserved (methods are case-sensitive).
    pub method: String,
    /// The request target as received (origin-form `/path?query`, or
    /// absolute-form / authority-form / `*`).
    pub target: String,
    /// Protocol version from the request line.
    pub version: Version,
    /// Header fields in received order.
    pub headers: Headers,
}

impl RequestHead {
    /// Path part of an origin-form target (before `?`); for absolute-form the
    /// path component ("/" if empty).
    ///
    /// Authority-form (`host:port`) and asterisk-form (`*`) targets have no
    /// path; they are returned whole.
    pub fn path(&self) -> &str {
        let target = self.target.as_str();
        let absolute = if target.starts_with('/') { None } else { absolute_form_rest(target) };
        let path_and_query = match absolute {
            Some(rest) => match rest.find(['/', '?', '#']) {
                Some(i) if rest.as_bytes().get(i) == Some(&b'/') => rest.get(i..).unwrap_or(""),
                _ => return "/",
            },
            None => target,
        };
        let end = path_and_query.find(['?', '#']).unwrap_or(path_and_query.len());
        path_and_query.get(..end).unwrap_or(path_and_query)
    }

    /// Query part after `?`, without the `?`, if any.
    pub fn query(&self) -> Option<&str> {
        let (_, query) = self.target.split_once('?')?;
        Some(query.split_once('#').map_or(query, |(q, _)| q))
    }

    /// Persistent connection semantics: HTTP/1.1 unless `Connection: close`;
    /// HTTP/1.0 only with `Connection: keep-alive`.
    pub fn keep_alive(&self) -> bool {
        keep_alive(self.version, &self.headers)
    }

    /// `Expect: 100-continue` present (HTTP/1.1 only).
    pub fn expects_continue(&self) -> bool {
        self.version == Version::Http11
            && self.headers.get_all("expect").any(|v| trim_ows(v).eq_ignore_ascii_case(b"100-continue"))
    }

    /// True if the method is `HEAD` (its response never has a body).
    pub fn is_head(&self) -> bool {
        self.method == "HEAD"
    }
}

/// A parsed status line and header section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// Protocol version from the status line.
    pub version: Version,
    /// Three-digit status code (100..=999).
    pub status: u16,
    /// Reason phrase as received ("" if absent or not plain ASCII).
    pub reason: String,
    /// Header fields in received order.
    pub headers: Headers,
}

impl ResponseHead {
    /// Same rules as `RequestHead::keep_alive`, for the response.
    pub fn keep_alive(&self) -> bool {
        keep_alive(self.version, &self.headers)
    }

    /// 1xx.
    pub fn is_informational(&self) -> bool {
        (100..200).contains(&self.status)
    }
}

fn keep_alive(version: Version, headers: &Headers) -> bool {
    let close = headers.has_token("connection", "close");
    match version {
        Version::Http11 => !close,
        Version::Http10 => !close && headers.has_token("connection", "keep-alive"),
    }
}

/// For an absolute-form target (`scheme://authority/...`), what follows `://`.
fn absolute_form_rest(target: &str) -> Option<&str> {
    let (scheme, rest) = target.split_once("://")?;
    let mut chars = scheme.bytes();
    let first_ok = chars.next().is_some_and(|b| b.is_ascii_alphabetic());
    let rest_ok = chars.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    (first_ok && rest_ok).then_some(rest)
}

/// Header slots on the stack; a larger `max_headers` falls back to the heap.
const STACK_HEADERS: usize = 128;

/// Extra bytes allowed on an unfinished request line beyond `max_uri_len`,
/// for the method, spaces and version.
const REQUEST_LINE_SLACK: usize = 64;

/// Run `attempt` with `limits.max_headers` header slots, each starting as
/// `init`: a stack array when that fits, a heap one (sized by what
/// `max_head_bytes` could possibly hold) only when the stack one overflowed.
fn with_slots<S: Copy, T>(
    limits: &Limits,
    init: S,
    mut attempt: impl FnMut(&mut [S]) -> Result<T, Error>,
) -> Result<T, Error> {
    let mut stack = [init; STACK_HEADERS];
    let n = limits.max_headers.min(STACK_HEADERS);
    match attempt(stack.get_mut(..n).unwrap_or_default()) {
        Err(Error::TooManyHeaders) if limits.max_headers > STACK_HEADERS => {
            // The shortest field line is "a:\n" (3 bytes).
            let cap = limits.max_headers.min(limits.max_head_bytes / 3 + 1);
            let mut heap = vec![init; cap];
            attempt(&mut heap)
        }
        other => other,
    }
}

/// Header slots for `httparse::parse_headers` (trailer sections).
pub(crate) fn with_header_slots<'b, T>(
    limits: &Limits,
    attempt: impl FnMut(&mut [httparse::Header<'b>]) -> Result<T, Error>,
) -> Result<T, Error> {
    with_slots(limits, httparse::EMPTY_HEADER, attempt)
}

/// Uninitialised slots for heads: the hot path skips zeroing 4 KiB.
fn with_uninit_slots<'b, T>(
    limits: &Limits,
    attempt: impl FnMut(&mut [MaybeUninit<httparse::Header<'b>>]) -> Result<T, Error>,
) -> Result<T, Error> {
    with_slots(limits, MaybeUninit::uninit(), attempt)
}

fn map_httparse(e: httparse::Error) -> Error {
    match e {
        httparse::Error::HeaderName => Error::Malformed("invalid header field name"),
        httparse::Error::HeaderValue => Error::Malformed("invalid header field value"),
        httparse::Error::NewLine => Error::Malformed("invalid line ending"),
        httparse::Error::Status => Error::Malformed("invalid status code"),
        httparse::Error::Token => Error::Malformed("invalid method or request target"),
        httparse::Error::TooManyHeaders => Error::TooManyHeaders,
        httparse::Error::Version => Error::Malformed("invalid HTTP version"),
    }
}

/// Copy httparse's borrowed fields (slices of `buf`) into one `Headers`
/// (two allocations). When the lines are in canonical wire form (`name:
/// value\r\n`, back to back: what nearly every peer sends) the whole block
/// is copied at once; otherwise field by field, values trimmed of OWS.
pub(crate) fn collect_headers(buf: &[u8], fields: &[httparse::Header<'_>]) -> Headers {
    // slack so a proxy can add its usual fields without reallocating
    const SLACK: usize = 256;
    if let Some(block) = wire_block(buf, fields) {
        return Headers::from_wire_lines(block, fields.iter().map(|h| (h.name.len(), h.value.len())), SLACK);
    }
    let bytes: usize = fields.iter().map(|h| h.name.len() + h.value.len() + 4).sum();
    let mut headers = Headers::with_capacity(fields.len() + 8, bytes + SLACK);
    for h in fields {
        headers.append(h.name, trim_ows(h.value));
    }
    headers
}

/// The bytes of `fields` in `buf` when they lie back to back there, each
/// exactly `name: value\r\n` with a non-empty value that has no trailing
/// OWS; None otherwise (other spacing, bare LF, or slices not from `buf`).
fn wire_block<'a>(buf: &'a [u8], fields: &[httparse::Header<'_>]) -> Option<&'a [u8]> {
    let base = buf.as_ptr() as usize;
    let offset = |p: *const u8| (p as usize).checked_sub(base);
    let start = offset(fields.first()?.name.as_ptr())?;
    let mut at = start;
    for h in fields {
        let name_end = at.checked_add(h.name.len())?;
        let value_at = name_end.checked_add(2)?;
        let value_end = value_at.checked_add(h.value.len())?;
        let line_end = value_end.checked_add(2)?;
        let in_place = offset(h.name.as_ptr())? == at && offset(h.value.as_ptr())? == value_at;
        if !in_place || matches!(h.value.last(), None | Some(b' ' | b'\t')) {
            return None;
        }
        if buf.get(name_end..value_at)? != b": " || buf.get(value_end..line_end)? != b"\r\n" {
            return None;
        }
        at = line_end;
    }
    buf.get(start..at)
}

fn version_of(v: Option<u8>) -> Result<Version, Error> {
    match v {
        Some(0) => Ok(Version::Http10),
        Some(1) => Ok(Version::Http11),
        _ => Err(Error::Malformed("invalid HTTP version")),
    }
}

/// The window httparse sees: a head that does not complete within
/// `max_head_bytes` is too large, so there is no point scanning further.
fn head_window<'a>(buf: &'a [u8], limits: &Limits) -> &'a [u8] {
    buf.get(..limits.max_head_bytes).unwrap_or(buf)
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
pub fn parse_request(buf: &[u8], limits: &Limits) -> Result<Option<(RequestHead, usize)>, Error> {
    let window = head_window(buf, limits);
    with_uninit_slots(limits, |slots| {
        let mut req = httparse::Request::new(&mut []);
        let parsed = req.parse_with_uninit_headers(window, slots);
        match parsed.map_err(map_httparse)? {
            httparse::Status::Complete(n) => {
                let target = req.path.unwrap_or_default();
                if target.len() > limits.max_uri_len {
                    return Err(Error::UriTooLong);
                }
                let head = RequestHead {
                    method: req.method.unwrap_or_default().to_owned(),
                    target: target.to_owned(),
                    version: version_of(req.version)?,
                    headers: collect_headers(window, req.headers),
                };
                Ok(Some((head, n)))
            }
            httparse::Status::Partial => {
                if req.path.is_some_and(|p| p.len() > limits.max_uri_len) {
                    return Err(Error::UriTooLong);
                }
                if request_line_unfinished_past(buf, limits.max_uri_len) {
                    return Err(Error::UriTooLong);
                }
                if buf.len() > limits.max_head_bytes {
                    return Err(Error::HeadTooLarge);
                }
                Ok(None)
            }
        }
    })
}

/// True if the request line (after any leading empty lines) has no LF yet
/// and is already longer than `max_uri_len` plus slack.
fn request_line_unfinished_past(buf: &[u8], max_uri_len: usize) -> bool {
    let start = buf.iter().position(|&b| b != b'\r' && b != b'\n').unwrap_or(buf.len());
    let line = buf.get(start..).unwrap_or_default();
    let limit = max_uri_len.saturating_add(REQUEST_LINE_SLACK);
    if line.len() <= limit {
        return false;
    }
    let probe = line.get(..=limit).unwrap_or(line);
    !probe.contains(&b'\n')
}

/// Parse a response head (status line + fields) from the start of `buf`.
/// Same contract as `parse_request` (the URI limit does not apply).
pub fn parse_response(buf: &[u8], limits: &Limits) -> Result<Option<(ResponseHead, usize)>, Error> {
    let window = head_window(buf, limits);
    with_uninit_slots(limits, |slots| {
        let mut res = httparse::Response::new(&mut []);
        let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut res, window, slots);
        match parsed.map_err(map_httparse)? {
            httparse::Status::Complete(n) => {
                let status = res.code.unwrap_or_default();
                if status < 100 {
                    return Err(Error::Malformed("invalid status code"));
                }
                let head = ResponseHead {
                    version: version_of(res.version)?,
                    status,
                    reason: res.reason.unwrap_or_default().to_owned(),
                    headers: collect_headers(window, res.headers),
                };
                Ok(Some((head, n)))
            }
            httparse::Status::Partial => {
                if buf.len() > limits.max_head_bytes {
                    return Err(Error::HeadTooLarge);
                }
                Ok(None)
            }
        }
    })
}
