//! A test origin server: std::net and one thread per connection, keep-alive,
//! and a behaviour per path. It streams every body (never holds a whole
//! request or response in memory) and counts connections, requests and bytes
//! in shared atomics so tests can prove upstream keep-alive reuse and
//! backpressure.
//!
//! Paths (the query string selects options):
//! - `/echo-body`      the request body back, streamed as it is read
//!   (Content-Length if the request had one, else chunked)
//! - `/count`          reads the body, answers {"bytes", "fnv", "trailers"}
//! - `/chunked[?trailer_bytes=N]`  chunked answer in several chunks plus an
//!   `X-Trailer` trailer ("done", or N 't's)
//! - `/close`          close-delimited answer (no Content-Length), then close
//! - `/slow?ms=N`      sleeps N ms, then answers "slow"
//! - `/big?bytes=N[&chunked=1]`  N pattern bytes (`pattern_byte`), streamed
//! - `/reset`          closes the socket without answering
//! - `/garbage`        writes "NOT HTTP\r\n\r\n" and closes
//! - `/bad-head`       a malformed head (Content-Length: abc)
//! - `/status/N`       status N with a short body
//! - `/idle-close?ms=N` answers like `/headers` (keep-alive), then closes the
//!   connection if no next request arrives within N ms
//!   (counted in `Stats::idle_closes`)
//! - `/drop-next`      answers like `/headers` (keep-alive), then reads the next
//!   request on that connection and closes without answering
//!   (a stale keep-alive connection; counted in `Stats::dropped`)
//! - `/aligned?total=N` a 200 whose head+body are exactly N bytes (default
//!   16384), followed in the same write by a second, unasked
//!   response whose body is "EVIL!" (must never be relayed)
//! - `/reject`         reads only the head, answers 413 (Connection: close,
//!   body "nope") and closes with the body unread
//! - `/close-after`    answers 200 "ok" (Content-Length: 2) and closes, the FIN
//!   in the same segment as the answer (TCP_CORK)
//! - anything else     (and `/headers`) the request head as JSON:
//!   {"method","target","version","headers":[[n,v],..],"body_bytes","port"}
//!
//! Every answer carries `Server: test-origin` and `X-Origin-Port: <port>`.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use super::{pattern_byte, Fnv};

#[derive(Default)]
pub struct Stats {
    /// TCP connections accepted.
    pub connections: AtomicUsize,
    /// Request heads parsed.
    pub requests: AtomicUsize,
    /// Response body bytes written by `/big` and `/echo-body`.
    pub body_bytes_sent: AtomicU64,
    /// Request body bytes read (all paths).
    pub body_bytes_received: AtomicU64,
    /// Request targets in arrival order.
    pub targets: Mutex<Vec<String>>,
    /// Connections closed by `/idle-close` while idle.
    pub idle_closes: AtomicUsize,
    /// Requests read and dropped unanswered after `/drop-next`.
    pub dropped: AtomicUsize,
}

pub struct Origin {
    pub port: u16,
    pub stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
}

impl Origin {
    pub fn start() -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").expect("origin bind");
        let port = listener.local_addr().unwrap().port();
        let stats = Arc::new(Stats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (s2, stop2) = (stats.clone(), stop.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                s2.connections.fetch_add(1, Ordering::SeqCst);
                let s3 = s2.clone();
                thread::spawn(move || {
                    let _ = serve(conn, port, &s3);
                });
            }
        });
        Origin { port, stats, stop }
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn connections(&self) -> usize {
        self.stats.connections.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> usize {
        self.stats.requests.load(Ordering::SeqCst)
    }

    pub fn bytes_sent(&self) -> u64 {
        self.stats.body_bytes_sent.load(Ordering::SeqCst)
    }

    pub fn targets(&self) -> Vec<String> {
        self.stats.targets.lock().unwrap().clone()
    }

    pub fn idle_closes(&self) -> usize {
        self.stats.idle_closes.load(Ordering::SeqCst)
    }

    pub fn dropped(&self) -> usize {
        self.stats.dropped.load(Ordering::SeqCst)
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees `stop`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

struct Head {
    method: String,
    target: String,
    version: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        super::find_header(&self.headers, name)
    }
    fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
    fn query(&self, key: &str) -> Option<&str> {
        let q = self.target.split_once('?')?.1;
        q.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == key).then_some(v)
        })
    }
    fn keep_alive(&self) -> bool {
        let conn = self.header("connection").unwrap_or("").to_ascii_lowercase();
        if self.version == "HTTP/1.0" {
            conn.contains("keep-alive")
        } else {
            !conn.contains("close")
        }
    }
}

