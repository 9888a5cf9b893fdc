//! Query/retrieve through the DICOM relay against a real `dcmqrscp`: every
//! scenario runs the same DCMTK command once directly against dcmqrscp and
//! once through harmony, and the results must be identical (and what the
//! seeded data says they should be). Also 200 files in one association into
//! storescp, compared file by file, and a backend that is down.
//!
//! dcmqrscp runs in its default forking mode (`-s` is broken in DCMTK 3.6.7)
//! in its own process group, killed as a group on drop. Every test returns
//! early (with a message) only when a DCMTK program is not installed.

mod common;

use common::dicom::{
    dataset_dumps, datasets_by_sop_uid, dcmqrscp, dump_value, dumps_by_sop_uid, files_in, group_members, harmony_dicom,
    have_tools, seed_archive, seed_study_uid, seeded_study, storescp, storescu, wait_files, Instance, Peer, UID_ROOT,
};
use common::{free_port, Harmony, TempDir};
use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn have_qr_tools() -> bool {
    have_tools(&["dcmqrscp", "storescu", "storescp", "findscu", "getscu", "movescu", "dcmdump", "dump2dcm"])
}

/// A running dcmqrscp (AE `QR_SCP`) with harmony in front of it (called AE
/// `HARMONY` → QR_SCP). The HostTable knows the C-MOVE destinations
/// `MOVEDIRECT` and `MOVEHARMONY` at `move_ports`.
/// Fields drop in order: harmony, dcmqrscp, then the temp dir.
struct Qr {
    h: Harmony,
    hport: u16,
    qr: Peer,
    port: u16,
    move_ports: [u16; 2],
    seeded: Vec<(Instance, PathBuf)>,
    tmp: TempDir,
}

impl Qr {
    fn start(tag: &str, seed: bool) -> Qr {
        let tmp = TempDir::new(tag);
        let move_ports = [free_port(), free_port()];
        let (qr, port) = dcmqrscp(
            &tmp,
            &[("movedirect", "MOVEDIRECT", move_ports[0]), ("moveharmony", "MOVEHARMONY", move_ports[1])],
        );
        let hport = free_port();
        let h = harmony_dicom(hport, "QR_SCP", port, "", "");
        let mut qr = Qr { h, hport, qr, port, move_ports, seeded: Vec::new(), tmp };
        if seed {
            qr.seeded = seed_archive(&qr.tmp, "QR_SCP", qr.port);
        }
        qr
    }

    /// (called AE, port) of the two routes.
    fn routes(&self) -> [(&'static str, &'static str, u16); 2] {
        [("direct", "QR_SCP", self.port), ("harmony", "HARMONY", self.hport)]
    }

    /// Run a DCMTK SCU with `args` followed by `-aec CALLED 127.0.0.1 PORT`.
    fn scu(&self, program: &str, args: &[String], called: &str, port: u16, log: &str) -> String {
        let mut all: Vec<String> = args.to_vec();
        all.extend(["-aec".to_string(), called.to_string(), "127.0.0.1".to_string(), port.to_string()]);
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let (status, out) = Peer::run(program, &all, self.tmp.join(log));
        assert!(
            status.success(),
            "{program} {all:?} failed ({status}): {out}\n--- dcmqrscp:\n{}\n--- harmony:\n{}",
            self.qr.output(),
            self.h.stderr()
        );
        out
    }

    /// `findscu -S -X` on one route: the sorted data set dumps of the responses.
    fn find(&self, name: &str, route: (&str, &str, u16), keys: &[&str]) -> Vec<String> {
        let (label, called, port) = route;
        let dir = self.tmp.join(&format!("find-{name}-{label}"));
        fs::create_dir_all(&dir).unwrap();
        let mut args: Vec<String> =
            ["-S", "-aet", "FINDSCU", "-X", "-od", dir.to_str().unwrap()].iter().map(|s| s.to_string()).collect();
        for k in keys {
            args.push("-k".into());
            args.push(k.to_string());
        }
        self.scu("findscu", &args, called, port, &format!("find-{name}-{label}.log"));
        let mut dumps = dataset_dumps(&files_in(&dir));
        dumps.sort();
        dumps
    }
}

