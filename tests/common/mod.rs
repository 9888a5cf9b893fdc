//! Shared helpers for the end-to-end tests: a temp config dir, the harmony
//! process (started from `CARGO_BIN_EXE_harmony`, killed by PID on drop), a
//! raw-socket HTTP/1.1 client that shows exactly what went over the wire, and
//! an RSS reader. Only std and serde_json; every wait is bounded.
#![allow(dead_code)]

pub mod dicom;
pub mod lua;
pub mod origin;
pub mod orthanc;

use std::collections::HashSet;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

/// Guard against hangs: no single read in a test waits longer than this.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// How long harmony may take to start listening.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------- ports

static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A loopback port nothing listens on right now, never returned twice in this
/// test binary (tests in one binary run in parallel threads).
pub fn free_port() -> u16 {
    let mut guard = HANDED_OUT.lock().unwrap();
    let seen = guard.get_or_insert_with(HashSet::new);
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let p = l.local_addr().unwrap().port();
        if seen.insert(p) {
            return p;
        }
    }
}

/// True if something accepts connections on 127.0.0.1:port.
pub fn port_open(port: u16) -> bool {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// A port that refuses connections (bound then released).
pub fn closed_port() -> u16 {
    free_port()
}

// ---------------------------------------------------------------- temp dir

static DIR_SEQ: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let path = std::env::temp_dir().join(format!(
            "harmony-test-{}-{}-{}-{}",
            tag,
            std::process::id(),
            DIR_SEQ.fetch_add(1, Ordering::SeqCst),
            nanos
        ));
        fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Write `name` inside the dir and return its path.
    pub fn write(&self, name: &str, contents: &[u8]) -> PathBuf {
        let p = self.path.join(name);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(&p, contents).expect("write temp file");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("HARMONY_TEST_KEEP").is_none() {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// Write `harmony.toml` (plus an empty `pipelines/` dir, the default
/// `proxy.pipelines_path`) into a new temp dir.
pub fn config_dir(tag: &str, toml: &str) -> (TempDir, PathBuf) {
    let dir = TempDir::new(tag);
    fs::create_dir_all(dir.join("pipelines")).unwrap();
    let cfg = dir.write("harmony.toml", toml.as_bytes());
    (dir, cfg)
}

// ---------------------------------------------------------------- config text

/// The `[proxy]` + default network part of a test config. `extra_proxy` is
/// inserted verbatim into `[proxy]` (e.g. "max_body_bytes = 1000\n").
pub fn base_config(port: u16, extra_proxy: &str) -> String {
    // Defaults for the timeouts unless the caller sets them (TOML forbids duplicate keys).
    let mut defaults = String::new();
    for (key, value) in [("header_timeout_ms", 2000), ("idle_timeout_ms", 5000)] {
        if !extra_proxy.contains(key) {
            defaults.push_str(&format!("{key} = {value}\n"));
        }
    }
    format!(
        r#"[proxy]
id = "test-gw"
log_level = "info"
{defaults}{extra_proxy}

[network.default.http]
bind_address = "127.0.0.1"
bind_port = {port}
"#
    )
}

/// An `/api` pipeline to one HTTP origin with optional middleware names and
/// backend option text (inserted into the backend's inline table).
pub fn api_pipeline(base_url: &str, middleware: &[&str], backend_extra: &str) -> String {
    let mw: Vec<String> = middleware.iter().map(|m| format!("\"{m}\"")).collect();
    let mw_line = if mw.is_empty() { String::new() } else { format!("middleware = [{}]\n", mw.join(", ")) };
    // A 2 s response timeout unless the caller picks its own.
    let mut extra = String::new();
    if !backend_extra.contains("timeout_ms") {
        extra.push_str(", timeout_ms = 2000");
    }
    if !backend_extra.is_empty() {
        extra.push_str(&format!(", {backend_extra}"));
    }
    format!(
        r#"
[pipelines.api]
networks = ["default"]
endpoints = ["api_in"]
{mw_line}backends = ["origin"]

[endpoints.api_in]
service = "http"
options = {{ path_prefix = "/api" }}

[backends.origin]
service = "http"
options = {{ base_url = "{base_url}"{extra} }}
"#
    )
}

/// An `/echo` pipeline answered by the built-in echo backend.
pub fn echo_pipeline() -> String {
    r#"
[pipelines.echo]
networks = ["default"]
endpoints = ["echo_in"]
backends = ["echo_be"]

[endpoints.echo_in]
service = "http"
options = { path_prefix = "/echo" }

[backends.echo_be]
service = "echo"
"#
    .to_string()
}

// ---------------------------------------------------------------- the process

pub fn harmony_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_harmony"))
}

/// A running harmony. SIGTERM then SIGKILL on drop.
pub struct Harmony {
    pub child: Child,
    pub port: u16,
    pub stderr_path: PathBuf,
    pub config: PathBuf,
    // Keeps the config dir alive as long as the process.
    _dir: Option<TempDir>,
}

impl Harmony {
    /// Start with `toml` (which must bind 127.0.0.1:`port`) and wait until the
    /// port accepts connections. Panics with the captured stderr otherwise.
    pub fn start(tag: &str, toml: &str, port: u16) -> Harmony {
        let (dir, cfg) = config_dir(tag, toml);
        let mut h = Harmony::spawn(&cfg, &dir.path, port);
        h._dir = Some(dir);
        h.wait_ready();
        h
    }

    /// Spawn `harmony -c cfg` with stderr captured into `log_dir/harmony.stderr`.
    pub fn spawn(cfg: &Path, log_dir: &Path, port: u16) -> Harmony {
        let stderr_path = log_dir.join("harmony.stderr");
        let err = fs::File::create(&stderr_path).expect("create stderr file");
        let child = Command::new(harmony_bin())
            .arg("-c")
            .arg(cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(err))
            .spawn()
            .expect("spawn harmony");
        Harmony { child, port, stderr_path, config: cfg.to_path_buf(), _dir: None }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("harmony exited during start-up ({status}); stderr:\n{}", self.stderr());
            }
            if port_open(self.port) {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "harmony did not listen on 127.0.0.1:{} within {:?}; stderr:\n{}",
                    self.port,
                    START_TIMEOUT,
                    self.stderr()
                );
            }
            thread::sleep(Duration::from_millis(25));
        }
    }

    /// Everything harmony has written to stderr so far.
    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Everything on stderr once it contains `needle`, or after 5 s without
    /// it (a failure guard: the caller asserts on the text).
    pub fn wait_stderr(&self, needle: &str) -> String {
        eventually(Duration::from_secs(5), || self.stderr().contains(needle));
        self.stderr()
    }

    /// True while the process has not exited.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// VmRSS of the proxy in KiB.
    pub fn rss_kb(&self) -> u64 {
        rss_kb(self.pid()).expect("read VmRSS of harmony")
    }

    /// Peak VmHWM of the proxy in KiB.
    pub fn peak_rss_kb(&self) -> u64 {
        peak_rss_kb(self.pid()).expect("read VmHWM of harmony")
    }

    /// Send SIGTERM and wait (bounded) for the exit status.
    pub fn terminate(&mut self, within: Duration) -> Option<ExitStatus> {
        signal(self.pid(), "TERM");
        wait_exit(&mut self.child, within)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    /// A new raw connection to the proxy.
    pub fn connect(&self) -> Conn {
        Conn::connect(self.port)
    }
}

