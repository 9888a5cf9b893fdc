//! DICOM peers for the DICOM test files: DCMTK processes (each in its own
//! process group, killed by that group's id on drop, so the children a forking
//! server such as `dcmqrscp` leaves behind die too), test files made with
//! `dump2dcm`, dataset dumps with `dcmdump`, and a harmony config with one
//! DICOM listener and one DICOM backend. Every wait is bounded.

use super::{port_open, Harmony, TempDir};
use dimse::pdu::{AssociationRQ, Pdu, PresentationContextProposed, UserVariableItem};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// No single DCMTK run or readiness wait may take longer than this.
pub const LIMIT: Duration = Duration::from_secs(20);
pub const SECONDARY_CAPTURE: &str = "1.2.840.10008.5.1.4.1.1.7";
pub const VERIFICATION: &str = "1.2.840.10008.1.1";
pub const IMPLICIT_LE: &str = "1.2.840.10008.1.2";
/// The DICOM application context name.
pub const APPLICATION_CONTEXT: &str = "1.2.840.10008.3.1.1.1";
/// The UID root of the test data.
pub const UID_ROOT: &str = "1.2.826.0.1.3680043.2.1125";

/// True if every program in `tools` runs (`PROG --version`); otherwise says
/// which are missing, for a test that then returns early.
pub fn have_tools(tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|b| Command::new(b).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_err())
        .collect();
    if !missing.is_empty() {
        eprintln!("skipping: {} not installed (Debian package dcmtk; tests/run.sh installs it)", missing.join(", "));
    }
    missing.is_empty()
}

/// The DCMTK programs every DICOM test uses.
pub fn have_dcmtk() -> bool {
    have_tools(&["echoscu", "storescu", "storescp", "dcmdump", "dump2dcm"])
}

/// A peer process with stdout+stderr in a file. It runs in its own process
/// group; on drop the whole group gets SIGKILL (by the group id, which is the
/// leader's PID) and the leader is reaped.
pub struct Peer {
    pub child: Child,
    pub log: PathBuf,
    name: String,
    reaped: bool,
}

impl Peer {
    /// Start `program args...` with `TCP_NODELAY=1` (DCMTK leaves Nagle on otherwise).
    pub fn spawn(program: &str, args: &[&str], log: PathBuf) -> Peer {
        let mut cmd = Command::new(program);
        cmd.args(args).env("TCP_NODELAY", "1");
        Peer::spawn_command(cmd, log)
    }

    /// Start a prepared command (own process group, output to `log`).
    pub fn spawn_command(mut cmd: Command, log: PathBuf) -> Peer {
        let out = File::create(&log).unwrap();
        let name = cmd.get_program().to_string_lossy().into_owned();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Peer { child, log, name, reaped: false }
    }

