//! Lua DICOM hooks in front of real DCMTK peers: `on_dimse` changing a tag
//! of every C-STORE data set, refusing a message with a status, failing
//! (with and without reading the data set, and with `on_error =
//! "continue"`), reading every data set of a 50-file association, and
//! `on_associate` rejecting a calling AE. Received files are compared with
//! the originals by their `dcmdump` text. Every test returns early only if a
//! DCMTK program is missing.

mod common;

use common::dicom::{
    datasets_by_sop_uid, dumps_by_sop_uid, echoscu_as, files_in, have_dcmtk, storescp, storescu_opts, wait_files,
    DicomConfig, Instance, Peer, UID_ROOT,
};
use common::lua::log_line;
use common::{eventually, free_port, Harmony, TempDir};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::thread;
use std::time::{Duration, Instant};

/// A storescp, harmony in front of it with one script `s.lua` as middleware
/// `s` (`extra` options), and a source dir. Drops harmony first.
struct Setup {
    h: Harmony,
    hport: u16,
    _scp: Peer,
    out: PathBuf,
    src: PathBuf,
    tmp: TempDir,
}

impl Setup {
    fn start(tag: &str, script: &str, extra: &str) -> Setup {
        let tmp = TempDir::new(tag);
        let (src, out) = (tmp.join("src"), tmp.join("out"));
        fs::create_dir_all(&src).unwrap();
        fs::create_dir_all(&out).unwrap();
        let (scp, scp_port) = storescp(&tmp, &out);
        let hport = free_port();
        let h = DicomConfig::new(hport)
            .lua("s", &format!("script = \"s.lua\"{extra}"))
            .backend("pacs", "STORESCP", scp_port, "")
            .start(tag, &[("s.lua", script)]);
        Setup { h, hport, _scp: scp, out, src, tmp }
    }

    /// `n` instances named `{name}{i}`, SOP UIDs `{UID_ROOT}.{uid_part}.{i}`, `pixel_bytes(i)` of pixel data.
    fn files(&self, name: &str, uid_part: &str, n: usize, pixel_bytes: impl Fn(usize) -> usize) -> Vec<PathBuf> {
        (0..n)
            .map(|i| {
                Instance {
                    patient_name: format!("Doe^{name}{i}"),
                    patient_id: format!("PID-{name}-{i}"),
                    study_uid: format!("{UID_ROOT}.{uid_part}"),
                    series_uid: format!("{UID_ROOT}.{uid_part}.1"),
                    sop_uid: format!("{UID_ROOT}.{uid_part}.1.{}", i + 1),
                    instance_number: i as u32 + 1,
                    pixel_bytes: pixel_bytes(i),
                    ..Instance::default()
                }
                .write(&self.src, &format!("{name}{i}"))
            })
            .collect()
    }

    fn store(&self, files: &[PathBuf], log: &str) -> (ExitStatus, String) {
        store_as(&self.tmp, "TESTSCU", self.hport, &[], files, log)
    }

    /// storescu `--no-halt`: goes on with the next file after a failed store.
    fn store_no_halt(&self, files: &[PathBuf], log: &str) -> (ExitStatus, String) {
        store_as(&self.tmp, "TESTSCU", self.hport, &["--no-halt"], files, log)
    }
}

/// `storescu -v EXTRA... -aet CALLING -aec HARMONY 127.0.0.1 PORT FILES...` (one association).
fn store_as(
    tmp: &TempDir,
    calling: &str,
    port: u16,
    extra: &[&str],
    files: &[PathBuf],
    log: &str,
) -> (ExitStatus, String) {
    let opts: Vec<&str> = ["-v"].into_iter().chain(extra.iter().copied()).collect();
    storescu_opts(tmp, &opts, calling, "HARMONY", port, files, log)
}

