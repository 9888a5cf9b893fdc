//! DICOM routing, limits and the PDU-level relay against real DCMTK peers:
//! calling-AE and peer routes, local C-ECHO, association limits ("local
//! limit exceeded"), the Maximum Length cap, the DIMSE timeout, a bad PDU
//! after the association is set up (A-ABORT), the per-message access log
//! and the DICOM metrics. Each test returns early only if DCMTK is missing.

mod common;

use common::dicom::{
    echoscu_as, have_dcmtk, make_file, raw_rq, storescp, storescp_opts, storescu, storescu_opts, wait_files,
    DicomConfig, APPLICATION_CONTEXT, IMPLICIT_LE, UID_ROOT,
};
use common::{free_port, get, Harmony, TempDir};
use dimse::pdu::{AssociationAC, Pdu, PresentationContextResult, PresentationContextResultReason, UserVariableItem};
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::thread;
use std::time::{Duration, Instant};

/// `echoscu -aet CALLING -aec HARMONY 127.0.0.1 PORT`.
fn echo_as(tmp: &TempDir, calling: &str, port: u16, log: &str) -> (ExitStatus, String) {
    echoscu_as(tmp, calling, "HARMONY", port, log)
}

/// Two storescp backends (pacs_a, pacs_b) behind one endpoint; `endpoint`
/// and `listener` are extra TOML for the endpoint options and the listener.
fn two_backends(hport: u16, a: u16, b: u16, endpoint: &str, listener: &str, admin: Option<u16>) -> Harmony {
    let mut cfg = DicomConfig::new(hport)
        .listener(listener)
        .endpoint(endpoint)
        .backend("pacs_a", "STORESCP", a, "")
        .backend("pacs_b", "STORESCP", b, ", dimse_timeout_ms = 600");
    if let Some(p) = admin {
        cfg = cfg.extra(&format!(
            "\n[network.admin.http]\nbind_address = \"127.0.0.1\"\nbind_port = {p}\n\n\
             [management]\nenabled = true\nnetwork = \"admin\"\nbase_path = \"admin\"\n"
        ));
    }
    cfg.start("dicom-routing", &[])
}

/// An empty directory `tmp/name`.
fn dir_in(tmp: &TempDir, name: &str) -> PathBuf {
    let d = tmp.join(name);
    fs::create_dir_all(&d).unwrap();
    d
}

