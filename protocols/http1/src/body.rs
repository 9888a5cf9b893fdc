use crate::{Error, Headers, Limits, RequestHead, ResponseHead};
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
pub fn request_body_kind(head: &RequestHead, limits: &Limits) -> Result<BodyKind, Error> { todo!() }

/// Framing of a response body to a request with method `request_method`.
/// HEAD requests and 1xx/204/304 responses have no body whatever the fields
/// say. Both CL and TE → `Malformed` (smuggling guard). TE ending in chunked →
/// `Chunked`; TE not ending in chunked → `UntilClose`. Invalid/differing CL →
/// `Malformed`. Neither → `UntilClose`. (Body limits are not applied to
/// responses here; the caller streams them.)
pub fn response_body_kind(head: &ResponseHead, request_method: &str) -> Result<BodyKind, Error> { todo!() }

/// One step of body decoding: `consumed` bytes of the input were used;
/// `data` (a sub-range of `input[..consumed]`) is payload to pass on (may be
/// empty); `done` = the body ended (for chunked: after the trailer section).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub consumed: usize,
    pub data: Range<usize>,
    pub done: bool,
}

/// Incremental body decoder: feed it whatever bytes you have, as many times as
/// needed; it never needs more than one chunk-size line or trailer section
/// buffered by the caller (chunk-size lines are limited to 4 KiB including
/// extensions; the trailer section to `max_head_bytes`). Chunk extensions are
/// ignored. Enforces `max_body_bytes` on the decoded payload (`BodyTooLarge`).
#[derive(Debug)]
pub struct BodyDecoder { /* private */ }

impl BodyDecoder {
    pub fn new(kind: BodyKind, limits: &Limits) -> Self { todo!() }
    /// Decode from `input`. Returns after at most one payload range; the
    /// caller loops until `consumed == 0` (needs more input) or `done`.
    /// For `Empty`/`Length(0)` the first call returns `done` with nothing consumed.
    pub fn decode(&mut self, input: &[u8]) -> Result<Step, Error> { todo!() }
    /// The peer closed the connection: Ok if that legitimately ends the body
    /// (`UntilClose`, or already done), else `Malformed("incomplete body")`.
    pub fn finish_eof(&mut self) -> Result<(), Error> { todo!() }
    pub fn is_done(&self) -> bool { todo!() }
    /// Trailer fields received after the last chunk, once `done`.
    pub fn take_trailers(&mut self) -> Option<Headers> { todo!() }
    /// Payload bytes decoded so far.
    pub fn decoded_len(&self) -> u64 { todo!() }
}
