//! The event loop: the only place that touches sockets. `run` binds every
//! listener, starts `proxy.workers` worker threads (one `mio::Poll` each,
//! `SO_REUSEPORT` when more than one) and turns SIGTERM/SIGINT into a drain.

mod buf;
mod client;
mod echo;
mod exchange;
mod fmt;
mod forward;
mod ids;
mod listener;
mod request_body;
mod respond;
mod response;
mod slab;
mod timer;
mod transport;
mod upstream;
mod worker;

use crate::pipeline::Generation;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use worker::{Control, Worker};

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

/// Serve `gen` until SIGTERM/SIGINT, then drain and return.
pub fn run(gen: Generation) -> Result<(), RuntimeError> {
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
    }
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ])?;
    let control = Arc::new(Control { shutdown: Default::default() });
    let mut wakers = Vec::new();
    let mut handles = Vec::new();
    for (i, listeners) in per_worker.into_iter().enumerate() {
        // a worker owns its Lua state, which cannot cross threads: build it there
        let (tx, rx) = std::sync::mpsc::channel();
        let (g, ctl) = (gen.clone(), control.clone());
        let spawn =
            std::thread::Builder::new().name(format!("harmony-worker-{i}")).spawn(move || {
                match Worker::new(g, listeners, ctl, i) {
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
            Ok(Ok(waker)) => wakers.push(waker),
            Ok(Err(e)) => return Err(RuntimeError::Worker(e)),
            Err(_) => return Err(RuntimeError::Worker("worker thread exited during start-up".into())),
        }
    }
    log::info!("harmony '{}' started with {workers} worker(s)", gen.settings.gateway_id);
    drop(gen);
    crate::logging::flush_thread();

    let mut stopping = false;
    loop {
        for sig in signals.pending() {
            match sig {
                signal_hook::consts::SIGHUP => {
                    log::warn!("SIGHUP received: configuration reload is not available in this build")
                }
                _ if stopping => {
                    log::warn!("second stop signal: exiting without waiting for in-flight work");
                    crate::logging::flush_thread();
                    std::process::exit(1);
                }
                _ => {
                    log::info!("stop signal received: draining in-flight requests");
                    stopping = true;
                    control.shutdown.store(true, Ordering::Release);
                    for w in &wakers {
                        let _ = w.wake();
                    }
                }
            }
        }
        crate::logging::flush_thread();
        if handles.iter().all(|h| h.is_finished()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for h in handles {
        if h.join().is_err() {
            log::error!("a worker thread panicked");
        }
    }
    log::info!("harmony stopped");
    Ok(())
}
