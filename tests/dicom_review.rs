//! Review tests for the DICOM relay against hand-written peers (raw sockets):
//! a fake SCP that accepts every proposed context and then follows a script,
//! and raw clients built from `dimse::pdata` / `dimse::Command`. Reproducers
//! of known bugs are `#[ignore = "reproducer: ..."]`; the others are plain
//! coverage. None of them needs DCMTK.

mod common;

use common::dicom::{DicomConfig, APPLICATION_CONTEXT, IMPLICIT_LE, SECONDARY_CAPTURE, UID_ROOT, VERIFICATION};
use common::{free_port, get, Harmony};
use dimse::pdata::{self, ABORT, P_DATA};
use dimse::pdu::{
    AssociationAC, AssociationRQ, Pdu, PresentationContextProposed, PresentationContextResult,
    PresentationContextResultReason, UserVariableItem,
};
use dimse::{Command, CommandField};
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const STUDY_FIND: &str = "1.2.840.10008.5.1.4.1.2.2.1";

// ---------------------------------------------------------------- wire helpers

/// An A-ASSOCIATE-RQ proposing `contexts` (id, abstract syntax), implicit VR LE,
/// Maximum Length 16384.
fn rq_bytes(calling: &str, called: &str, contexts: &[(u8, &str)]) -> Vec<u8> {
    dimse::encode(&Pdu::AssociationRQ(AssociationRQ {
        protocol_version: 1,
        calling_ae_title: calling.into(),
        called_ae_title: called.into(),
        application_context_name: APPLICATION_CONTEXT.into(),
        presentation_contexts: contexts
            .iter()
            .map(|(id, a)| PresentationContextProposed {
                id: *id,
                abstract_syntax: a.to_string(),
                transfer_syntaxes: vec![IMPLICIT_LE.into()],
            })
            .collect(),
        user_variables: vec![
            UserVariableItem::MaxLength(16384),
            UserVariableItem::ImplementationClassUID(format!("{UID_ROOT}.98")),
        ],
    }))
    .unwrap()
}

/// Read one whole PDU (header included); None at EOF / timeout / reset.
fn read_pdu(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = [0u8; 6];
    s.read_exact(&mut head).ok()?;
    let len = u32::from_be_bytes([head[2], head[3], head[4], head[5]]) as usize;
    let mut pdu = head.to_vec();
    pdu.resize(6 + len, 0);
    s.read_exact(&mut pdu[6..]).ok()?;
    Some(pdu)
}

/// A DIMSE message as read from the wire.
#[derive(Debug)]
struct Msg {
    context_id: u8,
    cmd: Command,
    data: Option<Vec<u8>>,
}

/// Read the next whole DIMSE message (command and, if announced, data set).
/// Err(pdu type) if a non-P-DATA PDU comes first (e.g. 0x07 A-ABORT), Err(0)
/// on EOF / timeout.
fn read_msg(s: &mut TcpStream) -> Result<Msg, u8> {
    let mut cmd_bytes = Vec::new();
    let mut cmd: Option<(u8, Command)> = None;
    let mut data = Vec::new();
    loop {
        let pdu = read_pdu(s).ok_or(0u8)?;
        if pdu[0] != P_DATA {
            return Err(pdu[0]);
        }
        for item in pdata::items(&pdu) {
            let item = item.expect("well-formed PDV");
            if item.command {
                cmd_bytes.extend_from_slice(item.data);
                if item.last {
                    let c = Command::decode(&cmd_bytes).expect("command decodes");
                    if !c.has_data_set {
                        return Ok(Msg { context_id: item.context_id, cmd: c, data: None });
                    }
                    cmd = Some((item.context_id, c));
                }
            } else {
                data.extend_from_slice(item.data);
                if item.last {
                    let (context_id, cmd) = cmd.take().expect("data after its command");
                    return Ok(Msg { context_id, cmd, data: Some(data) });
                }
            }
        }
    }
}

/// An A-RELEASE-RQ PDU (PS3.8 §9.3.6).
const A_RELEASE_RQ: [u8; 10] = [0x05, 0, 0, 0, 0, 4, 0, 0, 0, 0];