fn read_head(r: &mut BufReader<TcpStream>) -> io::Result<Option<Head>> {
    let mut line = String::new();
    // Tolerate empty lines before a request line (RFC 9112 section 2.2).
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        if !line.trim().is_empty() {
            break;
        }
    }
    let mut p = line.trim_end().splitn(3, ' ');
    let method = p.next().unwrap_or("").to_string();
    let target = p.next().unwrap_or("").to_string();
    let version = p.next().unwrap_or("").to_string();
    let headers = read_fields(r)?;
    Ok(Some(Head { method, target, version, headers }))
}

fn read_fields(r: &mut BufReader<TcpStream>) -> io::Result<Vec<(String, String)>> {
    let mut headers = Vec::new();
    loop {
        let mut l = String::new();
        if r.read_line(&mut l)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let l = l.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            return Ok(headers);
        }
        if let Some((n, v)) = l.split_once(':') {
            headers.push((n.to_string(), v.trim().to_string()));
        }
    }
}

/// Streams a request body in pieces, whatever its framing.
struct Body {
    chunked: bool,
    /// Bytes left in the current chunk (chunked) or the whole body (length).
    left: u64,
    done: bool,
    trailers: Vec<(String, String)>,
}

impl Body {
    fn for_head(h: &Head) -> Body {
        let chunked = h.header("transfer-encoding").is_some_and(|t| t.to_ascii_lowercase().contains("chunked"));
        let len = h.header("content-length").and_then(|v| v.trim().parse().ok()).unwrap_or(0);
        Body { chunked, left: if chunked { 0 } else { len }, done: !chunked && len == 0, trailers: vec![] }
    }

    /// Next piece of body into `buf`; 0 at the end.
    fn read(&mut self, r: &mut BufReader<TcpStream>, buf: &mut [u8]) -> io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        if self.chunked && self.left == 0 {
            let mut l = String::new();
            if r.read_line(&mut l)? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let size = l.trim().split(';').next().unwrap_or("").trim();
            let size = u64::from_str_radix(size, 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
            if size == 0 {
                self.trailers = read_fields(r)?;
                self.done = true;
                return Ok(0);
            }
            self.left = size;
        }
        let want = buf.len().min(self.left as usize);
        let n = r.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.left -= n as u64;
        if self.left == 0 {
            if self.chunked {
                let mut crlf = [0u8; 2];
                r.read_exact(&mut crlf)?;
            } else {
                self.done = true;
            }
        }
        Ok(n)
    }

