//! The shipped DICOM scripts (`scripts/dicom/`) in front of real peers:
//! `deidentify.lua` storing into Orthanc (checked through Orthanc's REST
//! API), `ae_router.lua` sending two calling AEs to two storescp backends
//! (and rejecting a stranger with `strict = true`), and `cfind_fixer.lua`
//! in front of dcmqrscp (a lower-case name without wildcard finds what the
//! upper-case wildcard name finds directly). Each test returns early only if
//! a program it needs (or the script) is missing.

mod common;

use common::dicom::{
    dataset_dumps, dcmqrscp, dump_value, echoscu_as, files_in, have_dcmtk, have_tools, shipped_script, storescp_as,
    storescu, storescu_opts, wait_files, DicomConfig, Instance, Peer, UID_ROOT,
};
use common::lua::log_line;
use common::orthanc::{have_orthanc, Orthanc, ORTHANC_AET};
use common::{free_port, TempDir};
use serde_json::Value;
use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::thread;
use std::time::Duration;

/// `storescu -v -aet CALLING -aec HARMONY 127.0.0.1 PORT FILES...` (one association).
fn store_as(tmp: &TempDir, calling: &str, port: u16, files: &[PathBuf], log: &str) -> (ExitStatus, String) {
    storescu_opts(tmp, &["-v"], calling, "HARMONY", port, files, log)
}

// ------------------------------------------------------------ deidentify.lua

const SECRET: &str = "a-test-secret-of-more-than-16-characters";

/// A test instance with identifying attributes beyond what `Instance` writes.
fn identified(inst: &Instance, dir: &std::path::Path, name: &str) -> PathBuf {
    let extra = "(0008,0080) LO [St Elsewhere Hospital]\n(0008,0090) PN [Kildare^James]\n\
                 (0010,0030) DA [19610203]\n(0010,1040) LO [1 Main Street]\n";
    let text = format!("{extra}{}", inst.dump_text());
    let file = dir.join(format!("{name}.dcm"));
    common::dicom::dump2dcm(&text, &dir.join(format!("{name}.dump")), &file);
    file
}

fn tag<'a>(tags: &'a Value, name: &str) -> Option<&'a str> {
    tags.get(name).and_then(Value::as_str)
}

