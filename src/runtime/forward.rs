//! Sending a request to an `http` backend: the upstream head (hop-by-hop
//! fields dropped, framing recomputed, forwarding fields added) and the
//! upstream connection it goes on.

use super::client::Client;
use super::exchange::is_idempotent;
use super::request_body::Sink;
use super::worker::Worker;
use crate::lua::MessageState;
use crate::pipeline::{HttpUpstream, ProxyError};
use http1::{BodyKind, Headers, RequestHead, Version};
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
        let route_path = ex.ctx.as_ref().map(|x| x.route_path.clone()).unwrap_or_else(|| "/".into());
        let target = upstream.target(&route_path, state.query.as_deref());
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
        let up_head = upstream_head(&c.peer_ip, state.method, state.headers, target, kind, upstream, &ex.request_id);
        self.send_upstream_head(c, addr, &up_head, retryable);
        if let (Some(body), Some(up)) = (buffered, c.up.as_mut()) {
            up.wbuf.vec(&mut self.bufs).extend_from_slice(&body);
        }
    }

    /// Attach an upstream connection (pooled or new) and queue the head.
    pub(crate) fn send_upstream_head(&mut self, c: &mut Client, addr: SocketAddr, head: &RequestHead, retryable: bool) {
        let mut up = match self.pooled_upstream(addr, c.key) {
            Some(up) => up,
            None => match self.new_upstream(addr, c.key) {
                Ok(up) => up,
                Err(e) => {
                    return self
                        .fail_exchange(c, ProxyError::BadGateway(format!("cannot connect to upstream {addr}: {e}")))
                }
            },
        };
        let ex = c.ex.as_mut().expect("exchange");
        ex.up_since = self.now;
        let out = up.wbuf.vec(&mut self.bufs);
        let start = out.len();
        http1::write_request_head(head, out);
        if up.reused && retryable {
            ex.replay = Some(out[start..].to_vec());
        }
        c.up = Some(up);
    }
}

/// Build the head we send upstream.
fn upstream_head(
    peer_ip: &str,
    method: String,
    mut h: Headers,
    target: String,
    kind: BodyKind,
    upstream: &HttpUpstream,
    request_id: &str,
) -> RequestHead {
    let client_host = h.get("host").map(|v| v.to_vec());
    http1::remove_hop_by_hop(&mut h);
    h.remove("content-length");
    h.remove("expect");
    // set Host after the hop-by-hop removal ("Connection: host" must not drop it)
    match (&client_host, upstream.preserve_host) {
        (Some(host), true) => h.set("Host", host),
        _ => h.set("Host", upstream.host_header.as_bytes()),
    }
    match h.get("x-forwarded-for") {
        Some(prev) => {
            let mut v = prev.to_vec();
            v.extend_from_slice(b", ");
            v.extend_from_slice(peer_ip.as_bytes());
            h.set("X-Forwarded-For", &v);
        }
        None => h.append("X-Forwarded-For", peer_ip.as_bytes()),
    }
    h.set("X-Forwarded-Proto", b"http");
    if let Some(host) = client_host {
        h.set("X-Forwarded-Host", &host);
    }
    append_via(&mut h);
    h.set("X-Request-Id", request_id.as_bytes());
    match kind {
        BodyKind::Length(n) => h.append("Content-Length", super::fmt::decimal(n).as_bytes()),
        BodyKind::Chunked => h.append("Transfer-Encoding", b"chunked"),
        _ => {}
    }
    RequestHead { method, target, version: Version::Http11, headers: h }
}

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
            v.extend_from_slice(b", 1.1 harmony");
            h.set("Via", &v);
        }
        None => h.append("Via", b"1.1 harmony"),
    }
}
