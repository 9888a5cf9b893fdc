//! What the main thread and the workers share: the reload channel, the
//! status the management API reports, per-worker metrics, and the messages
//! that carry a new generation to a worker.

use super::worker::Listener;
use crate::pipeline::Generation;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

/// A message to one worker.
pub(crate) enum WorkerMsg {
    /// Serve `gen` from now on; open `add`, stop accepting on `remove`.
    Swap { gen: Arc<Generation>, add: Vec<Listener>, remove: Vec<SocketAddr> },
    /// The reload a management request on this worker asked for finished.
    ReloadDone { client: usize, outcome: ReloadOutcome },
}

/// Who asked for a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Signal,
    FileChange,
    Api,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Signal => "SIGHUP",
            Trigger::FileChange => "file change",
            Trigger::Api => "management API",
        }
    }
}

pub(crate) struct ReloadRequest {
    pub(crate) trigger: Trigger,
    /// (worker index, client key) to answer, for API-triggered reloads.
    pub(crate) reply: Option<(usize, usize)>,
}

#[derive(Debug, Clone)]
pub struct ReloadOutcome {
    pub ok: bool,
    pub generation: u64,
    pub errors: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct LastReload {
    pub at: SystemTime,
    pub trigger: Trigger,
    pub ok: bool,
    pub errors: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Status {
    pub generation: u64,
    pub loaded_at: SystemTime,
    pub last_reload: Option<LastReload>,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
}

/// Latency histogram bounds, in seconds.
pub(crate) const BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// One worker's counters (locked by that worker per request, and by a scrape).
#[derive(Default)]
pub(crate) struct Metrics {
    /// (pipeline, status, count): a handful of entries, searched linearly
    /// (no hashing or allocation per request).
    pub(crate) requests: Vec<(String, u16, u64)>,
    pub(crate) latency: [u64; BUCKETS.len() + 1],
    pub(crate) latency_sum: f64,
    pub(crate) latency_count: u64,
    pub(crate) upstream_errors: u64,
    pub(crate) lua_errors: u64,
    pub(crate) lua_budget_kills: u64,
    /// (pipeline, result, count): DICOM associations by how they ended.
    pub(crate) dicom_associations: Vec<(String, &'static str, u64)>,
    /// (pipeline, command, status, count): DIMSE requests by final status.
    pub(crate) dimse: Vec<(String, &'static str, u16, u64)>,
    /// DICOM bytes client → backend and backend → client.
    pub(crate) dicom_bytes: [u64; 2],
}

impl Metrics {
    pub(crate) fn record_association(&mut self, pipeline: &str, result: &'static str, up: u64, down: u64) {
        match self.dicom_associations.iter_mut().find(|(p, r, _)| *r == result && p == pipeline) {
            Some((_, _, n)) => *n += 1,
            None => self.dicom_associations.push((pipeline.to_string(), result, 1)),
        }
        self.dicom_bytes[0] += up;
        self.dicom_bytes[1] += down;
    }

    pub(crate) fn record_dimse(&mut self, pipeline: &str, command: &'static str, status: u16) {
        match self.dimse.iter_mut().find(|(p, c, s, _)| *s == status && *c == command && p == pipeline) {
            Some((_, _, _, n)) => *n += 1,
            None => self.dimse.push((pipeline.to_string(), command, status, 1)),
        }
    }

    pub(crate) fn record(&mut self, pipeline: &str, status: u16, seconds: f64) {
        match self.requests.iter_mut().find(|(p, s, _)| *s == status && p == pipeline) {
            Some((_, _, n)) => *n += 1,
            None => self.requests.push((pipeline.to_string(), status, 1)),
        }
        let i = BUCKETS.iter().position(|&b| seconds <= b).unwrap_or(BUCKETS.len());
        self.latency[i] += 1;
        self.latency_sum += seconds;
        self.latency_count += 1;
    }
}

/// Shared by the main thread and every worker.
pub(crate) struct Shared {
    pub(crate) shutdown: AtomicBool,
    pub(crate) started: Instant,
    pub(crate) workers: usize,
    pub(crate) status: Mutex<Status>,
    pub(crate) reload_tx: Mutex<Sender<ReloadRequest>>,
    pub(crate) metrics: Vec<Mutex<Metrics>>,
    pub(crate) open_connections: Vec<AtomicUsize>,
    /// DICOM association counts and proxied C-MOVEs, across workers.
    pub(crate) dicom: super::dicom::DicomShared,
}
