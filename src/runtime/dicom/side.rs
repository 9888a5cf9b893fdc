//! One socket of a DICOM association: readiness flags, EOF/shutdown state,
//! and the bytes waiting to be written to it.

use mio::net::TcpStream;
use std::io::{self, Write};
use std::net::Shutdown;
use std::os::fd::AsRawFd;

/// Compact the output buffer once this much has been written from it.
const COMPACT: usize = 256 * 1024;
/// Bytes read per read call.
pub(super) const CHUNK: usize = 16 * 1024;

/// One socket of an association.
pub(super) struct Side {
    pub sock: TcpStream,
    pub rd: bool,
    pub wr: bool,
    pub hup: bool,
    /// Read EOF seen.
    pub eof: bool,
    /// We shut down our write side.
    pub shut: bool,
    /// Bytes read and not yet passed on (before the relay starts).
    pub inb: Vec<u8>,
    /// Bytes to write to this socket, from `pos`.
    pub out: Vec<u8>,
    pub pos: usize,
}

impl Side {
    pub fn new(sock: TcpStream) -> Side {
        Side {
            sock,
            rd: false,
            wr: false,
            hup: false,
            eof: false,
            shut: false,
            inb: Vec::new(),
            out: Vec::new(),
            pos: 0,
        }
    }

    pub fn pending(&self) -> usize {
        self.out.len() - self.pos
    }

    /// Read into `into` until WouldBlock, EOF, a short read, or `into` holds
    /// `limit` bytes. Returns the number of bytes read.
    ///
    /// Bytes go straight into `into`'s spare capacity (no bounce buffer). A
    /// read that returns less than asked drained the socket at that moment;
    /// with edge-triggered readiness any later data raises a new event, so
    /// we stop there instead of paying for a read that returns EAGAIN.
    pub fn fill(&mut self, into: &mut Vec<u8>, limit: usize) -> io::Result<usize> {
        let mut total = 0;
        while self.rd && !self.eof && into.len() < limit {
            let want = CHUNK.min(limit - into.len());
            match read_into(&self.sock, into, want) {
                Ok(0) => {
                    self.eof = true;
                    self.rd = false;
                }
                Ok(n) => {
                    total += n;
                    // a peer's FIN that came with its last bytes raises no
                    // new event: with a hang-up seen, read on to the EOF
                    if n < want && !self.hup {
                        self.rd = false;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.rd = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(total)
    }

    /// Write pending bytes until WouldBlock or done. Returns bytes written.
    pub fn flush(&mut self) -> io::Result<usize> {
        let mut total = 0;
        while self.wr && self.pos < self.out.len() {
            match self.sock.write(&self.out[self.pos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.pos += n;
                    total += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.wr = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.pos == self.out.len() {
            self.out.clear();
            self.pos = 0;
        } else if self.pos > COMPACT {
            self.out.drain(..self.pos);
            self.pos = 0;
        }
        Ok(total)
    }

    pub fn shutdown_write(&mut self) {
        if !self.shut {
            self.shut = true;
            let _ = self.sock.shutdown(Shutdown::Write);
        }
    }
}

/// One `read(2)` of up to `want` bytes appended to `into`.
fn read_into(sock: &TcpStream, into: &mut Vec<u8>, want: usize) -> io::Result<usize> {
    into.reserve(want);
    let spare = into.spare_capacity_mut();
    let len = want.min(spare.len());
    // SAFETY: the kernel writes at most `len` bytes into the spare capacity,
    // which is allocated and not aliased; we then count only what it wrote.
    let n = unsafe { libc::read(sock.as_raw_fd(), spare.as_mut_ptr().cast(), len) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    // SAFETY: `n <= len` bytes past the old length were just initialised.
    unsafe { into.set_len(into.len() + n) };
    Ok(n)
}
