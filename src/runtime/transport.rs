//! The byte stream under a client connection's codec. Today it is plain TCP;
//! TLS (rustls is sans-IO: ciphertext in/out, plaintext in/out) becomes a
//! second variant here, so the HTTP and DICOM codecs above only ever see
//! plaintext through `Read`/`Write` and never change.

use mio::net::TcpStream;
use std::io::{self, Read, Write};
use std::net::Shutdown;

pub(crate) enum Transport {
    Plain(TcpStream),
}

impl Transport {
    /// The socket to register with the poll.
    pub(crate) fn socket(&mut self) -> &mut TcpStream {
        match self {
            Transport::Plain(s) => s,
        }
    }

    /// Half-close our side (after the last response).
    pub(crate) fn shutdown_write(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(s) => s.shutdown(Shutdown::Write),
        }
    }
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.read(buf),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(s) => s.flush(),
        }
    }
}
