//! Listening sockets: non-blocking, SO_REUSEADDR, and SO_REUSEPORT when
//! several workers share a port (the kernel spreads accepts).

use super::worker::Listener;
use super::RuntimeError;
use crate::pipeline::Generation;
use socket2::{Domain, Protocol, Socket, Type};
use std::net::SocketAddr;

pub(crate) fn bind(addr: SocketAddr, reuse_port: bool) -> std::io::Result<mio::net::TcpListener> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    sock.set_reuse_address(true)?;
    if reuse_port {
        sock.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    sock.listen(1024)?;
    Ok(mio::net::TcpListener::from_std(sock.into()))
}

/// One listener per network with an HTTP listener, and one per network with
/// a DICOM listener, for one worker.
pub(crate) fn bind_all(gen: &Generation, reuse_port: bool) -> Result<Vec<Listener>, RuntimeError> {
    let mut out = Vec::new();
    for n in &gen.networks {
        for (addr, dicom) in [(n.http, false), (n.dicom, true)] {
            let Some(addr) = addr else { continue };
            let sock = bind(addr, reuse_port).map_err(|source| RuntimeError::Bind {
                network: n.name.clone(),
                addr,
                source,
            })?;
            out.push(Listener { sock, addr, net: n.name.as_str().into(), dicom });
        }
    }
    Ok(out)
}
