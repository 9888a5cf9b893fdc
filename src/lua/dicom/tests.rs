//! The DICOM hooks end to end on real scripts: data sets encoded with
//! dicom-object, hooks run through `LuaHost` as the runtime will.

use super::*;
use crate::lua::cache::Cache;
use crate::lua::host::{LuaHost, StageSpec};
use crate::lua::sandbox::LuaLimits;
use crate::lua::LuaCtx;
use dicom_core::value::{DataSetSequence, PrimitiveValue};
use dicom_core::{DataElement, Length, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use dimse::negotiate::RejectReason;
use dimse::{Command, CommandField};
use std::cell::RefCell;
use std::rc::Rc;

pub(super) const EXPLICIT: &str = "1.2.840.10008.1.2.1";
pub(super) const IMPLICIT: &str = "1.2.840.10008.1.2";
const CT_IMAGE: &str = "1.2.840.10008.5.1.4.1.1.2";

pub(super) fn host_with(name: &str, script: &str, options: serde_json::Value, continue_on_error: bool) -> LuaHost {
    let dir = std::env::temp_dir().join(format!("harmony-dicom-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.lua"));
    std::fs::write(&path, script).unwrap();
    let spec = StageSpec {
        mw: 0,
        name: name.into(),
        script: path,
        options,
        continue_on_error,
        source: std::sync::Arc::new(script.as_bytes().to_vec()),
    };
    LuaHost::build(
        &dir,
        &LuaLimits { instructions: 1_000_000, memory: 32 << 20 },
        &[spec],
        Rc::new(RefCell::new(Cache::new(100))),
    )
    .unwrap_or_else(|e| panic!("{:?}", e.0))
}

fn host(name: &str, script: &str) -> LuaHost {
    host_with(name, script, serde_json::json!({}), false)
}

/// A hook whose body runs under pcall; the error, if any, lands in ctx.vars.err.
fn checked(body: &str) -> String {
    format!(
        "return {{ on_dimse = function(msg, ctx)
           local ok, e = pcall(function() {body} end)
           if not ok then ctx.vars.err = tostring(e) end
         end }}"
    )
}

pub(super) fn ctx(h: &LuaHost) -> LuaCtx {
    h.new_ctx("gw", "dicom", "scp", "assoc-1").unwrap()
}

fn err_of(c: &LuaCtx) -> Option<String> {
    c.vars().and_then(|v| v.get::<Option<String>>("err").unwrap())
}