/// A command + optional data set, fragmented to 16 KB PDUs, one PDV each.
fn message_bytes(context_id: u8, cmd: &Command, data: Option<&[u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    pdata::write_fragments(&mut out, context_id, true, &cmd.encode(), 16384);
    if let Some(d) = data {
        pdata::write_fragments(&mut out, context_id, false, d, 16384);
    }
    out
}

/// Nothing at all arrives on `s` within `d` (the peer neither sends nor closes).
fn silent_for(s: &mut TcpStream, d: Duration) -> Result<(), String> {
    s.set_read_timeout(Some(d)).unwrap();
    let mut b = [0u8; 64];
    let r = match s.read(&mut b) {
        Ok(0) => Err("closed".to_string()),
        Ok(n) => Err(format!("received {:02x?}", &b[..n])),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Ok(()),
        Err(e) => Err(format!("error {e}")),
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    r
}

fn store_rq(message_id: u16, sop_uid: &str) -> Command {
    Command {
        message_id: Some(message_id),
        affected_sop_class_uid: Some(SECONDARY_CAPTURE.into()),
        affected_sop_instance_uid: Some(sop_uid.into()),
        priority: Some(0),
        has_data_set: true,
        ..Command::new(CommandField::CStoreRq)
    }
}

fn find_rq(message_id: u16) -> Command {
    Command {
        message_id: Some(message_id),
        affected_sop_class_uid: Some(STUDY_FIND.into()),
        priority: Some(0),
        has_data_set: true,
        ..Command::new(CommandField::CFindRq)
    }
}

/// An implicit-VR-LE data set: PatientName (0010,0010) and an OB-ish blob in
/// a private tag (0009,1010) of `pad` bytes (even).
fn dataset(name: &str, pad: usize) -> Vec<u8> {
    let mut v = Vec::new();
    let mut el = |g: u16, e: u16, val: &[u8]| {
        v.extend_from_slice(&g.to_le_bytes());
        v.extend_from_slice(&e.to_le_bytes());
        v.extend_from_slice(&(val.len() as u32).to_le_bytes());
        v.extend_from_slice(val);
    };
    el(0x0009, 0x0010, b"REVIEW  ");
    el(0x0009, 0x1010, &vec![0x5a; pad & !1]);
    let mut n = name.as_bytes().to_vec();
    if n.len() % 2 == 1 {
        n.push(b' ');
    }
    el(0x0010, 0x0010, &n);
    v
}

// ---------------------------------------------------------------- fake SCP

/// A fake SCP on a free port: accepts one association (every proposed
/// context, implicit VR LE, Maximum Length 16384), sends its A-ASSOCIATE-RQ
/// bytes on the returned channel, then runs `script` on the socket.
fn fake_scp<F>(script: F) -> (u16, mpsc::Receiver<Vec<u8>>, thread::JoinHandle<()>)
where
    F: FnOnce(&mut TcpStream) + Send + 'static,
{
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    let t = thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let Some(rq) = read_pdu(&mut s) else { return };
        assert_eq!(rq[0], 0x01, "expected an A-ASSOCIATE-RQ");
        let Ok(Some((Pdu::AssociationRQ(parsed), _))) = dimse::FrameReader::new(1 << 20).next(&rq) else {
            panic!("bad RQ")
        };
        let ac = Pdu::AssociationAC(AssociationAC {
            protocol_version: 1,
            calling_ae_title: parsed.calling_ae_title.clone(),
            called_ae_title: parsed.called_ae_title.clone(),
            application_context_name: APPLICATION_CONTEXT.into(),
            presentation_contexts: parsed
                .presentation_contexts
                .iter()
                .map(|p| PresentationContextResult {
                    id: p.id,
                    reason: PresentationContextResultReason::Acceptance,
                    transfer_syntax: IMPLICIT_LE.into(),
                })
                .collect(),
            user_variables: vec![UserVariableItem::MaxLength(16384)],
        });
        s.write_all(&dimse::encode(&ac).unwrap()).unwrap();
        let _ = tx.send(rq);
        script(&mut s);
    });
    (port, rx, t)
}

