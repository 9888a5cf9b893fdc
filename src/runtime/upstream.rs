//! Upstream connections: non-blocking connect on the worker's poll, and a
//! keep-alive pool per upstream address.

use super::buf::{BufPool, InBuf, OutBuf};
use mio::net::TcpStream;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

pub(crate) struct UpstreamConn {
    pub(crate) sock: TcpStream,
    /// Slab key (and poll token) of this connection.
    pub(crate) key: usize,
    pub(crate) addr: SocketAddr,
    pub(crate) rd: bool,
    pub(crate) wr: bool,
    pub(crate) connected: bool,
    pub(crate) eof: bool,
    /// The peer's FIN was reported: read until EOF even after a short read.
    pub(crate) hup: bool,
    /// Writing failed (the upstream stopped reading, e.g. after an early
    /// answer): discard further request bytes but keep reading its response.
    pub(crate) write_closed: bool,
    pub(crate) rbuf: InBuf,
    pub(crate) wbuf: OutBuf,
    /// Taken from the pool (a stale keep-alive connection is possible).
    pub(crate) reused: bool,
    pub(crate) idle_deadline: Instant,
    /// A timer entry for this key is in the heap.
    pub(crate) armed: bool,
}

impl UpstreamConn {
    pub(crate) fn connect(addr: SocketAddr, key: usize, now: Instant) -> io::Result<Self> {
        let sock = TcpStream::connect(addr)?;
        sock.set_nodelay(true)?;
        Ok(UpstreamConn {
            sock,
            key,
            addr,
            rd: false,
            wr: false,
            connected: false,
            eof: false,
            hup: false,
            write_closed: false,
            rbuf: InBuf::default(),
            wbuf: OutBuf::default(),
            reused: false,
            idle_deadline: now,
            armed: false,
        })
    }

    /// After a writable/error event on a connecting socket: did it connect?
    pub(crate) fn check_connected(&mut self) -> io::Result<bool> {
        if let Some(e) = self.sock.take_error()? {
            return Err(e);
        }
        match self.sock.peer_addr() {
            Ok(_) => {
                self.connected = true;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Nothing unread and no FIN pending: safe to reuse for another request.
    /// Peeks only when readiness says there may be something (a read that
    /// exactly filled the buffer, or a FIN seen with the last bytes).
    pub(crate) fn idle_clean(&self) -> bool {
        if self.hup || self.eof || self.write_closed {
            return false;
        }
        if !self.rd {
            return true;
        }
        let mut b = [0u8; 1];
        matches!(self.sock.peek(&mut b), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    pub(crate) fn release_buffers(&mut self, pool: &mut BufPool) {
        self.rbuf.release(pool);
        self.wbuf.release(pool);
    }
}

/// Idle keep-alive connections, per upstream address, most recent last.
pub(crate) struct Pool {
    /// Per address; a few upstream addresses, searched linearly (no hashing per request).
    idle: Vec<(SocketAddr, Vec<UpstreamConn>)>,
    pub(crate) max_per_addr: usize,
}

impl Pool {
    pub(crate) fn new(max_per_addr: usize) -> Self {
        Pool { idle: Vec::new(), max_per_addr }
    }

    fn list(&mut self, addr: SocketAddr) -> Option<&mut Vec<UpstreamConn>> {
        self.idle.iter_mut().find(|(a, _)| *a == addr).map(|(_, v)| v)
    }

    /// The most recently used idle connection to `addr`, if any.
    pub(crate) fn take(&mut self, addr: SocketAddr) -> Option<UpstreamConn> {
        self.list(addr)?.pop()
    }

    /// Keep `conn` for reuse; gives it back if the pool for its address is full.
    #[allow(clippy::result_large_err)] // handing the connection back is the point; it is moved, not copied around
    pub(crate) fn put(&mut self, conn: UpstreamConn) -> Result<(), UpstreamConn> {
        let v = match self.idle.iter().position(|(a, _)| *a == conn.addr) {
            Some(i) => &mut self.idle[i].1,
            None => {
                self.idle.push((conn.addr, Vec::new()));
                &mut self.idle.last_mut().expect("just pushed").1
            }
        };
        if v.len() >= self.max_per_addr {
            return Err(conn);
        }
        v.push(conn);
        Ok(())
    }

    /// Remove the idle connection with slab key `key`.
    pub(crate) fn remove(&mut self, addr: SocketAddr, key: usize) -> Option<UpstreamConn> {
        let v = self.list(addr)?;
        let i = v.iter().position(|c| c.key == key)?;
        Some(v.swap_remove(i))
    }

    pub(crate) fn get_mut(&mut self, addr: SocketAddr, key: usize) -> Option<&mut UpstreamConn> {
        self.list(addr)?.iter_mut().find(|c| c.key == key)
    }

    /// Every idle connection (for shutdown).
    pub(crate) fn drain_all(&mut self) -> Vec<UpstreamConn> {
        self.idle.drain(..).flat_map(|(_, v)| v).collect()
    }
}
