//! C-MOVE with the proxy as the move destination's stand-in: a real
//! `dcmqrscp` whose HostTable knows only harmony (`HARMONY`) behind harmony,
//! whose endpoint lists the backend `viewer` (a storescp with AE `VIEWER`)
//! in `move_destinations`. `movescu --move VIEWER` through harmony makes
//! dcmqrscp deliver to harmony, which relays the sub-operations to VIEWER.
//! The same move sent straight to dcmqrscp fails (it does not know VIEWER),
//! and a destination that is not in `move_destinations` goes to dcmqrscp
//! unchanged. A Lua on_dimse of the pipeline also runs on the delivery
//! association. Every test returns early only if a DCMTK program is missing.

mod common;

use common::dicom::{
    datasets_by_sop_uid, dcmqrscp, dump_value, files_in, have_tools, seed_archive, seed_study_uid, seeded_study,
    storescp_as, DicomConfig, Instance, Peer,
};
use common::{eventually, free_port, Harmony, TempDir};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::thread;
use std::time::{Duration, Instant};

fn have_move_tools() -> bool {
    have_tools(&["dcmqrscp", "storescu", "storescp", "movescu", "dcmdump", "dump2dcm"])
}

/// dcmqrscp (seeded) knowing only `HARMONY`, harmony in front of it with
/// `move_destinations = ["viewer"]`, and the VIEWER storescp.
/// Fields drop in order: harmony, the peers, then the temp dir.
struct Setup {
    h: Harmony,
    hport: u16,
    qr: Peer,
    qr_port: u16,
    _viewer: Peer,
    viewer_dir: PathBuf,
    seeded: Vec<(Instance, PathBuf)>,
    tmp: TempDir,
}

impl Setup {
    fn start(tag: &str) -> Setup {
        Setup::start_with(tag, None)
    }

    /// With `script` as the pipeline's lua middleware `s` (file `s.lua`).
    fn start_with(tag: &str, script: Option<&str>) -> Setup {
        let tmp = TempDir::new(tag);
        let hport = free_port();
        let (qr, qr_port) = dcmqrscp(&tmp, &[("harmony", "HARMONY", hport)]);
        let seeded = seed_archive(&tmp, "QR_SCP", qr_port);
        let viewer_dir = tmp.join("viewer");
        fs::create_dir_all(&viewer_dir).unwrap();
        let (viewer, viewer_port) = storescp_as(&tmp, &viewer_dir, "VIEWER");
        // `viewer` is not one of the pipeline's backends: move_destinations
        // may name any dicom backend.
        let mut cfg = DicomConfig::new(hport)
            .endpoint(", move_destinations = [\"viewer\"]")
            .backend("pacs", "QR_SCP", qr_port, "")
            .other_backend("viewer", "VIEWER", viewer_port, "");
        if script.is_some() {
            cfg = cfg.lua("s", "script = \"s.lua\"");
        }
        let scripts: Vec<(&str, &str)> = script.map(|s| ("s.lua", s)).into_iter().collect();
        let h = cfg.start(tag, &scripts);
        Setup { h, hport, qr, qr_port, _viewer: viewer, viewer_dir, seeded, tmp }
    }

    /// `movescu -S -aet TESTSCU --move DEST` of study `study` to `called` at `port`.
    fn movescu(&self, dest: &str, study: u32, called: &str, port: u16, log: &str) -> (ExitStatus, String) {
        let key = format!("StudyInstanceUID={}", seed_study_uid(study));
        let args = [
            "-v",
            "-S",
            "-aet",
            "TESTSCU",
            "-aec",
            called,
            "--move",
            dest,
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            &key,
            "127.0.0.1",
            &port.to_string(),
        ];
        Peer::run("movescu", &args, self.tmp.join(log))
    }

    /// The seeded instances of study `n`: SOPInstanceUID → data set dump of the original.
    fn originals(&self, n: u32) -> BTreeMap<String, String> {
        seeded_study(&self.seeded, n)
    }

    fn context(&self) -> String {
        format!("\n--- dcmqrscp:\n{}\n--- harmony:\n{}", self.qr.output(), self.h.stderr())
    }
}

