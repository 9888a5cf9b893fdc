//! Interoperability with a real DICOM peer: DCMTK's echoscu, storescu and
//! storescp, over blocking loopback sockets. The crate is driven by a tiny
//! test-only SCP (acceptor) and SCU (requestor) loop.
//!
//! Every test returns early (with a message) when the DCMTK binaries are not
//! installed; `tests/run.sh` installs the `dcmtk` package so CI runs them.

use std::collections::{BTreeSet, VecDeque};
use std::fs::{self, File};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Proc, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use dimse::negotiate::{AbstractSyntaxes, Policy};
use dimse::pdu::{
    AssociationRQ, PDataValueType, Pdu, PresentationContextProposed, PresentationContextResultReason, UserVariableItem,
};
use dimse::{evaluate, fragment, Association, Command, CommandField, Event, FrameReader, Indication, Outcome, Output};
use dimse::{Reassembler, State};

const VERIFICATION: &str = "1.2.840.10008.1.1";
const SECONDARY_CAPTURE: &str = "1.2.840.10008.5.1.4.1.1.7";
const IMPLICIT_LE: &str = "1.2.840.10008.1.2";
const LIMIT: Duration = Duration::from_secs(20);

fn have_dcmtk() -> bool {
    let ok = ["echoscu", "storescu", "storescp", "dcmdump", "dump2dcm"]
        .iter()
        .all(|b| Proc::new(b).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok());
    if !ok {
        eprintln!("skipping: DCMTK (echoscu, storescu, storescp, dcmdump, dump2dcm) is not installed");
    }
    ok
}

/// A scratch directory removed on drop.
struct TempDir(PathBuf);
impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("dimse-dcmtk-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A DCMTK process, killed (by its PID) and reaped on drop; its output goes
/// to a file so a chatty peer can never block on a full pipe.
struct Peer {
    child: Child,
    log: PathBuf,
}
impl Peer {
    fn spawn(program: &str, args: &[&str], log: PathBuf) -> Peer {
        let out = File::create(&log).unwrap();
        let child = Proc::new(program)
            .args(args)
            .env("TCP_NODELAY", "1") // DCMTK keeps Nagle on without it
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        Peer { child, log }
    }
    /// Run to completion, waiting at most `LIMIT`; returns the status and the output.
    fn run(program: &str, args: &[&str], log: PathBuf) -> (ExitStatus, String) {
        let mut peer = Peer::spawn(program, args, log);
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Some(status) = peer.child.try_wait().unwrap() {
                return (status, peer.output());
            }
            assert!(Instant::now() < deadline, "{program} still running after {LIMIT:?}: {}", peer.output());
            thread::sleep(Duration::from_millis(10));
        }
    }
    fn output(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}
impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One association over a blocking socket, driven through the crate.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    reader: FrameReader,
    assoc: Association,
    closed: bool,
}

impl Conn {
    fn new(stream: TcpStream, assoc: Association) -> Conn {
        stream.set_nodelay(true).unwrap();
        stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        Conn { stream, buf: Vec::new(), reader: FrameReader::new(1 << 20), assoc, closed: false }
    }

    /// Feed an event, carry out every output and return the indications.
    fn handle(&mut self, event: Event) -> Vec<Indication> {
        self.assoc.handle(event, Instant::now()).unwrap_or_else(|e| panic!("state machine: {e}"));
        self.drain()
    }

    /// Carry out every pending output; return the indications.
    fn drain(&mut self) -> Vec<Indication> {
        let mut indications = Vec::new();
        while let Some(output) = self.assoc.poll_output() {
            match output {
                Output::Send(pdu) => {
                    let bytes = dimse::encode(&pdu).unwrap();
                    self.stream.write_all(&bytes).unwrap();
                }
                Output::CloseTransport => {
                    let _ = self.stream.shutdown(Shutdown::Both);
                    self.closed = true;
                }
                Output::Indication(i) => indications.push(i),
                Output::OpenTransport => panic!("unexpected OpenTransport"),
                Output::StartArtim | Output::StopArtim => {}
            }
        }
        indications
    }