    /// Run to completion within `LIMIT`: (status, output).
    pub fn run(program: &str, args: &[&str], log: PathBuf) -> (ExitStatus, String) {
        let mut p = Peer::spawn(program, args, log);
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Some(status) = p.child.try_wait().unwrap() {
                p.reaped = true;
                return (status, p.output());
            }
            assert!(Instant::now() < deadline, "{program} still running after {LIMIT:?}: {}", p.output());
            thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn output(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait (bounded) until `port` accepts connections; panics with the log if
    /// the process exits first or the port stays closed.
    pub fn wait_listening(&mut self, port: u16) {
        let deadline = Instant::now() + LIMIT;
        while !port_open(port) {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.reaped = true;
                panic!("{} exited ({status}) before listening on {port}: {}", self.name, self.output());
            }
            assert!(Instant::now() < deadline, "{} did not listen on {port}: {}", self.name, self.output());
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM to the leader, then wait up to `within` for it to exit (Orthanc
    /// must exit before its storage is reused). None if it is still running.
    pub fn terminate(&mut self, within: Duration) -> Option<ExitStatus> {
        if self.reaped {
            return None;
        }
        super::signal(self.pid(), "TERM");
        let s = super::wait_exit(&mut self.child, within);
        if s.is_some() {
            // The group may still hold children. The leader is reaped now, so
            // its id could in theory be reused: only signal a group that exists.
            self.reaped = true;
            if !group_members(self.pid()).is_empty() {
                kill_group(self.pid());
            }
        }
        s
    }

    /// SIGKILL to the whole process group, then reap the leader.
    pub fn stop(&mut self) {
        if self.reaped {
            return;
        }
        // While the leader is not reaped its PID (= the group id) cannot be reused.
        kill_group(self.pid());
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.reaped = true;
        // SIGKILL is delivered asynchronously: wait (bounded) for the rest of the group
        let deadline = Instant::now() + Duration::from_secs(5);
        while !group_members(self.pid()).is_empty() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn kill_group(pgid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// PIDs of the live (not zombie) processes in process group `pgid` (from /proc).
pub fn group_members(pgid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // pid (comm) state ppid pgrp ...: comm may contain spaces, so split after the last ')'
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { continue };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.first() != Some(&"Z") && fields.get(2).and_then(|g| g.parse::<u32>().ok()) == Some(pgid) {
            out.push(pid);
        }
    }
    out
}

/// storescp (AE `STORESCP`) on a free port, writing into `dir`; waits until it listens.
pub fn storescp(tmp: &TempDir, dir: &Path) -> (Peer, u16) {
    storescp_as(tmp, dir, "STORESCP")
}

/// storescp with AE title `aet` on a free port, writing into `dir`.
pub fn storescp_as(tmp: &TempDir, dir: &Path, aet: &str) -> (Peer, u16) {
    storescp_opts(tmp, dir, aet, &[])
}

/// `storescp OPTS... --aetitle AET --output-directory DIR PORT` on a free
/// port (e.g. `-v`, `--fork`); waits until it listens.
pub fn storescp_opts(tmp: &TempDir, dir: &Path, aet: &str, opts: &[&str]) -> (Peer, u16) {
    let port = super::free_port();
    let port_s = port.to_string();
    let mut args = opts.to_vec();
    args.extend(["--aetitle", aet, "--output-directory", dir.to_str().unwrap(), &port_s]);
    let mut p = Peer::spawn("storescp", &args, tmp.join(&format!("storescp-{port}.log")));
    p.wait_listening(port);
    (p, port)
}

/// `dcmqrscp` (AE `QR_SCP`, 16 KB max PDU) on a free port, serving
/// `tmp/db`, in its default forking mode (`-s` is broken in DCMTK 3.6.7).
/// `hosts` are its HostTable entries `(name, AE title, port)` on 127.0.0.1:
/// the only C-MOVE destinations it knows. Waits until it listens.
pub fn dcmqrscp(tmp: &TempDir, hosts: &[(&str, &str, u16)]) -> (Peer, u16) {
    let db = tmp.join("db");
    fs::create_dir_all(&db).unwrap();
    let port = super::free_port();
    let table: String = hosts.iter().map(|(n, ae, p)| format!("{n} = ({ae}, 127.0.0.1, {p})\n")).collect();
    let cfg = format!(
        "NetworkTCPPort  = {port}\nMaxPDUSize      = 16384\nMaxAssociations = 16\n\n\
         HostTable BEGIN\n{table}HostTable END\n\n\
         VendorTable BEGIN\nVendorTable END\n\n\
         AETable BEGIN\nQR_SCP {} RW (100, 1024mb) ANY\nAETable END\n",
        db.display()
    );
    let cfg_path = tmp.write("dcmqrscp.cfg", cfg.as_bytes());
    let mut qr = Peer::spawn("dcmqrscp", &["-c", cfg_path.to_str().unwrap()], tmp.join("dcmqrscp.log"));
    qr.wait_listening(port);
    (qr, port)
}

/// (patient name, patient id, study no, date, [(series no, modality, instances)])
type Study = (&'static str, &'static str, u32, &'static str, &'static [(u32, &'static str, u32)]);

/// The Q/R test archive: 3 patients, 4 studies, 7 series, 11 instances; the
/// pixel data (up to 40 KB) spans several PDUs at dcmqrscp's 16 KB max PDU.
pub fn seed_instances() -> Vec<Instance> {
    let layout: &[Study] = &[
        ("Doe^John", "PID-1", 1, "20240101", &[(1, "CT", 2), (2, "CT", 1)]),
        ("Doe^John", "PID-1", 2, "20240202", &[(1, "MR", 2)]),
        ("Doe^Jane", "PID-2", 3, "20240303", &[(1, "OT", 3), (2, "OT", 1)]),
        ("Smith^Ann", "PID-3", 4, "20240404", &[(1, "US", 1), (2, "US", 1)]),
    ];
    let mut out = Vec::new();
    for (name, pid, study, date, series) in layout {
        let study_uid = seed_study_uid(*study);
        for (series_no, modality, count) in series.iter() {
            let series_uid = format!("{study_uid}.{series_no}");
            for i in 1..=*count {
                out.push(Instance {
                    patient_name: name.to_string(),
                    patient_id: pid.to_string(),
                    study_uid: study_uid.clone(),
                    study_date: date.to_string(),
                    study_id: study.to_string(),
                    series_uid: series_uid.clone(),
                    series_number: *series_no,
                    modality: modality.to_string(),
                    sop_uid: format!("{series_uid}.{i}"),
                    instance_number: i,
                    pixel_bytes: 1000 * (*study as usize * 10 + i as usize) % 40_000 + 2,
                });
            }
        }
    }
    out
}

/// The StudyInstanceUID of seeded study `n` (1-4).
pub fn seed_study_uid(n: u32) -> String {
    format!("{UID_ROOT}.50.{n}")
}

/// Write the seed instances into `dir` and store them into the SCP `aet`
/// at `port` directly (one association): (instance, file) pairs.
pub fn seed_archive(tmp: &TempDir, aet: &str, port: u16) -> Vec<(Instance, PathBuf)> {
    let src = tmp.join("seed");
    fs::create_dir_all(&src).unwrap();
    let seeded: Vec<(Instance, PathBuf)> = seed_instances()
        .into_iter()
        .enumerate()
        .map(|(i, inst)| {
            let f = inst.write(&src, &format!("seed{i:02}"));
            (inst, f)
        })
        .collect();
    let files: Vec<PathBuf> = seeded.iter().map(|(_, f)| f.clone()).collect();
    let (status, out) = storescu(tmp, aet, port, &files, "seed.log");
    assert!(status.success(), "seeding {aet} failed: {out}");
    seeded
}

/// Harmony from a config `body` (networks, pipelines, middleware, ...) after
/// a `[proxy]` section whose `scripts_path` is a `scripts/` dir next to the
/// config, holding `scripts` (name, source). Waits until `port` listens.
pub fn harmony_with_scripts(tag: &str, port: u16, scripts: &[(&str, &str)], body: &str) -> Harmony {
    let toml =
        format!("[proxy]\nid = \"{tag}\"\nlog_level = \"info\"\nwatch = false\nscripts_path = \"scripts\"\n\n{body}");
    let (dir, cfg) = super::config_dir(tag, &toml);
    fs::create_dir_all(dir.join("scripts")).unwrap();
    for (name, src) in scripts {
        dir.write(&format!("scripts/{name}"), src.as_bytes());
    }
    let mut h = Harmony::spawn(&cfg, &dir.path, port);
    h._dir = Some(dir);
    h.wait_ready();
    h
}

/// The source of a shipped script under the repository's `scripts/`
/// (None, with a message, if it is not there).
pub fn shipped_script(rel: &str) -> Option<String> {
    let p = super::lua::shipped_scripts().join(rel);
    match fs::read_to_string(&p) {
        Ok(s) => Some(s),
        Err(_) => {
            eprintln!("skipping: {} is not in this checkout", p.display());
            None
        }
    }
}

/// Harmony with one DICOM network on `hport`: called AE "HARMONY" → the SCP
/// `backend_aet` at 127.0.0.1:`backend_port`. `endpoint_extra` / `backend_extra`
/// are appended to the inline option tables (e.g. `, local_aet = "X"`).
pub fn harmony_dicom(
    hport: u16,
    backend_aet: &str,
    backend_port: u16,
    endpoint_extra: &str,
    backend_extra: &str,
) -> Harmony {
    DicomConfig::new(hport)
        .endpoint(endpoint_extra)
        .backend("pacs", backend_aet, backend_port, backend_extra)
        .start("dicom", &[])
}

/// The config of the DICOM tests after `[proxy]`, built step by step: a
/// DICOM listener `imaging` on 127.0.0.1:`hport`, endpoint `dicom_in`
/// (called AE `HARMONY`) and pipeline `imaging` with Lua middleware and
/// DICOM backends (timeout_ms = 3000) in the order they are added.
pub struct DicomConfig {
    hport: u16,
    listener: String,
    endpoint: String,
    middleware: Vec<String>,
    pipeline_backends: Vec<String>,
    sections: String,
}

impl DicomConfig {
    pub fn new(hport: u16) -> DicomConfig {
        DicomConfig {
            hport,
            listener: String::new(),
            endpoint: String::new(),
            middleware: Vec::new(),
            pipeline_backends: Vec::new(),
            sections: String::new(),
        }
    }

    /// Extra lines of the listener (e.g. `max_pdu = 16384`).
    pub fn listener(mut self, lines: &str) -> Self {
        self.listener.push_str(lines);
        self
    }

    /// Appended to the endpoint's inline options (e.g. `, echo = "local"`).
    pub fn endpoint(mut self, options: &str) -> Self {
        self.endpoint.push_str(options);
        self
    }

    /// A lua middleware of the pipeline; `options` is the body of its inline
    /// options table (e.g. `script = "s.lua"`).
    pub fn lua(mut self, name: &str, options: &str) -> Self {
        self.middleware.push(name.to_string());
        self.sections.push_str(&format!("\n[middleware.{name}]\ntype = \"lua\"\noptions = {{ {options} }}\n"));
        self
    }

    /// A DICOM backend of the pipeline (the first one added is the default);
    /// `extra` is appended to its inline options.
    pub fn backend(mut self, name: &str, aet: &str, port: u16, extra: &str) -> Self {
        self.pipeline_backends.push(name.to_string());
        self.other_backend(name, aet, port, extra)
    }

    /// `backend(name, aet, port, "")` for each `(name, aet, port)`.
    pub fn backends(self, list: &[(&str, &str, u16)]) -> Self {
        list.iter().fold(self, |c, (name, aet, port)| c.backend(name, aet, *port, ""))
    }

    /// A DICOM backend that is not one of the pipeline's (e.g. a move destination).
    pub fn other_backend(mut self, name: &str, aet: &str, port: u16, extra: &str) -> Self {
        self.sections.push_str(&format!(
            "\n[backends.{name}]\nservice = \"dicom\"\n\
             options = {{ aet = \"{aet}\", host = \"127.0.0.1\", port = {port}, timeout_ms = 3000{extra} }}\n"
        ));
        self
    }

    /// Verbatim TOML after everything else (e.g. a management section).
    pub fn extra(mut self, toml: &str) -> Self {
        self.sections.push_str(toml);
        self
    }

    /// The config text.
    pub fn build(&self) -> String {
        let quoted = |v: &[String]| v.iter().map(|m| format!("\"{m}\"")).collect::<Vec<_>>().join(", ");
        let middleware = if self.middleware.is_empty() {
            String::new()
        } else {
            format!("middleware = [{}]\n", quoted(&self.middleware))
        };
        format!(
            r#"[network.imaging.dicom]
bind_address = "127.0.0.1"
bind_port = {}
{}

[pipelines.imaging]
networks = ["imaging"]
endpoints = ["dicom_in"]
{middleware}backends = [{}]

[endpoints.dicom_in]
service = "dicom"
options = {{ ae_title = "HARMONY"{} }}
{}"#,
            self.hport,
            self.listener,
            quoted(&self.pipeline_backends),
            self.endpoint,
            self.sections
        )
    }

    /// Harmony with this config and `scripts` (see `harmony_with_scripts`).
    pub fn start(&self, tag: &str, scripts: &[(&str, &str)]) -> Harmony {
        harmony_with_scripts(tag, self.hport, scripts, &self.build())
    }
}

/// An encoded A-ASSOCIATE-RQ from `calling` to `called` proposing
/// Verification in implicit VR little endian, with a 16 KB Maximum Length.
pub fn raw_rq(calling: &str, called: &str) -> Vec<u8> {
    let rq = Pdu::AssociationRQ(AssociationRQ {
        protocol_version: 1,
        calling_ae_title: calling.into(),
        called_ae_title: called.into(),
        application_context_name: APPLICATION_CONTEXT.into(),
        presentation_contexts: vec![PresentationContextProposed {
            id: 1,
            abstract_syntax: VERIFICATION.into(),
            transfer_syntaxes: vec![IMPLICIT_LE.into()],
        }],
        user_variables: vec![
            UserVariableItem::MaxLength(16384),
            UserVariableItem::ImplementationClassUID(format!("{UID_ROOT}.99")),
        ],
    });
    dimse::encode(&rq).unwrap()
}

/// `echoscu -aet TESTSCU -aec CALLED 127.0.0.1 PORT`.
pub fn echoscu(tmp: &TempDir, called: &str, port: u16, log: &str) -> (ExitStatus, String) {
    echoscu_as(tmp, "TESTSCU", called, port, log)
}

/// `echoscu -aet CALLING -aec CALLED 127.0.0.1 PORT`.
pub fn echoscu_as(tmp: &TempDir, calling: &str, called: &str, port: u16, log: &str) -> (ExitStatus, String) {
    Peer::run("echoscu", &["-aet", calling, "-aec", called, "127.0.0.1", &port.to_string()], tmp.join(log))
}

/// `storescu -aet TESTSCU -aec CALLED 127.0.0.1 PORT FILES...` (one association).
pub fn storescu(tmp: &TempDir, called: &str, port: u16, files: &[PathBuf], log: &str) -> (ExitStatus, String) {
    storescu_opts(tmp, &[], "TESTSCU", called, port, files, log)
}

/// `storescu OPTS... -aet CALLING -aec CALLED 127.0.0.1 PORT FILES...` (one association).
pub fn storescu_opts(
    tmp: &TempDir,
    opts: &[&str],
    calling: &str,
    called: &str,
    port: u16,
    files: &[PathBuf],
    log: &str,
) -> (ExitStatus, String) {
    let port = port.to_string();
    let mut args = opts.to_vec();
    args.extend(["-aet", calling, "-aec", called, "127.0.0.1", &port]);
    args.extend(files.iter().map(|f| f.to_str().unwrap()));
    Peer::run("storescu", &args, tmp.join(log))
}

/// `dump2dcm +te` (and `+l` for long pixel data lines): text → Part-10 file.
pub fn dump2dcm(dump_text: &str, dump: &Path, file: &Path) {
    fs::write(dump, dump_text).unwrap();
    let out = Command::new("dump2dcm").args(["+te", "+l", "2000000"]).arg(dump).arg(file).output().unwrap();
    assert!(out.status.success(), "dump2dcm {} failed: {}", dump.display(), String::from_utf8_lossy(&out.stderr));
}

/// A small Secondary Capture file made with dump2dcm.
pub fn make_file(dir: &Path, name: &str, sop_instance: &str) -> PathBuf {
    let inst = Instance {
        patient_name: format!("Doe^{name}"),
        patient_id: format!("PID-{name}"),
        study_uid: format!("{UID_ROOT}.1"),
        series_uid: format!("{UID_ROOT}.1.1"),
        sop_uid: sop_instance.to_string(),
        pixel_bytes: 4,
        ..Instance::default()
    };
    inst.write(dir, name)
}

/// One Secondary Capture instance of the test data.
#[derive(Clone, Debug)]
pub struct Instance {
    pub patient_name: String,
    pub patient_id: String,
    pub study_uid: String,
    pub study_date: String,
    pub study_id: String,
    pub series_uid: String,
    pub series_number: u32,
    pub modality: String,
    pub sop_uid: String,
    pub instance_number: u32,
    /// Length of the (OB) pixel data; its bytes depend on the SOP instance UID.
    pub pixel_bytes: usize,
}

impl Default for Instance {
    fn default() -> Self {
        Instance {
            patient_name: "Doe^John".into(),
            patient_id: "PID-1".into(),
            study_uid: format!("{UID_ROOT}.1"),
            study_date: "20240101".into(),
            study_id: "1".into(),
            series_uid: format!("{UID_ROOT}.1.1"),
            series_number: 1,
            modality: "OT".into(),
            sop_uid: format!("{UID_ROOT}.1.1.1"),
            instance_number: 1,
            pixel_bytes: 4,
        }
    }
}

impl Instance {
    /// The dump2dcm text of this instance.
    pub fn dump_text(&self) -> String {
        let seed = self.sop_uid.bytes().fold(7u32, |a, b| a.wrapping_mul(31).wrapping_add(b as u32));
        let pixels: Vec<String> =
            (0..self.pixel_bytes).map(|i| format!("{:02x}", (seed as usize + i * 7 + i / 251) % 256)).collect();
        format!(
            "(0008,0016) UI [{SECONDARY_CAPTURE}]\n(0008,0018) UI [{}]\n(0008,0020) DA [{}]\n(0008,0060) CS [{}]\n\
             (0010,0010) PN [{}]\n(0010,0020) LO [{}]\n(0020,000d) UI [{}]\n(0020,000e) UI [{}]\n\
             (0020,0010) SH [{}]\n(0020,0011) IS [{}]\n(0020,0013) IS [{}]\n(7fe0,0010) OB {}\n",
            self.sop_uid,
            self.study_date,
            self.modality,
            self.patient_name,
            self.patient_id,
            self.study_uid,
            self.series_uid,
            self.study_id,
            self.series_number,
            self.instance_number,
            pixels.join("\\")
        )
    }

    /// Write `dir/NAME.dcm` (via `dir/NAME.dump`).
    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let file = dir.join(format!("{name}.dcm"));
        dump2dcm(&self.dump_text(), &dir.join(format!("{name}.dump")), &file);
        file
    }
}

/// `dcmdump FILE` (the whole file, long values abbreviated).
pub fn dcmdump(file: &Path) -> String {
    let out = Command::new("dcmdump").arg(file).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The data set part of `dcmdump +L` for each file (one dcmdump run for all):
/// everything after `# Dicom-Data-Set`, so the file meta header, which a
/// receiver writes itself, is left out. Long values are printed in full.
pub fn dataset_dumps(files: &[PathBuf]) -> Vec<String> {
    if files.is_empty() {
        return Vec::new();
    }
    let out = Command::new("dcmdump").args(["+L", "+F"]).args(files).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "dcmdump failed: {}", String::from_utf8_lossy(&out.stderr));
    // `+F` starts each file with "# dcmdump (i/n): NAME", even for one file.
    let mut dumps: Vec<String> = Vec::new();
    let mut in_dataset = false;
    for line in text.lines() {
        if line.starts_with("# dcmdump (") {
            dumps.push(String::new());
            in_dataset = false;
        } else if line.starts_with("# Dicom-Data-Set") {
            in_dataset = true;
        } else if in_dataset && !line.is_empty() {
            let d = dumps.last_mut().expect("dcmdump output before a file header");
            d.push_str(line);
            d.push('\n');
        }
    }
    assert_eq!(dumps.len(), files.len(), "dcmdump printed {} data sets for {} files", dumps.len(), files.len());
    for (f, d) in files.iter().zip(&dumps) {
        assert!(d.contains("(0008,0018)") || d.contains("(0008,0052)"), "no data set dumped for {}: {d}", f.display());
    }
    dumps
}

/// The value of `tag` (e.g. "(0008,0018)") in a dcmdump text, if present.
pub fn dump_value(dump: &str, tag: &str) -> Option<String> {
    let line = dump.lines().find(|l| l.starts_with(tag))?;
    let rest = line[tag.len()..].trim_start();
    let value = rest.get(3..)?.trim_start(); // skip the VR
    if let Some(v) = value.strip_prefix('[') {
        return Some(v.split(']').next().unwrap_or("").to_string());
    }
    if let Some(v) = value.strip_prefix('=') {
        return Some(v.split_whitespace().next().unwrap_or("").to_string());
    }
    Some(value.split("  ").next().unwrap_or("").trim().to_string())
}

/// `SOPInstanceUID → data set dump` of each of `files` (a UID seen twice
/// keeps the last dump).
pub fn dumps_by_sop_uid(files: &[PathBuf]) -> BTreeMap<String, String> {
    dataset_dumps(files).into_iter().map(|d| (dump_value(&d, "(0008,0018)").unwrap(), d)).collect()
}

/// The seeded instances of study `n` (see `seed_archive`): SOPInstanceUID →
/// data set dump of the original file.
pub fn seeded_study(seeded: &[(Instance, PathBuf)], n: u32) -> BTreeMap<String, String> {
    let files: Vec<PathBuf> =
        seeded.iter().filter(|(i, _)| i.study_uid == seed_study_uid(n)).map(|(_, f)| f.clone()).collect();
    assert!(!files.is_empty(), "no seeded instances of study {n}");
    dumps_by_sop_uid(&files)
}

/// `SOPInstanceUID → data set dump` of every file in `dir`.
pub fn datasets_by_sop_uid(dir: &Path) -> BTreeMap<String, String> {
    let files = files_in(dir);
    let mut m = BTreeMap::new();
    for d in dataset_dumps(&files) {
        let uid = dump_value(&d, "(0008,0018)").unwrap_or_else(|| panic!("no SOPInstanceUID in {d}"));
        assert!(m.insert(uid.clone(), d).is_none(), "SOP instance {uid} twice in {}", dir.display());
    }
    m
}

/// The regular files in `dir`, sorted by name.
pub fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = match fs::read_dir(dir) {
        Ok(rd) => rd.map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    files
}

/// Wait (bounded) until `dir` holds at least `n` files; returns them.
pub fn wait_files(dir: &Path, n: usize) -> Vec<PathBuf> {
    let deadline = Instant::now() + LIMIT;
    loop {
        let files = files_in(dir);
        if files.len() >= n || Instant::now() > deadline {
            return files;
        }
        thread::sleep(Duration::from_millis(20));
    }
}
