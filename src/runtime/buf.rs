//! Byte buffers for sockets: an input buffer read into in place, an output
//! buffer appended to and drained by writes, and a small pool so an idle
//! keep-alive connection holds no buffer memory.

use std::io::{self, Read, Write};

/// Default size of a fresh buffer.
pub(crate) const BUF_SIZE: usize = 16 * 1024;

/// Spare buffer allocations (per worker, no locking). Input buffers keep
/// their zero-filled length so reuse costs no memset; output buffers are
/// handed out empty.
pub(crate) struct BufPool {
    inputs: Vec<Vec<u8>>,
    outputs: Vec<Vec<u8>>,
}

const POOL_MAX: usize = 64;

impl BufPool {
    pub(crate) fn new() -> Self {
        BufPool { inputs: Vec::new(), outputs: Vec::new() }
    }
    fn get_input(&mut self) -> Vec<u8> {
        self.inputs.pop().unwrap_or_else(|| vec![0; BUF_SIZE])
    }
    fn put_input(&mut self, v: Vec<u8>) {
        if self.inputs.len() < POOL_MAX && v.len() <= 4 * BUF_SIZE {
            self.inputs.push(v);
        }
    }
    fn get_output(&mut self) -> Vec<u8> {
        self.outputs.pop().unwrap_or_else(|| Vec::with_capacity(BUF_SIZE))
    }
    fn put_output(&mut self, mut v: Vec<u8>) {
        if self.outputs.len() < POOL_MAX && v.capacity() <= 4 * BUF_SIZE {
            v.clear();
            self.outputs.push(v);
        }
    }
}

/// Input bytes not yet consumed: `data[start..end]`. `data` is zero-filled
/// once when allocated and read into in place, so reads cost no memset.
#[derive(Default)]
pub(crate) struct InBuf {
    data: Vec<u8>,
    start: usize,
    end: usize,
}

/// Result of one read attempt.
pub(crate) enum ReadOutcome {
    /// Bytes arrived; `drained` = the socket had no more at that moment.
    Data {
        n: usize,
        drained: bool,
    },
    WouldBlock,
    Eof,
    NoRoom,
    Error(io::Error),
}

impl InBuf {
    pub(crate) fn len(&self) -> usize {
        self.end - self.start
    }
    pub(crate) fn is_empty(&self) -> bool {
        self.end == self.start
    }
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }
    pub(crate) fn consume(&mut self, n: usize) {
        self.start += n.min(self.len());
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }
    fn ensure(&mut self, pool: &mut BufPool) {
        if self.data.is_empty() {
            self.data = pool.get_input();
        }
    }
    /// Make room for at least `extra` more bytes after `end`.
    fn reserve(&mut self, extra: usize) {
        if self.data.len() - self.end >= extra {
            return;
        }
        if self.start > 0 {
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.data.len() - self.end < extra {
            let new_len = (self.end + extra).max(self.data.len() * 2);
            self.data.resize(new_len, 0);
        }
    }
    /// Read once from `src`, keeping at most `limit` unconsumed bytes.
    pub(crate) fn read_from(&mut self, src: &mut impl Read, pool: &mut BufPool, limit: usize) -> ReadOutcome {
        let have = self.len();
        if have >= limit {
            return ReadOutcome::NoRoom;
        }
        self.ensure(pool);
        if self.end == self.data.len() || (self.start > 0 && self.data.len() - self.end < BUF_SIZE / 4) {
            let extra = (limit - have).min(BUF_SIZE);
            self.reserve(extra);
        }
        let want = (limit - have).min(self.data.len() - self.end);
        match src.read(&mut self.data[self.end..self.end + want]) {
            Ok(0) => ReadOutcome::Eof,
            Ok(n) => {
                self.end += n;
                ReadOutcome::Data { n, drained: n < want }
            }
            Err(e) => match e.kind() {
                io::ErrorKind::WouldBlock => ReadOutcome::WouldBlock,
                io::ErrorKind::Interrupted => ReadOutcome::Data { n: 0, drained: false },
                _ => ReadOutcome::Error(e),
            },
        }
    }

    /// Give the allocation back when empty (idle connections hold none).
    pub(crate) fn release(&mut self, pool: &mut BufPool) {
        if self.is_empty() && !self.data.is_empty() {
            pool.put_input(std::mem::take(&mut self.data));
            self.start = 0;
            self.end = 0;
        }
    }
}

/// Output bytes not yet written: `data[pos..]`.
#[derive(Default)]
pub(crate) struct OutBuf {
    pub(crate) data: Vec<u8>,
    pos: usize,
}

pub(crate) enum WriteOutcome {
    /// Everything queued was written.
    Done,
    /// Some bytes remain; the socket is full.
    Blocked,
    Error(io::Error),
}

impl OutBuf {
    pub(crate) fn len(&self) -> usize {
        self.data.len() - self.pos
    }
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The vector to append to (taken from the pool if needed).
    pub(crate) fn vec(&mut self, pool: &mut BufPool) -> &mut Vec<u8> {
        if self.data.capacity() == 0 {
            self.data = pool.get_output();
        }
        &mut self.data
    }
    /// Write as much as the socket takes. Returns bytes written too.
    pub(crate) fn flush_to(&mut self, dst: &mut impl Write) -> (usize, WriteOutcome) {
        let mut total = 0;
        while self.pos < self.data.len() {
            match dst.write(&self.data[self.pos..]) {
                Ok(0) => return (total, WriteOutcome::Error(io::ErrorKind::WriteZero.into())),
                Ok(n) => {
                    self.pos += n;
                    total += n;
                    if self.pos < self.data.len() {
                        // short write: the socket buffer is full
                        return (total, WriteOutcome::Blocked);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return (total, WriteOutcome::Blocked),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return (total, WriteOutcome::Error(e)),
            }
        }
        self.data.clear();
        self.pos = 0;
        (total, WriteOutcome::Done)
    }
    pub(crate) fn release(&mut self, pool: &mut BufPool) {
        if self.is_empty() && self.data.capacity() > 0 {
            pool.put_output(std::mem::take(&mut self.data));
            self.pos = 0;
        }
    }
    pub(crate) fn clear(&mut self) {
        self.data.clear();
        self.pos = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inbuf_reads_consumes_and_limits() {
        let mut pool = BufPool::new();
        let mut b = InBuf::default();
        let mut src: &[u8] = b"hello world";
        match b.read_from(&mut src, &mut pool, 5) {
            ReadOutcome::Data { n, .. } => assert_eq!(n, 5),
            _ => panic!("expected data"),
        }
        assert!(matches!(b.read_from(&mut src, &mut pool, 5), ReadOutcome::NoRoom));
        b.consume(3);
        assert_eq!(b.bytes(), b"lo");
        b.consume(2);
        assert!(b.is_empty());
        b.release(&mut pool);
        assert_eq!(b.data.len(), 0);
    }

    #[test]
    fn outbuf_flushes() {
        let mut pool = BufPool::new();
        let mut o = OutBuf::default();
        o.vec(&mut pool).extend_from_slice(b"abc");
        let mut sink = Vec::new();
        let (n, r) = o.flush_to(&mut sink);
        assert_eq!(n, 3);
        assert!(matches!(r, WriteOutcome::Done));
        assert_eq!(sink, b"abc");
        assert!(o.is_empty());
    }
}