    /// Read and discard the rest; returns (bytes, fnv).
    fn drain(&mut self, r: &mut BufReader<TcpStream>, stats: &Stats) -> io::Result<(u64, u64)> {
        let mut buf = vec![0u8; 64 * 1024];
        let (mut total, mut fnv) = (0u64, Fnv::new());
        loop {
            let n = self.read(r, &mut buf)?;
            if n == 0 {
                return Ok((total, fnv.0));
            }
            fnv.update(&buf[..n]);
            total += n as u64;
            stats.body_bytes_received.fetch_add(n as u64, Ordering::SeqCst);
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        404 => "Not Found",
        413 => "Payload Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Whatever",
    }
}

fn head_bytes(status: u16, port: u16, extra: &[(&str, String)]) -> Vec<u8> {
    let mut s = format!("HTTP/1.1 {status} {}\r\nServer: test-origin\r\nX-Origin-Port: {port}\r\n", reason(status));
    for (n, v) in extra {
        s.push_str(&format!("{n}: {v}\r\n"));
    }
    s.push_str("\r\n");
    s.into_bytes()
}

fn serve(stream: TcpStream, port: u16, stats: &Stats) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    stream.set_nodelay(true)?;
    let mut w = stream.try_clone()?;
    let mut r = BufReader::with_capacity(64 * 1024, stream);
    // Set by `/idle-close` and `/drop-next` for the next request on this connection.
    let mut idle_close: Option<Duration> = None;
    let mut drop_next = false;
    loop {
        if let Some(d) = idle_close {
            r.get_ref().set_read_timeout(Some(d.max(Duration::from_millis(1))))?;
        }
        let h = match read_head(&mut r) {
            Ok(Some(h)) => h,
            Ok(None) => return Ok(()),
            Err(e)
                if idle_close.is_some() && matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) =>
            {
                // Idle for too long: close the keep-alive connection (FIN).
                let _ = w.shutdown(std::net::Shutdown::Both);
                stats.idle_closes.fetch_add(1, Ordering::SeqCst);
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        if idle_close.take().is_some() {
            r.get_ref().set_read_timeout(Some(Duration::from_secs(60)))?;
        }
        stats.requests.fetch_add(1, Ordering::SeqCst);
        stats.targets.lock().unwrap().push(h.target.clone());
        if drop_next {
            // The whole head was read, so closing sends a FIN, not a reset.
            let _ = w.shutdown(std::net::Shutdown::Both);
            stats.dropped.fetch_add(1, Ordering::SeqCst);
            return Ok(());
        }
        if h.header("expect").is_some_and(|e| e.eq_ignore_ascii_case("100-continue")) {
            w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        let mut body = Body::for_head(&h);
        let is_head = h.method == "HEAD";
        let path = h.path().to_string();
        match path.as_str() {
            "/reset" => return Ok(()),
            "/reject" => {
                // Body left unread: closing now resets the connection, as a real
                // server rejecting an upload would.
                w.write_all(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\nConnection: close\r\n\r\nnope")?;
                return Ok(());
            }
            "/close-after" => {
                body.drain(&mut r, stats)?;
                cork(&w);
                let mut out = head_bytes(200, port, &[("Content-Length", "2".into())]);
                out.extend_from_slice(b"ok");
                w.write_all(&out)?;
                // The FIN leaves with the corked answer.
                let _ = w.shutdown(std::net::Shutdown::Both);
                return Ok(());
            }
            "/aligned" => {
                body.drain(&mut r, stats)?;
                let total: usize = h.query("total").and_then(|v| v.parse().ok()).unwrap_or(16384);
                // The head's length depends on the Content-Length digits: find the fixed point.
                let mut len = total;
                for _ in 0..8 {
                    len = total - head_bytes(200, port, &[("Content-Length", len.to_string())]).len();
                }
                let mut out = head_bytes(200, port, &[("Content-Length", len.to_string())]);
                out.resize(total, b'a');
                out.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nEVIL!");
                w.write_all(&out)?;
            }
            "/garbage" => {
                w.write_all(b"NOT HTTP\r\n\r\n")?;
                return Ok(());
            }
            "/bad-head" => {
                body.drain(&mut r, stats)?;
                w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\nxyz")?;
                return Ok(());
            }
            "/close" => {
                body.drain(&mut r, stats)?;
                let mut out =
                    head_bytes(200, port, &[("Content-Type", "text/plain".into()), ("Connection", "close".into())]);
                out.extend_from_slice(b"close-delimited body\nsecond line\n");
                w.write_all(&out)?;
                return Ok(());
            }
            "/chunked" => {
                body.drain(&mut r, stats)?;
                let mut out = head_bytes(
                    200,
                    port,
                    &[
                        ("Content-Type", "text/plain".into()),
                        ("Transfer-Encoding", "chunked".into()),
                        ("Trailer", "X-Trailer".into()),
                    ],
                );
                if !is_head {
                    for piece in ["hello ", "chunked ", "world", "!"] {
                        out.extend_from_slice(format!("{:x}\r\n{piece}\r\n", piece.len()).as_bytes());
                    }
                    // `trailer_bytes=N`: an X-Trailer value of N 't's instead of "done".
                    let n: usize = h.query("trailer_bytes").and_then(|v| v.parse().ok()).unwrap_or(0);
                    let value = if n == 0 { "done".to_string() } else { "t".repeat(n) };
                    out.extend_from_slice(format!("0\r\nX-Trailer: {value}\r\n\r\n").as_bytes());
                }
                w.write_all(&out)?;
            }
            "/slow" => {
                body.drain(&mut r, stats)?;
                let ms = h.query("ms").and_then(|v| v.parse().ok()).unwrap_or(1000);
                thread::sleep(Duration::from_millis(ms));
                let mut out = head_bytes(200, port, &[("Content-Length", "4".into())]);
                out.extend_from_slice(b"slow");
                w.write_all(&out)?;
            }
            "/big" => {
                body.drain(&mut r, stats)?;
                let n: u64 = h.query("bytes").and_then(|v| v.parse().ok()).unwrap_or(1 << 20);
                let chunked = h.query("chunked") == Some("1");
                let framing = if chunked {
                    ("Transfer-Encoding", "chunked".to_string())
                } else {
                    ("Content-Length", n.to_string())
                };
                w.write_all(&head_bytes(200, port, &[("Content-Type", "application/octet-stream".into()), framing]))?;
                if !is_head {
                    send_pattern(&mut w, n, chunked, stats)?;
                }
            }
            "/echo-body" => echo_body(&h, &mut body, &mut r, &mut w, port, stats)?,
            "/count" => {
                let (bytes, fnv) = body.drain(&mut r, stats)?;
                let trailers: serde_json::Map<String, serde_json::Value> =
                    body.trailers.iter().map(|(n, v)| (n.to_ascii_lowercase(), v.clone().into())).collect();
                let v = serde_json::json!({ "bytes": bytes, "fnv": format!("{fnv:016x}"), "trailers": trailers });
                send_json(&mut w, port, 200, &v, is_head)?;
            }
            p if p.starts_with("/status/") => {
                body.drain(&mut r, stats)?;
                let status: u16 = p["/status/".len()..].parse().unwrap_or(500);
                if status == 204 || status == 304 {
                    w.write_all(&head_bytes(status, port, &[]))?;
                } else {
                    let text = format!("status {status}\n");
                    let mut out = head_bytes(status, port, &[("Content-Length", text.len().to_string())]);
                    if !is_head {
                        out.extend_from_slice(text.as_bytes());
                    }
                    w.write_all(&out)?;
                }
            }
            _ => {
                let (bytes, _) = body.drain(&mut r, stats)?;
                let headers: Vec<[String; 2]> = h.headers.iter().map(|(n, v)| [n.clone(), v.clone()]).collect();
                let v = serde_json::json!({
                    "method": h.method, "target": h.target, "version": h.version,
                    "headers": headers, "body_bytes": bytes, "port": port,
                });
                send_json(&mut w, port, 200, &v, is_head)?;
            }
        }
        if !h.keep_alive() {
            return Ok(());
        }
        match path.as_str() {
            "/idle-close" => {
                idle_close = Some(Duration::from_millis(h.query("ms").and_then(|v| v.parse().ok()).unwrap_or(100)))
            }
            "/drop-next" => drop_next = true,
            _ => {}
        }
    }
}

fn send_json(w: &mut TcpStream, port: u16, status: u16, v: &serde_json::Value, is_head: bool) -> io::Result<()> {
    let body = serde_json::to_vec(v).unwrap();
    let mut out = head_bytes(
        status,
        port,
        &[("Content-Type", "application/json".into()), ("Content-Length", body.len().to_string())],
    );
    if !is_head {
        out.extend_from_slice(&body);
    }
    w.write_all(&out)
}

fn send_pattern(w: &mut TcpStream, n: u64, chunked: bool, stats: &Stats) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut off = 0u64;
    while off < n {
        let len = buf.len().min((n - off) as usize);
        for (i, b) in buf[..len].iter_mut().enumerate() {
            *b = pattern_byte(off + i as u64);
        }
        if chunked {
            w.write_all(format!("{len:x}\r\n").as_bytes())?;
            w.write_all(&buf[..len])?;
            w.write_all(b"\r\n")?;
        } else {
            w.write_all(&buf[..len])?;
        }
        off += len as u64;
        stats.body_bytes_sent.fetch_add(len as u64, Ordering::SeqCst);
    }
    if chunked {
        w.write_all(b"0\r\n\r\n")?;
    }
    Ok(())
}

/// Write the body back while still reading it, so a 64 MiB echo never sits in
/// memory here (the proxy must then move both directions at once).
fn echo_body(
    h: &Head,
    body: &mut Body,
    r: &mut BufReader<TcpStream>,
    w: &mut TcpStream,
    port: u16,
    stats: &Stats,
) -> io::Result<()> {
    let ct = h.header("content-type").unwrap_or("application/octet-stream").to_string();
    let framing = if body.chunked {
        ("Transfer-Encoding", "chunked".to_string())
    } else {
        ("Content-Length", body.left.to_string())
    };
    w.write_all(&head_bytes(200, port, &[("Content-Type", ct), framing]))?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = body.read(r, &mut buf)?;
        if n == 0 {
            break;
        }
        stats.body_bytes_received.fetch_add(n as u64, Ordering::SeqCst);
        if body.chunked {
            w.write_all(format!("{n:x}\r\n").as_bytes())?;
            w.write_all(&buf[..n])?;
            w.write_all(b"\r\n")?;
        } else {
            w.write_all(&buf[..n])?;
        }
        stats.body_bytes_sent.fetch_add(n as u64, Ordering::SeqCst);
    }
    if body.chunked {
        w.write_all(b"0\r\n\r\n")?;
    }
    Ok(())
}

/// TCP_CORK: hold small writes so the next shutdown's FIN leaves with them.
#[cfg(target_os = "linux")]
fn cork(s: &TcpStream) {
    use std::os::unix::io::AsRawFd;
    extern "C" {
        fn setsockopt(fd: i32, level: i32, name: i32, val: *const std::ffi::c_void, len: u32) -> i32;
    }
    const IPPROTO_TCP: i32 = 6;
    const TCP_CORK: i32 = 3;
    let one: i32 = 1;
    // SAFETY: a valid fd and a pointer to a live i32 of the stated size.
    unsafe { setsockopt(s.as_raw_fd(), IPPROTO_TCP, TCP_CORK, &one as *const i32 as *const _, 4) };
}

#[cfg(not(target_os = "linux"))]
fn cork(_s: &TcpStream) {}
