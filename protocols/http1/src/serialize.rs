use crate::{Headers, RequestHead, ResponseHead};

/// Append `METHOD target HTTP/1.x\r\n` + fields + `\r\n` to `out`.
pub fn write_request_head(head: &RequestHead, out: &mut Vec<u8>) { todo!() }

/// Append `HTTP/1.x status reason\r\n` + fields + `\r\n` to `out`
/// (the reason from `head.reason`, or `reason_phrase(status)` if empty).
pub fn write_response_head(head: &ResponseHead, out: &mut Vec<u8>) { todo!() }

/// Append a chunk-size line for `len` payload bytes (`{len:x}\r\n`). `len > 0`.
pub fn write_chunk_header(len: usize, out: &mut Vec<u8>) { todo!() }

/// Append the CRLF that ends a chunk's payload.
pub fn write_chunk_end(out: &mut Vec<u8>) { todo!() }

/// Append the last chunk `0\r\n`, the trailer fields if any, and the final CRLF.
pub fn write_last_chunk(trailers: Option<&Headers>, out: &mut Vec<u8>) { todo!() }

/// Standard reason phrase for a status code ("" if unknown).
pub fn reason_phrase(status: u16) -> &'static str { todo!() }