    /// Read until one PDU (or the peer's close) and feed it to the machine.
    fn receive(&mut self) -> Vec<Indication> {
        let (mut chunk, deadline) = ([0u8; 16384], Instant::now() + LIMIT);
        loop {
            if let Some((pdu, n)) = self.reader.next(&self.buf).unwrap_or_else(|e| panic!("framing: {e}")) {
                self.buf.drain(..n);
                return self.handle(Event::PduReceived(pdu));
            }
            assert!(Instant::now() < deadline, "association still open after {LIMIT:?} in {:?}", self.assoc.state());
            if self.assoc.next_deadline().is_some_and(|d| Instant::now() >= d) {
                self.assoc.on_timeout(Instant::now());
                return self.drain();
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return self.handle(Event::TransportClosed),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return self.handle(Event::TransportClosed), // e.g. connection reset
            }
        }
    }

    /// Send a command set (and a data set) on `ctx` as P-DATA requests.
    fn send_message(&mut self, ctx: u8, command: &Command, data: Option<&[u8]>, peer_max: u32) {
        let mut pdus = fragment(ctx, PDataValueType::Command, &command.encode(), peer_max);
        if let Some(data) = data {
            pdus.extend(fragment(ctx, PDataValueType::Data, data, peer_max));
        }
        for pdu in pdus {
            let Pdu::PData { data } = pdu else { unreachable!() };
            let indications = self.handle(Event::PDataRequest(data));
            assert!(indications.is_empty());
        }
    }
}

/// What the test SCP saw on one association.
#[derive(Debug, Default)]
struct ScpLog {
    rejected: bool,
    released: bool,
    /// (command, data set) for each request, in order.
    requests: Vec<(Command, Option<Vec<u8>>)>,
}

fn scp_policy() -> Policy {
    Policy {
        ae_titles: vec!["HARMONY".to_string()],
        abstract_syntaxes: AbstractSyntaxes::Only(BTreeSet::from([
            VERIFICATION.to_string(),
            SECONDARY_CAPTURE.to_string(),
        ])),
        ..Policy::default()
    }
}

/// Serve one association on `listener` (acceptor role): answer C-ECHO and
/// C-STORE with status 0000H, release on request.
fn serve_one(listener: TcpListener, policy: Policy) -> ScpLog {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + LIMIT;
    let stream = loop {
        if let Ok((stream, _)) = listener.accept() {
            break stream;
        }
        assert!(Instant::now() < deadline, "no connection within {LIMIT:?}");
        thread::sleep(Duration::from_millis(5));
    };
    stream.set_nonblocking(false).unwrap();
    let mut conn = Conn::new(stream, Association::new(Duration::from_secs(5)));
    let mut log = ScpLog::default();
    let mut reassembler = Reassembler::new(1 << 24);
    let mut peer_max = 0;
    let mut pending: Option<(u8, Command)> = None;
    let mut queue: VecDeque<Indication> = conn.handle(Event::TransportConnectIndication).into();
    loop {
        while let Some(indication) = queue.pop_front() {
            let more = match indication {
                Indication::AssociateRequest(rq) => match evaluate(&rq, &policy) {
                    Outcome::Accept(ac, negotiated) => {
                        peer_max = negotiated.peer_max_pdu;
                        conn.handle(Event::AssociateAccept(*ac))
                    }
                    Outcome::Reject(rj) => {
                        log.rejected = true;
                        conn.handle(Event::AssociateReject(rj))
                    }
                },
                Indication::PData(pdvs) => {
                    for message in reassembler.push_all(pdvs).unwrap() {
                        let (ctx, command, data) = match message.kind {
                            PDataValueType::Command => {
                                let command = Command::decode(&message.bytes).unwrap();
                                if command.has_data_set {
                                    pending = Some((message.context_id, command));
                                    continue;
                                }
                                (message.context_id, command, None)
                            }
                            PDataValueType::Data => {
                                let (ctx, command) = pending.take().expect("data set without a command");
                                assert_eq!(ctx, message.context_id);
                                (ctx, command, Some(message.bytes))
                            }
                        };
                        assert!(matches!(command.field, CommandField::CEchoRq | CommandField::CStoreRq));
                        conn.send_message(ctx, &Command::response_to(&command, 0x0000), None, peer_max);
                        log.requests.push((command, data));
                    }
                    Vec::new()
                }
                Indication::ReleaseRequested => {
                    log.released = true;
                    conn.handle(Event::ReleaseResponse)
                }
                other => panic!("unexpected indication {other:?}"),
            };
            queue.extend(more);
        }
        if conn.assoc.state() == State::Sta1 {
            return log;
        }
        queue.extend(conn.receive());
    }
}