fn store_one(tmp: &TempDir, calling: &str, hport: u16, name: &str) -> (ExitStatus, String) {
    let dir = dir_in(tmp, "in");
    let f = make_file(&dir, name, &format!("{UID_ROOT}.9.{}", name.len() * 7 + name.as_bytes()[0] as usize));
    storescu_opts(tmp, &[], calling, "HARMONY", hport, &[f], &format!("store-{name}.log"))
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
    let (da, db) = (dir_in(&tmp, "a"), dir_in(&tmp, "b"));
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
    let out = dir_in(&tmp, "out");
    // storescp -v logs each C-ECHO it answers
    let (scp, port) = storescp_opts(&tmp, &out, "STORESCP", &["-v"]);
    let hport = free_port();
    let admin = free_port();
    let h = two_backends(hport, port, port, r#", echo = "local""#, "", Some(admin));
    let (s, o) = echo_as(&tmp, "TESTSCU", hport, "echo.log");
    assert!(s.success(), "{o}\n{}", h.stderr());
    let log = h.wait_stderr("answered=local");
    assert!(log.contains("C-ECHO-RQ msg=1 from=client status=0x0000 responses=0 answered=local"), "{log}");
    assert!(!scp.output().contains("Received Echo Request"), "the backend saw the echo: {}", scp.output());
    // a store on the same endpoint still reaches the backend, with its own log line
    let (s, o) = store_one(&tmp, "TESTSCU", hport, "five");
    assert!(s.success(), "{o}\n{}", h.stderr());
    wait_files(&out, 1);
    let log = h.wait_stderr("C-STORE-RQ msg=1 from=client status=0x0000");
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
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(&raw_rq(calling, "HARMONY")).unwrap();
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
    let out = dir_in(&tmp, "out");
    // a forking storescp: several associations at once
    let (_scp, port) = storescp_opts(&tmp, &out, "STORESCP", &["--fork"]);
    let hport = free_port();
    let h = two_backends(hport, port, port, "", "max_associations = 2\nmax_associations_per_calling_ae = 1", None);
    let held = hold_association(hport, "HOLDER");
    // same calling AE: over the per-AE limit
    let (s, o) = echo_as(&tmp, "HOLDER", hport, "e1.log");
    assert!(!s.success(), "second association from HOLDER accepted: {o}");
    assert!(o.contains("Local Limit Exceeded"), "{o}");
    // another AE fits (2 in total now held + this one is the second)
    let held2 = hold_association(hport, "OTHER");
    // and now the listener is full for everyone
    let (s, o) = echo_as(&tmp, "THIRD", hport, "e2.log");
    assert!(!s.success(), "association over max_associations accepted: {o}");
    assert!(o.contains("Local Limit Exceeded"), "{o}");
    let log = h.wait_stderr("associations on this listener");
    assert!(log.contains("rejected: local limit exceeded (2 associations on this listener)"), "{log}");
    assert!(log.contains("rejected: local limit exceeded (1 associations from this calling AE)"), "{log}");
    // closing the held associations frees the slots
    drop(held);
    drop(held2);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (s, o) = echo_as(&tmp, "HOLDER", hport, "e3.log");
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
    let out = dir_in(&tmp, "out");
    let (scp, port) = storescp_opts(&tmp, &out, "STORESCP", &["-d", "--max-pdu", "131072"]);
    let hport = free_port();
    let h = two_backends(hport, port, port, "", "max_pdu = 16384", None);
    let f = make_file(&dir_in(&tmp, "in"), "big", &format!("{UID_ROOT}.7.1"));
    let (s, o) = storescu_opts(&tmp, &["-d", "--max-pdu", "65536"], "TESTSCU", "HARMONY", hport, &[f], "scu.log");
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
            application_context_name: APPLICATION_CONTEXT.into(),
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
    let (s, o) = echo_as(&tmp, "TESTSCU", hport, "echo.log");
    // echoscu exits 0 even when the echo fails: read what it says
    let _ = s;
    assert!(o.contains("Peer aborted Association"), "echo without an answer did not fail: {o}");
    assert!(started.elapsed() < Duration::from_secs(15), "took {:?}", started.elapsed());
    // the access line is written after the warning: wait for it, not the warning
    let log = h.wait_stderr("C-ECHO-RQ msg=1 from=client status=none");
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
    let out = dir_in(&tmp, "out");
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
    let log = h.wait_stderr("protocol error from the client");
    assert!(log.contains("protocol error from the client"), "{log}");
    // the proxy keeps serving
    let (st, o) = echo_as(&tmp, "TESTSCU", hport, "after.log");
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
    let f = make_file(&dir_in(&tmp, "in"), "x", &format!("{UID_ROOT}.5.1"));
    let (s, o) = storescu(&tmp, "HARMONY", hport, &[f], "store.log");
    assert!(!s.success(), "store to a down backend reported success: {o}");
    let log = h.wait_stderr("backend unavailable");
    assert!(log.contains("rejected: backend unavailable"), "{log}");
}

#[test]
fn endpoint_sop_classes_and_transfer_syntaxes_filter_presentation_contexts() {
    if !have_dcmtk() {
        return;
    }
    let tmp = TempDir::new("dicom-filter");
    let out = dir_in(&tmp, "out");
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
    let f = make_file(&dir_in(&tmp, "in"), "sc", &format!("{UID_ROOT}.6.1"));
    let (s, o) = storescu_opts(&tmp, &["-d"], "TESTSCU", "HARMONY", hport, std::slice::from_ref(&f), "store.log");
    assert!(s.success(), "{o}\n{}", h.stderr());
    wait_files(&out, 1);
    assert_eq!(o.matches("(Accepted)").count(), 1, "exactly one context accepted: {o}");
    assert!(o.contains("Accepted Transfer Syntax: =LittleEndianExplicit"), "{o}");
    assert!(o.contains("(Abstract Syntax Not Supported)"), "{o}");
    assert!(o.contains("(Transfer Syntaxes Not Supported)"), "{o}");
    // Verification is not in the list: nothing left to accept
    let (_, o) = echo_as(&tmp, "TESTSCU", hport, "echo.log");
    assert!(o.contains("Association Rejected"), "{o}");
    let log = h.wait_stderr("none of the proposed presentation contexts");
    assert!(log.contains("rejected: none of the proposed presentation contexts is accepted by the endpoint"), "{log}");
    // implicit VR only: refused too
    let (s, o) = storescu_opts(&tmp, &["-xi"], "TESTSCU", "HARMONY", hport, &[f], "store-xi.log");
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
    s.write_all(&raw_rq("LEAVER", "HARMONY")).unwrap();
    let (_backend_side, _) = l.accept().unwrap();
    let started = Instant::now();
    drop(s);
    let log = h.wait_stderr("client closed during association negotiation");
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
    let (da, db) = (dir_in(&tmp, "a"), dir_in(&tmp, "b"));
    let (a, pa) = storescp_opts(&tmp, &da, "STORESCP", &["-v", "--fork"]);
    let (_b, pb) = storescp(&tmp, &db);
    let hport = free_port();
    let h = two_backends(hport, pa, pb, "", "", None);
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
    let log = h.wait_stderr("generation 2");
    assert!(log.contains("generation 2"), "{log}");
    let (s, o) = store_one(&tmp, "TESTSCU", hport, "after");
    assert!(s.success(), "{o}\n{}", h.stderr());
    wait_files(&db, 1);
    assert_eq!(count_files(&da), 0);
    // the old association still reaches pacs_a
    assert_eq!(raw_echo(&mut held, 7), 0x0000);
    assert!(a.output().contains("Received Echo Request"), "{}", a.output());
}

#[test]
fn two_endpoints_with_their_own_ae_titles_share_one_listener() {
    if !have_dcmtk() {
        return;
    }
    let tmp = TempDir::new("dicom-two-endpoints");
    let (da, db) = (dir_in(&tmp, "a"), dir_in(&tmp, "b"));
    let (_a, pa) = storescp(&tmp, &da);
    let (_b, pb) = storescp(&tmp, &db);
    let hport = free_port();
    let h = DicomConfig::new(hport)
        .backend("pacs_a", "STORESCP", pa, "")
        .extra(&format!(
            "\n[pipelines.second]\nnetworks = [\"imaging\"]\nendpoints = [\"dicom_b\"]\nbackends = [\"pacs_c\"]\n\n\
             [endpoints.dicom_b]\nservice = \"dicom\"\noptions = {{ ae_title = \"HARMONY_B\" }}\n\n\
             [backends.pacs_c]\nservice = \"dicom\"\noptions = {{ aet = \"STORESCP\", host = \"127.0.0.1\", port = {pb} }}\n"
        ))
        .start("dicom-two-endpoints", &[]);
    let dir = dir_in(&tmp, "in");
    let f1 = make_file(&dir, "one", &format!("{UID_ROOT}.11.1"));
    let f2 = make_file(&dir, "two", &format!("{UID_ROOT}.11.2"));
    let (s, o) = storescu_opts(&tmp, &[], "TESTSCU", "HARMONY", hport, &[f1], "s1.log");
    assert!(s.success(), "{o}\n{}", h.stderr());
    let (s, o) = storescu_opts(&tmp, &[], "TESTSCU", "HARMONY_B", hport, &[f2], "s2.log");
    assert!(s.success(), "{o}\n{}", h.stderr());
    wait_files(&da, 1);
    wait_files(&db, 1);
    assert_eq!((count_files(&da), count_files(&db)), (1, 1));
    let log = h.wait_stderr("called=HARMONY_B");
    assert!(log.contains("called=HARMONY_B backend=pacs_c"), "{log}");
}
