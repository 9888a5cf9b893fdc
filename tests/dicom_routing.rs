//! DICOM routing, limits and the PDU-level relay against real DCMTK peers:
//! calling-AE and peer routes, local C-ECHO, association limits ("local
//! limit exceeded"), the Maximum Length cap, the DIMSE timeout, a bad PDU
//! after the association is set up (A-ABORT), the per-message access log
//! and the DICOM metrics. Each test returns early only if DCMTK is missing.

mod common;

use common::dicom::{have_dcmtk, make_file, storescp, storescu, wait_files, Peer, UID_ROOT};
use common::{free_port, get, Harmony, TempDir};
use dimse::pdu::{
    AssociationAC, AssociationRQ, Pdu, PresentationContextProposed, PresentationContextResult,
    PresentationContextResultReason, UserVariableItem,
};
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::ExitStatus;
use std::thread;
use std::time::{Duration, Instant};

const VERIFICATION: &str = "1.2.840.10008.1.1";
const IMPLICIT_LE: &str = "1.2.840.10008.1.2";

fn echoscu_as(tmp: &TempDir, calling: &str, port: u16, log: &str) -> (ExitStatus, String) {
    Peer::run("echoscu", &["-aet", calling, "-aec", "HARMONY", "127.0.0.1", &port.to_string()], tmp.join(log))
}

/// Two storescp backends (pacs_a, pacs_b) behind one endpoint; `endpoint`
/// and `listener` are extra TOML for the endpoint options and the listener.
fn two_backends(hport: u16, a: u16, b: u16, endpoint: &str, listener: &str, admin: Option<u16>) -> Harmony {
    let mgmt = admin.map_or(String::new(), |p| {
        format!(
            "[network.admin.http]\nbind_address = \"127.0.0.1\"\nbind_port = {p}\n\n\
             [management]\nenabled = true\nnetwork = \"admin\"\nbase_path = \"admin\"\n"
        )
    });
    let toml = format!(
        r#"[proxy]
id = "dicom-routing"
log_level = "info"
watch = false

[network.imaging.dicom]
bind_address = "127.0.0.1"
bind_port = {hport}
{listener}

{mgmt}
[pipelines.imaging]
networks = ["imaging"]
endpoints = ["dicom_in"]
backends = ["pacs_a", "pacs_b"]

[endpoints.dicom_in]
service = "dicom"
options = {{ ae_title = "HARMONY"{endpoint} }}

[backends.pacs_a]
service = "dicom"
options = {{ aet = "STORESCP", host = "127.0.0.1", port = {a}, timeout_ms = 3000 }}

[backends.pacs_b]
service = "dicom"
options = {{ aet = "STORESCP", host = "127.0.0.1", port = {b}, timeout_ms = 3000, dimse_timeout_ms = 600 }}
"#
    );
    Harmony::start("dicom-routing", &toml, hport)
}