/// A listener on a free loopback port, served by `serve_one` in a thread.
fn start_scp() -> (u16, thread::JoinHandle<ScpLog>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    (port, thread::spawn(move || serve_one(listener, scp_policy())))
}

/// Run echoscu against our SCP with this called AE title.
fn echo(called_ae: &str) -> (ExitStatus, String, ScpLog) {
    let tmp = TempDir::new(called_ae);
    let (port, scp) = start_scp();
    let port = port.to_string();
    let args = ["-aet", "TESTSCU", "-aec", called_ae, "127.0.0.1", &port];
    let (status, output) = Peer::run("echoscu", &args, tmp.0.join("echoscu.log"));
    (status, output, scp.join().expect("SCP thread panicked"))
}

#[test]
fn echoscu_verifies_against_our_scp() {
    if !have_dcmtk() {
        return;
    }
    let (status, output, log) = echo("HARMONY");
    assert!(status.success(), "echoscu failed ({status}): {output}");
    assert!(!log.rejected && log.released, "{log:?}");
    assert_eq!(log.requests.len(), 1);
    let (command, data) = &log.requests[0];
    assert_eq!(command.field, CommandField::CEchoRq);
    assert_eq!(command.affected_sop_class_uid.as_deref(), Some(VERIFICATION));
    assert!(data.is_none());
}

#[test]
fn echoscu_with_unknown_called_ae_is_rejected() {
    if !have_dcmtk() {
        return;
    }
    let (status, output, log) = echo("NOPE");
    assert!(!status.success(), "echoscu should fail: {output}");
    assert!(output.to_lowercase().contains("called ae title not recognized"), "echoscu output: {output}");
    assert!(log.rejected && log.requests.is_empty(), "{log:?}");
}

/// Write a small Secondary Capture object with dump2dcm; return the file's
/// bytes and the offset of its data set (after the File Meta Information).
fn make_file(dir: &Path, name: &str, sop_instance: &str) -> (PathBuf, Vec<u8>, usize) {
    let dump = dir.join(format!("{name}.dump"));
    let file = dir.join(format!("{name}.dcm"));
    fs::write(
        &dump,
        format!(
            "(0008,0016) UI [{SECONDARY_CAPTURE}]\n(0008,0018) UI [{sop_instance}]\n(0008,0060) CS [OT]\n\
             (0010,0010) PN [Doe^{name}]\n(0010,0020) LO [PID-{name}]\n(0020,000d) UI [1.2.826.0.1.3680043.2.1125.1]\n\
             (0020,000e) UI [1.2.826.0.1.3680043.2.1125.1.1]\n(7fe0,0010) OB 01\\02\\03\\04\n"
        ),
    )
    .unwrap();
    let status = Proc::new("dump2dcm").arg("+te").arg(&dump).arg(&file).status().unwrap();
    assert!(status.success(), "dump2dcm failed");
    let dumped = Proc::new("dcmdump").arg(&file).output().unwrap();
    assert!(String::from_utf8_lossy(&dumped.stdout).contains(sop_instance), "dcmdump does not show the SOP instance");
    let bytes = fs::read(&file).unwrap();
    // 128-byte preamble, "DICM", then (0002,0000) UL in explicit VR: 4 tag +
    // 2 VR + 2 length + 4 value; the meta group follows for that many bytes.
    assert_eq!(&bytes[128..132], b"DICM");
    let group_length = u32::from_le_bytes(bytes[140..144].try_into().unwrap()) as usize;
    (file, bytes.clone(), 144 + group_length)
}