impl Drop for Harmony {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            signal(self.pid(), "TERM");
            if wait_exit(&mut self.child, Duration::from_secs(3)).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
        if thread::panicking() {
            eprintln!("---- harmony stderr ({}) ----\n{}", self.stderr_path.display(), self.stderr());
        }
    }
}

/// Send a signal by PID via kill(1), so the tests need no libc.
pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

pub fn wait_exit(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        if Instant::now() > deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Run `harmony ARGS...` to completion (bounded) and return (status, stdout, stderr).
pub fn run_harmony(args: &[&str], within: Duration) -> (ExitStatus, String, String) {
    let dir = TempDir::new("run");
    let out_p = dir.join("stdout");
    let err_p = dir.join("stderr");
    let mut child = Command::new(harmony_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_p).unwrap())
        .stderr(fs::File::create(&err_p).unwrap())
        .spawn()
        .expect("spawn harmony");
    let status = match wait_exit(&mut child, within) {
        Some(s) => s,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "harmony {:?} did not exit within {:?}; stderr:\n{}",
                args,
                within,
                fs::read_to_string(&err_p).unwrap_or_default()
            );
        }
    };
    (status, fs::read_to_string(&out_p).unwrap_or_default(), fs::read_to_string(&err_p).unwrap_or_default())
}

// ---------------------------------------------------------------- RSS

/// VmRSS of a process in KiB (None if it is gone).
pub fn rss_kb(pid: u32) -> Option<u64> {
    proc_status_kb(pid, "VmRSS:")
}

/// VmHWM (peak resident set) of a process in KiB: catches a spike between
/// samples without any timing.
pub fn peak_rss_kb(pid: u32) -> Option<u64> {
    proc_status_kb(pid, "VmHWM:")
}

fn proc_status_kb(pid: u32, key: &str) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find(|l| l.starts_with(key))?.split_whitespace().nth(1)?.parse().ok()
}