#[test]
fn deidentify_lua_stores_deidentified_instances_into_orthanc() {
    let Some(bin) = have_orthanc() else { return };
    let Some(script) = shipped_script("dicom/deidentify.lua") else { return };
    let tmp = TempDir::new("deid-orthanc");
    let src = tmp.join("src");
    fs::create_dir_all(&src).unwrap();
    let orthanc = Orthanc::start(&bin, &tmp);
    let hport = free_port();
    let h = DicomConfig::new(hport)
        .lua(
            "deid",
            &format!("script = \"dicom/deidentify.lua\", secret = \"{SECRET}\", patient_id_prefix = \"ANON-\""),
        )
        .backend("pacs", ORTHANC_AET, orthanc.dicom, "")
        .start("deid-orthanc", &[("dicom/deidentify.lua", &script)]);

    // study A: two instances of one patient (two series); study B: another patient
    let a = |series: u32, i: u32| Instance {
        patient_name: "Doe^Alice".into(),
        patient_id: "MRN-ALICE-1".into(),
        study_uid: format!("{UID_ROOT}.90.1"),
        series_uid: format!("{UID_ROOT}.90.1.{series}"),
        series_number: series,
        sop_uid: format!("{UID_ROOT}.90.1.{series}.{i}"),
        instance_number: i,
        study_date: "20240315".into(),
        pixel_bytes: 30_000,
        ..Instance::default()
    };
    let originals = [
        a(1, 1),
        a(2, 1),
        Instance {
            patient_name: "Roe^Bob".into(),
            patient_id: "MRN-BOB-2".into(),
            study_uid: format!("{UID_ROOT}.90.2"),
            series_uid: format!("{UID_ROOT}.90.2.1"),
            sop_uid: format!("{UID_ROOT}.90.2.1.1"),
            pixel_bytes: 5_000,
            ..Instance::default()
        },
    ];
    let files: Vec<PathBuf> =
        originals.iter().enumerate().map(|(i, inst)| identified(inst, &src, &format!("id{i}"))).collect();
    let (status, out) = store_as(&tmp, "TESTSCU", hport, &files, "store.log");
    assert!(
        status.success(),
        "storescu → harmony (deidentify) → Orthanc failed: {out}\nharmony:\n{}\nOrthanc:\n{}",
        h.stderr(),
        orthanc.peer.output()
    );
    let responses: Vec<&str> = out.lines().filter(|l| l.contains("Received Store Response")).collect();
    assert_eq!(responses, ["I: Received Store Response (Success)"; 3], "{out}");
    // the sender sees the UIDs it sent in the responses: DCMTK would warn otherwise
    assert!(!out.contains("W: "), "storescu warned: {out}");

    let ids: Vec<String> =
        orthanc.get_json("/instances").as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    assert_eq!(ids.len(), 3, "Orthanc holds {ids:?}");
    let originals_uids: BTreeSet<&str> =
        originals.iter().flat_map(|i| [i.study_uid.as_str(), i.series_uid.as_str(), i.sop_uid.as_str()]).collect();
    let mut by_study: std::collections::BTreeMap<String, Vec<Value>> = Default::default();
    for id in &ids {
        let t = orthanc.get_json(&format!("/instances/{id}/simplified-tags"));
        let all = serde_json::to_string(&t).unwrap();
        for secret in
            ["Doe^Alice", "Roe^Bob", "MRN-ALICE-1", "MRN-BOB-2", "19610203", "Elsewhere", "Kildare", "Main Street"]
        {
            assert!(!all.contains(secret), "instance {id} still holds {secret:?}: {t:#}");
        }
        assert!(tag(&t, "PatientName").unwrap_or("").is_empty(), "{t:#}");
        assert!(tag(&t, "PatientBirthDate").unwrap_or("").is_empty(), "{t:#}");
        let pid = tag(&t, "PatientID").unwrap_or_else(|| panic!("no PatientID: {t:#}"));
        assert!(pid.starts_with("ANON-") && pid.len() == 5 + 16, "pseudonym {pid:?}");
        assert_eq!(tag(&t, "PatientIdentityRemoved"), Some("YES"), "{t:#}");
        assert!(t.get("InstitutionName").is_none() && t.get("PatientAddress").is_none(), "{t:#}");
        for k in ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"] {
            let uid = tag(&t, k).unwrap_or_else(|| panic!("no {k}: {t:#}"));
            assert!(!originals_uids.contains(uid), "{k} {uid} is an original UID");
            assert!(uid.starts_with("2.25."), "{k} {uid}");
        }
        assert_ne!(tag(&t, "StudyDate"), Some("20240315"), "dates are shifted by default: {t:#}");
        by_study.entry(tag(&t, "StudyInstanceUID").unwrap().to_string()).or_default().push(t);
    }
    // one study per original study: the two instances of study A are together,
    // with one pseudonym and distinct series
    assert_eq!(by_study.len(), 2, "{by_study:#?}");
    assert_eq!(orthanc.get_json("/studies").as_array().unwrap().len(), 2);
    assert_eq!(orthanc.get_json("/patients").as_array().unwrap().len(), 2);
    let study_a = by_study.values().find(|v| v.len() == 2).expect("a study with two instances");
    assert_eq!(tag(&study_a[0], "PatientID"), tag(&study_a[1], "PatientID"));
    assert_ne!(tag(&study_a[0], "SeriesInstanceUID"), tag(&study_a[1], "SeriesInstanceUID"));
    let study_b = by_study.values().find(|v| v.len() == 1).unwrap();
    assert_ne!(tag(&study_a[0], "PatientID"), tag(&study_b[0], "PatientID"));

    // the same original again, in a new association: the same new UIDs, so
    // Orthanc still holds 3 instances
    let (status, out) = store_as(&tmp, "TESTSCU", hport, &files[..1], "store-again.log");
    assert!(status.success(), "{out}");
    assert_eq!(orthanc.get_json("/instances").as_array().unwrap().len(), 3, "a re-sent instance got new UIDs");
}

