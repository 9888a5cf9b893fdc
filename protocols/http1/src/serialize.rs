use crate::{Headers, RequestHead, ResponseHead, Version};
use std::io::Write;

fn version_str(v: Version) -> &'static [u8] {
    match v {
        Version::Http10 => b"HTTP/1.0",
        Version::Http11 => b"HTTP/1.1",
    }
}

fn write_fields(headers: &Headers, out: &mut Vec<u8>) {
    headers.write_lines(out);
}

/// Append `METHOD target HTTP/1.x\r\n` + fields + `\r\n` to `out`.
pub fn write_request_head(head: &RequestHead, out: &mut Vec<u8>) {
    write_request_line(&head.method, &[&head.target], head.version, out);
    write_fields(&head.headers, out);
    out.extend_from_slice(b"\r\n");
}

/// Append `METHOD target HTTP/1.x\r\n` to `out`, the target in `target`'s
/// pieces written back to back: the start of a head whose fields the caller
/// writes (`Headers::write_lines_except`, `write_field`), ending it with an
/// empty line.
pub fn write_request_line(method: &str, target: &[&str], version: Version, out: &mut Vec<u8>) {
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    for piece in target {
        out.extend_from_slice(piece.as_bytes());
    }
    out.push(b' ');
    out.extend_from_slice(version_str(version));
    out.extend_from_slice(b"\r\n");
}

/// Append one field line, `name: value\r\n`, its value in `parts` (written
/// back to back). The caller guarantees a valid name and value.
pub fn write_field(name: &str, parts: &[&[u8]], out: &mut Vec<u8>) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    for part in parts {
        out.extend_from_slice(part);
    }
    out.extend_from_slice(b"\r\n");
}

/// Append `HTTP/1.x status reason\r\n` + fields + `\r\n` to `out`
/// (the reason from `head.reason`, or `reason_phrase(status)` if empty).
pub fn write_response_head(head: &ResponseHead, out: &mut Vec<u8>) {
    write_status_line(head.version, head.status, &head.reason, out);
    write_fields(&head.headers, out);
    out.extend_from_slice(b"\r\n");
}

/// Append `HTTP/1.x status reason\r\n` (`reason_phrase(status)` when
/// `reason` is empty): the start of a head whose fields the caller writes,
/// ending it with an empty line.
pub fn write_status_line(version: Version, status: u16, reason: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(version_str(version));
    match status {
        0..=999 => {
            let digit = |d: u16| b'0' + (d % 10) as u8;
            out.extend_from_slice(&[b' ', digit(status / 100), digit(status / 10), digit(status), b' ']);
        }
        _ => {
            // Writing to a Vec cannot fail.
            let _ = write!(out, " {status} ");
        }
    }
    let reason = if reason.is_empty() { reason_phrase(status) } else { reason };
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Append a chunk-size line for `len` payload bytes (`{len:x}\r\n`). `len > 0`.
pub fn write_chunk_header(len: usize, out: &mut Vec<u8>) {
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{len:x}\r\n");
}

/// Append the CRLF that ends a chunk's payload.
pub fn write_chunk_end(out: &mut Vec<u8>) {
    out.extend_from_slice(b"\r\n");
}

/// Append the last chunk `0\r\n`, the trailer fields if any, and the final CRLF.
pub fn write_last_chunk(trailers: Option<&Headers>, out: &mut Vec<u8>) {
    out.extend_from_slice(b"0\r\n");
    if let Some(trailers) = trailers {
        write_fields(trailers, out);
    }
    out.extend_from_slice(b"\r\n");
}

/// Standard reason phrase for a status code ("" if unknown).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        103 => "Early Hints",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        305 => "Use Proxy",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        418 => "I'm a teapot",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        425 => "Too Early",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        511 => "Network Authentication Required",
        _ => "",
    }
}
