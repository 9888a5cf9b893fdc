//! The shipped DICOM scripts (`scripts/dicom/`) on real data sets.

use super::tests::{ctx, decode, encode, loaded, sample, store_rq, take_bytes, EXPLICIT, IMPLICIT};
use super::*;
use crate::lua::cache::Cache;
use crate::lua::host::{LuaHost, StageSpec};
use crate::lua::sandbox::LuaLimits;
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dimse::negotiate::RejectReason;
use dimse::{Command, CommandField};
use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;

fn shipped(script: &str, options: serde_json::Value) -> LuaHost {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts");
    let path = root.join(script);
    let spec = StageSpec {
        mw: 0,
        name: script.into(),
        script: path.clone(),
        options,
        continue_on_error: false,
        source: std::sync::Arc::new(std::fs::read(&path).unwrap()),
    };
    // the default per-call budget of the proxy
    LuaHost::build(
        &root,
        &LuaLimits { instructions: 1_000_000, memory: 64 << 20 },
        &[spec],
        Rc::new(RefCell::new(Cache::new(100))),
    )
    .unwrap_or_else(|e| panic!("{:?}", e.0))
}

fn text(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    obj.get(tag).map(|e| e.value().to_str().unwrap().trim_end_matches(['\0', ' ']).to_string())
}

fn valid_uid(u: &str) -> bool {
    u.len() <= 64
        && u.split('.')
            .all(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()) && (c == "0" || !c.starts_with('0')))
}

fn deidentify(h: &LuaHost, ts: &str) -> (InMemDicomObject, DimseMsg) {
    let msg = loaded(ts);
    let c = ctx(h);
    let out = h.call_dimse(0, &msg, &c, "a");
    assert!(matches!(out, DicomOutcome::Continue), "{out:?}");
    (decode(&take_bytes(&msg), ts), msg)
}

#[test]
fn deidentify_removes_identity_and_remaps_uids_consistently() {
    let opts = serde_json::json!({ "secret": "a-test-secret-of-some-length" });
    let h = shipped("dicom/deidentify.lua", opts.clone());
    let (a, msg_a) = deidentify(&h, EXPLICIT);
    // a second worker (another state) with the same secret, on the other transfer syntax
    let (b, _) = deidentify(&shipped("dicom/deidentify.lua", opts), IMPLICIT);

    assert_eq!(text(&a, tags::PATIENT_NAME).as_deref(), Some(""));
    let pid = text(&a, tags::PATIENT_ID).unwrap();
    assert!(pid.starts_with("ANON-") && pid.len() == 21 && pid != "PID-42", "{pid}");
    assert_eq!(text(&b, tags::PATIENT_ID).unwrap(), pid, "one patient, one pseudonym");
    assert_eq!(text(&a, tags::PATIENT_BIRTH_DATE).as_deref(), Some(""));
    for gone in [tags::PATIENT_ADDRESS, tags::INSTITUTION_NAME, Tag(0x0009, 0x0010), Tag(0x0009, 0x1001)] {
        assert!(a.get(gone).is_none(), "{gone} should be gone");
    }
    assert!(a.tags().all(|t| t.0 % 2 == 0), "no private tags left");
    assert_eq!(text(&a, tags::ACCESSION_NUMBER).as_deref(), Some(""));
    assert_eq!(text(&a, tags::REFERRING_PHYSICIAN_NAME).as_deref(), Some(""));
    assert_eq!(text(&a, tags::PATIENT_IDENTITY_REMOVED).as_deref(), Some("YES"));
    assert!(text(&a, tags::DEIDENTIFICATION_METHOD).is_some());
    let codes = a.get(tags::DEIDENTIFICATION_METHOD_CODE_SEQUENCE).unwrap().items().unwrap();
    assert_eq!(text(&codes[0], tags::CODE_VALUE).as_deref(), Some("113100"));
    // dates shifted back by the same number of days for this patient
    let date = text(&a, tags::STUDY_DATE).unwrap();
    assert!(date.len() == 8 && date.as_str() < "20240131" && date.as_str() > "20230130", "{date}");
    assert_eq!(text(&b, tags::STUDY_DATE).unwrap(), date);

    for (tag, original) in [
        (tags::STUDY_INSTANCE_UID, "1.2.3.4.1"),
        (tags::SERIES_INSTANCE_UID, "1.2.3.4.2"),
        (tags::SOP_INSTANCE_UID, "1.2.3.4.5.100"),
        (tags::FRAME_OF_REFERENCE_UID, "1.2.3.4.3"),
    ] {
        let new = text(&a, tag).unwrap();
        assert!(new.starts_with("2.25.") && valid_uid(&new) && new != original, "{tag}: {new}");
        assert_eq!(text(&b, tag).unwrap(), new, "{tag} must map the same way everywhere");
    }
    let study = text(&a, tags::STUDY_INSTANCE_UID).unwrap();
    assert_ne!(study, text(&a, tags::SERIES_INSTANCE_UID).unwrap());
    let item = &a.get(tags::REFERENCED_STUDY_SEQUENCE).unwrap().items().unwrap()[0];
    let referenced = text(item, tags::REFERENCED_SOP_INSTANCE_UID).unwrap();
    assert!(referenced.starts_with("2.25.") && valid_uid(&referenced));
    assert_eq!(text(item, tags::REFERENCED_SOP_CLASS_UID).as_deref(), Some("1.2.840.10008.3.1.2.3.1"));
    // the command follows the data set, and the response goes back with the original UID
    let new_sop = text(&a, tags::SOP_INSTANCE_UID).unwrap();
    assert_eq!(msg_a.borrow().command.affected_sop_instance_uid.as_deref(), Some(new_sop.as_str()));
    assert!(msg_a.borrow().command_changed);
    let c = ctx(&h);
    let rq = loaded(EXPLICIT);
    assert!(matches!(h.call_dimse(0, &rq, &c, "a"), DicomOutcome::Continue));
    let rsp_cmd = Command::response_to(&rq.borrow().command, 0);
    let rsp = store_rq(DatasetState::Absent, EXPLICIT);
    rsp.borrow_mut().command = rsp_cmd;
    rsp.borrow_mut().is_request = false;
    assert!(matches!(h.call_dimse(0, &rsp, &c, "a"), DicomOutcome::Continue));
    assert_eq!(rsp.borrow().command.affected_sop_instance_uid.as_deref(), Some("1.2.3.4.5.100"));

    // a different secret gives different UIDs and pseudonyms
    let other = shipped("dicom/deidentify.lua", serde_json::json!({ "secret": "another-secret-entirely" }));
    let (o, _) = deidentify(&other, EXPLICIT);
    assert_ne!(text(&o, tags::STUDY_INSTANCE_UID).unwrap(), study);
    assert_ne!(text(&o, tags::PATIENT_ID).unwrap(), pid);
}