// ---------------------------------------------------------------- raw client

/// A parsed response as received by the client.
#[derive(Debug, Clone, Default)]
pub struct Response {
    pub version: String,
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub trailers: Vec<(String, String)>,
    /// The framing used: "length", "chunked", "close" or "none".
    pub framing: &'static str,
}

impl Response {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// All values of header `name`.
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
    }

    pub fn trailer(&self, name: &str) -> Option<&str> {
        find_header(&self.trailers, name)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}): {:?}", self.text()))
    }

    /// Assert this is a JSON error answer {"error","detail","request_id"}.
    pub fn assert_error(&self, status: u16) -> serde_json::Value {
        assert_eq!(self.status, status, "status; body: {}", self.text());
        let ct = self.header("content-type").unwrap_or("");
        assert!(ct.contains("json"), "error content-type is {ct:?}");
        let v = self.json();
        for key in ["error", "detail", "request_id"] {
            assert!(v.get(key).is_some(), "error body lacks {key:?}: {v}");
        }
        assert!(v["error"].is_string() && !v["error"].as_str().unwrap().is_empty(), "{v}");
        v
    }
}

pub fn find_header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// One client connection that writes raw bytes and reads responses with the
/// framing rules of RFC 9112 section 6.3.
pub struct Conn {
    pub reader: BufReader<TcpStream>,
    pub stream: TcpStream,
}

impl Conn {
    pub fn connect(port: u16) -> Conn {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to proxy");
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Conn { reader: BufReader::with_capacity(64 * 1024, stream.try_clone().unwrap()), stream }
    }

    pub fn send(&mut self, bytes: &[u8]) -> &mut Self {
        self.stream.write_all(bytes).expect("write to proxy");
        self
    }

    /// Write, tolerating a peer that already answered and closed.
    pub fn try_send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Read one response (1xx interim responses are returned too; use
    /// `read_final` to skip them). `head_request`: the request was HEAD.
    pub fn read_response(&mut self, head_request: bool) -> Response {
        let mut body = Vec::new();
        let mut r = self.read_response_with(head_request, &mut |b| body.extend_from_slice(b));
        r.body = body;
        r
    }

    /// Read responses until a non-1xx one.
    pub fn read_final(&mut self, head_request: bool) -> Response {
        loop {
            let r = self.read_response(head_request);
            if r.status >= 200 {
                return r;
            }
        }
    }

    /// Only the status line and header fields.
    pub fn read_head(&mut self) -> Response {
        let mut first = String::new();
        let n = self.reader.read_line(&mut first).expect("read status line");
        assert!(n > 0, "connection closed before a response");
        let line = first.trim_end_matches(['\r', '\n']);
        let mut parts = line.splitn(3, ' ');
        let version = parts.next().unwrap_or("").to_string();
        let status: u16 =
            parts.next().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("bad status line {line:?}"));
        let reason = parts.next().unwrap_or("").to_string();
        assert!(version.starts_with("HTTP/1."), "bad status line {line:?}");
        let headers = self.read_fields();
        Response { version, status, reason, headers, framing: "none", ..Default::default() }
    }

    fn read_fields(&mut self) -> Vec<(String, String)> {
        let mut headers = Vec::new();
        loop {
            let mut l = String::new();
            let n = self.reader.read_line(&mut l).expect("read header line");
            assert!(n > 0, "connection closed inside a header section");
            let l = l.trim_end_matches(['\r', '\n']);
            if l.is_empty() {
                return headers;
            }
            let (name, value) = l.split_once(':').unwrap_or_else(|| panic!("bad field {l:?}"));
            headers.push((name.to_string(), value.trim().to_string()));
        }
    }

    /// Read one response, handing body bytes to `sink` as they arrive (so a
    /// 64 MiB body need not be held in memory).
    pub fn read_response_with(&mut self, head_request: bool, sink: &mut dyn FnMut(&[u8])) -> Response {
        let mut r = self.read_head();
        self.read_body_with(&mut r, head_request, sink);
        r
    }