#[test]
fn storescu_stores_three_files_on_our_scp() {
    if !have_dcmtk() {
        return;
    }
    let tmp = TempDir::new("storescu");
    let uids =
        ["1.2.826.0.1.3680043.2.1125.1.1.1", "1.2.826.0.1.3680043.2.1125.1.1.2", "1.2.826.0.1.3680043.2.1125.1.1.3"];
    let files: Vec<_> = uids.iter().enumerate().map(|(i, uid)| make_file(&tmp.0, &format!("f{i}"), uid)).collect();
    let (port, scp) = start_scp();
    let port = port.to_string();
    let mut args = vec!["-aet", "TESTSCU", "-aec", "HARMONY", "127.0.0.1", &port];
    let paths: Vec<String> = files.iter().map(|(p, _, _)| p.to_string_lossy().into_owned()).collect();
    args.extend(paths.iter().map(String::as_str));
    let (status, output) = Peer::run("storescu", &args, tmp.0.join("storescu.log"));
    assert!(status.success(), "storescu failed ({status}): {output}");
    let log = scp.join().expect("SCP thread panicked");
    assert!(!log.rejected && log.released, "{log:?}");
    assert_eq!(log.requests.len(), 3, "{log:?}");
    for ((command, data), (uid, (_, bytes, offset))) in log.requests.iter().zip(uids.iter().zip(&files)) {
        assert_eq!(command.field, CommandField::CStoreRq);
        assert_eq!(command.affected_sop_class_uid.as_deref(), Some(SECONDARY_CAPTURE));
        assert_eq!(command.affected_sop_instance_uid.as_deref(), Some(*uid));
        let data = data.as_ref().expect("C-STORE-RQ without a data set");
        // Explicit VR little endian is our first choice and the files' own
        // transfer syntax, so storescu sends the data set unchanged.
        assert_eq!(data.as_slice(), &bytes[*offset..], "data set of {uid} differs from the file");
    }
}

/// One implicit VR little endian element.
fn implicit(out: &mut Vec<u8>, group: u16, element: u16, value: &str, pad: u8) {
    let mut v = value.as_bytes().to_vec();
    if v.len() % 2 == 1 {
        v.push(pad);
    }
    out.extend_from_slice(&group.to_le_bytes());
    out.extend_from_slice(&element.to_le_bytes());
    out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    out.extend_from_slice(&v);
}

