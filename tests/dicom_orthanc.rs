//! The DICOM relay in front of a real Orthanc: storescu → harmony → Orthanc,
//! checked through Orthanc's REST API, and C-ECHO. The Orthanc fixture
//! (`tests/common/orthanc.rs`) runs it with a temp config and stops it by
//! PID. Every test returns early (with a message) only when Orthanc, DCMTK
//! or curl is not installed.

mod common;

use common::dicom::{echoscu, harmony_dicom, storescu, Instance, UID_ROOT};
use common::orthanc::{have_orthanc, url, Orthanc, ORTHANC_AET};
use common::{curl, free_port, TempDir};
use std::fs;
use std::path::PathBuf;
use std::time::Duration;

#[test]
fn store_three_files_through_harmony_into_orthanc() {
    let Some(bin) = have_orthanc() else { return };
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
    let Some(bin) = have_orthanc() else { return };
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