#[test]
fn deidentify_blank_dates_keep_list_and_other_commands() {
    let h = shipped(
        "dicom/deidentify.lua",
        serde_json::json!({ "secret": "0123456789abcdef", "dates": "blank", "keep": ["PatientSex"], "name_as_id": true }),
    );
    let mut obj = sample();
    obj.put(DataElement::new(tags::PATIENT_SEX, VR::CS, "F"));
    obj.put(DataElement::new(tags::SERIES_DATE, VR::DA, "20240131"));
    let msg = store_rq(DatasetState::Loaded(Dataset::new(encode(&obj, EXPLICIT), EXPLICIT)), EXPLICIT);
    assert!(matches!(h.call_dimse(0, &msg, &ctx(&h), "a"), DicomOutcome::Continue));
    let out = decode(&take_bytes(&msg), EXPLICIT);
    assert_eq!(text(&out, tags::PATIENT_SEX).as_deref(), Some("F"));
    assert_eq!(text(&out, tags::STUDY_DATE).as_deref(), Some(""));
    assert!(out.get(tags::SERIES_DATE).is_none());
    assert_eq!(text(&out, tags::PATIENT_NAME), text(&out, tags::PATIENT_ID));
    // a C-FIND goes through untouched (and its data set is never asked for)
    let find = store_rq(DatasetState::Pending, EXPLICIT);
    find.borrow_mut().command.field = CommandField::CFindRq;
    assert!(matches!(h.call_dimse(0, &find, &ctx(&h), "a"), DicomOutcome::Continue));
    // an init without a secret is a load error
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts");
    let path = root.join("dicom/deidentify.lua");
    let spec = StageSpec {
        mw: 0,
        name: "deid".into(),
        script: path.clone(),
        options: serde_json::json!({}),
        continue_on_error: false,
        source: std::sync::Arc::new(std::fs::read(&path).unwrap()),
    };
    let limits = LuaLimits { instructions: 1_000_000, memory: 16 << 20 };
    let err = LuaHost::build(&root, &limits, &[spec], Rc::new(RefCell::new(Cache::new(1)))).err().unwrap();
    assert!(err.0.join("\n").contains("secret"), "{:?}", err.0);
}

