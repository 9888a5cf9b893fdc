//! DICOM relay against real DCMTK peers: echoscu / storescu → harmony →
//! storescp. Every test returns early (with a message) when DCMTK is not
//! installed; `tests/run.sh` installs the `dcmtk` package.

mod common;

use common::dicom::{echoscu, harmony_dicom, have_dcmtk, make_file, storescp, storescu, wait_files};
use common::{free_port, Harmony, TempDir};
use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Harmony with one dicom network on `hport`: called AE "HARMONY" → STORESCP at `backend_port`.
fn harmony(hport: u16, backend_port: u16, endpoint_extra: &str) -> Harmony {
    harmony_dicom(hport, "STORESCP", backend_port, endpoint_extra, "")
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
    let log = h.wait_stderr("outcome=\"released\"");
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
    let (status, output) = storescu(&tmp, "HARMONY", hport, &files, "storescu.log");
    assert!(status.success(), "storescu through harmony failed: {output}\nharmony:\n{}", h.stderr());
    let written = wait_files(&out, 5);
    assert_eq!(written.len(), 5, "storescp wrote {written:?}");
    let dumps: Vec<String> = written.iter().map(|f| common::dicom::dcmdump(f)).collect();
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
    let log = h.wait_stderr("backend unavailable");
    assert!(log.contains("backend unavailable"), "{log}");
}
