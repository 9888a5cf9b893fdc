use std::fmt;

/// Everything that can be wrong with an HTTP/1.1 message. Each variant maps
/// to the status a server answers a bad *request* with; for a bad *response*
/// from an upstream the caller answers 502 instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Syntax or framing violation (RFC 9112): 400. The text says what.
    Malformed(&'static str),
    /// Request target longer than `Limits::max_uri_len`: 414.
    UriTooLong,
    /// Request line + header section longer than `Limits::max_head_bytes`: 431.
    HeadTooLarge,
    /// More header fields than `Limits::max_headers`: 431.
    TooManyHeaders,
    /// Declared or streamed body larger than `Limits::max_body_bytes`: 413.
    BodyTooLarge,
    /// A transfer coding other than `chunked` (e.g. `gzip, chunked`): 501.
    UnsupportedTransferCoding,
}

impl Error {
    /// The status a server should answer a request that failed this way with.
    pub fn status(&self) -> u16 {
        match self {
            Error::Malformed(_) => 400,
            Error::UriTooLong => 414,
            Error::HeadTooLarge | Error::TooManyHeaders => 431,
            Error::BodyTooLarge => 413,
            Error::UnsupportedTransferCoding => 501,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Malformed(what) => write!(f, "malformed HTTP/1 message: {what}"),
            Error::UriTooLong => f.write_str("request target too long"),
            Error::HeadTooLarge => f.write_str("message head too large"),
            Error::TooManyHeaders => f.write_str("too many header fields"),
            Error::BodyTooLarge => f.write_str("message body too large"),
            Error::UnsupportedTransferCoding => f.write_str("unsupported transfer coding"),
        }
    }
}

impl std::error::Error for Error {}
