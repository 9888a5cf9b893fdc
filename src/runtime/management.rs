//! The management API, served by the workers on the management network:
//! info, status, pipelines, routes, reload, metrics (Prometheus text).

use super::client::Client;
use super::control::{ReloadOutcome, ReloadRequest, Trigger, BUCKETS};
use super::worker::Worker;
use crate::pipeline::{Backend, LocalResponse, ManagementRt, Middleware};
use http1::Headers;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::time::UNIX_EPOCH;

fn unix(t: std::time::SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

fn json_response(status: u16, v: &Value) -> LocalResponse {
    let mut body = serde_json::to_vec_pretty(v).unwrap_or_default();
    body.push(b'\n');
    let mut headers = Headers::new();
    headers.append("Content-Type", b"application/json");
    headers.append("Cache-Control", b"no-store");
    LocalResponse { status, headers, body }
}

/// Constant-time comparison, so the token cannot be guessed byte by byte.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Worker {
    /// Is this request for the management API? (network and base path match)
    pub(crate) fn management_path<'a>(&self, c: &Client, path: &'a str) -> Option<(ManagementRt, &'a str)> {
        let m = self.gen.management.as_ref()?;
        if *c.net != *m.network {
            return None;
        }
        let rest = path.strip_prefix(m.base_path.as_str())?;
        (rest.is_empty() || rest.starts_with('/')).then(|| (m.clone(), rest))
    }

    /// Serve one management request (the exchange exists, without a route).
    pub(crate) fn management(&mut self, c: &mut Client, m: &ManagementRt, method: &str, rest: &str, headers: &Headers) {
        if let Some(token) = &m.token {
            let given = headers.get("authorization").and_then(|v| v.strip_prefix(b"Bearer ")).unwrap_or_default();
            if !same(given, token.as_bytes()) {
                let rid = c.ex.as_ref().map(|e| e.request_id.clone()).unwrap_or_default();
                let mut r = LocalResponse::json_error(401, "unauthorized", "a valid bearer token is required", &rid);
                r.headers.append("WWW-Authenticate", b"Bearer");
                return self.local_response(c, r, false);
            }
        }
        let r = match (method, rest.trim_end_matches('/')) {
            ("GET", "/info") => json_response(200, &self.info()),
            ("GET", "/status") => json_response(200, &self.status()),
            ("GET", "/pipelines") => json_response(200, &self.pipelines()),
            ("GET", "/routes") => json_response(200, &self.routes()),
            ("GET", "/metrics") => {
                let mut headers = Headers::new();
                headers.append("Content-Type", b"text/plain; version=0.0.4");
                LocalResponse { status: 200, headers, body: self.metrics_text().into_bytes() }
            }
            ("POST", "/reload") => {
                let sent = self
                    .shared
                    .reload_tx
                    .lock()
                    .map(|tx| {
                        tx.send(ReloadRequest { trigger: Trigger::Api, reply: Some((self.index, c.key)) }).is_ok()
                    })
                    .unwrap_or(false);
                if sent {
                    return; // answered by reload_done when the main thread is finished
                }
                json_response(
                    503,
                    &json!({"error": "reload_unavailable", "detail": "the reload coordinator is not running"}),
                )
            }
            (_, "/info" | "/status" | "/pipelines" | "/routes" | "/metrics" | "/reload") => {
                let mut r = json_response(405, &json!({"error": "method_not_allowed"}));
                r.headers.append("Allow", if rest.starts_with("/reload") { b"POST" as &[u8] } else { b"GET" });
                r
            }
            _ => json_response(
                404,
                &json!({"error": "not_found", "detail": "try info, status, pipelines, routes, metrics or reload"}),
            ),
        };
        self.local_response(c, r, false);
    }

    /// The main thread finished a reload this worker's client asked for.
    pub(crate) fn reload_done(&mut self, key: usize, outcome: ReloadOutcome) {
        let Some(mut c) = self.take_client(key) else { return };
        if c.ex.as_ref().is_some_and(|e| !e.resp_started && e.resp.is_none()) {
            let v = json!({ "ok": outcome.ok, "generation": outcome.generation, "errors": outcome.errors });
            self.local_response(&mut c, json_response(if outcome.ok { 200 } else { 422 }, &v), false);
        }
        self.drive(key, c);
    }

    fn info(&self) -> Value {
        json!({
            "name": "harmony",
            "version": env!("CARGO_PKG_VERSION"),
            "gateway_id": self.gen.settings.gateway_id,
            "uptime_seconds": self.shared.started.elapsed().as_secs_f64(),
            "workers": self.shared.workers,
        })
    }

    fn status(&self) -> Value {
        let s = match self.shared.status.lock() {
            Ok(s) => s.clone(),
            Err(p) => p.into_inner().clone(),
        };
        let last = s
            .last_reload
            .map(|l| json!({ "at": unix(l.at), "trigger": l.trigger.as_str(), "ok": l.ok, "errors": l.errors }));
        json!({
            "generation": s.generation,
            "loaded_at": unix(s.loaded_at),
            "last_reload": last,
            "reloads_ok": s.reloads_ok,
            "reloads_failed": s.reloads_failed,
        })
    }

    fn pipelines(&self) -> Value {
        let g = &self.gen;
        let list: Vec<Value> = g
            .pipelines
            .iter()
            .map(|p| {
                let mw: Vec<Value> = p
                    .middleware
                    .iter()
                    .map(|&i| {
                        let (name, m) = &g.middleware[i];
                        let kind = match m {
                            Middleware::Lua => "lua",
                            Middleware::PathFilter { .. } => "path_filter",
                            Middleware::Headers { .. } => "headers",
                        };
                        json!({ "name": name, "type": kind })
                    })
                    .collect();
                let be: Vec<Value> = p
                    .backends
                    .iter()
                    .map(|&i| match &g.backends[i] {
                        (name, Backend::Echo) => json!({ "name": name, "service": "echo" }),
                        (name, Backend::Dicom(d)) => json!({
                            "name": name,
                            "service": "dicom",
                            "aet": d.aet,
                            "address": d.addr.to_string(),
                            "timeout_ms": d.timeout.as_millis() as u64,
                        }),
                        (name, Backend::Http(u)) => json!({
                            "name": name,
                            "service": "http",
                            "targets": u.targets.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
                            "base_path": u.base_path,
                            "timeout_ms": u.timeout.as_millis() as u64,
                        }),
                    })
                    .collect();
                json!({ "name": p.name, "middleware": mw, "backends": be })
            })
            .collect();
        json!({ "generation": g.id, "pipelines": list })
    }

    fn routes(&self) -> Value {
        let g = &self.gen;
        let mut list = Vec::new();
        for n in &g.networks {
            for r in &n.routes {
                list.push(json!({
                    "network": n.name,
                    "listen": n.http.map(|a| a.to_string()),
                    "path_prefix": r.prefix,
                    "pipeline": g.pipelines[r.pipeline].name,
                    "endpoint": g.endpoints[r.endpoint],
                }));
            }
            for r in &n.dicom_routes {
                list.push(json!({
                    "network": n.name,
                    "listen": n.dicom.map(|a| format!("dicom://{a}")),
                    "ae_title": r.ae_title,
                    "pipeline": g.pipelines[r.pipeline].name,
                    "endpoint": g.endpoints[r.endpoint],
                    "backend": g.backends[r.backend].0,
                    "allowed_calling_aes": r.allowed_calling_aes,
                    "calling_ae_routes": r.calling_ae_routes.iter()
                        .map(|(ae, b)| json!({"calling_ae": ae, "backend": g.backends[*b].0}))
                        .collect::<Vec<_>>(),
                    "peer_routes": r.peer_routes.iter()
                        .map(|(n, b)| json!({"peer": format!("{}/{}", n.ip, n.bits), "backend": g.backends[*b].0}))
                        .collect::<Vec<_>>(),
                    "echo": if r.local_echo { "local" } else { "forward" },
                    "move_destinations": r.move_destinations.iter().map(|b| &g.backends[*b].0).collect::<Vec<_>>(),
                    "sop_classes": r.sop_classes,
                    "transfer_syntaxes": r.transfer_syntaxes,
                    "limits": {
                        "max_pdu": n.dicom_limits.max_pdu,
                        "max_associations": n.dicom_limits.max_associations,
                        "max_associations_per_calling_ae": n.dicom_limits.max_associations_per_calling_ae,
                        "buffered_dataset_bytes": n.dicom_limits.buffered_dataset_bytes,
                    },
                }));
            }
        }
        json!({ "generation": g.id, "routes": list })
    }

    fn metrics_text(&self) -> String {
        let mut requests: std::collections::BTreeMap<(String, u16), u64> = Default::default();
        let mut buckets = [0u64; BUCKETS.len() + 1];
        let (mut sum, mut count, mut up_err, mut lua_err, mut kills) = (0.0, 0u64, 0u64, 0u64, 0u64);
        let mut assocs: std::collections::BTreeMap<(String, &str), u64> = Default::default();
        let mut dimse: std::collections::BTreeMap<(String, &str, u16), u64> = Default::default();
        let mut dicom_bytes = [0u64; 2];
        for m in &self.shared.metrics {
            let m = match m.lock() {
                Ok(m) => m,
                Err(p) => p.into_inner(),
            };
            for (p, st, v) in &m.requests {
                *requests.entry((p.clone(), *st)).or_default() += v;
            }
            for (b, v) in buckets.iter_mut().zip(m.latency.iter()) {
                *b += v;
            }
            sum += m.latency_sum;
            count += m.latency_count;
            up_err += m.upstream_errors;
            lua_err += m.lua_errors;
            kills += m.lua_budget_kills;
            for (p, r, v) in &m.dicom_associations {
                *assocs.entry((p.clone(), *r)).or_default() += v;
            }
            for (p, c, st, v) in &m.dimse {
                *dimse.entry((p.clone(), *c, *st)).or_default() += v;
            }
            dicom_bytes[0] += m.dicom_bytes[0];
            dicom_bytes[1] += m.dicom_bytes[1];
        }
        let status = match self.shared.status.lock() {
            Ok(s) => s.clone(),
            Err(p) => p.into_inner().clone(),
        };
        let open: usize =
            self.shared.open_connections.iter().map(|a| a.load(std::sync::atomic::Ordering::Relaxed)).sum();
        let mut o = String::with_capacity(4096);
        o.push_str("# HELP harmony_requests_total Requests answered, by pipeline and status.\n# TYPE harmony_requests_total counter\n");
        for ((p, st), v) in &requests {
            let _ =
                writeln!(o, "harmony_requests_total{{pipeline=\"{}\",status=\"{st}\"}} {v}", p.replace('"', "\\\""));
        }
        o.push_str("# HELP harmony_request_duration_seconds Time from request head to the end of the response.\n# TYPE harmony_request_duration_seconds histogram\n");
        let mut cum = 0;
        for (i, b) in BUCKETS.iter().enumerate() {
            cum += buckets[i];
            let _ = writeln!(o, "harmony_request_duration_seconds_bucket{{le=\"{b}\"}} {cum}");
        }
        cum += buckets[BUCKETS.len()];
        let _ = writeln!(o, "harmony_request_duration_seconds_bucket{{le=\"+Inf\"}} {cum}");
        let _ = writeln!(o, "harmony_request_duration_seconds_sum {sum}");
        let _ = writeln!(o, "harmony_request_duration_seconds_count {count}");
        let counters = [
            ("harmony_upstream_errors_total", "Upstream failures answered with 502/504.", up_err),
            ("harmony_lua_errors_total", "Lua hook failures.", lua_err),
            ("harmony_lua_budget_kills_total", "Lua hook calls stopped by the instruction budget.", kills),
            ("harmony_reloads_ok_total", "Successful configuration reloads.", status.reloads_ok),
            ("harmony_reloads_failed_total", "Failed configuration reloads.", status.reloads_failed),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        }
        let _ = writeln!(o, "# HELP harmony_open_connections Client connections open now.\n# TYPE harmony_open_connections gauge\nharmony_open_connections {open}");
        o.push_str("# HELP harmony_dicom_associations_total DICOM associations by pipeline and result (completed, aborted, rejected, failed).\n# TYPE harmony_dicom_associations_total counter\n");
        for ((p, r), v) in &assocs {
            let _ = writeln!(
                o,
                "harmony_dicom_associations_total{{pipeline=\"{}\",result=\"{r}\"}} {v}",
                p.replace('"', "\\\"")
            );
        }
        o.push_str("# HELP harmony_dimse_requests_total DIMSE requests by pipeline, command and final status.\n# TYPE harmony_dimse_requests_total counter\n");
        for ((p, c, st), v) in &dimse {
            let _ = writeln!(
                o,
                "harmony_dimse_requests_total{{pipeline=\"{}\",command=\"{c}\",status=\"{st:#06x}\"}} {v}",
                p.replace('"', "\\\"")
            );
        }
        o.push_str("# HELP harmony_dicom_bytes_total DICOM bytes relayed, by direction.\n# TYPE harmony_dicom_bytes_total counter\n");
        let _ = writeln!(o, "harmony_dicom_bytes_total{{direction=\"up\"}} {}", dicom_bytes[0]);
        let _ = writeln!(o, "harmony_dicom_bytes_total{{direction=\"down\"}} {}", dicom_bytes[1]);
        let _ = writeln!(
            o,
            "# HELP harmony_dicom_associations_open DICOM associations open now (admitted by a listener).\n# TYPE harmony_dicom_associations_open gauge\nharmony_dicom_associations_open {}",
            self.shared.dicom.open()
        );
        let _ = writeln!(o, "# HELP harmony_generation Configuration generation being served.\n# TYPE harmony_generation gauge\nharmony_generation {}", status.generation);
        o
    }
}