    /// Read the body belonging to the head `r` (from `read_head`).
    pub fn read_body_with(&mut self, r: &mut Response, head_request: bool, sink: &mut dyn FnMut(&[u8])) {
        if head_request || r.status < 200 || r.status == 204 || r.status == 304 {
            r.framing = "none";
            return;
        }
        let te = r.header("transfer-encoding").map(|s| s.to_ascii_lowercase());
        if te.as_deref().is_some_and(|t| t.ends_with("chunked")) {
            r.framing = "chunked";
            loop {
                let mut l = String::new();
                let n = self.reader.read_line(&mut l).expect("read chunk size");
                assert!(n > 0, "connection closed inside chunked body");
                let size_s = l.trim_end_matches(['\r', '\n']);
                let size_s = size_s.split(';').next().unwrap().trim();
                let size = usize::from_str_radix(size_s, 16).unwrap_or_else(|_| panic!("bad chunk size line {l:?}"));
                if size == 0 {
                    r.trailers = self.read_fields();
                    return;
                }
                self.copy_exact(size as u64, sink);
                let mut crlf = [0u8; 2];
                self.reader.read_exact(&mut crlf).expect("chunk CRLF");
                assert_eq!(&crlf, b"\r\n", "chunk not followed by CRLF");
            }
        } else if let Some(cl) = r.header("content-length").map(str::to_string) {
            r.framing = "length";
            let n: u64 = cl.trim().parse().unwrap_or_else(|_| panic!("bad Content-Length {cl:?}"));
            self.copy_exact(n, sink);
        } else {
            r.framing = "close";
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match self.reader.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => sink(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return,
                    Err(e) => panic!("reading close-delimited body: {e}"),
                }
            }
        }
    }

    fn copy_exact(&mut self, mut n: u64, sink: &mut dyn FnMut(&[u8])) {
        let mut buf = vec![0u8; 64 * 1024];
        while n > 0 {
            let want = buf.len().min(n as usize);
            let got = self.reader.read(&mut buf[..want]).expect("read body");
            assert!(got > 0, "connection closed with {n} body bytes missing");
            sink(&buf[..got]);
            n -= got as u64;
        }
    }

    /// True if nothing at all arrives within `within` (no byte, no EOF): the
    /// request is not being served. A failure guard, not a timing claim.
    pub fn silent_for(&mut self, within: Duration) -> bool {
        self.stream.set_read_timeout(Some(within)).unwrap();
        let r = self.reader.fill_buf().map(|b| b.len());
        self.stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        matches!(r, Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut))
    }

    /// True if the peer closed (EOF or reset) within `within`.
    pub fn closed_within(&mut self, within: Duration) -> bool {
        self.stream.set_read_timeout(Some(within)).unwrap();
        let mut b = [0u8; 1];
        let r = match self.reader.read(&mut b) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => matches!(e.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted),
        };
        self.stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        r
    }
}

/// Build a request with `Host` and (if a body is given) `Content-Length`.
pub fn request_bytes(method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {target} HTTP/1.1\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        out.push_str("Host: 127.0.0.1\r\n");
    }
    for (n, v) in headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    let has_len = headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("content-length") || n.eq_ignore_ascii_case("transfer-encoding"));
    if !has_len && (!body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH")) {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut v = out.into_bytes();
    v.extend_from_slice(body);
    v
}

/// One request on a fresh connection.
pub fn request(port: u16, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
    let mut c = Conn::connect(port);
    c.send(&request_bytes(method, target, headers, body));
    c.read_final(method == "HEAD")
}

pub fn get(port: u16, target: &str) -> Response {
    request(port, "GET", target, &[], b"")
}

/// Encode `body` as chunks of `chunk` bytes, with optional trailer lines.
pub fn chunked(body: &[u8], chunk: usize, trailers: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in body.chunks(chunk.max(1)) {
        out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n");
    for (n, v) in trailers {
        out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}

// ---------------------------------------------------------------- curl

/// True if the `curl` binary is on PATH (tests/run.sh installs it).
pub fn have_curl() -> bool {
    Command::new("curl").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

/// Run curl with a hard time limit; returns (status, stdout, stderr).
pub fn curl(args: &[&str]) -> (ExitStatus, Vec<u8>, String) {
    let out = Command::new("curl")
        .args(["--max-time", "30", "--noproxy", "*"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run curl (install it: apt-get install -y curl)");
    (out.status, out.stdout, String::from_utf8_lossy(&out.stderr).into_owned())
}

// ---------------------------------------------------------------- data

/// A deterministic byte pattern, so large bodies can be checked while streaming.
pub fn pattern_byte(i: u64) -> u8 {
    (i.wrapping_mul(31).wrapping_add(i >> 13) % 251) as u8
}

/// FNV-1a, fed incrementally; the origin uses the same function.
#[derive(Clone, Copy)]
pub struct Fnv(pub u64);

impl Fnv {
    pub fn new() -> Fnv {
        Fnv(0xcbf29ce484222325)
    }
    pub fn update(&mut self, data: &[u8]) {
        for b in data {
            self.0 ^= *b as u64;
            self.0 = self.0.wrapping_mul(0x100000001b3);
        }
    }
}

/// Poll `f` until true (bounded); a failure guard, not a timing assertion.
pub fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}