/// Nothing (more) arrives in `dir` for a moment: the store is over, so a
/// file that was going to arrive would be there already; this only guards
/// against a late write.
fn quiet_files(dir: &Path) -> Vec<PathBuf> {
    thread::sleep(Duration::from_millis(300));
    files_in(dir)
}

/// The `error_id=...` value in a log line.
fn error_id(line: &str) -> String {
    let id = line.split("error_id=").nth(1).unwrap_or_else(|| panic!("no error_id in {line}"));
    id.split(|c: char| c.is_whitespace() || c == ',' || c == ')' || c == ':').next().unwrap().to_string()
}

const SET_INSTITUTION: &str = r#"
return {
  on_dimse = function(msg, ctx)
    if msg.command == "C-STORE-RQ" then
      msg.dataset.InstitutionName = "LUA"
    end
  end,
}
"#;

#[test]
fn on_dimse_sets_a_tag_on_every_stored_data_set() {
    if !have_dcmtk() {
        return;
    }
    let s = Setup::start("lua-tag", SET_INSTITUTION, "");
    // sizes from one PDU to several (storescu's 16 KB PDUs)
    let files = s.files("Tag", "100", 5, |i| 2 + i * 17_000);
    let (status, out) = s.store(&files, "store.log");
    assert!(status.success(), "storescu failed: {out}\nharmony:\n{}", s.h.stderr());
    assert!(!out.contains("Store Failed") && !out.contains("E: "), "{out}");
    assert_eq!(wait_files(&s.out, 5).len(), 5, "storescp wrote {:?}", files_in(&s.out));
    let originals = dumps_by_sop_uid(&files);
    let received = datasets_by_sop_uid(&s.out);
    assert_eq!(received.keys().collect::<Vec<_>>(), originals.keys().collect::<Vec<_>>());
    for (uid, orig) in &originals {
        let got = &received[uid];
        assert!(!orig.contains("(0008,0080)"), "the test file already has an InstitutionName");
        let inst: Vec<&str> = got.lines().filter(|l| l.starts_with("(0008,0080)")).collect();
        assert_eq!(inst.len(), 1, "{uid}: {got}");
        assert!(inst[0].starts_with("(0008,0080) LO [LUA]"), "{uid}: {}", inst[0]);
        let rest: String = got.lines().filter(|l| !l.starts_with("(0008,0080)")).map(|l| format!("{l}\n")).collect();
        assert_eq!(&rest, orig, "{uid}: apart from InstitutionName the data set changed");
    }
}

/// Refuse (without reading the data set) any C-STORE whose SOP instance UID ends in `.666`.
const REFUSE_666: &str = r#"
return {
  on_dimse = function(msg, ctx)
    if msg.command == "C-STORE-RQ" and msg.affected_sop_instance_uid:sub(-4) == ".666" then
      return 0xA700
    end
  end,
}
"#;

#[test]
fn on_dimse_returning_a700_refuses_the_store_and_the_association_goes_on() {
    if !have_dcmtk() {
        return;
    }
    let s = Setup::start("lua-refuse", REFUSE_666, "");
    let good = s.files("Ok", "110", 2, |_| 30_000);
    let bad = Instance {
        sop_uid: format!("{UID_ROOT}.110.1.666"),
        pixel_bytes: 60_000, // several PDUs: refused while its data set is still arriving
        ..Instance::default()
    }
    .write(&s.src, "refused");
    let (_, out) = s.store_no_halt(&[good[0].clone(), bad.clone(), good[1].clone()], "store.log");
    // storescu reports the refusal per file: read its text, not its exit status
    let responses: Vec<&str> = out.lines().filter(|l| l.contains("Received Store Response")).collect();
    assert_eq!(
        responses,
        [
            "I: Received Store Response (Success)",
            "I: Received Store Response (Refused: OutOfResources)",
            "I: Received Store Response (Success)"
        ],
        "{out}"
    );
    let arrived = wait_files(&s.out, 2);
    let arrived = if arrived.len() == 2 { quiet_files(&s.out) } else { arrived };
    let received = datasets_by_sop_uid(&s.out);
    assert_eq!(arrived.len(), 2, "storescp holds {arrived:?}\nstorescu: {out}");
    assert_eq!(received, dumps_by_sop_uid(&good), "the two other files did not arrive intact");
    let line = log_line(&s.h, "refused by Lua on_dimse");
    assert!(line.contains("status 0xa700"), "{line}");
    assert!(s.h.stderr().contains("status=0xa700"), "no access-log line with the status: {}", s.h.stderr());
}

