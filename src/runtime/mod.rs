//! The event loop: the only place that touches sockets. `run` binds every
//! listener, starts `proxy.workers` worker threads (one `mio::Poll` each,
//! `SO_REUSEPORT` when more than one) and turns SIGTERM/SIGINT into a drain.

mod buf;
mod client;
mod control;
mod dicom;
mod echo;
mod exchange;
mod fmt;
mod forward;
mod ids;
mod listener;
mod management;
mod reload;
mod request_body;
mod respond;
mod response;
mod slab;
mod timer;
mod transport;
mod upstream;
mod worker;

use crate::pipeline::Generation;
use control::{Metrics, Shared, Status, Trigger};
use std::path::Path;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use worker::Worker;

/// Errors that stop the proxy from starting.
#[derive(Debug)]
pub enum RuntimeError {
    Bind { network: String, addr: std::net::SocketAddr, source: std::io::Error },
    Io(std::io::Error),
    Worker(String),
}

impl std::fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RuntimeError::Bind { network, addr, source } => {
                write!(f, "cannot listen on {addr} (network '{network}'): {source}")
            }
            RuntimeError::Io(e) => write!(f, "{e}"),
            RuntimeError::Worker(e) => write!(f, "worker start-up failed: {e}"),
        }
    }
}

impl std::error::Error for RuntimeError {}

impl From<std::io::Error> for RuntimeError {
    fn from(e: std::io::Error) -> Self {
        RuntimeError::Io(e)
    }
}

/// Load every Lua script of `gen` and run its `init` in a throwaway state:
/// what `--check` and start-up do before anything serves traffic.
pub fn check_lua(gen: &Generation) -> Result<(), Vec<String>> {
    let cache = std::rc::Rc::new(std::cell::RefCell::new(crate::lua::Cache::new(gen.lua.cache_entries)));
    worker::build_lua(gen, cache).map(|_| ())
}

/// Serve `gen` (built from the config file `config_path`) until
/// SIGTERM/SIGINT, reloading on SIGHUP, file changes and API requests; then
/// drain and return.
/// `read_at` is when the config started being read (edits after it are picked up).
pub fn run(gen: Generation, config_path: &Path, read_at: std::time::SystemTime) -> Result<(), RuntimeError> {
    let gen = Arc::new(gen);
    let workers = gen.settings.workers;
    let mut per_worker = Vec::with_capacity(workers);
    for _ in 0..workers {
        per_worker.push(listener::bind_all(&gen, workers > 1)?);
    }
    for n in &gen.networks {
        if let Some(addr) = n.http {
            log::info!("network '{}' listening on http://{addr}", n.name);
        }
        if let Some(addr) = n.dicom {
            log::info!("network '{}' listening on dicom://{addr}", n.name);
        }
    }
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ])?;
    let (reload_tx, reload_rx) = std::sync::mpsc::channel();
    let now = std::time::SystemTime::now();
    let shared = Arc::new(Shared {
        shutdown: Default::default(),
        started: std::time::Instant::now(),
        workers,
        status: Mutex::new(Status {
            generation: gen.id,
            loaded_at: now,
            last_reload: None,
            reloads_ok: 0,
            reloads_failed: 0,
        }),
        reload_tx: Mutex::new(reload_tx),
        metrics: (0..workers).map(|_| Mutex::new(Metrics::default())).collect(),
        dicom: Default::default(),
        open_connections: (0..workers).map(|_| AtomicUsize::new(0)).collect(),
    });
    let mut handles = Vec::new();
    let mut links = Vec::new();
    for (i, listeners) in per_worker.into_iter().enumerate() {
        // a worker owns its Lua state, which cannot cross threads: build it there
        let (tx, rx) = std::sync::mpsc::channel();
        let (inbox_tx, inbox_rx) = std::sync::mpsc::channel();
        let (g, sh) = (gen.clone(), shared.clone());
        let spawn =
            std::thread::Builder::new().name(format!("harmony-worker-{i}")).spawn(move || {
                match Worker::new(g, listeners, sh, i, inbox_rx) {
                    Ok((w, waker)) => {
                        let _ = tx.send(Ok(waker));
                        w.run();
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            })?;
        handles.push(spawn);
        match rx.recv() {
            Ok(Ok(waker)) => links.push(reload::WorkerLink { tx: inbox_tx, waker }),
            Ok(Err(e)) => return Err(RuntimeError::Worker(e)),
            Err(_) => return Err(RuntimeError::Worker("worker thread exited during start-up".into())),
        }
    }
    log::info!("harmony '{}' started with {workers} worker(s)", gen.settings.gateway_id);
    crate::logging::flush_thread();

    let mut coordinator = reload::Coordinator::new(config_path.to_path_buf(), gen, links, shared.clone(), read_at);
    let mut stopping = false;
    loop {
        for sig in signals.pending() {
            match sig {
                signal_hook::consts::SIGHUP if !stopping => coordinator.reload(Trigger::Signal, None),
                signal_hook::consts::SIGHUP => {}
                _ if stopping => {
                    log::warn!("second stop signal: exiting without waiting for in-flight work");
                    crate::logging::flush_thread();
                    std::process::exit(1);
                }
                _ => {
                    log::info!("stop signal received: draining in-flight requests");
                    stopping = true;
                    shared.shutdown.store(true, Ordering::Release);
                    coordinator.wake_all();
                }
            }
        }
        // wait here (instead of sleeping) so an API reload is answered at once
        if let Ok(req) = reload_rx.recv_timeout(Duration::from_millis(50)) {
            coordinator.reload(req.trigger, req.reply);
        }
        if !stopping {
            coordinator.poll_files();
        }
        crate::logging::flush_thread();
        if handles.iter().all(|h| h.is_finished()) {
            break;
        }
    }
    for h in handles {
        if h.join().is_err() {
            log::error!("a worker thread panicked");
        }
    }
    log::info!("harmony stopped");
    crate::logging::flush_thread();
    Ok(())
}
