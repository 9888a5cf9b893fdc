//! DICOM relay against real DCMTK peers: echoscu / storescu → harmony →
//! storescp. Every test returns early (with a message) when DCMTK is not
//! installed; `tests/run.sh` installs the `dcmtk` package.

mod common;

use common::{free_port, port_open, Harmony, TempDir};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(20);
const SECONDARY_CAPTURE: &str = "1.2.840.10008.5.1.4.1.1.7";

fn have_dcmtk() -> bool {
    let ok = ["echoscu", "storescu", "storescp", "dcmdump", "dump2dcm"]
        .iter()
        .all(|b| Command::new(b).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok());
    if !ok {
        eprintln!("skipping: DCMTK (echoscu, storescu, storescp, dcmdump, dump2dcm) is not installed");
    }
    ok
}

/// A DCMTK process with output in a file, killed (by its PID) on drop.
struct Peer {
    child: Child,
    log: PathBuf,
}

impl Peer {
    fn spawn(program: &str, args: &[&str], log: PathBuf) -> Peer {
        let out = File::create(&log).unwrap();
        let child = Command::new(program)
            .args(args)
            .env("TCP_NODELAY", "1")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        Peer { child, log }
    }

    /// Run to completion within `LIMIT`: (status, output).
    fn run(program: &str, args: &[&str], log: PathBuf) -> (ExitStatus, String) {
        let mut p = Peer::spawn(program, args, log);
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Some(status) = p.child.try_wait().unwrap() {
                return (status, p.output());
            }
            assert!(Instant::now() < deadline, "{program} still running after {LIMIT:?}: {}", p.output());
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn output(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// storescp on a free port, writing into `dir`; waits until it listens.
fn storescp(tmp: &TempDir, dir: &Path) -> (Peer, u16) {
    let port = free_port();
    let p = Peer::spawn(
        "storescp",
        &["--aetitle", "STORESCP", "--output-directory", dir.to_str().unwrap(), &port.to_string()],
        tmp.join("storescp.log"),
    );
    let deadline = Instant::now() + LIMIT;
    while !port_open(port) {
        assert!(Instant::now() < deadline, "storescp did not listen: {}", p.output());
        thread::sleep(Duration::from_millis(20));
    }
    (p, port)
}

/// Harmony with one dicom network on `hport`: called AE "HARMONY" → STORESCP at `backend_port`.
fn harmony(hport: u16, backend_port: u16, endpoint_extra: &str) -> Harmony {
    let toml = format!(
        r#"[proxy]
id = "dicom-test"
log_level = "info"

[network.imaging.dicom]
bind_address = "127.0.0.1"
bind_port = {hport}

[pipelines.imaging]
networks = ["imaging"]
endpoints = ["dicom_in"]
backends = ["pacs"]

[endpoints.dicom_in]
service = "dicom"
options = {{ ae_title = "HARMONY"{endpoint_extra} }}

[backends.pacs]
service = "dicom"
options = {{ aet = "STORESCP", host = "127.0.0.1", port = {backend_port}, timeout_ms = 3000 }}
"#
    );
    Harmony::start("dicom", &toml, hport)
}

fn echoscu(tmp: &TempDir, called: &str, port: u16, log: &str) -> (ExitStatus, String) {
    Peer::run("echoscu", &["-aet", "TESTSCU", "-aec", called, "127.0.0.1", &port.to_string()], tmp.join(log))
}

/// A small Secondary Capture file made with dump2dcm.
fn make_file(dir: &Path, name: &str, sop_instance: &str) -> PathBuf {
    let dump = dir.join(format!("{name}.dump"));
    let file = dir.join(format!("{name}.dcm"));
    fs::write(
        &dump,
        format!(
            "(0008,0016) UI [{SECONDARY_CAPTURE}]\n(0008,0018) UI [{sop_instance}]\n(0008,0060) CS [OT]\n\
             (0010,0010) PN [Doe^{name}]\n(0010,0020) LO [PID-{name}]\n(0020,000d) UI [1.2.826.0.1.3680043.2.1125.1]\n\
             (0020,000e) UI [1.2.826.0.1.3680043.2.1125.1.1]\n(7fe0,0010) OB 01\\02\\03\\04\n"
        ),
    )
    .unwrap();
    let status = Command::new("dump2dcm").arg("+te").arg(&dump).arg(&file).status().unwrap();
    assert!(status.success(), "dump2dcm failed");
    file
}

fn dcmdump(file: &Path) -> String {
    let out = Command::new("dcmdump").arg(file).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Wait (bounded) until `dir` holds `n` files.
fn wait_files(dir: &Path, n: usize) -> Vec<PathBuf> {
    let deadline = Instant::now() + LIMIT;
    loop {
        let files: Vec<PathBuf> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        if files.len() >= n || Instant::now() > deadline {
            return files;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn echo_through_the_relay() {
    if !have_dcmtk() {
        return;
    }
    let tmp = TempDir::new("dicom-echo");
    let out = tmp.join("out");
    fs::create_dir_all(&out).unwrap();
    let (_scp, scp_port) = storescp(&tmp, &out);
    let hport = free_port();
    let h = harmony(hport, scp_port, "");
    let (status, output) = echoscu(&tmp, "HARMONY", hport, "echo.log");
    assert!(status.success(), "echoscu through harmony failed: {output}\nharmony:\n{}", h.stderr());
    // a second association on the same listener works too
    let (status, output) = echoscu(&tmp, "HARMONY", hport, "echo2.log");
    assert!(status.success(), "second echoscu failed: {output}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !h.stderr().contains("outcome=\"released\"") && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    let log = h.stderr();
    assert!(
        log.contains("calling=TESTSCU called=HARMONY backend=pacs outcome=\"released\" messages=1"),
        "association access log line missing:\n{log}"
    );
    assert!(log.contains("C-ECHO-RQ msg=1 from=client status=0x0000"), "DIMSE access log line missing:\n{log}");
}

#[test]
fn unknown_called_ae_is_rejected() {
    if !have_dcmtk() {
        return;
    }
    let tmp = TempDir::new("dicom-nope");
    let out = tmp.join("out");
    fs::create_dir_all(&out).unwrap();
    let (_scp, scp_port) = storescp(&tmp, &out);
    let hport = free_port();
    let _h = harmony(hport, scp_port, "");
    let (status, output) = echoscu(&tmp, "NOPE", hport, "nope.log");
    assert!(!status.success(), "echoscu to an unknown AE succeeded: {output}");
    assert!(output.to_lowercase().contains("called ae title not recognized"), "echoscu output: {output}");
}

#[test]
fn calling_ae_not_allowed_is_rejected() {
    if !have_dcmtk() {
        return;
    }
    let tmp = TempDir::new("dicom-calling");
    let out = tmp.join("out");
    fs::create_dir_all(&out).unwrap();
    let (_scp, scp_port) = storescp(&tmp, &out);
    let hport = free_port();
    let _h = harmony(hport, scp_port, r#", allowed_calling_aes = ["CT01"]"#);
    let (status, output) = echoscu(&tmp, "HARMONY", hport, "calling.log");
    assert!(!status.success(), "echoscu from a non-allowed AE succeeded: {output}");
    assert!(output.to_lowercase().contains("calling ae title not recognized"), "echoscu output: {output}");
}

#[test]
fn store_five_files_through_the_relay() {
    if !have_dcmtk() {
        return;
    }
    let tmp = TempDir::new("dicom-store");
    let out = tmp.join("out");
    let src = tmp.join("src");
    fs::create_dir_all(&out).unwrap();
    fs::create_dir_all(&src).unwrap();
    let (_scp, scp_port) = storescp(&tmp, &out);
    let hport = free_port();
    let h = harmony(hport, scp_port, "");
    let uids: Vec<String> = (1..=5).map(|i| format!("1.2.826.0.1.3680043.2.1125.9.{i}")).collect();
    let files: Vec<PathBuf> = uids.iter().enumerate().map(|(i, u)| make_file(&src, &format!("f{i}"), u)).collect();
    let mut args: Vec<String> =
        ["-aet", "TESTSCU", "-aec", "HARMONY", "127.0.0.1"].iter().map(|s| s.to_string()).collect();
    args.push(hport.to_string());
    args.extend(files.iter().map(|f| f.to_str().unwrap().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (status, output) = Peer::run("storescu", &args, tmp.join("storescu.log"));
    assert!(status.success(), "storescu through harmony failed: {output}\nharmony:\n{}", h.stderr());
    let written = wait_files(&out, 5);
    assert_eq!(written.len(), 5, "storescp wrote {written:?}");
    let dumps: Vec<String> = written.iter().map(|f| dcmdump(f)).collect();
    for u in &uids {
        assert!(dumps.iter().any(|d| d.contains(u.as_str())), "SOP instance {u} not stored");
    }
}

#[test]
fn backend_down_is_a_rejection_not_a_hang() {
    if !have_dcmtk() {
        return;
    }
    let tmp = TempDir::new("dicom-down");
    let out = tmp.join("out");
    fs::create_dir_all(&out).unwrap();
    let (mut scp, scp_port) = storescp(&tmp, &out);
    let hport = free_port();
    let h = harmony(hport, scp_port, "");
    scp.stop();
    let started = Instant::now();
    let (status, output) = echoscu(&tmp, "HARMONY", hport, "down.log");
    assert!(!status.success(), "echoscu succeeded with the backend down: {output}");
    assert!(output.to_lowercase().contains("reject"), "expected an association rejection: {output}");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    let deadline = Instant::now() + Duration::from_secs(5);
    while !h.stderr().contains("backend unavailable") && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    assert!(h.stderr().contains("backend unavailable"), "{}", h.stderr());
}
