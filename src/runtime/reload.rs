//! The reload coordinator (main thread): builds a complete new generation —
//! parse, validate, compile every script, run every `init`, bind new
//! listeners — and hands it to the workers only if all of that succeeded.

use super::control::{ReloadOutcome, Shared, Trigger, WorkerMsg};
use super::listener;
use super::worker::Listener;
use crate::pipeline::Generation;
use mio::Waker;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

pub(crate) struct WorkerLink {
    pub(crate) tx: Sender<WorkerMsg>,
    pub(crate) waker: Arc<Waker>,
}

type Fingerprint = Vec<(PathBuf, Option<(SystemTime, u64)>)>;

pub(crate) struct Coordinator {
    config_path: PathBuf,
    current: Arc<Generation>,
    links: Vec<WorkerLink>,
    shared: Arc<Shared>,
    next_id: u64,
    seen: Fingerprint,
    /// A change seen once; reloaded when the next look finds it unchanged
    /// (so a file caught half-written is not loaded).
    settling: Option<Fingerprint>,
    last_look: Instant,
}

impl Coordinator {
    /// `read_at`: when the running config started being read; a file
    /// changed since then is reloaded at the first look.
    pub(crate) fn new(
        config_path: PathBuf,
        current: Arc<Generation>,
        links: Vec<WorkerLink>,
        shared: Arc<Shared>,
        read_at: SystemTime,
    ) -> Self {
        let mut seen = fingerprint(&current.watch);
        if seen.iter().any(|(_, m)| m.is_some_and(|(t, _)| t >= read_at)) {
            seen.clear(); // changed while we were starting: the first look reloads
        }
        let next_id = current.id + 1;
        Coordinator { config_path, current, links, shared, next_id, seen, settling: None, last_look: Instant::now() }
    }

    pub(crate) fn wake_all(&self) {
        for l in &self.links {
            let _ = l.waker.wake();
        }
    }