impl Drop for Qr {
    fn drop(&mut self) {
        let pgid = self.qr.pid();
        self.qr.stop();
        // the forked association handlers are in the same group: none may survive
        let left = group_members(pgid);
        if !left.is_empty() && !std::thread::panicking() {
            panic!("dcmqrscp processes left after stop: {left:?}");
        }
    }
}

/// Values of `tag` in a list of dumps, as a set.
fn values(dumps: &[String], tag: &str) -> BTreeSet<String> {
    dumps.iter().filter_map(|d| dump_value(d, tag)).collect()
}

#[test]
fn c_find_study_series_image_levels_match_direct() {
    if !have_qr_tools() {
        return;
    }
    let qr = Qr::start("qr-find", true);
    let seeded: Vec<&Instance> = qr.seeded.iter().map(|(i, _)| i).collect();
    let s1 = seed_study_uid(1);
    let s3 = seed_study_uid(3);
    let s3_series1 = format!("{s3}.1");
    let study_keys =
        ["QueryRetrieveLevel=STUDY", "PatientName=Doe*", "PatientID", "StudyInstanceUID", "StudyDate", "StudyID"];
    let all_studies = ["QueryRetrieveLevel=STUDY", "PatientName", "StudyInstanceUID", "StudyDate"];
    let date_range = ["QueryRetrieveLevel=STUDY", "StudyDate=20240201-20240331", "StudyInstanceUID"];
    let no_match = ["QueryRetrieveLevel=STUDY", "PatientName=Nobody*", "StudyInstanceUID"];
    let series_q = format!("StudyInstanceUID={s1}");
    let series_keys = ["QueryRetrieveLevel=SERIES", &series_q, "SeriesInstanceUID", "Modality", "SeriesNumber"];
    let image_series = format!("SeriesInstanceUID={s3_series1}");
    let image_study = format!("StudyInstanceUID={s3}");
    let image_keys = ["QueryRetrieveLevel=IMAGE", &image_study, &image_series, "SOPInstanceUID", "InstanceNumber"];

    let uids = |pred: &dyn Fn(&Instance) -> bool, f: &dyn Fn(&Instance) -> String| -> BTreeSet<String> {
        seeded.iter().filter(|i| pred(i)).map(|i| f(i)).collect()
    };
    // (name, keys, tag to check, expected values of that tag)
    let cases: Vec<(&str, &[&str], &str, BTreeSet<String>)> = vec![
        (
            "study-doe-wildcard",
            &study_keys,
            "(0020,000d)",
            uids(&|i| i.patient_name.starts_with("Doe"), &|i| i.study_uid.clone()),
        ),
        ("study-all", &all_studies, "(0020,000d)", uids(&|_| true, &|i| i.study_uid.clone())),
        ("study-date-range", &date_range, "(0020,000d)", [seed_study_uid(2), seed_study_uid(3)].into_iter().collect()),
        ("study-no-match", &no_match, "(0020,000d)", BTreeSet::new()),
        ("series", &series_keys, "(0020,000e)", uids(&|i| i.study_uid == s1, &|i| i.series_uid.clone())),
        ("image", &image_keys, "(0008,0018)", uids(&|i| i.series_uid == s3_series1, &|i| i.sop_uid.clone())),
    ];
    for (name, keys, tag, expected) in cases {
        let [direct, through] = qr.routes().map(|r| qr.find(name, r, keys));
        assert_eq!(values(&direct, tag), expected, "{name}: direct answer is not what was seeded: {direct:#?}");
        assert_eq!(direct.len(), expected.len(), "{name}: one response per match expected: {direct:#?}");
        assert_eq!(through, direct, "{name}: C-FIND through harmony differs from direct");
    }
    // the wildcard query returned the requested attributes, not just UIDs
    let doe = qr.find("study-doe-check", qr.routes()[1], &study_keys);
    assert_eq!(values(&doe, "(0010,0020)"), ["PID-1", "PID-2"].map(String::from).into_iter().collect());
    assert_eq!(values(&doe, "(0008,0054)"), ["QR_SCP".to_string()].into_iter().collect(), "RetrieveAETitle");
}

