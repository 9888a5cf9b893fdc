use crate::head::{collect_headers, with_header_slots};
use crate::headers::trim_ows;
use crate::{Error, Headers, Limits, RequestHead, ResponseHead, Version};
use std::ops::Range;

/// How a message body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body at all.
    Empty,
    /// Exactly this many bytes (may be 0).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Response only: body runs until the connection closes.
    UntilClose,
}

/// Framing of a request body. Errors: both Content-Length and
/// Transfer-Encoding (`Malformed`); Transfer-Encoding in an HTTP/1.0 request
/// (`Malformed`); last transfer coding not chunked, or chunked applied twice
/// (`Malformed`); any coding other than a lone `chunked`
/// (`UnsupportedTransferCoding`); several Content-Length values that differ, or
/// one that is not 1*DIGIT (`Malformed`); declared length over
/// `limits.max_body_bytes` (`BodyTooLarge`). No framing fields = `Empty`.
pub fn request_body_kind(head: &RequestHead, limits: &Limits) -> Result<BodyKind, Error> {
    let headers = &head.headers;
    let has_te = headers.contains("transfer-encoding");
    let has_cl = headers.contains("content-length");
    if has_te && has_cl {
        return Err(Error::Malformed("both Content-Length and Transfer-Encoding"));
    }
    if has_te {
        if head.version == Version::Http10 {
            return Err(Error::Malformed("Transfer-Encoding in HTTP/1.0 request"));
        }
        let codings = TransferCodings::of(headers);
        if !codings.last_is_chunked {
            return Err(Error::Malformed("final transfer coding is not chunked"));
        }
        if codings.chunked > 1 {
            return Err(Error::Malformed("chunked applied more than once"));
        }
        if codings.other > 0 {
            return Err(Error::UnsupportedTransferCoding);
        }
        return Ok(BodyKind::Chunked);
    }
    if has_cl {
        let len = content_length(headers)?;
        if len > limits.max_body_bytes {
            return Err(Error::BodyTooLarge);
        }
        return Ok(BodyKind::Length(len));
    }
    Ok(BodyKind::Empty)
}

/// Framing of a response body to a request with method `request_method`.
/// HEAD requests and 1xx/204/304 responses have no body whatever the fields
/// say. Both CL and TE → `Malformed` (smuggling guard). TE ending in chunked →
/// `Chunked`; TE not ending in chunked → `UntilClose`. Invalid/differing CL →
/// `Malformed`. Neither → `UntilClose`. (Body limits are not applied to
/// responses here; the caller streams them.)
pub fn response_body_kind(head: &ResponseHead, request_method: &str) -> Result<BodyKind, Error> {
    if request_method == "HEAD" || head.is_informational() || matches!(head.status, 204 | 304) {
        return Ok(BodyKind::Empty);
    }
    let headers = &head.headers;
    let has_te = headers.contains("transfer-encoding");
    let has_cl = headers.contains("content-length");
    if has_te && has_cl {
        return Err(Error::Malformed("both Content-Length and Transfer-Encoding"));
    }
    if has_te {
        return Ok(if TransferCodings::of(headers).last_is_chunked { BodyKind::Chunked } else { BodyKind::UntilClose });
    }
    if has_cl {
        return Ok(BodyKind::Length(content_length(headers)?));
    }
    Ok(BodyKind::UntilClose)
}

/// Summary of the transfer-coding list across all Transfer-Encoding fields.
struct TransferCodings {
    chunked: usize,
    other: usize,
    last_is_chunked: bool,
}

impl TransferCodings {
    fn of(headers: &Headers) -> Self {
        let mut codings = Self { chunked: 0, other: 0, last_is_chunked: false };
        let elements = headers
            .get_all("transfer-encoding")
            .flat_map(|v| v.split(|&b| b == b','))
            .map(trim_ows)
            // Empty list elements are allowed and ignored (RFC 9110 §5.6.1).
            .filter(|e| !e.is_empty());
        for element in elements {
            let chunked = element.eq_ignore_ascii_case(b"chunked");
            if chunked {
                codings.chunked += 1;
            } else {
                codings.other += 1;
            }
            codings.last_is_chunked = chunked;
        }
        codings
    }
}

/// The one Content-Length value: each field may be a list (`5, 5`) and
/// fields may repeat, but every element must be 1*DIGIT and all must agree.
fn content_length(headers: &Headers) -> Result<u64, Error> {
    let mut found: Option<u64> = None;
    for value in headers.get_all("content-length") {
        for element in value.split(|&b| b == b',') {
            let n = parse_decimal(trim_ows(element)).ok_or(Error::Malformed("invalid Content-Length"))?;
            match found {
                Some(prev) if prev != n => return Err(Error::Malformed("conflicting Content-Length values")),
                _ => found = Some(n),
            }
        }
    }
    found.ok_or(Error::Malformed("invalid Content-Length"))
}

fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// Longest chunk-size line (size, extensions, CRLF) the decoder accepts.
const MAX_CHUNK_LINE: usize = 4096;

/// One step of body decoding: `consumed` bytes of the input were used;
/// `data` (a sub-range of `input[..consumed]`) is payload to pass on (may be
/// empty); `done` = the body ended (for chunked: after the trailer section).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Bytes of the input used by this step; the caller drops them.
    pub consumed: usize,
    /// Payload bytes, as a range into the input.
    pub data: Range<usize>,
    /// The body has ended.
    pub done: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Fixed length: this many payload bytes still to come.
    Length(u64),
    /// Everything is payload until EOF.
    UntilClose,
    /// Expecting a chunk-size line.
    ChunkSize,
    /// Inside a chunk: this many payload bytes still to come.
    ChunkData(u64),
    /// Expecting the CRLF that ends a chunk's payload.
    ChunkEnd,
    /// After the last chunk: expecting the trailer section.
    Trailers,
    /// The body has ended.
    Done,
}

/// Incremental body decoder: feed it whatever bytes you have, as many times as
/// needed; it never needs more than one chunk-size line or trailer section
/// buffered by the caller (chunk-size lines are limited to 4 KiB including
/// extensions; the trailer section to `max_head_bytes`). Chunk extensions are
/// ignored. Enforces `max_body_bytes` on the decoded payload (`BodyTooLarge`).
#[derive(Debug)]
pub struct BodyDecoder {
    state: State,
    decoded: u64,
    max_body: u64,
    limits: Limits,
    trailers: Option<Headers>,
}

impl BodyDecoder {
    /// A decoder for a body framed as `kind`, bounded by `limits`.
    pub fn new(kind: BodyKind, limits: &Limits) -> Self {
        let state = match kind {
            BodyKind::Empty | BodyKind::Length(0) => State::Done,
            BodyKind::Length(n) => State::Length(n),
            BodyKind::Chunked => State::ChunkSize,
            BodyKind::UntilClose => State::UntilClose,
        };
        Self { state, decoded: 0, max_body: limits.max_body_bytes, limits: limits.clone(), trailers: None }
    }

    /// Decode from `input`. Returns after at most one payload range; the
    /// caller loops until `consumed == 0` (needs more input) or `done`.
    /// For `Empty`/`Length(0)` the first call returns `done` with nothing consumed.
    pub fn decode(&mut self, input: &[u8]) -> Result<Step, Error> {
        let mut pos = 0;
        loop {
            let rest = input.get(pos..).unwrap_or_default();
            match self.state {
                State::Done => return Ok(self.step(pos, pos..pos)),
                State::Length(remaining) => {
                    if self.decoded.saturating_add(remaining) > self.max_body {
                        return Err(Error::BodyTooLarge);
                    }
                    let n = take(remaining, rest.len());
                    self.state = match remaining - n as u64 {
                        0 => State::Done,
                        left => State::Length(left),
                    };
                    return Ok(self.data_step(pos, n));
                }
                State::UntilClose => {
                    if self.decoded.saturating_add(rest.len() as u64) > self.max_body {
                        return Err(Error::BodyTooLarge);
                    }
                    return Ok(self.data_step(pos, rest.len()));
                }
                State::ChunkData(remaining) => {
                    let n = take(remaining, rest.len());
                    self.state = match remaining - n as u64 {
                        0 => State::ChunkEnd,
                        left => State::ChunkData(left),
                    };
                    return Ok(self.data_step(pos, n));
                }
                State::ChunkSize => match chunk_size_line(rest)? {
                    None => return Ok(self.step(pos, pos..pos)),
                    Some((size, used)) => {
                        pos += used;
                        if self.decoded.saturating_add(size) > self.max_body {
                            return Err(Error::BodyTooLarge);
                        }
                        self.state = if size == 0 { State::Trailers } else { State::ChunkData(size) };
                    }
                },
                State::ChunkEnd => match rest {
                    [b'\r', b'\n', ..] => {
                        pos += 2;
                        self.state = State::ChunkSize;
                    }
                    [] | [b'\r'] => return Ok(self.step(pos, pos..pos)),
                    _ => return Err(Error::Malformed("missing CRLF after chunk data")),
                },
                State::Trailers => match self.trailer_section(rest)? {
                    None => return Ok(self.step(pos, pos..pos)),
                    Some(used) => {
                        pos += used;
                        self.state = State::Done;
                    }
                },
            }
        }
    }