// ------------------------------------------------------------ ae_router.lua

#[test]
fn ae_router_lua_routes_calling_aes_to_their_backends() {
    if !have_dcmtk() {
        return;
    }
    let Some(script) = shipped_script("dicom/ae_router.lua") else { return };
    let tmp = TempDir::new("ae-router");
    let src = tmp.join("src");
    fs::create_dir_all(&src).unwrap();
    let dirs: Vec<PathBuf> = ["a", "b", "c"].iter().map(|n| tmp.join(n)).collect();
    let mut scps = Vec::new();
    for (d, ae) in dirs.iter().zip(["SCP_A", "SCP_B", "SCP_C"]) {
        fs::create_dir_all(d).unwrap();
        scps.push(storescp_as(&tmp, d, ae));
    }
    let backends = [("pacs_c", "SCP_C", scps[2].1), ("pacs_a", "SCP_A", scps[0].1), ("pacs_b", "SCP_B", scps[1].1)];
    let routes = "routes = { CT_A = \"pacs_a\", MR_B = \"pacs_b\" }";
    let hport = free_port();
    let h = DicomConfig::new(hport)
        .lua("by_ae", &format!("script = \"dicom/ae_router.lua\", {routes}"))
        .backends(&backends)
        .start("ae-router", &[("dicom/ae_router.lua", &script)]);
    let file = |n: u32| {
        Instance { sop_uid: format!("{UID_ROOT}.91.{n}"), ..Instance::default() }.write(&src, &format!("f{n}"))
    };
    // (calling AE, expected dir index): the pipeline's first backend (pacs_c) for others
    for (n, (calling, want)) in [("CT_A", 0usize), ("MR_B", 1), ("OTHER", 2), ("CT_A", 0)].into_iter().enumerate() {
        let f = file(n as u32);
        let before: Vec<usize> = dirs.iter().map(|d| files_in(d).len()).collect();
        let (status, out) = store_as(&tmp, calling, hport, &[f], &format!("store-{n}.log"));
        assert!(status.success(), "{calling}: {out}\nharmony:\n{}", h.stderr());
        assert_eq!(wait_files(&dirs[want], before[want] + 1).len(), before[want] + 1, "{calling}");
        thread::sleep(Duration::from_millis(100));
        for (i, d) in dirs.iter().enumerate() {
            let expect = before[i] + usize::from(i == want);
            assert_eq!(files_in(d).len(), expect, "{calling}: {} has the wrong number of files", d.display());
        }
    }
    for (calling, backend) in [("CT_A", "pacs_a"), ("MR_B", "pacs_b"), ("OTHER", "pacs_c")] {
        log_line(&h, &format!("calling={calling} called=HARMONY backend={backend} "));
    }
    drop(h);

    // strict: a caller not in routes is rejected
    let hport = free_port();
    let h = DicomConfig::new(hport)
        .lua("by_ae", &format!("script = \"dicom/ae_router.lua\", strict = true, {routes}"))
        .backends(&backends)
        .start("ae-router-strict", &[("dicom/ae_router.lua", &script)]);
    let (status, out) = echoscu_as(&tmp, "OTHER", "HARMONY", hport, "e1.log");
    assert!(!status.success(), "{out}");
    assert!(out.contains("Calling AE Title Not Recognized"), "{out}");
    let (status, out) = echoscu_as(&tmp, "MR_B", "HARMONY", hport, "e2.log");
    assert!(status.success(), "{out}\n{}", h.stderr());
    log_line(&h, "calling=MR_B called=HARMONY backend=pacs_b ");
}

// ------------------------------------------------------------ cfind_fixer.lua