const BOOM: &str = r#"
return {
  on_dimse = function(msg, ctx)
    if msg.command == "C-STORE-RQ" then error("boom") end
  end,
}
"#;

const READ_THEN_BOOM: &str = r#"
return {
  on_dimse = function(msg, ctx)
    if msg.command == "C-STORE-RQ" then
      local name = msg.dataset.PatientName
      error("boom after reading " .. tostring(name))
    end
  end,
}
"#;

/// A failing script: storescu sees 0110 for every file, nothing arrives,
/// harmony logs the Lua error and the refusal under one error id.
fn failing_script_refuses(tag: &str, script: &str, pixel_bytes: usize) {
    let s = Setup::start(tag, script, "");
    let files = s.files("Boom", "120", 2, |_| pixel_bytes);
    let (_, out) = s.store_no_halt(&files, "store.log");
    // DCMTK has no name for 0110 (Processing Failure in PS3.7 C.4)
    let responses: Vec<&str> = out.lines().filter(|l| l.contains("Received Store Response")).collect();
    assert_eq!(
        responses,
        ["I: Received Store Response (Unknown Status: 0x110)"; 2],
        "storescu did not report status 0110 for both files: {out}\nharmony:\n{}",
        s.h.stderr()
    );
    assert!(quiet_files(&s.out).is_empty(), "storescp received {:?}", files_in(&s.out));
    let refusal = log_line(&s.h, "Lua on_dimse failed");
    assert!(refusal.contains("status 0x0110"), "{refusal}");
    let id = error_id(&refusal);
    assert!(id.starts_with("lua-"), "{refusal}");
    // the Lua error itself, with the script's message, under the same id
    let err = log_line(&s.h, &format!("error_id={id} "));
    assert!(err.contains("boom"), "{err}");
    assert!(s.h.stderr().matches("status=0x0110").count() >= 2, "{}", s.h.stderr());
}

#[test]
fn a_script_error_refuses_with_0110_and_logs_an_error_id() {
    if !have_dcmtk() {
        return;
    }
    // fails on the command, while its data set (60 KB) is still arriving
    failing_script_refuses("lua-boom", BOOM, 60_000);
}

#[test]
fn a_script_error_after_reading_the_data_set_refuses_with_0110() {
    if !have_dcmtk() {
        return;
    }
    failing_script_refuses("lua-read-boom", READ_THEN_BOOM, 60_000);
}

#[test]
fn on_error_continue_lets_the_store_through() {
    if !have_dcmtk() {
        return;
    }
    for (tag, script) in [("lua-boom-continue", BOOM), ("lua-read-boom-continue", READ_THEN_BOOM)] {
        let s = Setup::start(tag, script, ", on_error = \"continue\"");
        let files = s.files("Cont", "130", 3, |i| 10_000 + i * 25_000);
        let (status, out) = s.store(&files, "store.log");
        assert!(status.success() && !out.contains("Store Failed"), "{tag}: {out}\nharmony:\n{}", s.h.stderr());
        assert_eq!(wait_files(&s.out, 3).len(), 3, "{tag}: {out}");
        assert_eq!(datasets_by_sop_uid(&s.out), dumps_by_sop_uid(&files), "{tag}: the files did not arrive intact");
        let line = log_line(&s.h, "continuing");
        assert!(line.contains("error_id=") && line.contains("boom"), "{tag}: {line}");
        assert!(!s.h.stderr().contains("status=0x0110"), "{tag}: {}", s.h.stderr());
    }
}

