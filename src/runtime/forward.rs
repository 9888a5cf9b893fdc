//! Sending a request to an `http` backend: the upstream head (hop-by-hop
//! fields dropped, framing recomputed, forwarding fields added) and the
//! upstream connection it goes on.

use super::client::Client;
use super::exchange::is_idempotent;
use super::request_body::Sink;
use super::upstream::UpstreamConn;
use super::worker::Worker;
use crate::lua::MessageState;
use crate::pipeline::{HttpUpstream, ProxyError};
use http1::{BodyKind, Headers, Version};
use std::net::SocketAddr;

impl Worker {
    /// Forward the request: head now, body streamed (or the buffered body at once).
    pub(crate) fn dispatch_http(
        &mut self,
        c: &mut Client,
        state: MessageState,
        buffered: Option<Vec<u8>>,
        upstream: &HttpUpstream,
    ) {
        let ex = c.ex.as_mut().expect("exchange");
        let addr = upstream.pick();
        ex.up_addr = Some(addr);
        ex.up_timeout = upstream.timeout;
        let kind = match &buffered {
            Some(b) => BodyKind::Length(b.len() as u64),
            None => ex.kind,
        };
        let streaming = buffered.is_none() && ex.has_body;
        if streaming {
            ex.sink = Sink::Upstream { chunked: matches!(kind, BodyKind::Chunked) };
            ex.continue_owed = ex.expects_continue;
        }
        let retryable = !ex.has_body && buffered.as_ref().is_none_or(|b| b.is_empty()) && is_idempotent(&state.method);
        let Some(mut up) = self.attach_upstream(c, addr) else { return };
        let ex = c.ex.as_mut().expect("exchange");
        ex.up_since = self.now;
        let out = up.wbuf.vec(&mut self.bufs);
        let start = out.len();
        let route_path = ex.ctx.as_ref().map_or("/", |x| x.route_path.as_str());
        let target = upstream.target_parts(route_path, state.query.as_deref());
        let mut headers = state.headers;
        write_upstream_head(out, &c.peer_ip, &state.method, &mut headers, &target, kind, upstream, &ex.request_id);
        if up.reused && retryable {
            ex.replay = Some(out[start..].to_vec());
        }
        if let Some(body) = buffered {
            out.extend_from_slice(&body);
        }
        c.up = Some(up);
    }

    /// An upstream connection to `addr`, pooled or new; None if none could
    /// be had (the exchange has then failed with 502).
    fn attach_upstream(&mut self, c: &mut Client, addr: SocketAddr) -> Option<UpstreamConn> {
        if let Some(up) = self.pooled_upstream(addr, c.key) {
            return Some(up);
        }
        match self.new_upstream(addr, c.key) {
            Ok(up) => Some(up),
            Err(e) => {
                self.fail_exchange(c, ProxyError::BadGateway(format!("cannot connect to upstream {addr}: {e}")));
                None
            }
        }
    }
}

/// Write the head we send upstream: the client's fields less the hop-by-hop
/// ones and those we set (framing, Host, forwarding fields), then ours,
/// written straight into `out` rather than stored in `h` first.
#[allow(clippy::too_many_arguments)]
fn write_upstream_head(
    out: &mut Vec<u8>,
    peer_ip: &str,
    method: &str,
    h: &mut Headers,
    target: &[&str],
    kind: BodyKind,
    upstream: &HttpUpstream,
    request_id: &str,
) {
    // read Host before the hop-by-hop removal ("Connection: host" must not drop it)
    let client_host = h.get("host").map(<[u8]>::to_vec);
    http1::remove_hop_by_hop(h);
    let h = &*h;
    http1::write_request_line(method, target, Version::Http11, out);
    let has_host = client_host.is_some();
    h.write_lines_except(out, |name| is_set_by_proxy(name, has_host));
    let host = match (&client_host, upstream.preserve_host) {
        (Some(host), true) => host.as_slice(),
        _ => upstream.host_header.as_bytes(),
    };
    http1::write_field("Host", &[host], out);
    match h.get("x-forwarded-for") {
        Some(prev) => http1::write_field("X-Forwarded-For", &[prev, b", ", peer_ip.as_bytes()], out),
        None => http1::write_field("X-Forwarded-For", &[peer_ip.as_bytes()], out),
    }
    http1::write_field("X-Forwarded-Proto", &[b"http"], out);
    if let Some(host) = &client_host {
        http1::write_field("X-Forwarded-Host", &[host], out);
    }
    match h.get("via") {
        Some(prev) => http1::write_field("Via", &[prev, VIA_SUFFIX], out),
        None => http1::write_field("Via", &[VIA], out),
    }
    http1::write_field("X-Request-Id", &[request_id.as_bytes()], out);
    match kind {
        BodyKind::Length(n) => http1::write_field("Content-Length", &[super::fmt::decimal(n).as_bytes()], out),
        BodyKind::Chunked => http1::write_field("Transfer-Encoding", &[b"chunked"], out),
        _ => {}
    }
    out.extend_from_slice(b"\r\n");
}

/// Fields of the client's request the proxy writes itself upstream (each
/// once, after the client's other fields): framing, Host, forwarding fields;
/// `X-Forwarded-Host` only when the request has a Host to put there (else
/// the client's, or a script's, passes). The length picks the one
/// candidate, so most fields cost one comparison.
fn is_set_by_proxy(name: &[u8], has_host: bool) -> bool {
    let ours: &str = match name.len() {
        3 => "via",
        4 => "host",
        6 => "expect",
        12 => "x-request-id",
        14 => "content-length",
        15 => "x-forwarded-for",
        16 if has_host => "x-forwarded-host",
        17 => "x-forwarded-proto",
        _ => return false,
    };
    ours.as_bytes().eq_ignore_ascii_case(name)
}

/// Our hop in `Via` (RFC 9110 §7.6.3), alone and after earlier hops.
const VIA: &[u8] = b"1.1 harmony";
const VIA_SUFFIX: &[u8] = b", 1.1 harmony";

/// The authority of an absolute-form target (`http://host:port/...`, scheme
/// case-insensitive), or None for origin-form.
pub(crate) fn absolute_form_authority(target: &str) -> Option<&str> {
    if target.starts_with('/') {
        return None; // origin-form, the usual case
    }
    let (scheme, rest) = target.split_once("://")?;
    if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
        return None;
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    (!authority.is_empty() && !authority.contains('@')).then_some(authority)
}

/// Add our hop to `Via` (RFC 9110 §7.6.3).
pub(crate) fn append_via(h: &mut Headers) {
    match h.get("via") {
        Some(prev) => {
            let mut v = prev.to_vec();
            v.extend_from_slice(VIA_SUFFIX);
            h.set("Via", &v);
        }
        None => h.append("Via", VIA),
    }
}
