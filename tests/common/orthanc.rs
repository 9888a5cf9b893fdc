//! A real Orthanc for the DICOM tests: a temp JSON config (own HTTP and
//! DICOM ports, storage and index in a temp dir, `RemoteAccessAllowed:
//! false`, `DicomCheckCalledAet: true`), run as the unprivileged `orthanc`
//! user when the tests run as root, stopped by PID (SIGTERM, then waited
//! for) on drop, and read through its REST API with curl.

use super::dicom::{have_dcmtk, Peer, LIMIT};
use super::{curl, free_port, have_curl, TempDir};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

pub const ORTHANC_AET: &str = "ORTHANC";

fn orthanc_bin() -> Option<PathBuf> {
    let installed = PathBuf::from("/usr/sbin/Orthanc");
    if installed.is_file() {
        return Some(installed);
    }
    let out = Command::new("sh").args(["-c", "command -v Orthanc"]).output().ok()?;
    let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !p.is_empty()).then(|| PathBuf::from(p))
}

/// Orthanc (or `None` with a message) when it, DCMTK and curl are all installed.
pub fn have_orthanc() -> Option<PathBuf> {
    let bin = orthanc_bin();
    if bin.is_none() {
        eprintln!("skipping: Orthanc is not installed (Debian package orthanc; tests/run.sh installs it)");
        return None;
    }
    if !have_dcmtk() {
        return None;
    }
    if !have_curl() {
        eprintln!("skipping: curl is not installed");
        return None;
    }
    bin
}

fn id_u(user: Option<&str>) -> Option<String> {
    let out = Command::new("id").arg("-u").args(user).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A running Orthanc; SIGTERM and a bounded wait for its exit on drop.
pub struct Orthanc {
    pub peer: Peer,
    pub http: u16,
    pub dicom: u16,
}

impl Orthanc {
    pub fn start(bin: &Path, tmp: &TempDir) -> Orthanc {
        let storage = tmp.join("orthanc-db");
        fs::create_dir_all(&storage).unwrap();
        let (http, dicom) = (free_port(), free_port());
        let config = serde_json::json!({
            "Name": "harmony-test",
            "HttpPort": http,
            "DicomPort": dicom,
            "DicomAet": ORTHANC_AET,
            "StorageDirectory": storage,
            "IndexDirectory": storage,
            "RemoteAccessAllowed": false,
            "AuthenticationEnabled": false,
            "DicomCheckCalledAet": true,
            "DicomAlwaysAllowEcho": true,
            "DicomAlwaysAllowStore": true,
            "DicomModalities": {},
            "Plugins": [],
            "SaveJobs": false,
            "HttpThreadsCount": 4,
        });
        let cfg = tmp.write("orthanc.json", serde_json::to_string_pretty(&config).unwrap().as_bytes());
        // As root, run as the unprivileged `orthanc` user (PEERS.md) and give it the storage dir.
        let as_user = id_u(None).as_deref() == Some("0") && id_u(Some("orthanc")).is_some();
        let cmd = if as_user {
            let st = Command::new("chown").args(["-R", "orthanc:orthanc"]).arg(&storage).status().unwrap();
            assert!(st.success(), "chown of the Orthanc storage dir failed");
            let mut c = Command::new("setpriv");
            // setpriv execs Orthanc, so the PID we hold is Orthanc's own
            c.args(["--reuid=orthanc", "--regid=orthanc", "--clear-groups"]).arg(bin).arg(&cfg);
            c
        } else {
            let mut c = Command::new(bin);
            c.arg(&cfg);
            c
        };
        let mut peer = Peer::spawn_command(cmd, tmp.join("orthanc.log"));
        // ready when GET /system answers 200
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Ok(Some(status)) = peer.child.try_wait() {
                panic!("Orthanc exited during start-up ({status}): {}", peer.output());
            }
            let (st, _, _) =
                curl(&["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "2", &url(http, "/system")])
                    .map_ok();
            if st {
                break;
            }
            assert!(Instant::now() < deadline, "Orthanc did not answer GET /system: {}", peer.output());
            thread::sleep(Duration::from_millis(50));
        }
        peer.wait_listening(dicom);
        Orthanc { peer, http, dicom }
    }

    pub fn get_json(&self, path: &str) -> serde_json::Value {
        let (status, body, err) = curl(&["-s", "-f", &url(self.http, path)]);
        assert!(status.success(), "GET {path} failed: {err}\nOrthanc: {}", self.peer.output());
        serde_json::from_slice(&body).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e})"))
    }

    pub fn get_text(&self, path: &str) -> String {
        let (status, body, err) = curl(&["-s", "-f", &url(self.http, path)]);
        assert!(status.success(), "GET {path} failed: {err}");
        String::from_utf8_lossy(&body).into_owned()
    }
}

impl Drop for Orthanc {
    fn drop(&mut self) {
        // a clean stop releases the SQLite index before the temp dir goes
        if self.peer.terminate(Duration::from_secs(10)).is_none() {
            eprintln!("Orthanc did not exit within 10 s of SIGTERM; killing it");
            self.peer.stop();
        }
    }
}

pub fn url(port: u16, path: &str) -> String {
    format!("http://127.0.0.1:{port}{path}")
}

/// `curl -w %{http_code}` result → (was it 200, code, stderr).
pub trait MapOk {
    fn map_ok(self) -> (bool, String, String);
}

impl MapOk for (std::process::ExitStatus, Vec<u8>, String) {
    fn map_ok(self) -> (bool, String, String) {
        let code = String::from_utf8_lossy(&self.1).trim().to_string();
        (self.0.success() && code == "200", code, self.2)
    }
}
