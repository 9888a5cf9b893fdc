//! Backends a pipeline can send a request to.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

#[derive(Debug)]
pub enum Backend {
    Http(HttpUpstream),
    /// Answers with what it received, as JSON.
    Echo,
    /// A DICOM SCP that associations are relayed to.
    Dicom(DicomTarget),
}

/// A `service = "dicom"` backend.
#[derive(Debug, Clone)]
pub struct DicomTarget {
    pub name: String,
    /// Called AE title sent to the backend.
    pub aet: String,
    pub addr: SocketAddr,
    /// Calling AE title sent to the backend (None: the client's).
    pub local_aet: Option<String>,
    /// Connect + association answer timeout.
    pub timeout: Duration,
    /// Time to answer a DIMSE request (any traffic on the association, e.g. a pending response, restarts it).
    pub dimse_timeout: Duration,
}

#[derive(Debug)]
pub struct HttpUpstream {
    pub name: String,
    pub targets: Vec<SocketAddr>,
    next: AtomicUsize,
    pub base_path: String,
    pub host_header: String,
    pub timeout: Duration,
    pub preserve_host: bool,
}

impl HttpUpstream {
    pub fn new(name: String, cfg: &crate::config::HttpBackend) -> Self {
        HttpUpstream {
            name,
            targets: cfg.targets.clone(),
            next: AtomicUsize::new(0),
            base_path: cfg.base_path.clone(),
            host_header: cfg.host_header.clone(),
            timeout: Duration::from_millis(cfg.timeout_ms),
            preserve_host: cfg.preserve_host,
        }
    }

    /// Round robin over the targets.
    pub fn pick(&self) -> SocketAddr {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        self.targets[i % self.targets.len()]
    }

    /// The upstream request target in pieces to write back to back: base
    /// path, route path ("" when the base path stands for "/"), "?" and the
    /// query when there is one.
    pub fn target_parts<'a>(&'a self, route_path: &'a str, query: Option<&'a str>) -> [&'a str; 4] {
        let route = if self.base_path.is_empty() || route_path != "/" { route_path } else { "" };
        match query {
            Some(q) => [&self.base_path, route, "?", q],
            None => [&self.base_path, route, "", ""],
        }
    }

    /// The upstream request target: base path + route path + query.
    #[cfg(test)]
    pub fn target(&self, route_path: &str, query: Option<&str>) -> String {
        self.target_parts(route_path, query).concat()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(base: &str) -> HttpUpstream {
        let cfg = crate::config::HttpBackend {
            targets: vec!["127.0.0.1:1".parse().unwrap(), "127.0.0.1:2".parse().unwrap()],
            base_path: base.into(),
            host_header: "127.0.0.1:1".into(),
            timeout_ms: 1000,
            preserve_host: false,
        };
        HttpUpstream::new("b".into(), &cfg)
    }

    #[test]
    fn targets_join_base_and_route_paths() {
        assert_eq!(up("").target("/x", Some("q=1")), "/x?q=1");
        assert_eq!(up("").target("/", None), "/");
        assert_eq!(up("/v1").target("/x", None), "/v1/x");
        assert_eq!(up("/v1").target("/", None), "/v1");
    }

    #[test]
    fn round_robin() {
        let u = up("");
        let a = u.pick();
        let b = u.pick();
        assert_ne!(a, b);
        assert_eq!(u.pick(), a);
    }
}
