//! Sans-IO HTTP/1.1 for Harmony: message heads (via httparse), body framing
//! (Content-Length, chunked with trailers, close-delimited), a serializer, and
//! limits. No sockets, no clock: bytes in, values out.
//!
//! The caller owns all buffers. Parsing returns `Ok(None)` while a head is
//! incomplete ("incomplete" is a value, not an error); errors are few and each
//! knows the HTTP status a server should answer with.

mod body;
mod error;
mod head;
mod headers;
mod serialize;
#[cfg(test)]
mod tests;

pub use body::{request_body_kind, response_body_kind, BodyDecoder, BodyKind, Step};
pub use error::Error;
pub use head::{parse_request, parse_response, Limits, RequestHead, ResponseHead, Version};
pub use headers::{is_hop_by_hop, is_valid_field_name, is_valid_field_value, remove_hop_by_hop, Headers};
pub use serialize::{
    reason_phrase, write_chunk_end, write_chunk_header, write_field, write_last_chunk, write_request_head,
    write_request_line, write_response_head, write_status_line,
};