pub(super) fn sample() -> InMemDicomObject {
    let item = InMemDicomObject::from_element_iter([
        DataElement::new(tags::REFERENCED_SOP_CLASS_UID, VR::UI, "1.2.840.10008.3.1.2.3.1"),
        DataElement::new(tags::REFERENCED_SOP_INSTANCE_UID, VR::UI, "1.2.3.4.5.6"),
    ]);
    InMemDicomObject::from_element_iter([
        DataElement::new(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 100"),
        DataElement::new(
            tags::IMAGE_TYPE,
            VR::CS,
            PrimitiveValue::Strs(["ORIGINAL", "PRIMARY"].map(String::from).into()),
        ),
        DataElement::new(tags::SOP_CLASS_UID, VR::UI, CT_IMAGE),
        DataElement::new(tags::SOP_INSTANCE_UID, VR::UI, "1.2.3.4.5.100"),
        DataElement::new(tags::STUDY_DATE, VR::DA, "20240131"),
        DataElement::new(tags::ACCESSION_NUMBER, VR::SH, "ACC123"),
        DataElement::new(tags::INSTITUTION_NAME, VR::LO, "General Hospital"),
        DataElement::new(tags::REFERRING_PHYSICIAN_NAME, VR::PN, "House^Gregory"),
        DataElement::new(tags::REFERENCED_STUDY_SEQUENCE, VR::SQ, DataSetSequence::new(vec![item], Length::UNDEFINED)),
        DataElement::new(tags::PATIENT_NAME, VR::PN, "Doe^John"),
        DataElement::new(tags::PATIENT_ID, VR::LO, "PID-42"),
        DataElement::new(tags::PATIENT_BIRTH_DATE, VR::DA, "19700101"),
        DataElement::new(tags::PATIENT_ADDRESS, VR::LO, "1 Main St"),
        DataElement::new(Tag(0x0009, 0x0010), VR::LO, "ACME 1.0"),
        DataElement::new(Tag(0x0009, 0x1001), VR::LO, "secret private"),
        DataElement::new(tags::SLICE_THICKNESS, VR::DS, "2.5"),
        DataElement::new(tags::STUDY_INSTANCE_UID, VR::UI, "1.2.3.4.1"),
        DataElement::new(tags::SERIES_INSTANCE_UID, VR::UI, "1.2.3.4.2"),
        DataElement::new(tags::STUDY_ID, VR::SH, "S1"),
        DataElement::new(tags::SERIES_NUMBER, VR::IS, "7"),
        DataElement::new(tags::FRAME_OF_REFERENCE_UID, VR::UI, "1.2.3.4.3"),
        DataElement::new(
            tags::IMAGE_POSITION_PATIENT,
            VR::DS,
            PrimitiveValue::Strs(["-1.5", "2", "30.25"].map(String::from).into_iter().collect()),
        ),
        DataElement::new(tags::ROWS, VR::US, PrimitiveValue::from(512u16)),
        DataElement::new(tags::COLUMNS, VR::US, PrimitiveValue::from(256u16)),
        DataElement::new(tags::PIXEL_DATA, VR::OB, PrimitiveValue::U8([1u8, 2, 3, 0].into_iter().collect())),
    ])
}

pub(super) fn encode(obj: &InMemDicomObject, ts: &str) -> Vec<u8> {
    use dicom_encoding::TransferSyntaxIndex;
    let mut out = Vec::new();
    obj.write_dataset_with_ts(&mut out, TransferSyntaxRegistry.get(ts).unwrap()).unwrap();
    out
}

pub(super) fn decode(raw: &[u8], ts: &str) -> InMemDicomObject {
    use dicom_encoding::TransferSyntaxIndex;
    InMemDicomObject::read_dataset_with_ts(raw, TransferSyntaxRegistry.get(ts).unwrap()).unwrap()
}

pub(super) fn store_rq(dataset: DatasetState, ts: &str) -> DimseMsg {
    let command = Command {
        message_id: Some(7),
        affected_sop_class_uid: Some(CT_IMAGE.into()),
        affected_sop_instance_uid: Some("1.2.3.4.5.100".into()),
        priority: Some(0),
        has_data_set: true,
        ..Command::new(CommandField::CStoreRq)
    };
    Rc::new(RefCell::new(DimseState {
        id: super::msg::next_message_id(),
        command,
        command_changed: false,
        dataset,
        is_request: true,
        context_id: 1,
        abstract_syntax: CT_IMAGE.into(),
        transfer_syntax: ts.into(),
    }))
}

pub(super) fn loaded(ts: &str) -> DimseMsg {
    store_rq(DatasetState::Loaded(Dataset::new(encode(&sample(), ts), ts)), ts)
}

pub(super) fn take_bytes(msg: &DimseMsg) -> Vec<u8> {
    match std::mem::replace(&mut msg.borrow_mut().dataset, DatasetState::Absent) {
        DatasetState::Loaded(d) => d.into_bytes().unwrap(),
        other => panic!("no data set: {other:?}"),
    }
}

fn changed(msg: &DimseMsg) -> bool {
    matches!(&msg.borrow().dataset, DatasetState::Loaded(d) if d.changed())
}

/// Run a `checked` script on `msg`; the error it caught, if any.
fn run(script: &str, msg: &DimseMsg) -> Option<String> {
    let h = host("run", script);
    let c = ctx(&h);
    let out = h.call_dimse(0, msg, &c, "assoc-1");
    assert!(matches!(out, DicomOutcome::Continue), "{out:?}");
    err_of(&c)
}

fn bytes_of(obj: &InMemDicomObject, tag: Tag) -> Vec<u8> {
    let mut b = obj.get(tag).map(|e| e.value().to_bytes().unwrap().into_owned()).unwrap_or_default();
    while b.last() == Some(&b' ') {
        b.pop();
    }
    b
}

fn str_of(obj: &InMemDicomObject, tag: Tag) -> String {
    obj.get(tag).map(|e| e.value().to_str().unwrap().trim_end_matches(['\0', ' ']).to_string()).unwrap_or_default()
}

#[test]
fn every_kind_of_value_reads_in_both_transfer_syntaxes() {
    for ts in [EXPLICIT, IMPLICIT] {
        let msg = loaded(ts);
        let err = run(
            &checked(
                r#"
            assert(msg.command == "C-STORE-RQ" and msg.is_request and msg.has_dataset)
            assert(msg.message_id == 7 and msg.priority == 0 and msg.context_id == 1)
            assert(msg.affected_sop_instance_uid == "1.2.3.4.5.100")
            assert(msg.transfer_syntax ~= nil and msg.abstract_syntax == "1.2.840.10008.5.1.4.1.1.2")
            local ds = msg.dataset
            assert(ds.PatientName == "Doe^John", ds.PatientName)
            assert(ds["PatientName"] == "Doe^John" and ds["(0010,0010)"] == "Doe^John")
            assert(ds["00100010"] == "Doe^John" and ds["0010,0010"] == "Doe^John")
            assert(ds:get("PatientID") == "PID-42" and ds:get(0x00100020) == "PID-42")
            assert(ds.ImageType == "ORIGINAL\\PRIMARY", ds.ImageType)
            assert(ds.Rows == 512 and math.type(ds.Rows) == "integer")
            assert(ds.SeriesNumber == 7 and math.type(ds.SeriesNumber) == "integer")
            assert(ds.SliceThickness == 2.5)
            local ipp = ds.ImagePositionPatient
            assert(#ipp == 3 and ipp[1] == -1.5 and ipp[2] == 2 and ipp[3] == 30.25)
            assert(ds.PixelData == "\1\2\3\0", #ds.PixelData)
            assert(ds.PatientWeight == nil and ds:has("PatientWeight") == false)
            assert(ds:has("PatientName") and ds:vr("PatientName") == "PN" and ds:vr("PatientWeight") == nil)
            local seq = ds.ReferencedStudySequence
            assert(#seq == 1 and seq[1].ReferencedSOPInstanceUID == "1.2.3.4.5.6")
            assert(tostring(seq[1]):find("dataset item"))
            local tags = ds:tags()
            assert(tags[1] == "(0008,0005)", tags[1])
            local private = 0
            for _, t in ipairs(tags) do
              if tonumber(t:sub(2, 5), 16) % 2 == 1 then private = private + 1 end
            end
            assert(private == 2, private)
            assert(ds["(0009,1001)"] ~= nil)
        "#,
            ),
            &msg,
        );
        assert_eq!(err, None, "{ts}");
        assert!(!changed(&msg));
        assert_eq!(take_bytes(&msg), encode(&sample(), ts), "unchanged data set must keep its bytes");
    }
}

#[test]
fn bad_keys_are_clear_errors() {
    for (expr, want) in [
        ("local _ = ds.PatientNam", "unknown DICOM attribute 'PatientNam'"),
        ("local _ = ds['(0010,00ZZ)']", "unknown DICOM attribute"),
        ("local _ = ds[1.5]", "keyword or a tag"),
        ("ds['(0009,1002)'] = 'x'", "give its VR"),
        ("ds:set('PatientName', 'x', 'QQ')", "unknown VR 'QQ'"),
        ("ds['(0002,0010)'] = '1.2'", "file meta"),
        ("ds.Rows = 70000", "out of range"),
        ("ds.Rows = 'many'", "not an integer"),
        ("ds.PatientComments = { 'a', 'b' }", "single value"),
        ("ds:append_item('PatientName')", "not a sequence"),
    ] {
        let msg = loaded(EXPLICIT);
        let err = run(&checked(&format!("local ds = msg.dataset; {expr}")), &msg);
        let e = err.unwrap_or_else(|| panic!("{expr} should fail"));
        assert!(e.contains(want), "{expr}: {e}");
        assert!(!changed(&msg), "{expr}");
    }
}

#[test]
fn setters_change_the_data_set_and_re_encode_in_its_transfer_syntax() {
    for ts in [EXPLICIT, IMPLICIT] {
        let msg = loaded(ts);
        let err = run(
            &checked(
                r#"
            local ds = msg.dataset
            ds.PatientName = "ANON"
            ds["(0010,0020)"] = "P-1"
            ds:set("PatientBirthDate", nil)
            assert(ds:delete("PatientAddress") == true and ds:delete("PatientAddress") == false)
            ds.Rows = 1024
            ds.ImageType = { "DERIVED", "SECONDARY" }
            ds.ImagePositionPatient = { 1, 2.5, -3 }
            ds.SliceThickness = 0.1 + 0.2
            ds.SeriesNumber = "12"
            ds:set("(0009,1002)", "new private", "LO")
            ds:set("(0011,0010)", "OTHER")
            ds.PatientWeight = 70.5
            assert(ds.PatientName == "ANON" and ds.PatientID == "P-1" and ds.PatientBirthDate == nil)
            assert(ds.Rows == 1024 and ds.ImageType == "DERIVED\\SECONDARY")
        "#,
            ),
            &msg,
        );
        assert_eq!(err, None, "{ts}");
        assert!(changed(&msg));
        let out = decode(&take_bytes(&msg), ts);
        assert_eq!(str_of(&out, tags::PATIENT_NAME), "ANON");
        assert_eq!(str_of(&out, tags::PATIENT_ID), "P-1");
        assert!(out.get(tags::PATIENT_BIRTH_DATE).is_none() && out.get(tags::PATIENT_ADDRESS).is_none());
        assert_eq!(out.get(tags::ROWS).unwrap().to_int::<u16>().unwrap(), 1024);
        assert_eq!(str_of(&out, tags::IMAGE_TYPE), "DERIVED\\SECONDARY");
        let ipp = out.get(tags::IMAGE_POSITION_PATIENT).unwrap().to_multi_float64().unwrap();
        assert_eq!(ipp, vec![1.0, 2.5, -3.0]);
        let st = str_of(&out, tags::SLICE_THICKNESS);
        assert!(st.len() <= 16 && (st.parse::<f64>().unwrap() - 0.3).abs() < 1e-9, "{st}");
        assert_eq!(out.get(tags::SERIES_NUMBER).unwrap().to_int::<i32>().unwrap(), 12);
        assert_eq!(bytes_of(&out, Tag(0x0009, 0x1002)), b"new private");
        assert_eq!(bytes_of(&out, Tag(0x0011, 0x0010)), b"OTHER");
        assert_eq!(out.get(tags::PATIENT_WEIGHT).unwrap().to_float64().unwrap(), 70.5);
        // untouched values survive the round trip
        assert_eq!(out.get(tags::PIXEL_DATA).unwrap().to_bytes().unwrap().as_ref(), &[1, 2, 3, 0]);
        assert_eq!(str_of(&out, tags::REFERRING_PHYSICIAN_NAME), "House^Gregory");
    }
}

#[test]
fn sequences_read_nested_create_append_replace_and_delete() {
    for ts in [EXPLICIT, IMPLICIT] {
        let msg = loaded(ts);
        let err = run(
            &checked(
                r#"
            local ds = msg.dataset
            local item = ds.ReferencedStudySequence[1]
            item.ReferencedSOPInstanceUID = "9.8.7"
            local new = ds:append_item("ReferencedStudySequence", { ReferencedSOPInstanceUID = "9.8.8" })
            assert(new.ReferencedSOPInstanceUID == "9.8.8")
            new.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
            assert(#ds.ReferencedStudySequence == 2)
            -- a brand new sequence, nested two deep
            ds.RequestAttributesSequence = {
              { RequestedProcedureID = "RP1", ScheduledProtocolCodeSequence = { { CodeValue = "X1" } } },
            }
            local code = ds.RequestAttributesSequence[1].ScheduledProtocolCodeSequence[1]
            assert(code.CodeValue == "X1")
            code.CodeMeaning = "meaning"
            -- a single item table is a one-item sequence; an empty list is an empty sequence
            ds.ReferencedSeriesSequence = { SeriesInstanceUID = "5.5" }
            ds.ReferencedPatientSequence = {}
            local empty = ds:append_item("ReferencedImageSequence")
            empty.ReferencedSOPInstanceUID = "4.4"
            -- copy an item from elsewhere in the data set
            ds.SourceImageSequence = { ds.ReferencedStudySequence[2] }
            -- delete inside an item, then a whole sequence
            assert(ds.ReferencedStudySequence[1]:delete("ReferencedSOPClassUID"))
            ds.ReferencedPatientSequence = nil
        "#,
            ),
            &msg,
        );
        assert_eq!(err, None, "{ts}");
        let out = decode(&take_bytes(&msg), ts);
        let items = |o: &InMemDicomObject, t: Tag| o.get(t).unwrap().items().unwrap().to_vec();
        let rss = items(&out, tags::REFERENCED_STUDY_SEQUENCE);
        assert_eq!(rss.len(), 2);
        assert_eq!(str_of(&rss[0], tags::REFERENCED_SOP_INSTANCE_UID), "9.8.7");
        assert!(rss[0].get(tags::REFERENCED_SOP_CLASS_UID).is_none());
        assert_eq!(str_of(&rss[1], tags::REFERENCED_SOP_INSTANCE_UID), "9.8.8");
        assert_eq!(str_of(&rss[1], tags::REFERENCED_SOP_CLASS_UID), "1.2.840.10008.3.1.2.3.1");
        let ras = items(&out, tags::REQUEST_ATTRIBUTES_SEQUENCE);
        assert_eq!(str_of(&ras[0], tags::REQUESTED_PROCEDURE_ID), "RP1");
        let code = items(&ras[0], tags::SCHEDULED_PROTOCOL_CODE_SEQUENCE);
        assert_eq!(str_of(&code[0], tags::CODE_VALUE), "X1");
        assert_eq!(str_of(&code[0], tags::CODE_MEANING), "meaning");
        assert_eq!(str_of(&items(&out, tags::REFERENCED_SERIES_SEQUENCE)[0], tags::SERIES_INSTANCE_UID), "5.5");
        assert_eq!(str_of(&items(&out, tags::REFERENCED_IMAGE_SEQUENCE)[0], tags::REFERENCED_SOP_INSTANCE_UID), "4.4");
        assert_eq!(str_of(&items(&out, tags::SOURCE_IMAGE_SEQUENCE)[0], tags::REFERENCED_SOP_INSTANCE_UID), "9.8.8");
        assert!(out.get(tags::REFERENCED_PATIENT_SEQUENCE).is_none());
    }
}

#[test]
fn the_data_set_is_buffered_only_when_a_script_reads_it() {
    let h = host(
        "lazy",
        r#"return { on_dimse = function(msg, ctx)
          if msg.command ~= "C-STORE-RQ" then return end
          local ds = msg.dataset
          ds.PatientName = "LAZY"
          msg.affected_sop_instance_uid = ds.SOPInstanceUID .. ".1"
        end }"#,
    );
    let c = ctx(&h);
    let msg = store_rq(DatasetState::Pending, EXPLICIT);
    let DicomOutcome::NeedDataset(p) = h.call_dimse(0, &msg, &c, "a") else { panic!("expected NeedDataset") };
    assert!(Rc::ptr_eq(p.msg(), &msg));
    msg.borrow_mut().dataset = DatasetState::Loaded(Dataset::new(encode(&sample(), EXPLICIT), EXPLICIT));
    assert!(matches!(h.resume_dicom(p), DicomOutcome::Continue));
    assert!(msg.borrow().command_changed);
    assert_eq!(msg.borrow().command.affected_sop_instance_uid.as_deref(), Some("1.2.3.4.5.100.1"));
    assert_eq!(str_of(&decode(&take_bytes(&msg), EXPLICIT), tags::PATIENT_NAME), "LAZY");

    // a script that never reads the data set never waits for it
    let echo = Rc::new(RefCell::new(DimseState {
        id: super::msg::next_message_id(),
        command: Command::echo_rq(1),
        command_changed: false,
        dataset: DatasetState::Pending,
        is_request: true,
        context_id: 3,
        abstract_syntax: dimse::command::VERIFICATION.into(),
        transfer_syntax: EXPLICIT.into(),
    }));
    assert!(matches!(h.call_dimse(0, &echo, &c, "a"), DicomOutcome::Continue));

    // resumed without the data set: the read fails, the call fails closed
    let msg = store_rq(DatasetState::Pending, EXPLICIT);
    let DicomOutcome::NeedDataset(p) = h.call_dimse(0, &msg, &c, "a") else { panic!("expected NeedDataset") };
    assert!(matches!(h.resume_dicom(p), DicomOutcome::Failed { .. }));
}

#[test]
fn returning_a_status_refuses_the_message() {
    let h = host(
        "refuse",
        r#"return { on_dimse = function(msg, ctx)
          local ds = msg.dataset
          if ds.PatientID == "PID-42" then return 0xA700 end
          if ds.PatientID == "ZERO" then return 0 end
          if ds.PatientID == "NEG" then return -1 end
          return "not a status"
        end }"#,
    );
    let c = ctx(&h);
    let with_id = |id: &str| {
        let mut obj = sample();
        obj.put(DataElement::new(tags::PATIENT_ID, VR::LO, id));
        store_rq(DatasetState::Loaded(Dataset::new(encode(&obj, EXPLICIT), EXPLICIT)), EXPLICIT)
    };
    assert!(matches!(h.call_dimse(0, &with_id("PID-42"), &c, "a"), DicomOutcome::Refuse(0xA700)));
    assert!(matches!(h.call_dimse(0, &with_id("ZERO"), &c, "a"), DicomOutcome::Continue));
    assert!(matches!(h.call_dimse(0, &with_id("OTHER"), &c, "a"), DicomOutcome::Continue));
    assert!(matches!(h.call_dimse(0, &with_id("NEG"), &c, "a"), DicomOutcome::Failed { .. }));
}

#[test]
fn command_fields_can_be_changed() {
    let msg = loaded(EXPLICIT);
    msg.borrow_mut().command.move_destination = Some("OLD".into());
    let err = run(
        &checked(
            r#"
        assert(msg.move_destination == "OLD")
        msg.move_destination = "ARCHIVE"
        msg.priority = 1
        msg.affected_sop_instance_uid = "2.25.1"
        local function fails(f, want)
          local ok, e = pcall(f)
          assert(not ok and tostring(e):find(want, 1, true), tostring(e))
        end
        fails(function() msg.priority = 7 end, "priority")
        fails(function() msg.affected_sop_instance_uid = "1..2" end, "invalid UID")
        fails(function() msg.status = 0 end, "responses")
        fails(function() msg.move_destination = string.rep("A", 17) end, "AE title")
        fails(function() msg.command = "C-ECHO-RQ" end, "cannot set msg.command")
    "#,
        ),
        &msg,
    );
    assert_eq!(err, None);
    let s = msg.borrow();
    assert!(s.command_changed);
    assert_eq!(s.command.move_destination.as_deref(), Some("ARCHIVE"));
    assert_eq!(s.command.priority, Some(1));
    assert_eq!(s.command.affected_sop_instance_uid.as_deref(), Some("2.25.1"));
    drop(s);
    assert!(!changed(&msg), "command changes leave the data set alone");

    // a response's status can be rewritten
    let rsp = Rc::new(RefCell::new(DimseState {
        id: super::msg::next_message_id(),
        command: Command::response_to(&Command::echo_rq(3), 0x0110),
        command_changed: false,
        dataset: DatasetState::Absent,
        is_request: false,
        context_id: 1,
        abstract_syntax: dimse::command::VERIFICATION.into(),
        transfer_syntax: EXPLICIT.into(),
    }));
    let err = run(
        &checked(
            r#"assert(msg.command == "C-ECHO-RSP" and msg.status == 0x0110 and msg.message_id_responded_to == 3)
               assert(msg.dataset == nil and msg.has_dataset == false)
               msg.status = 0"#,
        ),
        &rsp,
    );
    assert_eq!(err, None);
    assert_eq!(rsp.borrow().command.status, Some(0));
}

fn assoc_info() -> AssocInfo {
    AssocInfo {
        calling_ae: "MODALITY1".into(),
        called_ae: "HARMONY".into(),
        peer: "10.0.0.5:4242".parse().unwrap(),
        contexts: vec![ProposedContext {
            id: 1,
            abstract_syntax: CT_IMAGE.into(),
            transfer_syntaxes: vec![EXPLICIT.into(), IMPLICIT.into()],
        }],
        identity: Some(dimse::Identity::UsernamePassword { username: "ann".into(), password: "pw".into() }),
        max_pdu: 16384,
        implementation_class_uid: "1.2.3.999".into(),
        implementation_version: Some("TEST_1".into()),
    }
}

#[test]
fn on_associate_reads_assoc_and_sets_the_route() {
    let h = host(
        "assoc",
        r#"return { on_associate = function(assoc, ctx)
          assert(assoc.calling_ae == "MODALITY1" and assoc.called_ae == "HARMONY")
          assert(assoc.peer == "10.0.0.5:4242" and assoc.max_pdu == 16384)
          assert(assoc.implementation_class_uid == "1.2.3.999" and assoc.implementation_version == "TEST_1")
          local c = assoc.contexts[1]
          assert(#assoc.contexts == 1 and c.id == 1 and c.abstract_syntax == "1.2.840.10008.5.1.4.1.1.2")
          assert(c.transfer_syntaxes[2] == "1.2.840.10008.1.2")
          local id = assoc.identity
          assert(id.type == "username_password" and id.username == "ann" and id.password == "pw")
          local ok, e = pcall(function() assoc.calling_ae = "X" end)
          assert(not ok and e:find("read%-only"))
          ctx.route = "pacs_" .. assoc.calling_ae:lower()
          ctx.vars.user = id.username
        end,
        on_dimse = function(msg, ctx)
          if ctx.vars.user ~= "ann" then error("vars did not persist") end
        end }"#,
    );
    let c = ctx(&h);
    let out = h.call_associate(0, &assoc_info(), &c, "assoc-1");
    assert!(matches!(out, DicomOutcome::Continue), "{out:?}");
    assert_eq!(c.route().as_deref(), Some("pacs_modality1"));
    assert!(matches!(h.call_dimse(0, &loaded(EXPLICIT), &c, "assoc-1"), DicomOutcome::Continue));
}

#[test]
fn harmony_reject_maps_every_reason() {
    for (name, want) in [
        ("no-reason", RejectReason::NoReason),
        ("application-context-name-not-supported", RejectReason::ApplicationContextNotSupported),
        ("calling-ae-not-recognized", RejectReason::CallingAeNotRecognized),
        ("calling-ae-not-recognised", RejectReason::CallingAeNotRecognized),
        ("called-ae-not-recognized", RejectReason::CalledAeNotRecognized),
        ("called-ae-not-recognised", RejectReason::CalledAeNotRecognized),
        ("protocol-version-not-supported", RejectReason::ProtocolVersionNotSupported),
        ("temporary-congestion", RejectReason::TemporaryCongestion),
        ("local-limit-exceeded", RejectReason::LocalLimitExceeded),
    ] {
        let h = host_with(
            "reject",
            "local M = {} function M.init(o) M.r = o.reason end
             function M.on_associate(assoc, ctx) harmony.reject(M.r) error('not reached') end
             return M",
            serde_json::json!({ "reason": name }),
            false,
        );
        let out = h.call_associate(0, &assoc_info(), &ctx(&h), "a");
        assert!(matches!(out, DicomOutcome::Reject(r) if r == want), "{name}: {out:?}");
    }
    // inside pcall it still counts
    let h =
        host("reject-pcall", "return { on_associate = function() pcall(harmony.reject, 'temporary-congestion') end }");
    let out = h.call_associate(0, &assoc_info(), &ctx(&h), "a");
    assert!(matches!(out, DicomOutcome::Reject(RejectReason::TemporaryCongestion)), "{out:?}");
    // unknown reason, or outside on_associate: an error
    let h = host("reject-bad", "return { on_associate = function() harmony.reject('go-away') end }");
    assert!(matches!(h.call_associate(0, &assoc_info(), &ctx(&h), "a"), DicomOutcome::Failed { .. }));
    let h = host(
        "reject-dimse",
        &checked("harmony.reject('no-reason')").replace("pcall(function() harmony", "pcall(function() return harmony"),
    );
    let c = ctx(&h);
    assert!(matches!(h.call_dimse(0, &loaded(EXPLICIT), &c, "a"), DicomOutcome::Continue));
    assert!(err_of(&c).unwrap().contains("only be used in on_associate"));
    // harmony.respond is for HTTP only
    let h = host("respond-dicom", "return { on_associate = function() harmony.respond(403, {}, 'no') end }");
    assert!(matches!(h.call_associate(0, &assoc_info(), &ctx(&h), "a"), DicomOutcome::Failed { .. }));
}

#[test]
fn failures_fail_closed_or_continue_and_the_budget_holds() {
    let src = r#"return { on_dimse = function(msg) local x = nil; return x.y end,
                          on_associate = function(a) error("boom") end }"#;
    let closed = host_with("dfail", src, serde_json::json!({}), false);
    let c = ctx(&closed);
    assert!(matches!(closed.call_dimse(0, &loaded(EXPLICIT), &c, "a"), DicomOutcome::Failed { .. }));
    assert!(matches!(closed.call_associate(0, &assoc_info(), &c, "a"), DicomOutcome::Failed { .. }));
    let open = host_with("dcont", src, serde_json::json!({}), true);
    let c = ctx(&open);
    assert!(matches!(open.call_dimse(0, &loaded(EXPLICIT), &c, "a"), DicomOutcome::Continue));
    assert!(matches!(open.call_associate(0, &assoc_info(), &c, "a"), DicomOutcome::Continue));
    assert_eq!(open.error_count(), 2);

    let h = host(
        "dloop",
        r#"return { on_dimse = function(msg)
          local ds = msg.dataset
          while true do ds.PatientName = "x"; pcall(function() while true do end end) end
        end }"#,
    );
    let c = ctx(&h);
    let msg = store_rq(DatasetState::Pending, EXPLICIT);
    let DicomOutcome::NeedDataset(p) = h.call_dimse(0, &msg, &c, "a") else { panic!("expected NeedDataset") };
    msg.borrow_mut().dataset = DatasetState::Loaded(Dataset::new(encode(&sample(), EXPLICIT), EXPLICIT));
    assert!(matches!(h.resume_dicom(p), DicomOutcome::Failed { .. }));
    assert_eq!(h.budget_kills(), 1);
    // the host keeps working
    let h2 = host("dok", "return { on_dimse = function(msg) return msg.dataset.Rows == 512 and 0 or 1 end }");
    assert!(matches!(h2.call_dimse(0, &loaded(EXPLICIT), &ctx(&h2), "a"), DicomOutcome::Continue));
}

#[test]
fn malformed_data_sets_are_errors_not_panics() {
    let mut garbage: Vec<Vec<u8>> = vec![
        vec![0x10, 0, 0x10, 0, b'P', b'N', 0xFF, 0xFF, 1, 2],
        vec![0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF],
        vec![1, 2, 3],
        b"DICM garbage that is not a data set at all".to_vec(),
    ];
    // every truncation of a real data set
    let good = encode(&sample(), EXPLICIT);
    garbage.extend((1..good.len()).step_by(7).map(|n| good[..n].to_vec()));
    let h = host("garbage", &checked("local ds = msg.dataset; ds.PatientName = 'x'; local _ = ds:tags()"));
    for (i, raw) in garbage.into_iter().enumerate() {
        for ts in [EXPLICIT, IMPLICIT, "1.2.3.4"] {
            let msg = store_rq(DatasetState::Loaded(Dataset::new(raw.clone(), ts)), ts);
            let c = ctx(&h);
            assert!(matches!(h.call_dimse(0, &msg, &c, "a"), DicomOutcome::Continue));
            // either an error reached the script or the bytes parsed; never a panic
            if let Some(e) = err_of(&c) {
                assert!(e.contains("data set") || e.contains("transfer syntax"), "{i} {ts}: {e}");
                let DatasetState::Loaded(d) = std::mem::replace(&mut msg.borrow_mut().dataset, DatasetState::Absent)
                else {
                    panic!()
                };
                assert_eq!(d.into_bytes().unwrap(), raw, "unchanged garbage passes through as is");
            }
        }
    }
}

#[test]
fn objects_are_only_valid_during_their_call() {
    let h = host(
        "stash",
        r#"local kept
        return { on_dimse = function(msg, ctx)
          if kept == nil then kept = msg.dataset; return end
          local ok, e = pcall(function() return kept.PatientName end)
          ctx.vars.err = tostring(e)
        end }"#,
    );
    let c = ctx(&h);
    let first = loaded(EXPLICIT);
    assert!(matches!(h.call_dimse(0, &first, &c, "a"), DicomOutcome::Continue));
    // the kept object holds no reference to its message: the Lua GC cannot
    // see Rust memory behind a userdata, so messages would pile up
    assert_eq!(Rc::strong_count(&first), 1);
    assert_eq!(Rc::weak_count(&first), 0);
    assert!(matches!(h.call_dimse(0, &loaded(EXPLICIT), &c, "a"), DicomOutcome::Continue));
    assert!(err_of(&c).unwrap().contains("only valid during the hook call"));
}

#[test]
fn into_bytes_is_identity_until_changed() {
    for ts in [EXPLICIT, IMPLICIT] {
        let raw = encode(&sample(), ts);
        let mut d = Dataset::new(raw.clone(), ts);
        assert!(d.object().is_ok());
        assert!(!d.changed());
        assert_eq!(d.into_bytes().unwrap(), raw);
    }
}