    /// Reload now; answer `reply` (worker, client) when done.
    pub(crate) fn reload(&mut self, trigger: Trigger, reply: Option<(usize, usize)>) {
        let started = Instant::now();
        // what the files look like *before* we read them: an edit made while
        // the reload is being built shows up as a change at the next look
        let watched_before = self.current.watch.clone();
        // a file caught mid-write (an editor truncating, then writing) must not
        // become a generation: the files must look the same after we read them
        let mut attempt = 0;
        let (before, built) = loop {
            let before = fingerprint(&watched_before);
            let built = self.build();
            if fingerprint(&watched_before) == before {
                break (before, built);
            }
            attempt += 1;
            if attempt == 5 {
                break (before, Err(vec!["configuration files kept changing while being read; try again".into()]));
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        };
        let outcome = match built {
            Ok(gen) => self.swap(gen),
            Err(errors) => ReloadOutcome { ok: false, generation: self.current.id, errors },
        };
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        if outcome.ok {
            log::info!("reload ({}) ok: generation {} in {ms:.1} ms", trigger.as_str(), outcome.generation);
        } else {
            log::error!(
                "reload ({}) failed, generation {} keeps serving:\n  {}",
                trigger.as_str(),
                self.current.id,
                outcome.errors.join("\n  ")
            );
        }
        if let Ok(mut s) = self.shared.status.lock() {
            if outcome.ok {
                s.generation = outcome.generation;
                s.loaded_at = SystemTime::now();
                s.reloads_ok += 1;
            } else {
                s.reloads_failed += 1;
            }
            s.last_reload = Some(super::control::LastReload {
                at: SystemTime::now(),
                trigger,
                ok: outcome.ok,
                errors: outcome.errors.clone(),
            });
        }
        self.seen = if self.current.watch == watched_before { before } else { fingerprint(&self.current.watch) };
        self.settling = None;
        if let Some((w, client)) = reply {
            if let Some(l) = self.links.get(w) {
                let _ = l.tx.send(WorkerMsg::ReloadDone { client, outcome });
                let _ = l.waker.wake();
            }
        }
    }

    /// Parse, validate, compile and initialise a new generation (nothing is swapped).
    fn build(&self) -> Result<Generation, Vec<String>> {
        let cfg = crate::config::load(&self.config_path)
            .map_err(|errs| errs.iter().map(|e| e.to_string()).collect::<Vec<_>>())?;
        let gen = Generation::build(&cfg, self.next_id).map_err(|e| vec![e])?;
        super::check_lua(&gen)?;
        Ok(gen)
    }

    /// Open new listeners, then hand the generation to every worker.
    fn swap(&mut self, gen: Generation) -> ReloadOutcome {
        let fail = |errors: Vec<String>| ReloadOutcome { ok: false, generation: self.current.id, errors };
        let workers = self.links.len();
        if gen.settings.workers != workers {
            log::warn!(
                "proxy.workers changed to {}: takes effect at the next restart ({} now)",
                gen.settings.workers,
                workers
            );
        }
        // listeners: keep unchanged addresses, open new ones, close removed ones
        let addrs = |g: &Generation| -> Vec<(SocketAddr, String, bool)> {
            let http = g.networks.iter().filter_map(|n| n.http.map(|a| (a, n.name.clone(), false)));
            let dicom = g.networks.iter().filter_map(|n| n.dicom.map(|a| (a, n.name.clone(), true)));
            http.chain(dicom).collect()
        };
        let old = addrs(&self.current);
        let new = addrs(&gen);
        // an address that changes kind (http <-> dicom) is closed and reopened
        let same = |(a, _, k): &(SocketAddr, String, bool), (b, _, l): &(SocketAddr, String, bool)| a == b && k == l;
        let remove: Vec<SocketAddr> =
            old.iter().filter(|o| !new.iter().any(|n| same(o, n))).map(|(a, _, _)| *a).collect();
        let mut add: Vec<Vec<Listener>> = (0..workers).map(|_| Vec::new()).collect();
        for (addr, name, dicom) in new.iter().filter(|n| !old.iter().any(|o| same(o, n))) {
            for per_worker in add.iter_mut() {
                match listener::bind(*addr, workers > 1) {
                    Ok(sock) => {
                        per_worker.push(Listener { sock, addr: *addr, net: name.as_str().into(), dicom: *dicom })
                    }
                    Err(e) => return fail(vec![format!("cannot listen on {addr} (network '{name}'): {e}")]),
                }
            }
        }
        let gen = Arc::new(gen);
        for (link, add) in self.links.iter().zip(add) {
            let _ = link.tx.send(WorkerMsg::Swap { gen: gen.clone(), add, remove: remove.clone() });
            let _ = link.waker.wake();
        }
        for (addr, name, dicom) in new.iter().filter(|n| !old.iter().any(|o| same(o, n))) {
            let scheme = if *dicom { "dicom" } else { "http" };
            log::info!("network '{name}' now listening on {scheme}://{addr}");
        }
        for addr in &remove {
            log::info!("stopped listening on {addr}");
        }
        self.current = gen;
        self.next_id += 1;
        ReloadOutcome { ok: true, generation: self.current.id, errors: Vec::new() }
    }

    /// Look for changed config files and scripts (when `proxy.watch` is on).
    pub(crate) fn poll_files(&mut self) {
        if !self.current.watch_enabled || self.last_look.elapsed() < self.current.watch_interval {
            return;
        }
        self.last_look = Instant::now();
        let now = fingerprint(&self.current.watch);
        if now == self.seen {
            self.settling = None;
            return;
        }
        if self.settling.as_ref() == Some(&now) {
            self.reload(Trigger::FileChange, None);
        } else {
            self.settling = Some(now);
        }
    }
}

/// Modification time and size of every watched file (directories are walked
/// for `*.toml` and `*.lua`, to a bounded depth and count).
fn fingerprint(paths: &[PathBuf]) -> Fingerprint {
    let mut out = Vec::new();
    for p in paths {
        walk(p, 0, &mut out);
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn walk(p: &Path, depth: usize, out: &mut Fingerprint) {
    if out.len() > 10_000 {
        return;
    }
    match std::fs::metadata(p) {
        Ok(m) if m.is_dir() => {
            if depth > 8 {
                return;
            }
            if let Ok(entries) = std::fs::read_dir(p) {
                for e in entries.flatten() {
                    let path = e.path();
                    let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
                    let wanted = path.extension().is_some_and(|x| x == "toml" || x == "lua");
                    if is_dir || wanted {
                        walk(&path, depth + 1, out);
                    }
                }
            }
        }
        Ok(m) => out.push((p.to_path_buf(), Some((m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len())))),
        Err(_) => out.push((p.to_path_buf(), None)),
    }
}