#[test]
fn cfind_fixer_lua_finds_with_a_lower_case_name_what_the_wildcard_finds_directly() {
    if !have_tools(&["dcmqrscp", "findscu", "storescu", "dcmdump", "dump2dcm"]) {
        return;
    }
    let Some(script) = shipped_script("dicom/cfind_fixer.lua") else { return };
    let tmp = TempDir::new("cfind-fixer");
    let src = tmp.join("src");
    fs::create_dir_all(&src).unwrap();
    let (qr, qr_port) = dcmqrscp(&tmp, &[]);
    // upper-case names (dcmqrscp matches case-sensitively)
    let people = [("DOE^JOHN", "P1", 1), ("DOE^JANE", "P2", 2), ("DOE^JOHN", "P1", 3), ("SMITH^ANN", "P3", 4)];
    let files: Vec<PathBuf> = people
        .iter()
        .map(|(name, pid, n)| {
            Instance {
                patient_name: name.to_string(),
                patient_id: pid.to_string(),
                study_uid: format!("{UID_ROOT}.92.{n}"),
                series_uid: format!("{UID_ROOT}.92.{n}.1"),
                sop_uid: format!("{UID_ROOT}.92.{n}.1.1"),
                study_date: format!("2024010{n}"),
                ..Instance::default()
            }
            .write(&src, &format!("p{n}"))
        })
        .collect();
    let (status, out) = storescu(&tmp, "QR_SCP", qr_port, &files, "seed.log");
    assert!(status.success(), "seeding dcmqrscp: {out}");
    let hport = free_port();
    let h = DicomConfig::new(hport)
        .lua("find_fix", "script = \"dicom/cfind_fixer.lua\", return_keys = [\"StudyDate\"]")
        .backend("pacs", "QR_SCP", qr_port, "")
        .start("cfind-fixer", &[("dicom/cfind_fixer.lua", &script)]);

    let find = |label: &str, called: &str, port: u16, keys: &[&str]| -> Vec<String> {
        let dir = tmp.join(&format!("find-{label}"));
        fs::create_dir_all(&dir).unwrap();
        let mut args: Vec<String> =
            ["-S", "-aet", "FINDSCU", "-X", "-od", dir.to_str().unwrap(), "-aec", called].map(String::from).to_vec();
        for k in keys {
            args.extend(["-k".to_string(), k.to_string()]);
        }
        args.extend(["127.0.0.1".to_string(), port.to_string()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (status, out) = Peer::run("findscu", &args, tmp.join(&format!("find-{label}.log")));
        assert!(status.success(), "findscu {label}: {out}\nharmony:\n{}\ndcmqrscp:\n{}", h.stderr(), qr.output());
        let mut d = dataset_dumps(&files_in(&dir));
        d.sort();
        d
    };
    let study_uids =
        |d: &[String]| -> BTreeSet<String> { d.iter().filter_map(|x| dump_value(x, "(0020,000d)")).collect() };

    // direct: the upper-case wildcard query with StudyDate asked for
    let direct = find(
        "direct",
        "QR_SCP",
        qr_port,
        &["QueryRetrieveLevel=STUDY", "PatientName=DOE^J*", "StudyInstanceUID", "StudyDate"],
    );
    let want: BTreeSet<String> = [1, 2, 3].iter().map(|n| format!("{UID_ROOT}.92.{n}")).collect();
    assert_eq!(study_uids(&direct), want, "{direct:#?}");
    // direct, the lower-case name without wildcard finds nothing (case-sensitive, exact)
    let direct_lower =
        find("direct-lower", "QR_SCP", qr_port, &["QueryRetrieveLevel=STUDY", "PatientName=doe^j", "StudyInstanceUID"]);
    assert!(direct_lower.is_empty(), "{direct_lower:#?}");
    // through harmony the script upper-cases, adds the wildcard and the StudyDate return key
    let through =
        find("harmony", "HARMONY", hport, &["QueryRetrieveLevel=STUDY", "PatientName=doe^j", "StudyInstanceUID"]);
    assert_eq!(through, direct, "the fixed query through harmony differs from the direct wildcard query");
    assert!(
        through.iter().all(|d| dump_value(d, "(0008,0020)").is_some_and(|v| v.starts_with("2024"))),
        "{through:#?}"
    );
    // a name that already holds a wildcard is only upper-cased
    let smith =
        find("smith", "HARMONY", hport, &["QueryRetrieveLevel=STUDY", "PatientName=sm?th^ann", "StudyInstanceUID"]);
    assert_eq!(study_uids(&smith), [format!("{UID_ROOT}.92.4")].into_iter().collect::<BTreeSet<_>>());
}