fn wait_log(h: &Harmony, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let log = h.stderr();
        if log.contains(needle) || Instant::now() > deadline {
            return log;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn store_one(tmp: &TempDir, calling: &str, hport: u16, name: &str) -> (ExitStatus, String) {
    let dir = tmp.join("in");
    fs::create_dir_all(&dir).unwrap();
    let f = make_file(&dir, name, &format!("{UID_ROOT}.9.{}", name.len() * 7 + name.as_bytes()[0] as usize));
    let args = ["-aet", calling, "-aec", "HARMONY", "127.0.0.1", &hport.to_string(), f.to_str().unwrap()];
    Peer::run("storescu", &args, tmp.join(&format!("store-{name}.log")))
}

fn count_files(dir: &Path) -> usize {
    fs::read_dir(dir).map(|r| r.count()).unwrap_or(0)
}

#[test]
fn routes_by_calling_ae_then_peer_then_default() {
    if !have_dcmtk() {
        return;
    }
    let tmp = TempDir::new("dicom-route-ae");
    let (da, db) = (tmp.join("a"), tmp.join("b"));
    fs::create_dir_all(&da).unwrap();
    fs::create_dir_all(&db).unwrap();
    let (_a, pa) = storescp(&tmp, &da);
    let (_b, pb) = storescp(&tmp, &db);
    let hport = free_port();
    let h = two_backends(hport, pa, pb, r#", calling_ae_routes = { MODALITY_B = "pacs_b" }"#, "", None);
    let (s, out) = store_one(&tmp, "MODALITY_A", hport, "one");
    assert!(s.success(), "{out}\n{}", h.stderr());
    wait_files(&da, 1);
    let (s, out) = store_one(&tmp, "MODALITY_B", hport, "two");
    assert!(s.success(), "{out}\n{}", h.stderr());
    wait_files(&db, 1);
    assert_eq!(count_files(&da), 1, "MODALITY_B's file went to pacs_a");
    drop(h);

    // peer routes: loopback goes to pacs_b unless the calling AE says otherwise
    let hport = free_port();
    let h = two_backends(
        hport,
        pa,
        pb,
        r#", calling_ae_routes = { MODALITY_A = "pacs_a" }, peer_routes = { "127.0.0.0/8" = "pacs_b" }"#,
        "",
        None,
    );
    let (s, out) = store_one(&tmp, "ANY_SCU", hport, "three");
    assert!(s.success(), "{out}\n{}", h.stderr());
    wait_files(&db, 2);
    let (s, out) = store_one(&tmp, "MODALITY_A", hport, "four");
    assert!(s.success(), "{out}\n{}", h.stderr());
    wait_files(&da, 2);
    assert_eq!(count_files(&db), 2);
}

#[test]
fn local_echo_is_answered_by_the_proxy_and_logged_per_message() {
    if !have_dcmtk() {
        return;
    }
    let tmp = TempDir::new("dicom-local-echo");
    let out = tmp.join("out");
    fs::create_dir_all(&out).unwrap();
    // storescp -v logs each C-ECHO it answers
    let port = free_port();
    let mut scp = Peer::spawn(
        "storescp",
        &["-v", "--aetitle", "STORESCP", "--output-directory", out.to_str().unwrap(), &port.to_string()],
        tmp.join("scp.log"),
    );
    scp.wait_listening(port);
    let hport = free_port();
    let admin = free_port();
    let h = two_backends(hport, port, port, r#", echo = "local""#, "", Some(admin));
    let (s, o) = echoscu_as(&tmp, "TESTSCU", hport, "echo.log");
    assert!(s.success(), "{o}\n{}", h.stderr());
    let log = wait_log(&h, "answered=local");
    assert!(log.contains("C-ECHO-RQ msg=1 from=client status=0x0000 responses=0 answered=local"), "{log}");
    assert!(!scp.output().contains("Received Echo Request"), "the backend saw the echo: {}", scp.output());
    // a store on the same endpoint still reaches the backend, with its own log line
    let (s, o) = store_one(&tmp, "TESTSCU", hport, "five");
    assert!(s.success(), "{o}\n{}", h.stderr());
    wait_files(&out, 1);
    let log = wait_log(&h, "C-STORE-RQ msg=1 from=client status=0x0000");
    assert!(log.contains("C-STORE-RQ msg=1 from=client status=0x0000"), "{log}");
    // metrics count both
    let m = get(admin, "/admin/metrics").text();
    assert!(
        m.contains(r#"harmony_dimse_requests_total{pipeline="imaging",command="C-ECHO-RQ",status="0x0000"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"harmony_dimse_requests_total{pipeline="imaging",command="C-STORE-RQ",status="0x0000"} 1"#),
        "{m}"
    );
    assert!(m.contains(r#"harmony_dicom_associations_total{pipeline="imaging",result="completed"} 2"#), "{m}");
    assert!(m.contains("harmony_dicom_associations_open 0"), "{m}");
    // the routes endpoint shows the DICOM route with its options
    let r = get(admin, "/admin/routes").json();
    let route = r["routes"].as_array().unwrap().iter().find(|x| x["ae_title"] == "HARMONY").cloned().unwrap();
    assert_eq!(route["echo"], "local", "{route}");
    assert_eq!(route["backend"], "pacs_a", "{route}");
    assert_eq!(route["limits"]["max_pdu"], 131072, "{route}");
}

/// Open an association by hand (raw socket) and keep it: returns the socket.
fn hold_association(port: u16, calling: &str) -> TcpStream {
    let rq = Pdu::AssociationRQ(AssociationRQ {
        protocol_version: 1,
        calling_ae_title: calling.into(),
        called_ae_title: "HARMONY".into(),
        application_context_name: "1.2.840.10008.3.1.1.1".into(),
        presentation_contexts: vec![PresentationContextProposed {
            id: 1,
            abstract_syntax: VERIFICATION.into(),
            transfer_syntaxes: vec![IMPLICIT_LE.into()],
        }],
        user_variables: vec![
            UserVariableItem::MaxLength(16384),
            UserVariableItem::ImplementationClassUID("1.2.826.0.1.3680043.2.1125.99".into()),
        ],
    });
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(&dimse::encode(&rq).unwrap()).unwrap();
    // read exactly the A-ASSOCIATE-AC PDU
    let mut head = [0u8; 6];
    s.read_exact(&mut head).unwrap();
    assert_eq!(head[0], 0x02, "expected an A-ASSOCIATE-AC from {port}");
    let mut body = vec![0u8; u32::from_be_bytes([head[2], head[3], head[4], head[5]]) as usize];
    s.read_exact(&mut body).unwrap();
    s
}

#[test]
fn association_limits_reject_with_local_limit_exceeded() {
    if !have_dcmtk() {
        return;
    }
    let tmp = TempDir::new("dicom-limits");
    let out = tmp.join("out");
    fs::create_dir_all(&out).unwrap();
    // a forking storescp: several associations at once
    let port = free_port();
    let mut scp = Peer::spawn(
        "storescp",
        &["--fork", "--aetitle", "STORESCP", "--output-directory", out.to_str().unwrap(), &port.to_string()],
        tmp.join("scp.log"),
    );
    scp.wait_listening(port);
    let hport = free_port();
    let h = two_backends(hport, port, port, "", "max_associations = 2\nmax_associations_per_calling_ae = 1", None);
    let held = hold_association(hport, "HOLDER");
    // same calling AE: over the per-AE limit
    let (s, o) = echoscu_as(&tmp, "HOLDER", hport, "e1.log");
    assert!(!s.success(), "second association from HOLDER accepted: {o}");
    assert!(o.contains("Local Limit Exceeded"), "{o}");
    // another AE fits (2 in total now held + this one is the second)
    let held2 = hold_association(hport, "OTHER");
    // and now the listener is full for everyone
    let (s, o) = echoscu_as(&tmp, "THIRD", hport, "e2.log");
    assert!(!s.success(), "association over max_associations accepted: {o}");
    assert!(o.contains("Local Limit Exceeded"), "{o}");
    let log = wait_log(&h, "associations on this listener");
    assert!(log.contains("rejected: local limit exceeded (2 associations on this listener)"), "{log}");
    assert!(log.contains("rejected: local limit exceeded (1 associations from this calling AE)"), "{log}");
    // closing the held associations frees the slots
    drop(held);
    drop(held2);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (s, o) = echoscu_as(&tmp, "HOLDER", hport, "e3.log");
        if s.success() {
            break;
        }
        assert!(Instant::now() < deadline, "slots not released: {o}\n{}", h.stderr());
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn maximum_length_is_capped_both_ways() {
    if !have_dcmtk() {
        return;
    }
    let tmp = TempDir::new("dicom-maxpdu");
    let out = tmp.join("out");
    fs::create_dir_all(&out).unwrap();
    let port = free_port();
    let mut scp = Peer::spawn(
        "storescp",
        &[
            "-d",
            "--max-pdu",
            "131072",
            "--aetitle",
            "STORESCP",
            "--output-directory",
            out.to_str().unwrap(),
            &port.to_string(),
        ],
        tmp.join("scp.log"),
    );
    scp.wait_listening(port);
    let hport = free_port();
    let h = two_backends(hport, port, port, "", "max_pdu = 16384", None);
    let dir = tmp.join("in");
    fs::create_dir_all(&dir).unwrap();
    let f = make_file(&dir, "big", &format!("{UID_ROOT}.7.1"));
    let args = ["-d", "--max-pdu", "65536", "-aet", "TESTSCU", "-aec", "HARMONY", "127.0.0.1", &hport.to_string()];
    let mut args: Vec<&str> = args.to_vec();
    args.push(f.to_str().unwrap());
    let (s, o) = Peer::run("storescu", &args, tmp.join("scu.log"));
    assert!(s.success(), "{o}\n{}", h.stderr());
    wait_files(&out, 1);
    // each peer was told the proxy's cap instead of the other's larger size
    assert!(o.contains("Their Max PDU Receive Size:  16384"), "storescu saw: {o}");
    assert!(scp.output().contains("Their Max PDU Receive Size:  16384"), "storescp saw: {}", scp.output());
}

/// A backend that accepts every association and then never answers.
fn silent_backend() -> (u16, thread::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let t = thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = vec![0u8; 65536];
        let n = s.read(&mut buf).unwrap_or(0);
        assert!(n > 0 && buf[0] == 0x01, "expected an A-ASSOCIATE-RQ");
        let ac = Pdu::AssociationAC(AssociationAC {
            protocol_version: 1,
            calling_ae_title: "X".into(),
            called_ae_title: "Y".into(),
            application_context_name: "1.2.840.10008.3.1.1.1".into(),
            presentation_contexts: vec![PresentationContextResult {
                id: 1,
                reason: PresentationContextResultReason::Acceptance,
                transfer_syntax: IMPLICIT_LE.into(),
            }],
            user_variables: vec![UserVariableItem::MaxLength(16384)],
        });
        s.write_all(&dimse::encode(&ac).unwrap()).unwrap();
        // swallow everything until the proxy gives up and closes
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
        }
    });
    (port, t)
}

#[test]
fn a_backend_that_never_answers_hits_the_dimse_timeout() {
    if !have_dcmtk() {
        return;
    }
    let tmp = TempDir::new("dicom-dimse-timeout");
    let (port, backend) = silent_backend();
    let hport = free_port();
    // pacs_b (dimse_timeout_ms = 600) is chosen by calling AE
    let h = two_backends(hport, port, port, r#", calling_ae_routes = { TESTSCU = "pacs_b" }"#, "", None);
    let started = Instant::now();
    let (s, o) = echoscu_as(&tmp, "TESTSCU", hport, "echo.log");
    // echoscu exits 0 even when the echo fails: read what it says
    let _ = s;
    assert!(o.contains("Peer aborted Association"), "echo without an answer did not fail: {o}");
    assert!(started.elapsed() < Duration::from_secs(15), "took {:?}", started.elapsed());
    let log = wait_log(&h, "DIMSE timeout");
    assert!(log.contains("DIMSE timeout: no response to C-ECHO-RQ (message 1)"), "{log}");
    assert!(log.contains("C-ECHO-RQ msg=1 from=client status=none"), "{log}");
    backend.join().unwrap();
}

#[test]
fn a_bad_pdu_after_set_up_aborts_both_sides() {
    if !have_dcmtk() {
        return;
    }
    let tmp = TempDir::new("dicom-bad-pdu");
    let out = tmp.join("out");
    fs::create_dir_all(&out).unwrap();
    let (_scp, port) = storescp(&tmp, &out);
    let hport = free_port();
    let h = two_backends(hport, port, port, "", "", None);
    let mut s = hold_association(hport, "RAW");
    // an unknown PDU type after the AC
    s.write_all(&[0x09, 0, 0, 0, 0, 2, 1, 2]).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert_eq!(got.first(), Some(&0x07), "expected an A-ABORT, got {got:02x?}");
    let log = wait_log(&h, "protocol error from the client");
    assert!(log.contains("protocol error from the client"), "{log}");
    // the proxy keeps serving
    let (st, o) = echoscu_as(&tmp, "TESTSCU", hport, "after.log");
    assert!(st.success(), "{o}");
}

#[test]
fn the_default_backend_down_is_a_rejection_and_storescu_fails() {
    if !have_dcmtk() {
        return;
    }
    let tmp = TempDir::new("dicom-down2");
    let closed = common::closed_port();
    let hport = free_port();
    let h = two_backends(hport, closed, closed, "", "", None);
    let dir = tmp.join("in");
    fs::create_dir_all(&dir).unwrap();
    let f = make_file(&dir, "x", &format!("{UID_ROOT}.5.1"));
    let (s, o) = storescu(&tmp, "HARMONY", hport, &[f], "store.log");
    assert!(!s.success(), "store to a down backend reported success: {o}");
    let log = wait_log(&h, "backend unavailable");
    assert!(log.contains("rejected: backend unavailable"), "{log}");
}

#[test]
fn endpoint_sop_classes_and_transfer_syntaxes_filter_presentation_contexts() {
    if !have_dcmtk() {
        return;
    }
    let tmp = TempDir::new("dicom-filter");
    let out = tmp.join("out");
    fs::create_dir_all(&out).unwrap();
    let (_scp, port) = storescp(&tmp, &out);
    let hport = free_port();
    let h = two_backends(
        hport,
        port,
        port,
        r#", sop_classes = ["1.2.840.10008.5.1.4.1.1.7"], transfer_syntaxes = ["1.2.840.10008.1.2.1"]"#,
        "",
        None,
    );
    // storescu proposes ~128 contexts: only Secondary Capture in explicit VR LE is accepted
    let dir = tmp.join("in");
    fs::create_dir_all(&dir).unwrap();
    let f = make_file(&dir, "sc", &format!("{UID_ROOT}.6.1"));
    let args = ["-d", "-aet", "TESTSCU", "-aec", "HARMONY", "127.0.0.1", &hport.to_string(), f.to_str().unwrap()];
    let (s, o) = Peer::run("storescu", &args, tmp.join("store.log"));
    assert!(s.success(), "{o}\n{}", h.stderr());
    wait_files(&out, 1);
    assert_eq!(o.matches("(Accepted)").count(), 1, "exactly one context accepted: {o}");
    assert!(o.contains("Accepted Transfer Syntax: =LittleEndianExplicit"), "{o}");
    assert!(o.contains("(Abstract Syntax Not Supported)"), "{o}");
    assert!(o.contains("(Transfer Syntaxes Not Supported)"), "{o}");
    // Verification is not in the list: nothing left to accept
    let (_, o) = echoscu_as(&tmp, "TESTSCU", hport, "echo.log");
    assert!(o.contains("Association Rejected"), "{o}");
    let log = wait_log(&h, "none of the proposed presentation contexts");
    assert!(log.contains("rejected: none of the proposed presentation contexts is accepted by the endpoint"), "{log}");
    // implicit VR only: refused too
    let args = ["-xi", "-aet", "TESTSCU", "-aec", "HARMONY", "127.0.0.1", &hport.to_string(), f.to_str().unwrap()];
    let (s, o) = Peer::run("storescu", &args, tmp.join("store-xi.log"));
    assert!(!s.success() || o.contains("Association Rejected"), "{o}");
    assert_eq!(count_files(&out), 1);
}

#[test]
fn a_client_that_leaves_while_the_backend_is_silent_is_noticed_at_once() {
    // a backend that accepts TCP and never answers the A-ASSOCIATE-RQ
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let hport = free_port();
    let h = two_backends(hport, port, port, "", "", None); // timeout_ms = 3000
    let mut s = TcpStream::connect(("127.0.0.1", hport)).unwrap();
    let rq = Pdu::AssociationRQ(AssociationRQ {
        protocol_version: 1,
        calling_ae_title: "LEAVER".into(),
        called_ae_title: "HARMONY".into(),
        application_context_name: "1.2.840.10008.3.1.1.1".into(),
        presentation_contexts: vec![PresentationContextProposed {
            id: 1,
            abstract_syntax: VERIFICATION.into(),
            transfer_syntaxes: vec![IMPLICIT_LE.into()],
        }],
        user_variables: vec![UserVariableItem::MaxLength(16384)],
    });
    s.write_all(&dimse::encode(&rq).unwrap()).unwrap();
    let (_backend_side, _) = l.accept().unwrap();
    let started = Instant::now();
    drop(s);
    let log = wait_log(&h, "client closed during association negotiation");
    assert!(log.contains("calling=LEAVER") && log.contains("client closed during association negotiation"), "{log}");
    assert!(started.elapsed() < Duration::from_secs(2), "noticed only after {:?}", started.elapsed());
}

/// Send a C-ECHO-RQ on a raw association and return the status of the answer.
fn raw_echo(s: &mut TcpStream, message_id: u16) -> u16 {
    let mut out = Vec::new();
    dimse::pdata::write_fragments(&mut out, 1, true, &dimse::Command::echo_rq(message_id).encode(), 16384);
    s.write_all(&out).unwrap();
    // read PDUs until a P-DATA with the whole command arrives
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Ok(Some((kind, total))) = dimse::pdata::split(&buf, 1 << 20) {
            if kind == dimse::pdata::P_DATA {
                let item = dimse::pdata::items(&buf[..total]).next().unwrap().unwrap();
                let cmd = dimse::Command::decode(item.data).unwrap();
                return cmd.status.unwrap();
            }
            buf.drain(..total);
            continue;
        }
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "association closed before the C-ECHO-RSP");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[test]
fn a_reload_routes_new_associations_while_open_ones_keep_their_backend() {
    if !have_dcmtk() {
        return;
    }
    let tmp = TempDir::new("dicom-reload");
    let (da, db) = (tmp.join("a"), tmp.join("b"));
    fs::create_dir_all(&da).unwrap();
    fs::create_dir_all(&db).unwrap();
    let (pa, pb) = (free_port(), free_port());
    let mut a = Peer::spawn(
        "storescp",
        &["-v", "--fork", "--aetitle", "STORESCP", "--output-directory", da.to_str().unwrap(), &pa.to_string()],
        tmp.join("a.log"),
    );
    a.wait_listening(pa);
    let (_b, pb2) = storescp(&tmp, &db);
    let _ = pb;
    let hport = free_port();
    let h = two_backends(hport, pa, pb2, "", "", None);
    // an association opened before the reload, to pacs_a
    let mut held = hold_association(hport, "HOLDER");
    thread::sleep(Duration::from_millis(100));
    // the new generation sends everyone to pacs_b
    let cfg = fs::read_to_string(&h.config).unwrap();
    fs::write(
        &h.config,
        cfg.replace(
            r#"options = { ae_title = "HARMONY" }"#,
            r#"options = { ae_title = "HARMONY", calling_ae_routes = { TESTSCU = "pacs_b", HOLDER = "pacs_b" } }"#,
        ),
    )
    .unwrap();
    common::signal(h.pid(), "HUP");
    let log = wait_log(&h, "generation 2");
    assert!(log.contains("generation 2"), "{log}");
    let (s, o) = store_one(&tmp, "TESTSCU", hport, "after");
    assert!(s.success(), "{o}\n{}", h.stderr());
    wait_files(&db, 1);
    assert_eq!(count_files(&da), 0);
    // the old association still reaches pacs_a
    assert_eq!(raw_echo(&mut held, 7), 0x0000);
    assert!(a.output().contains("Received Echo Request"), "{}", a.output());
}