/// Reads (but never changes) every data set: forces buffering of each one.
const READ_ALL: &str = r#"
local seen = 0
return {
  on_dimse = function(msg, ctx)
    if msg.command == "C-STORE-RQ" then
      local uid = msg.dataset.SOPInstanceUID
      if uid ~= msg.affected_sop_instance_uid then
        error("data set UID " .. tostring(uid) .. " is not the command's " .. msg.affected_sop_instance_uid)
      end
      seen = seen + 1
      harmony.log.info("read data set " .. seen .. " " .. uid)
    end
  end,
}
"#;

#[test]
fn fifty_files_read_by_a_script_arrive_intact() {
    if !have_dcmtk() {
        return;
    }
    let s = Setup::start("lua-read50", READ_ALL, "");
    // 1 byte .. ~300 KB of pixel data: one PDU to many (beyond the 128 KB max PDU too)
    let files = s.files("Bulk", "140", 50, |i| 1 + (i * 6151) % 300_000);
    let started = Instant::now();
    let (status, out) = s.store(&files, "store.log");
    let took = started.elapsed();
    assert!(status.success() && !out.contains("Store Failed"), "{out}\nharmony:\n{}", s.h.stderr());
    eprintln!("50 files, every data set read by a script, through harmony in {took:?}");
    assert_eq!(wait_files(&s.out, 50).len(), 50);
    let originals = dumps_by_sop_uid(&files);
    let received = datasets_by_sop_uid(&s.out);
    assert_eq!(received.keys().collect::<Vec<_>>(), originals.keys().collect::<Vec<_>>());
    for (uid, orig) in &originals {
        assert!(received[uid] == *orig, "{uid}: the received data set differs from the original");
    }
    assert!(
        eventually(Duration::from_secs(5), || s.h.stderr().matches("read data set ").count() == 50),
        "the script did not read 50 data sets: {}",
        s.h.stderr()
    );
    assert!(!s.h.stderr().contains("refused"), "{}", s.h.stderr());
}

const REJECT_BADSCU: &str = r#"
return {
  on_associate = function(assoc, ctx)
    if assoc.calling_ae == "BADSCU" then
      harmony.reject("calling-ae-not-recognized")
    end
  end,
}
"#;

#[test]
fn on_associate_rejects_a_calling_ae() {
    if !have_dcmtk() {
        return;
    }
    let s = Setup::start("lua-reject", REJECT_BADSCU, "");
    let echo = |calling: &str, log: &str| echoscu_as(&s.tmp, calling, "HARMONY", s.hport, log);
    let (status, out) = echo("BADSCU", "echo-bad.log");
    assert!(!status.success(), "echoscu as BADSCU succeeded: {out}");
    assert!(out.contains("Association Rejected"), "{out}");
    assert!(out.contains("Calling AE Title Not Recognized"), "expected DCMTK's reason text: {out}");
    let file = s.files("Rej", "150", 1, |_| 100);
    let (status, out) = store_as(&s.tmp, "BADSCU", s.hport, &[], &file, "store-bad.log");
    assert!(!status.success(), "storescu as BADSCU succeeded: {out}");
    assert!(out.contains("Calling AE Title Not Recognized"), "{out}");
    assert!(quiet_files(&s.out).is_empty());
    // another calling AE passes
    let (status, out) = echo("GOODSCU", "echo-good.log");
    assert!(status.success(), "echoscu as GOODSCU failed: {out}\nharmony:\n{}", s.h.stderr());
    let (status, out) = store_as(&s.tmp, "GOODSCU", s.hport, &[], &file, "store-good.log");
    assert!(status.success(), "{out}");
    assert_eq!(wait_files(&s.out, 1).len(), 1);
    let line = log_line(&s.h, "calling=BADSCU");
    assert!(line.contains("rejected") && line.contains("on_associate"), "{line}");
}