/// The final C-MOVE-RSP status movescu printed (`-v`), e.g. "0x0000: Success".
fn final_status(out: &str) -> Option<String> {
    // movescu -v prints "Received Final Move Response (<status text>)" for the last response
    out.lines()
        .rfind(|l| l.contains("Final Move Response"))
        .map(|l| l.split_once("Final Move Response").unwrap().1.trim().to_string())
}

/// Wait (bounded) until `dir` holds `n` files and nothing more arrives for a moment.
fn settled_files(dir: &Path, n: usize) -> Vec<PathBuf> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let f = files_in(dir);
        if f.len() >= n || Instant::now() > deadline {
            thread::sleep(Duration::from_millis(200));
            return files_in(dir);
        }
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn c_move_through_harmony_delivers_to_a_destination_only_harmony_knows() {
    if !have_move_tools() {
        return;
    }
    let s = Setup::start("move-proxied");
    for study in [1, 3] {
        let expected = s.originals(study);
        let before = files_in(&s.viewer_dir).len();
        let started = Instant::now();
        let (status, out) = s.movescu("VIEWER", study, "HARMONY", s.hport, &format!("move-{study}.log"));
        let took = started.elapsed();
        assert!(status.success(), "movescu through harmony failed ({status}): {out}{}", s.context());
        let fin = final_status(&out);
        assert!(
            fin.as_deref().is_some_and(|f| f.to_lowercase().contains("success")),
            "study {study}: final C-MOVE status is not success: {fin:?}\n{out}{}",
            s.context()
        );
        let files = settled_files(&s.viewer_dir, before + expected.len());
        assert_eq!(files.len(), before + expected.len(), "study {study}: VIEWER holds {files:?}{}", s.context());
        eprintln!("study {study}: {} instances moved to VIEWER through harmony in {took:?}", expected.len());
    }
    // every instance of both studies arrived exactly once, identical to the original
    let mut expected = s.originals(1);
    expected.extend(s.originals(3));
    let received = datasets_by_sop_uid(&s.viewer_dir);
    assert_eq!(received.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>());
    for (uid, orig) in &expected {
        assert!(received[uid] == *orig, "{uid}: the data set VIEWER received differs from the original");
    }
    // harmony logged the delivery associations: dcmqrscp (QR_SCP) calling
    // HARMONY, relayed to the viewer backend
    let delivery = "calling=QR_SCP called=HARMONY backend=viewer";
    assert!(
        eventually(Duration::from_secs(5), || s.h.stderr().matches(delivery).count() >= 2),
        "no delivery association in harmony's log ({delivery:?}):\n{}",
        s.h.stderr()
    );
    assert!(s.h.stderr().contains("calling=TESTSCU called=HARMONY backend=pacs"), "{}", s.h.stderr());
}

#[test]
fn the_same_move_sent_directly_fails_because_dcmqrscp_does_not_know_viewer() {
    if !have_move_tools() {
        return;
    }
    let s = Setup::start("move-direct");
    let (status, out) = s.movescu("VIEWER", 1, "QR_SCP", s.qr_port, "move-direct.log");
    assert!(!status.success(), "movescu reported success for a move dcmqrscp cannot do: {out}");
    let fin = final_status(&out).unwrap_or_else(|| panic!("no final C-MOVE response: {out}{}", s.context()));
    assert!(
        fin.contains("MoveDestinationUnknown"),
        "direct move to VIEWER: expected Refused: MoveDestinationUnknown (A801), got {fin:?}\n{out}"
    );
    thread::sleep(Duration::from_millis(300));
    assert!(files_in(&s.viewer_dir).is_empty(), "VIEWER received files from a direct move");
    // sanity: through harmony the same move works (this is what the proxy adds)
    let (_, out) = s.movescu("VIEWER", 1, "HARMONY", s.hport, "move-harmony.log");
    let fin = final_status(&out);
    assert!(fin.as_deref().is_some_and(|f| f.contains("Success")), "{fin:?}: {out}{}", s.context());
    assert_eq!(settled_files(&s.viewer_dir, s.originals(1).len()).len(), s.originals(1).len());
}