#[test]
fn our_scu_stores_on_storescp() {
    if !have_dcmtk() {
        return;
    }
    let tmp = TempDir::new("storescp");
    let out_dir = tmp.0.join("out");
    fs::create_dir_all(&out_dir).unwrap();
    // A free port: storescp binds 0.0.0.0 itself; we only connect to 127.0.0.1.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let port_arg = port.to_string();
    let out_arg = out_dir.to_string_lossy().into_owned();
    let scp = Peer::spawn(
        "storescp",
        &["--aetitle", "STORESCP", "--output-directory", &out_arg, &port_arg],
        tmp.0.join("storescp.log"),
    );

    let sop_instance = "1.2.826.0.1.3680043.2.1125.9.1";
    let rq = AssociationRQ {
        protocol_version: 1,
        calling_ae_title: "HARMONY".to_string(),
        called_ae_title: "STORESCP".to_string(),
        application_context_name: "1.2.840.10008.3.1.1.1".to_string(),
        presentation_contexts: vec![PresentationContextProposed {
            id: 1,
            abstract_syntax: SECONDARY_CAPTURE.to_string(),
            transfer_syntaxes: vec![IMPLICIT_LE.to_string()],
        }],
        user_variables: vec![
            UserVariableItem::MaxLength(16384),
            UserVariableItem::ImplementationClassUID("2.25.180116224512357846731806541153958391371".to_string()),
        ],
    };
    let mut assoc = Association::new(Duration::from_secs(5));
    assoc.handle(Event::AssociateRequest(rq), Instant::now()).unwrap();
    assert_eq!(assoc.poll_output(), Some(Output::OpenTransport));
    let deadline = Instant::now() + LIMIT;
    let stream = loop {
        if let Ok(stream) = TcpStream::connect(("127.0.0.1", port)) {
            break stream;
        }
        assert!(Instant::now() < deadline, "storescp not listening: {}", scp.output());
        thread::sleep(Duration::from_millis(20));
    };
    let mut conn = Conn::new(stream, assoc);
    assert!(conn.handle(Event::TransportConnectConfirm).is_empty());
    let ac = match conn.receive().pop() {
        Some(Indication::AssociateAccepted(ac)) => ac,
        other => panic!("expected A-ASSOCIATE-AC, got {other:?}: {}", scp.output()),
    };
    let pc = &ac.presentation_contexts[0];
    assert_eq!((pc.id, &pc.reason), (1, &PresentationContextResultReason::Acceptance));
    assert_eq!(pc.transfer_syntax.trim_end_matches('\0'), IMPLICIT_LE);
    let peer_max = ac.user_variables.iter().find_map(|i| match i {
        UserVariableItem::MaxLength(n) => Some(*n),
        _ => None,
    });

    let mut data = Vec::new();
    implicit(&mut data, 0x0008, 0x0016, SECONDARY_CAPTURE, 0);
    implicit(&mut data, 0x0008, 0x0018, sop_instance, 0);
    implicit(&mut data, 0x0010, 0x0010, "Harmony^Test", b' ');
    let command = Command {
        message_id: Some(1),
        affected_sop_class_uid: Some(SECONDARY_CAPTURE.to_string()),
        affected_sop_instance_uid: Some(sop_instance.to_string()),
        priority: Some(dimse::command::priority::MEDIUM),
        has_data_set: true,
        ..Command::new(CommandField::CStoreRq)
    };
    conn.send_message(1, &command, Some(&data), peer_max.unwrap_or(0));

    let mut reassembler = Reassembler::new(1 << 20);
    let response = loop {
        let mut done = None;
        for indication in conn.receive() {
            let Indication::PData(pdvs) = indication else { panic!("unexpected {indication:?}: {}", scp.output()) };
            done = reassembler.push_all(pdvs).unwrap().pop().or(done);
        }
        if let Some(message) = done {
            break Command::decode(&message.bytes).unwrap();
        }
    };
    assert_eq!(response.field, CommandField::CStoreRsp);
    assert_eq!(response.message_id_being_responded_to, Some(1));
    assert_eq!(response.status, Some(0x0000), "C-STORE-RSP: {response:?}: {}", scp.output());
    assert_eq!(response.affected_sop_instance_uid.as_deref(), Some(sop_instance));

    assert!(conn.handle(Event::ReleaseRequest).is_empty());
    assert_eq!(conn.receive(), vec![Indication::ReleaseConfirmed]);
    assert!(conn.closed && conn.assoc.state() == State::Sta1);

    let written: Vec<PathBuf> = fs::read_dir(&out_dir).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(written.len(), 1, "storescp wrote {written:?}: {}", scp.output());
    let name = written[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.contains(sop_instance), "unexpected file name {name}");
    let dumped = Proc::new("dcmdump").arg(&written[0]).output().unwrap();
    let dumped = String::from_utf8_lossy(&dumped.stdout);
    assert!(dumped.contains("Harmony^Test") && dumped.contains(sop_instance), "dcmdump: {dumped}");
    drop(scp);
}