/// Connect to harmony, send `rq`, read the answer PDU (AC expected).
fn associate(hport: u16, rq: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", hport)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(rq).unwrap();
    let ans = read_pdu(&mut s).expect("an answer to the A-ASSOCIATE-RQ");
    assert_eq!(ans[0], 0x02, "expected an A-ASSOCIATE-AC, got {:02x?}", &ans[..ans.len().min(16)]);
    s
}

fn admin_section(admin: u16) -> String {
    format!(
        "\n[network.admin.http]\nbind_address = \"127.0.0.1\"\nbind_port = {admin}\n\n\
         [management]\nenabled = true\nnetwork = \"admin\"\nbase_path = \"admin\"\n"
    )
}

fn wait_log(h: &Harmony, needle: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if h.stderr().contains(needle) {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Metrics text, waiting (bounded) until it contains `needle`; the last text otherwise.
fn metrics_with(admin: u16, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let m = get(admin, "/admin/metrics").text();
        if m.contains(needle) || Instant::now() > deadline {
            return m;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------- coverage

/// A command and its whole data set in ONE P-DATA PDU (two PDVs), and a data
/// set split over many PDUs: both reach the backend byte for byte, and the
/// response comes back.
#[test]
fn command_and_data_in_one_pdu_and_a_data_set_over_many_pdus_arrive_intact() {
    let small = dataset("One^Pdu", 100);
    let big = dataset("Many^Pdus", 100_000);
    let (bs, bb) = (small.clone(), big.clone());
    let (port, _rq, t) = fake_scp(move |s| {
        for (i, want) in [bs, bb].into_iter().enumerate() {
            let m = read_msg(s).expect("a C-STORE-RQ");
            assert_eq!(m.cmd.field, CommandField::CStoreRq);
            assert_eq!(m.data.as_deref(), Some(&want[..]), "data set {i} changed in the relay");
            let rsp = Command::response_to(&m.cmd, 0);
            s.write_all(&message_bytes(m.context_id, &rsp, None)).unwrap();
        }
        let _ = read_pdu(s);
    });
    let hport = free_port();
    let h = DicomConfig::new(hport).backend("pacs", "FAKE", port, "").start("review-onepdu", &[]);
    let mut c = associate(hport, &rq_bytes("CLIENT", "HARMONY", &[(1, SECONDARY_CAPTURE)]));
    // command + data set as two PDVs of one PDU
    let cmd = store_rq(1, &format!("{UID_ROOT}.77.1")).encode();
    let body_len = 6 + cmd.len() + 6 + small.len();
    let mut pdu = vec![P_DATA, 0];
    pdu.extend_from_slice(&(body_len as u32).to_be_bytes());
    pdu.extend_from_slice(&((cmd.len() + 2) as u32).to_be_bytes());
    pdu.extend_from_slice(&[1, 0x03]);
    pdu.extend_from_slice(&cmd);
    pdu.extend_from_slice(&((small.len() + 2) as u32).to_be_bytes());
    pdu.extend_from_slice(&[1, 0x02]);
    pdu.extend_from_slice(&small);
    c.write_all(&pdu).unwrap();
    let r = read_msg(&mut c).expect("C-STORE-RSP");
    assert_eq!(r.cmd.status, Some(0), "{:?}\n{}", r.cmd, h.stderr());
    // a data set over many PDUs
    c.write_all(&message_bytes(1, &store_rq(2, &format!("{UID_ROOT}.77.2")), Some(&big))).unwrap();
    let r = read_msg(&mut c).expect("C-STORE-RSP");
    assert_eq!(r.cmd.status, Some(0), "{:?}\n{}", r.cmd, h.stderr());
    c.write_all(&A_RELEASE_RQ).unwrap();
    drop(c);
    t.join().unwrap();
}

/// C-FIND with pending matches and a C-CANCEL-RQ: the cancel reaches the
/// backend, the final Cancel status comes back, and the access log has one
/// line for the C-FIND with its responses counted.
#[test]
fn c_find_with_pending_matches_and_c_cancel_pass_through() {
    let (port, _rq, t) = fake_scp(move |s| {
        let m = read_msg(s).expect("C-FIND-RQ");
        assert_eq!(m.cmd.field, CommandField::CFindRq);
        let mut pending = Command::response_to(&m.cmd, 0xFF00);
        pending.has_data_set = true;
        for i in 0..2 {
            s.write_all(&message_bytes(m.context_id, &pending, Some(&dataset(&format!("Match^{i}"), 10)))).unwrap();
        }
        let cancel = read_msg(s).expect("C-CANCEL-RQ");
        assert_eq!(cancel.cmd.field, CommandField::CCancelRq);
        assert_eq!(cancel.cmd.message_id_being_responded_to, Some(7));
        s.write_all(&message_bytes(m.context_id, &Command::response_to(&m.cmd, 0xFE00), None)).unwrap();
        let _ = read_pdu(s);
    });
    let hport = free_port();
    let h = DicomConfig::new(hport).backend("pacs", "FAKE", port, "").start("review-cancel", &[]);
    let mut c = associate(hport, &rq_bytes("CLIENT", "HARMONY", &[(1, STUDY_FIND)]));
    c.write_all(&message_bytes(1, &find_rq(7), Some(&dataset("", 0)))).unwrap();
    for _ in 0..2 {
        let r = read_msg(&mut c).expect("pending C-FIND-RSP");
        assert_eq!(r.cmd.status, Some(0xFF00));
    }
    let cancel = Command { message_id_being_responded_to: Some(7), ..Command::new(CommandField::CCancelRq) };
    c.write_all(&message_bytes(1, &cancel, None)).unwrap();
    let r = read_msg(&mut c).expect("final C-FIND-RSP");
    assert_eq!(r.cmd.status, Some(0xFE00));
    assert!(
        wait_log(&h, "C-FIND-RQ msg=7 from=client status=0xfe00 responses=2", Duration::from_secs(3)),
        "{}",
        h.stderr()
    );
    c.write_all(&A_RELEASE_RQ).unwrap();
    drop(c);
    t.join().unwrap();
}

/// Release collision: both peers send A-RELEASE-RQ at once; each gets the
/// other's RQ and then the other's RP; the association ends "released".
#[test]
fn release_collision_is_passed_through() {
    let (port, _rq, t) = fake_scp(move |s| {
        s.write_all(&A_RELEASE_RQ).unwrap();
        let p = read_pdu(s).expect("the client's A-RELEASE-RQ");
        assert_eq!(p[0], 0x05);
        s.write_all(&[0x06, 0, 0, 0, 0, 4, 0, 0, 0, 0]).unwrap();
        let p = read_pdu(s).expect("the client's A-RELEASE-RP");
        assert_eq!(p[0], 0x06);
    });
    let hport = free_port();
    let h = DicomConfig::new(hport).backend("pacs", "FAKE", port, "").start("review-collision", &[]);
    let mut c = associate(hport, &rq_bytes("CLIENT", "HARMONY", &[(1, VERIFICATION)]));
    c.write_all(&A_RELEASE_RQ).unwrap();
    assert_eq!(read_pdu(&mut c).map(|p| p[0]), Some(0x05));
    c.write_all(&[0x06, 0, 0, 0, 0, 4, 0, 0, 0, 0]).unwrap();
    assert_eq!(read_pdu(&mut c).map(|p| p[0]), Some(0x06));
    t.join().unwrap();
    // the backend closed: the client side is closed after it
    assert!(read_pdu(&mut c).is_none());
    drop(c);
    assert!(
        wait_log(&h, r#"calling=CLIENT called=HARMONY backend=pacs outcome="released""#, Duration::from_secs(3)),
        "{}",
        h.stderr()
    );
}

/// A PDV on a presentation context other than its command's is a protocol
/// error: A-ABORT to the client (and the backend).
#[test]
fn a_data_fragment_on_another_context_aborts() {
    let (port, _rq, t) = fake_scp(move |s| {
        let mut kinds = Vec::new();
        while let Some(p) = read_pdu(s) {
            kinds.push(p[0]);
        }
        assert_eq!(kinds.last(), Some(&ABORT), "backend saw {kinds:02x?}");
    });
    let hport = free_port();
    let h = DicomConfig::new(hport).backend("pacs", "FAKE", port, "").start("review-otherctx", &[]);
    let mut c = associate(hport, &rq_bytes("CLIENT", "HARMONY", &[(1, SECONDARY_CAPTURE), (3, SECONDARY_CAPTURE)]));
    let mut out = Vec::new();
    pdata::write_fragments(&mut out, 1, true, &store_rq(1, "1.2.3").encode(), 16384);
    pdata::write_fragments(&mut out, 3, false, &dataset("X", 2), 16384);
    c.write_all(&out).unwrap();
    assert_eq!(read_pdu(&mut c).map(|p| p[0]), Some(ABORT));
    t.join().unwrap();
    assert!(wait_log(&h, "on another presentation context", Duration::from_secs(3)), "{}", h.stderr());
}

/// N-EVENT-REPORT from the backend (SCP → SCU request on the same
/// association): it reaches the client, the client's response reaches the
/// backend, and the access log says from=backend.
#[test]
fn a_request_from_the_backend_is_relayed_and_logged() {
    let (port, _rq, t) = fake_scp(move |s| {
        let ev = Command {
            message_id: Some(42),
            affected_sop_class_uid: Some("1.2.840.10008.1.20.1".into()),
            affected_sop_instance_uid: Some("1.2.840.10008.1.20.1.1".into()),
            ..Command::new(CommandField::Other(0x0100))
        };
        s.write_all(&message_bytes(1, &ev, None)).unwrap();
        let r = read_msg(s).expect("N-EVENT-REPORT-RSP");
        assert_eq!(r.cmd.field, CommandField::Other(0x8100));
        assert_eq!(r.cmd.message_id_being_responded_to, Some(42));
        let _ = read_pdu(s);
    });
    let hport = free_port();
    let h = DicomConfig::new(hport).backend("pacs", "FAKE", port, "").start("review-nevent", &[]);
    let mut c = associate(hport, &rq_bytes("CLIENT", "HARMONY", &[(1, "1.2.840.10008.1.20.1")]));
    let m = read_msg(&mut c).expect("N-EVENT-REPORT-RQ");
    assert_eq!(m.cmd.field, CommandField::Other(0x0100));
    c.write_all(&message_bytes(1, &Command::response_to(&m.cmd, 0), None)).unwrap();
    assert!(
        wait_log(&h, "N-EVENT-REPORT-RQ msg=42 from=backend status=0x0000", Duration::from_secs(3)),
        "{}",
        h.stderr()
    );
    c.write_all(&A_RELEASE_RQ).unwrap();
    drop(c);
    t.join().unwrap();
}

/// An A-ABORT in the middle of a data set a script holds: the held command
/// never reaches the backend, the A-ABORT does, and the request is logged
/// unanswered; then the client leaving while a hook waits for a data set
/// (no A-ABORT, just EOF) closes the backend too.
#[test]
fn abort_or_close_in_the_middle_of_a_held_data_set() {
    for abort in [true, false] {
        let (port, _rq, t) = fake_scp(move |s| {
            let mut kinds = Vec::new();
            while let Some(p) = read_pdu(s) {
                kinds.push(p[0]);
            }
            let want: &[u8] = if abort { &[ABORT] } else { &[] };
            assert_eq!(kinds, want, "backend saw PDUs {kinds:02x?}");
        });
        let hport = free_port();
        let h = DicomConfig::new(hport)
            .lua("s", r#"script = "s.lua""#)
            .backend("pacs", "FAKE", port, "")
            .start("review-held-abort", &[("s.lua", READ_STORE_DATASET)]);
        let mut c = associate(hport, &rq_bytes("CLIENT", "HARMONY", &[(1, SECONDARY_CAPTURE)]));
        let data = dataset("Half^Sent", 40_000);
        let mut out = Vec::new();
        pdata::write_fragments(&mut out, 1, true, &store_rq(1, "1.2.3.4").encode(), 16384);
        pdata::write_pdv(&mut out, 1, false, false, &data[..10_000]);
        c.write_all(&out).unwrap();
        thread::sleep(Duration::from_millis(100));
        if abort {
            c.write_all(&[0x07, 0, 0, 0, 0, 4, 0, 0, 0, 0]).unwrap();
        }
        drop(c);
        t.join().unwrap();
        assert!(wait_log(&h, "C-STORE-RQ msg=1 from=client status=none", Duration::from_secs(3)), "{}", h.stderr());
        if abort {
            assert!(wait_log(&h, r#"outcome="aborted by the client""#, Duration::from_secs(3)), "{}", h.stderr());
        }
    }
}

// ---------------------------------------------------------------- reproducers

/// An A-ASSOCIATE-RQ whose Calling AE field is all spaces, to an endpoint
/// with `sop_classes`: the filtered RQ is re-encoded with dicom-ul, which
/// refuses an all-space AE title; `encode()` turns that into an empty Vec and
/// `bytes[CALLED]` panics — the worker thread dies (workers = 1 by default:
/// the whole proxy stops answering).
#[test]
fn a_blank_calling_ae_with_a_context_filter_does_not_kill_the_worker() {
    let (port, _rq, _t) = fake_scp(|s| {
        let _ = read_pdu(s);
    });
    let hport = free_port();
    let h = DicomConfig::new(hport)
        .endpoint(&format!(r#", sop_classes = ["{VERIFICATION}"]"#))
        .backend("pacs", "FAKE", port, "")
        .start("review-blank-ae", &[]);
    let mut rq = rq_bytes("X", "HARMONY", &[(1, VERIFICATION), (3, SECONDARY_CAPTURE)]);
    rq[26..42].copy_from_slice(&[b' '; 16]);
    let mut s = TcpStream::connect(("127.0.0.1", hport)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(&rq).unwrap();
    let ans = read_pdu(&mut s);
    // any answer (AC, RJ, A-ABORT) is fine; a silent close after a panic is not
    assert!(ans.is_some(), "no answer to the RQ:\n{}", h.stderr());
    assert!(!h.stderr().contains("panicked"), "{}", h.stderr());
    // and the proxy still serves a normal association
    let mut s2 = TcpStream::connect(("127.0.0.1", hport)).unwrap();
    s2.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s2.write_all(&rq_bytes("OTHER", "HARMONY", &[(1, VERIFICATION)])).unwrap();
    assert!(read_pdu(&mut s2).is_some(), "proxy dead after the blank-AE RQ:\n{}", h.stderr());
}

const READ_STORE_DATASET: &str = r#"
return {
  on_dimse = function(msg, ctx)
    if msg.command == "C-STORE-RQ" then
      local _ = msg.dataset.PatientName
    end
  end,
}
"#;

/// A data set over `buffered_dataset_bytes` that a script reads: the request
/// is refused with A700H (that part works), but the request stays in the
/// outstanding list — nothing calls `finish` on that path (relay.rs:378-391).
/// Consequences: no access-log line / metric with status 0xa700, and the
/// association, idle now, is aborted by the DIMSE timeout ("no response to
/// C-STORE-RQ") although the client got its response.
#[test]
fn a_store_refused_for_size_is_finished_not_left_outstanding() {
    let (port, _rq, t) = fake_scp(|s| {
        // the refused store never reaches us; wait for the end
        while let Some(p) = read_pdu(s) {
            assert_ne!(p[0], P_DATA, "the refused C-STORE reached the backend");
        }
    });
    let hport = free_port();
    let h = DicomConfig::new(hport)
        .listener("buffered_dataset_bytes = 1024")
        .lua("s", r#"script = "s.lua""#)
        .backend("pacs", "FAKE", port, ", dimse_timeout_ms = 400")
        .start("review-overlimit-rq", &[("s.lua", READ_STORE_DATASET)]);
    let mut c = associate(hport, &rq_bytes("CLIENT", "HARMONY", &[(1, SECONDARY_CAPTURE)]));
    c.write_all(&message_bytes(1, &store_rq(1, &format!("{UID_ROOT}.78.1")), Some(&dataset("Big^One", 4000)))).unwrap();
    let r = read_msg(&mut c).expect("C-STORE-RSP");
    assert_eq!(r.cmd.status, Some(0xA700), "{}", h.stderr());
    // the client has its answer; the association is idle, not waiting
    let silent = silent_for(&mut c, Duration::from_millis(1500));
    assert!(silent.is_ok(), "idle association after the refusal: {:?}\n{}", silent, h.stderr());
    assert!(
        wait_log(&h, "C-STORE-RQ msg=1 from=client status=0xa700", Duration::from_secs(1)),
        "no access-log line for the refused store:\n{}",
        h.stderr()
    );
    c.write_all(&A_RELEASE_RQ).unwrap();
    drop(c);
    let _ = t.join();
}

const READ_FIND_RSP_DATASET: &str = r#"
return {
  on_dimse = function(msg, ctx)
    if msg.command == "C-FIND-RSP" and msg.dataset ~= nil then
      local _ = msg.dataset.PatientName
    end
  end,
}
"#;

/// A C-FIND pending response whose identifier is over
/// `buffered_dataset_bytes`, read by a script: the match cannot be passed
/// on, and the client must learn that — the final response carries A700
/// instead of success (it was once dropped without a trace).
#[test]
fn a_response_over_the_buffer_limit_is_not_silently_dropped() {
    let matches = &[("Huge^Match", 4000), ("Small^Match", 10)];
    let (statuses, stderr) =
        find_statuses("review-overlimit-rsp", "buffered_dataset_bytes = 1024", READ_FIND_RSP_DATASET, matches);
    // the match too large for the script cannot be passed on: it is not
    // dropped silently — the final response says the result is incomplete
    assert_eq!(statuses, vec![0xFF00, 0xA700], "responses the client saw: {statuses:04x?}\n{stderr}");
}

/// A C-FIND through harmony, with `script` as an on_dimse stage, to a fake
/// SCP that answers one pending response per `(patient name, padding)` and
/// then success: the statuses the client saw, and harmony's stderr.
fn find_statuses(
    tag: &str,
    listener: &str,
    script: &str,
    matches: &'static [(&'static str, usize)],
) -> (Vec<u16>, String) {
    let (port, _rq, t) = fake_scp(move |s| {
        let m = read_msg(s).expect("C-FIND-RQ");
        let mut pending = Command::response_to(&m.cmd, 0xFF00);
        pending.has_data_set = true;
        for &(name, pad) in matches {
            s.write_all(&message_bytes(m.context_id, &pending, Some(&dataset(name, pad)))).unwrap();
        }
        s.write_all(&message_bytes(m.context_id, &Command::response_to(&m.cmd, 0), None)).unwrap();
        let _ = read_pdu(s);
    });
    let hport = free_port();
    let h = DicomConfig::new(hport)
        .listener(listener)
        .lua("s", r#"script = "s.lua""#)
        .backend("pacs", "FAKE", port, "")
        .start(tag, &[("s.lua", script)]);
    let mut c = associate(hport, &rq_bytes("CLIENT", "HARMONY", &[(1, STUDY_FIND)]));
    c.write_all(&message_bytes(1, &find_rq(1), Some(&dataset("", 0)))).unwrap();
    let mut statuses = Vec::new();
    loop {
        let r = read_msg(&mut c).expect("C-FIND-RSP");
        statuses.push(r.cmd.status.unwrap());
        if !matches!(r.cmd.status, Some(0xFF00 | 0xFF01)) {
            break;
        }
    }
    c.write_all(&A_RELEASE_RQ).unwrap();
    drop(c);
    let _ = t.join();
    (statuses, h.stderr())
}

/// The client leaves during association negotiation (the backend has not
/// answered yet): the association never got an AC, but since `d.relay` is
/// already Some, destroy_dicom (mod.rs:339-344) counts it as "completed".
#[test]
fn a_client_that_leaves_during_negotiation_is_not_counted_completed() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let hport = free_port();
    let admin = free_port();
    let h = DicomConfig::new(hport)
        .backend("pacs", "FAKE", port, "")
        .extra(&admin_section(admin))
        .start("review-leaver", &[]);
    let mut s = TcpStream::connect(("127.0.0.1", hport)).unwrap();
    s.write_all(&rq_bytes("LEAVER", "HARMONY", &[(1, VERIFICATION)])).unwrap();
    let (_backend_side, _) = l.accept().unwrap();
    drop(s);
    assert!(wait_log(&h, "client closed during association negotiation", Duration::from_secs(3)), "{}", h.stderr());
    let m = metrics_with(admin, "harmony_dicom_associations_total{");
    assert!(
        !m.contains(r#"harmony_dicom_associations_total{pipeline="imaging",result="completed"}"#),
        "an association that never started counted as completed:\n{m}"
    );
}

/// The backend resets the connection in the middle of the relay: the
/// outcome is "accepted, then Connection reset by peer", which has none of
/// "abort"/"timeout"/"protocol" in it, so it is counted "completed"
/// (mod.rs:340).
#[test]
fn a_backend_reset_mid_association_is_not_counted_completed() {
    let (port, _rq, t) = fake_scp(|s| {
        let _ = read_msg(s);
        // RST instead of FIN when the socket is dropped
        set_linger_zero(s);
    });
    let hport = free_port();
    let admin = free_port();
    let h = DicomConfig::new(hport)
        .backend("pacs", "FAKE", port, "")
        .extra(&admin_section(admin))
        .start("review-reset", &[]);
    let mut c = associate(hport, &rq_bytes("CLIENT", "HARMONY", &[(1, VERIFICATION)]));
    c.write_all(&message_bytes(1, &Command::echo_rq(1), None)).unwrap();
    t.join().unwrap();
    let _ = read_pdu(&mut c);
    drop(c);
    assert!(wait_log(&h, "calling=CLIENT", Duration::from_secs(3)), "{}", h.stderr());
    let m = metrics_with(admin, "harmony_dicom_associations_total{");
    let line = h.stderr().lines().find(|l| l.contains("calling=CLIENT")).unwrap_or("").to_string();
    assert!(
        !m.contains(r#"harmony_dicom_associations_total{pipeline="imaging",result="completed"}"#),
        "reset association counted as completed ({line}):\n{m}"
    );
}

/// The client's last PDU and its FIN arrive together (write, then
/// shutdown(Write) at once): `Side::fill` stops at the short read and clears
/// `rd` (side.rs:212-214), and since edge-triggered readiness already
/// reported the FIN with that data, no new event comes: the proxy never
/// sees the EOF, so it does not half-close the backend as docs/dicom.md
/// promises ("when one side closes, the other is closed after its pending
/// bytes"). The backend waits until something else (idle timeout, its own
/// timer) ends it.
#[test]
fn a_fin_that_arrives_with_the_last_pdu_is_seen() {
    let (tx, rx) = mpsc::channel();
    let (port, _rq, t) = fake_scp(move |s| {
        let m = read_msg(s).expect("C-ECHO-RQ");
        assert_eq!(m.cmd.field, CommandField::CEchoRq);
        let got = Instant::now();
        // no answer: just wait for the proxy to pass on the client's close
        let rest = read_pdu(s);
        let _ = tx.send((got.elapsed(), rest.map(|p| p[0])));
    });
    let hport = free_port();
    let h = DicomConfig::new(hport).backend("pacs", "FAKE", port, "").start("review-fin", &[]);
    let mut c = associate(hport, &rq_bytes("CLIENT", "HARMONY", &[(1, VERIFICATION)]));
    c.write_all(&message_bytes(1, &Command::echo_rq(1), None)).unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let (waited, next) = rx.recv_timeout(Duration::from_secs(15)).expect("fake backend finished");
    assert_eq!(next, None, "backend got another PDU");
    assert!(waited < Duration::from_secs(2), "backend saw the client's close only after {waited:?}\n{}", h.stderr());
    drop(c);
    t.join().unwrap();
}

/// Set SO_LINGER {on, 0} so that closing sends a RST.
fn set_linger_zero(s: &TcpStream) {
    use std::os::fd::AsRawFd;
    let l = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: a valid socket fd and a correctly sized linger struct.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

const HIDE_MATCHES: &str = r#"
return {
  on_dimse = function(msg, ctx)
    if msg.command == "C-FIND-RSP" and msg.status == 0xFF00 then
      if tostring(msg.dataset.PatientName):find("Hide") then return 0xA700 end
    end
  end,
}
"#;

/// docs/dicom.md: a script refusing a pending response drops it (filters a
/// C-FIND match); the other matches and the final status pass unchanged.
#[test]
fn a_script_refusing_a_pending_match_filters_it_out() {
    let matches = &[("Hide^Me", 10), ("Show^Me", 10)];
    let (statuses, stderr) = find_statuses("review-filter-matches", "", HIDE_MATCHES, matches);
    assert_eq!(statuses, vec![0xFF00, 0x0000], "responses the client saw: {statuses:04x?}\n{stderr}");
}