#[test]
fn a_destination_not_in_move_destinations_is_passed_through_unchanged() {
    if !have_move_tools() {
        return;
    }
    let s = Setup::start("move-unknown");
    let (direct_status, direct) = s.movescu("NOWHERE", 1, "QR_SCP", s.qr_port, "unknown-direct.log");
    let (status, through) = s.movescu("NOWHERE", 1, "HARMONY", s.hport, "unknown-harmony.log");
    // movescu exits non-zero after a failed final status: the same both ways
    assert!(!direct_status.success(), "direct move to NOWHERE succeeded: {direct}");
    assert_eq!(status.code(), direct_status.code(), "exit status differs: {through}{}", s.context());
    let (d, t) = (final_status(&direct), final_status(&through));
    assert!(d.is_some(), "no final response directly: {direct}");
    assert_eq!(t, d, "through harmony the failure differs from dcmqrscp's own\n{through}{}", s.context());
    assert!(t.unwrap().contains("MoveDestinationUnknown"), "{through}");
    assert!(
        eventually(Duration::from_secs(5), || s.h.stderr().contains("C-MOVE-RQ msg=1 from=client status=0xa801")),
        "harmony did not log the A801 answer: {}",
        s.h.stderr()
    );
    assert!(!s.h.stderr().contains("backend=viewer"), "harmony opened a delivery: {}", s.h.stderr());
    thread::sleep(Duration::from_millis(300));
    assert!(files_in(&s.viewer_dir).is_empty(), "VIEWER received files");
}

const SET_INSTITUTION: &str = r#"
return {
  on_dimse = function(msg, ctx)
    if msg.command == "C-STORE-RQ" then
      msg.dataset.InstitutionName = "LUA"
    elseif msg.command == "C-MOVE-RQ" then
      harmony.log.info("on_dimse saw C-MOVE-RQ destination=" .. tostring(msg.move_destination))
    end
  end,
}
"#;

/// The delivery association (dcmqrscp → harmony → VIEWER) runs through the
/// endpoint's pipeline: its C-STORE data sets pass the pipeline's on_dimse.
#[test]
fn on_dimse_runs_on_the_move_delivery_association() {
    if !have_move_tools() {
        return;
    }
    let s = Setup::start_with("move-lua", Some(SET_INSTITUTION));
    let (status, out) = s.movescu("VIEWER", 1, "HARMONY", s.hport, "move.log");
    assert!(status.success(), "{out}{}", s.context());
    let expected = s.originals(1);
    let files = settled_files(&s.viewer_dir, expected.len());
    assert_eq!(files.len(), expected.len(), "{out}{}", s.context());
    let received = datasets_by_sop_uid(&s.viewer_dir);
    assert_eq!(received.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>());
    for (uid, orig) in &expected {
        let got = &received[uid];
        assert_eq!(dump_value(got, "(0008,0080)").as_deref(), Some("LUA"), "{uid}: {got}");
        let rest: String = got.lines().filter(|l| !l.starts_with("(0008,0080)")).map(|l| format!("{l}\n")).collect();
        assert_eq!(&rest, orig, "{uid}: apart from InstitutionName the data set changed");
    }
    // the script sees the client's destination: the proxy rewrites it to
    // itself only after the scripts ran
    common::lua::log_line(&s.h, "on_dimse saw C-MOVE-RQ destination=VIEWER");
}

const ALIAS: &str = r#"
return {
  on_dimse = function(msg, ctx)
    if msg.command == "C-MOVE-RQ" and msg.move_destination == "ALIAS" then
      msg.move_destination = "VIEWER"
    end
  end,
}
"#;

/// Reproducer: the Move Destination is matched against `move_destinations`
/// before on_dimse runs, so a script that sets `msg.move_destination` to a
/// proxied destination ("ALIAS" → "VIEWER") sends "VIEWER" to dcmqrscp
/// unchanged, which answers A801 (Move Destination Unknown).
#[test]
fn a_move_destination_set_by_a_script_is_proxied() {
    if !have_move_tools() {
        return;
    }
    let s = Setup::start_with("move-alias", Some(ALIAS));
    let (status, out) = s.movescu("ALIAS", 1, "HARMONY", s.hport, "move.log");
    assert!(status.success(), "{out}{}", s.context());
    let n = s.originals(1).len();
    assert_eq!(settled_files(&s.viewer_dir, n).len(), n, "{out}{}", s.context());
}