#[test]
fn c_get_retrieves_the_same_instances_as_direct() {
    if !have_qr_tools() {
        return;
    }
    let qr = Qr::start("qr-get", true);
    for study in [1, 3] {
        let expected = seeded_study(&qr.seeded, study);
        let mut got = Vec::new();
        for (label, called, port) in qr.routes() {
            let dir = qr.tmp.join(&format!("get-{study}-{label}"));
            fs::create_dir_all(&dir).unwrap();
            let args: Vec<String> = [
                "-S",
                "-aet",
                "GETSCU",
                "-k",
                "QueryRetrieveLevel=STUDY",
                "-k",
                &format!("StudyInstanceUID={}", seed_study_uid(study)),
                "-od",
                dir.to_str().unwrap(),
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            let out = qr.scu("getscu", &args, called, port, &format!("get-{study}-{label}.log"));
            // getscu writes each file before acknowledging it, so all are there when it exits
            let received = datasets_by_sop_uid(&dir);
            let names: BTreeSet<String> =
                files_in(&dir).iter().map(|f| f.file_name().unwrap().to_string_lossy().into_owned()).collect();
            got.push((received, names, out));
        }
        let (direct, direct_names, _) = &got[0];
        let (through, through_names, out) = &got[1];
        assert_eq!(
            direct.keys().collect::<Vec<_>>(),
            expected.keys().collect::<Vec<_>>(),
            "study {study}: direct C-GET did not return the seeded instances"
        );
        assert_eq!(direct, &expected, "study {study}: direct C-GET data differs from the seeded files");
        assert_eq!(through_names, direct_names, "study {study}: file names differ; getscu through harmony: {out}");
        assert_eq!(through, direct, "study {study}: C-GET through harmony differs from direct");
    }
}

#[test]
fn c_move_delivers_the_same_instances_as_direct() {
    if !have_qr_tools() {
        return;
    }
    let qr = Qr::start("qr-move", true);
    let expected = seeded_study(&qr.seeded, 1);
    let mut got = Vec::new();
    for ((label, called, port), (dest, dest_port)) in
        qr.routes().into_iter().zip([("MOVEDIRECT", qr.move_ports[0]), ("MOVEHARMONY", qr.move_ports[1])])
    {
        let dir = qr.tmp.join(&format!("move-{label}"));
        fs::create_dir_all(&dir).unwrap();
        // movescu is its own storage SCP on dest_port (dcmqrscp's HostTable entry for `dest`)
        let args: Vec<String> = [
            "-S",
            "-aet",
            "MOVESCU",
            "--move",
            dest,
            "--port",
            &dest_port.to_string(),
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            &format!("StudyInstanceUID={}", seed_study_uid(1)),
            "-od",
            dir.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let out = qr.scu("movescu", &args, called, port, &format!("move-{label}.log"));
        let received = datasets_by_sop_uid(&dir);
        got.push((received, out));
    }
    assert_eq!(got[0].0, expected, "direct C-MOVE did not deliver the seeded instances: {}", got[0].1);
    assert_eq!(got[1].0, got[0].0, "C-MOVE through harmony differs from direct: {}", got[1].1);
    let log = qr.h.stderr();
    assert!(log.contains("calling=MOVESCU called=HARMONY backend=pacs"), "no access-log line for the move: {log}");
}

/// 200 distinct files: one dump2dcm template, then per file the same-length
/// placeholders (SOP instance UID in meta header and data set, patient name)
/// are replaced and the pixel data (the last element) is refilled.
fn make_200(dir: &std::path::Path) -> Vec<PathBuf> {
    const PIXELS: usize = 8192;
    let sop_ph = format!("{UID_ROOT}.60.99999");
    let name_ph = "Bulk^P99999";
    let template = Instance {
        patient_name: name_ph.into(),
        patient_id: "PID-BULK".into(),
        study_uid: format!("{UID_ROOT}.60"),
        series_uid: format!("{UID_ROOT}.60.1"),
        sop_uid: sop_ph.clone(),
        pixel_bytes: PIXELS,
        ..Instance::default()
    }
    .write(dir, "template");
    let bytes = fs::read(&template).unwrap();
    let replace_all = |data: &mut Vec<u8>, from: &[u8], to: &[u8]| -> usize {
        assert_eq!(from.len(), to.len());
        let mut n = 0;
        let mut i = 0;
        while i + from.len() <= data.len() {
            if &data[i..i + from.len()] == from {
                data[i..i + from.len()].copy_from_slice(to);
                n += 1;
                i += from.len();
            } else {
                i += 1;
            }
        }
        n
    };
    (0..200)
        .map(|i| {
            let id = 10000 + i;
            let mut b = bytes.clone();
            assert_eq!(replace_all(&mut b, sop_ph.as_bytes(), format!("{UID_ROOT}.60.{id}").as_bytes()), 2);
            assert_eq!(replace_all(&mut b, name_ph.as_bytes(), format!("Bulk^P{id}").as_bytes()), 1);
            let n = b.len();
            for (k, byte) in b[n - PIXELS..].iter_mut().enumerate() {
                *byte = ((k * 131 + i * 7919 + k / 256) % 256) as u8;
            }
            let f = dir.join(format!("bulk{id}.dcm"));
            fs::write(&f, b).unwrap();
            f
        })
        .collect()
}

#[test]
fn store_200_files_through_harmony_arrive_intact() {
    if !have_qr_tools() {
        return;
    }
    let tmp = TempDir::new("qr-store200");
    let (src, out) = (tmp.join("src"), tmp.join("out"));
    fs::create_dir_all(&src).unwrap();
    fs::create_dir_all(&out).unwrap();
    let files = make_200(&src);
    let (_scp, scp_port) = storescp(&tmp, &out);
    let hport = free_port();
    let h = harmony_dicom(hport, "STORESCP", scp_port, "", "");
    let started = Instant::now();
    let (status, output) = storescu(&tmp, "HARMONY", hport, &files, "storescu.log");
    let took = started.elapsed();
    assert!(status.success(), "storescu through harmony failed: {output}\nharmony:\n{}", h.stderr());
    eprintln!("200 files through harmony in one association: {took:?}");
    let written = wait_files(&out, 200);
    assert_eq!(written.len(), 200, "storescp wrote {} files", written.len());
    let originals = dumps_by_sop_uid(&files);
    assert_eq!(originals.len(), 200, "the 200 source files do not have distinct SOP instance UIDs");
    let received = datasets_by_sop_uid(&out);
    assert_eq!(received.keys().collect::<Vec<_>>(), originals.keys().collect::<Vec<_>>());
    for (uid, orig) in &originals {
        assert!(received[uid] == *orig, "{uid}: received data set differs from the original");
    }
}

#[test]
fn backend_down_store_fails() {
    if !have_qr_tools() {
        return;
    }
    let mut qr = Qr::start("qr-down", false);
    let src = qr.tmp.join("src");
    fs::create_dir_all(&src).unwrap();
    let file = Instance { sop_uid: format!("{UID_ROOT}.70.1"), ..Instance::default() }.write(&src, "down");
    // sanity: the same store works while dcmqrscp is up
    let (status, out) = storescu(&qr.tmp, "HARMONY", qr.hport, std::slice::from_ref(&file), "up.log");
    assert!(status.success(), "storescu through harmony with the backend up failed: {out}");
    let pgid = qr.qr.pid();
    qr.qr.stop();
    let left = group_members(pgid);
    assert!(left.is_empty(), "dcmqrscp processes {left:?} still running after stop");
    let started = Instant::now();
    let (status, out) = storescu(&qr.tmp, "HARMONY", qr.hport, &[file], "down.log");
    assert!(!status.success(), "storescu through harmony succeeded with the backend down: {out}");
    assert!(out.to_lowercase().contains("association rejected"), "expected an association rejection: {out}");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    let log = qr.h.stderr();
    assert!(
        common::eventually(Duration::from_secs(5), || qr.h.stderr().contains("backend unavailable")),
        "harmony did not log the unavailable backend: {log}"
    );
}
