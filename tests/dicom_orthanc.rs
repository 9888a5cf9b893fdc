//! The DICOM relay in front of a real Orthanc: storescu → harmony → Orthanc,
//! checked through Orthanc's REST API, and C-ECHO. Orthanc runs with a temp
//! JSON config (own HTTP and DICOM ports, storage and index in a temp dir,
//! `RemoteAccessAllowed: false`, `DicomCheckCalledAet: true`), as the
//! unprivileged `orthanc` user when the tests run as root, and is stopped by
//! PID (SIGTERM, then waited for). Every test returns early (with a message)
//! only when Orthanc, DCMTK or curl is not installed.

mod common;

use common::dicom::{echoscu, harmony_dicom, have_dcmtk, storescu, Instance, Peer, LIMIT, UID_ROOT};
use common::{curl, free_port, have_curl, TempDir};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

const ORTHANC_AET: &str = "ORTHANC";

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
fn have_all() -> Option<PathBuf> {
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
struct Orthanc {
    peer: Peer,
    http: u16,
    dicom: u16,
}

impl Orthanc {
    fn start(bin: &Path, tmp: &TempDir) -> Orthanc {
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

    fn get_json(&self, path: &str) -> serde_json::Value {
        let (status, body, err) = curl(&["-s", "-f", &url(self.http, path)]);
        assert!(status.success(), "GET {path} failed: {err}\nOrthanc: {}", self.peer.output());
        serde_json::from_slice(&body).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e})"))
    }

    fn get_text(&self, path: &str) -> String {
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

fn url(port: u16, path: &str) -> String {
    format!("http://127.0.0.1:{port}{path}")
}

/// `curl -w %{http_code}` result → (was it 200, code, stderr).
trait MapOk {
    fn map_ok(self) -> (bool, String, String);
}

impl MapOk for (std::process::ExitStatus, Vec<u8>, String) {
    fn map_ok(self) -> (bool, String, String) {
        let code = String::from_utf8_lossy(&self.1).trim().to_string();
        (self.0.success() && code == "200", code, self.2)
    }
}

#[test]
fn store_three_files_through_harmony_into_orthanc() {
    let Some(bin) = have_all() else { return };
    let tmp = TempDir::new("orthanc-store");
    let src = tmp.join("src");
    fs::create_dir_all(&src).unwrap();
    let orthanc = Orthanc::start(&bin, &tmp);
    let hport = free_port();
    let h = harmony_dicom(hport, ORTHANC_AET, orthanc.dicom, "", "");
    let names = ["Doe^Alice", "Doe^Bob", "Roe^Carol"];
    let insts: Vec<Instance> = names
        .iter()
        .enumerate()
        .map(|(i, n)| Instance {
            patient_name: n.to_string(),
            patient_id: format!("OPID-{i}"),
            study_uid: format!("{UID_ROOT}.80.{i}"),
            series_uid: format!("{UID_ROOT}.80.{i}.1"),
            sop_uid: format!("{UID_ROOT}.80.{i}.1.1"),
            pixel_bytes: 20_000,
            ..Instance::default()
        })
        .collect();
    let files: Vec<PathBuf> = insts.iter().enumerate().map(|(i, inst)| inst.write(&src, &format!("o{i}"))).collect();
    assert!(orthanc.get_json("/instances").as_array().unwrap().is_empty(), "Orthanc is not empty at start");

    let (status, out) = storescu(&tmp, "HARMONY", hport, &files, "storescu.log");
    assert!(
        status.success(),
        "storescu → harmony → Orthanc failed: {out}\nharmony:\n{}\nOrthanc:\n{}",
        h.stderr(),
        orthanc.peer.output()
    );

    // Orthanc indexes each instance before it answers the C-STORE
    let ids = orthanc.get_json("/instances");
    let ids: Vec<String> = ids.as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    assert_eq!(ids.len(), 3, "Orthanc holds {ids:?}");
    let mut got: Vec<(String, String)> = Vec::new();
    for id in &ids {
        let tags = orthanc.get_json(&format!("/instances/{id}/simplified-tags"));
        got.push((
            tags["SOPInstanceUID"].as_str().unwrap().to_string(),
            tags["PatientName"].as_str().unwrap().to_string(),
        ));
        // the relay passed the calling AE through and rewrote the called AE
        // (DicomCheckCalledAet would have rejected "HARMONY")
        assert_eq!(orthanc.get_text(&format!("/instances/{id}/metadata/RemoteAET")), "TESTSCU");
        assert_eq!(orthanc.get_text(&format!("/instances/{id}/metadata/CalledAET")), ORTHANC_AET);
    }
    got.sort();
    let mut want: Vec<(String, String)> = insts.iter().map(|i| (i.sop_uid.clone(), i.patient_name.clone())).collect();
    want.sort();
    assert_eq!(got, want);

    // the stored bytes are the sent data set: compare Orthanc's copy with the original
    for (id, _) in ids.iter().zip(0..) {
        let (status, body, err) = curl(&["-s", "-f", &url(orthanc.http, &format!("/instances/{id}/file"))]);
        assert!(status.success(), "download {id}: {err}");
        let f = tmp.write(&format!("from-orthanc-{id}.dcm"), &body);
        let d = common::dicom::dataset_dumps(&[f]).remove(0);
        let uid = common::dicom::dump_value(&d, "(0008,0018)").unwrap();
        let orig = files[insts.iter().position(|i| i.sop_uid == uid).unwrap()].clone();
        let od = common::dicom::dataset_dumps(&[orig]).remove(0);
        assert_eq!(d, od, "{uid}: Orthanc's file differs from the original data set");
    }
}

#[test]
fn echo_through_harmony_to_orthanc() {
    let Some(bin) = have_all() else { return };
    let tmp = TempDir::new("orthanc-echo");
    let orthanc = Orthanc::start(&bin, &tmp);
    let hport = free_port();
    let h = harmony_dicom(hport, ORTHANC_AET, orthanc.dicom, "", "");
    // Orthanc checks the called AE: calling it "HARMONY" directly is rejected ...
    let (status, out) = echoscu(&tmp, "HARMONY", orthanc.dicom, "direct-wrong.log");
    assert!(!status.success(), "Orthanc accepted a wrong called AE, so this test proves nothing: {out}");
    // ... while through harmony (which rewrites it to ORTHANC) the echo succeeds
    let (status, out) = echoscu(&tmp, "HARMONY", hport, "echo.log");
    assert!(
        status.success(),
        "C-ECHO through harmony to Orthanc failed: {out}\nharmony:\n{}\nOrthanc:\n{}",
        h.stderr(),
        orthanc.peer.output()
    );
    let (status, out) = echoscu(&tmp, ORTHANC_AET, orthanc.dicom, "direct.log");
    assert!(status.success(), "direct C-ECHO to Orthanc failed: {out}");
    assert!(
        common::eventually(Duration::from_secs(5), || h
            .stderr()
            .contains("calling=TESTSCU called=HARMONY backend=pacs outcome=\"released\"")),
        "no access-log line: {}",
        h.stderr()
    );
}