#[test]
fn deidentify_date_arithmetic_and_uid_shape() {
    // a script of our own inside scripts_path, using the shipped module's helpers
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts");
    let src = r#"local d = require("dicom.deidentify")
        d.init({ secret = "0123456789abcdef" })
        assert(d.shift_date("20240301", 1) == "20240229")
        assert(d.shift_date("20230301", 1) == "20230228")
        assert(d.shift_date("20000101", 365) == "19990101")
        assert(d.shift_date("20010101", 366) == "20000101")
        assert(d.shift_date("19700101", 1) == "19691231")
        assert(d.shift_date("2024", 1) == "")
        for i = 1, 50 do
          local u = d.new_uid("1.2.3." .. i)
          assert(#u <= 64 and u:match("^2%.25%.[1-9]%d*$"), u)
          assert(u == d.new_uid("1.2.3." .. i))
        end
        return {}"#;
    let spec = StageSpec {
        mw: 0,
        name: "arith".into(),
        script: root.join("arith.lua"),
        options: serde_json::json!({}),
        continue_on_error: false,
        source: std::sync::Arc::new(src.as_bytes().to_vec()),
    };
    let limits = LuaLimits { instructions: 5_000_000, memory: 16 << 20 };
    if let Err(e) = LuaHost::build(&root, &limits, &[spec], Rc::new(RefCell::new(Cache::new(1)))) {
        panic!("{:?}", e.0);
    }
}

fn assoc(calling: &str) -> AssocInfo {
    AssocInfo {
        calling_ae: calling.into(),
        called_ae: "HARMONY".into(),
        peer: "127.0.0.1:1000".parse().unwrap(),
        contexts: vec![],
        identity: None,
        max_pdu: 0,
        implementation_class_uid: "1.2.3".into(),
        implementation_version: None,
    }
}

#[test]
fn ae_router_routes_by_calling_ae_and_rejects_strangers() {
    let routes = serde_json::json!({ "CT_SCANNER": "pacs_ct", "MR_1": "pacs_mr" });
    let h = shipped("dicom/ae_router.lua", serde_json::json!({ "routes": routes, "default": "pacs_main" }));
    for (ae, want) in [("CT_SCANNER", Some("pacs_ct")), ("MR_1      ", Some("pacs_mr")), ("OTHER", Some("pacs_main"))] {
        let c = ctx(&h);
        assert!(matches!(h.call_associate(0, &assoc(ae), &c, "a"), DicomOutcome::Continue));
        assert_eq!(c.route().as_deref(), want, "{ae}");
    }
    let strict = shipped("dicom/ae_router.lua", serde_json::json!({ "routes": routes, "strict": true }));
    let c = ctx(&strict);
    let out = strict.call_associate(0, &assoc("OTHER"), &c, "a");
    assert!(matches!(out, DicomOutcome::Reject(RejectReason::CallingAeNotRecognized)), "{out:?}");
    assert_eq!(c.route(), None);
    let c = ctx(&strict);
    assert!(matches!(strict.call_associate(0, &assoc("MR_1"), &c, "a"), DicomOutcome::Continue));
    assert_eq!(c.route().as_deref(), Some("pacs_mr"));
    // no default, not strict: the pipeline's usual backend
    let plain = shipped("dicom/ae_router.lua", serde_json::json!({ "routes": routes }));
    let c = ctx(&plain);
    assert!(matches!(plain.call_associate(0, &assoc("OTHER"), &c, "a"), DicomOutcome::Continue));
    assert_eq!(c.route(), None);
}

fn find_rq(query: InMemDicomObject) -> DimseMsg {
    let msg = store_rq(DatasetState::Loaded(Dataset::new(encode(&query, IMPLICIT), IMPLICIT)), IMPLICIT);
    msg.borrow_mut().command.field = CommandField::CFindRq;
    msg
}

#[test]
fn cfind_fixer_normalises_the_query() {
    let h = shipped(
        "dicom/cfind_fixer.lua",
        serde_json::json!({ "drop": ["OtherPatientIDsSequence", "(0009,1001)"],
                            "return_keys": ["PatientBirthDate", "NumberOfStudyRelatedInstances", "PatientID"] }),
    );
    let query = InMemDicomObject::from_element_iter([
        DataElement::new(tags::QUERY_RETRIEVE_LEVEL, VR::CS, "PATIENT"),
        DataElement::new(tags::PATIENT_NAME, VR::PN, "doe^j"),
        DataElement::new(tags::PATIENT_ID, VR::LO, "PID-42"),
        DataElement::new(Tag(0x0009, 0x0010), VR::LO, "ACME"),
        DataElement::new(Tag(0x0009, 0x1001), VR::LO, "x"),
    ]);
    let msg = find_rq(query);
    assert!(matches!(h.call_dimse(0, &msg, &ctx(&h), "a"), DicomOutcome::Continue));
    let out = decode(&take_bytes(&msg), IMPLICIT);
    assert_eq!(text(&out, tags::PATIENT_NAME).as_deref(), Some("DOE^J*"));
    assert_eq!(text(&out, tags::PATIENT_ID).as_deref(), Some("PID-42"), "present keys are kept");
    assert_eq!(text(&out, tags::PATIENT_BIRTH_DATE).as_deref(), Some(""));
    assert_eq!(out.get(tags::NUMBER_OF_STUDY_RELATED_INSTANCES).unwrap().value().multiplicity(), 0);
    assert!(out.get(Tag(0x0009, 0x1001)).is_none());

    // a name with a wildcard keeps it; a C-STORE is left alone
    let query = InMemDicomObject::from_element_iter([DataElement::new(tags::PATIENT_NAME, VR::PN, "DOE?J")]);
    let msg = find_rq(query);
    assert!(matches!(h.call_dimse(0, &msg, &ctx(&h), "a"), DicomOutcome::Continue));
    assert_eq!(text(&decode(&take_bytes(&msg), IMPLICIT), tags::PATIENT_NAME).as_deref(), Some("DOE?J"));
    let store = loaded(EXPLICIT);
    assert!(matches!(h.call_dimse(0, &store, &ctx(&h), "a"), DicomOutcome::Continue));
    assert_eq!(take_bytes(&store), encode(&sample(), EXPLICIT));
}