    /// The peer closed the connection: Ok if that legitimately ends the body
    /// (`UntilClose`, or already done), else `Malformed("incomplete body")`.
    pub fn finish_eof(&mut self) -> Result<(), Error> {
        match self.state {
            State::UntilClose | State::Done => {
                self.state = State::Done;
                Ok(())
            }
            _ => Err(Error::Malformed("incomplete body")),
        }
    }

    /// True once the body has ended (nothing more will be consumed).
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Trailer fields received after the last chunk, once `done`.
    /// `None` if there were none (or they were already taken).
    pub fn take_trailers(&mut self) -> Option<Headers> {
        self.trailers.take()
    }

    /// Payload bytes decoded so far.
    pub fn decoded_len(&self) -> u64 {
        self.decoded
    }

    fn step(&self, consumed: usize, data: Range<usize>) -> Step {
        Step { consumed, data, done: self.state == State::Done }
    }

    /// A step that hands out `n` payload bytes starting at `pos`.
    fn data_step(&mut self, pos: usize, n: usize) -> Step {
        self.decoded = self.decoded.saturating_add(n as u64);
        self.step(pos + n, pos..pos + n)
    }

    /// Parse a complete trailer section at the start of `input`; `None` if
    /// it is not all there yet.
    fn trailer_section(&mut self, input: &[u8]) -> Result<Option<usize>, Error> {
        let max = self.limits.max_head_bytes;
        let window = input.get(..max).unwrap_or(input);
        let parsed = with_header_slots(&self.limits, |slots| match httparse::parse_headers(window, slots) {
            Ok(httparse::Status::Complete((n, fields))) => {
                Ok(Some((n, (!fields.is_empty()).then(|| collect_headers(window, fields)))))
            }
            Ok(httparse::Status::Partial) => Ok(None),
            Err(httparse::Error::TooManyHeaders) => Err(Error::TooManyHeaders),
            Err(_) => Err(Error::Malformed("invalid trailer section")),
        })
        .map_err(|e| match e {
            Error::TooManyHeaders => Error::Malformed("too many trailer fields"),
            other => other,
        })?;
        match parsed {
            Some((n, trailers)) => {
                // httparse accepts bare LF; chunked framing here is CRLF only.
                if has_bare_lf(window.get(..n).unwrap_or_default()) {
                    return Err(Error::Malformed("bare LF in trailer section"));
                }
                self.trailers = trailers;
                Ok(Some(n))
            }
            None if input.len() > max => Err(Error::Malformed("trailer section too large")),
            None => Ok(None),
        }
    }
}

/// How many of `avail` bytes belong to a payload with `remaining` bytes left.
fn take(remaining: u64, avail: usize) -> usize {
    usize::try_from(remaining).map_or(avail, |r| r.min(avail))
}

fn has_bare_lf(bytes: &[u8]) -> bool {
    bytes.iter().enumerate().any(|(i, &b)| b == b'\n' && (i == 0 || bytes.get(i - 1) != Some(&b'\r')))
}

/// Parse `chunk-size [BWS] [; ext] CRLF` at the start of `input`:
/// `Some((size, line_len))`, or `None` if the line is not complete yet.
fn chunk_size_line(input: &[u8]) -> Result<Option<(u64, usize)>, Error> {
    let window = input.get(..MAX_CHUNK_LINE).unwrap_or(input);
    let Some(lf) = window.iter().position(|&b| b == b'\n') else {
        if input.len() >= MAX_CHUNK_LINE {
            return Err(Error::Malformed("chunk size line too long"));
        }
        return Ok(None);
    };
    let line = match window.get(..lf) {
        Some([line @ .., b'\r']) => line,
        _ => return Err(Error::Malformed("chunk size line not ended by CRLF")),
    };
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    let (hex, after) = line.split_at(digits);
    if hex.is_empty() {
        return Err(Error::Malformed("invalid chunk size"));
    }
    let size = hex.iter().try_fold(0u64, |acc, &b| {
        let digit = char::from(b).to_digit(16)?;
        acc.checked_mul(16)?.checked_add(u64::from(digit))
    });
    let size = size.ok_or(Error::Malformed("chunk size overflow"))?;
    match trim_ows(after) {
        [] => {}
        [b';', ext @ ..] if ext.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b) || b >= 0x80) => {}
        _ => return Err(Error::Malformed("invalid chunk size line")),
    }
    Ok(Some((size, lf + 1)))
}
