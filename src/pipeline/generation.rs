//! A `Generation`: everything compiled from one configuration, immutable,
//! shared by the workers. Connections and requests pin the generation they
//! started on.

use super::backend::{Backend, DicomTarget, HttpUpstream};
use super::middleware::Middleware;
use super::router::{match_route, sort_routes, Route, RouteMatch};
use crate::config::{BackendKind, Config, EndpointKind, MiddlewareKind, PeerNet};
use crate::lua::{LuaLimits, StageSpec};
use std::net::SocketAddr;
use std::time::Duration;

/// Limits handed to the HTTP codec.
pub type Limits = http1::Limits;

/// Worker-wide settings derived from `[proxy]` and `[logging]`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub gateway_id: String,
    pub workers: usize,
    pub max_connections: usize,
    pub limits: Limits,
    pub buffered_body_bytes: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub connect_timeout: Duration,
    pub upstream_idle_timeout: Duration,
    pub upstream_pool_size: usize,
    pub drain_timeout: Duration,
    pub access_log: bool,
}

#[derive(Debug)]
pub struct NetworkRt {
    pub name: String,
    pub http: Option<SocketAddr>,
    pub routes: Vec<Route>,
    /// `[network.N.dicom]` listener.
    pub dicom: Option<SocketAddr>,
    /// Associations on the dicom listener, by called AE title.
    pub dicom_routes: Vec<DicomRoute>,
    pub dicom_limits: DicomLimits,
}

/// A dicom endpoint on a network: associations whose called AE is
/// `ae_title` go to `backend` (an index into `Generation::backends`).
#[derive(Debug)]
pub struct DicomRoute {
    pub ae_title: String,
    /// Empty: any calling AE.
    pub allowed_calling_aes: Vec<String>,
    pub pipeline: usize,
    pub endpoint: usize,
    /// The default backend: the pipeline's first dicom backend.
    pub backend: usize,
    /// Calling AE title → backend (before peer routes).
    pub calling_ae_routes: Vec<(String, usize)>,
    /// Peer network → backend (first match).
    pub peer_routes: Vec<(PeerNet, usize)>,
    /// Answer C-ECHO here.
    pub local_echo: bool,
    /// Dicom backends that C-MOVE sub-operations are delivered to through
    /// the proxy (matched by their `aet`).
    pub move_destinations: Vec<usize>,
    /// Presentation contexts the endpoint accepts (None: the backend decides).
    pub sop_classes: Option<Vec<String>>,
    pub transfer_syntaxes: Option<Vec<String>>,
}

/// Limits of a `[network.N.dicom]` listener.
#[derive(Debug, Clone, Copy)]
pub struct DicomLimits {
    pub max_pdu: u32,
    pub max_associations: usize,
    pub max_associations_per_calling_ae: usize,
    pub buffered_dataset_bytes: usize,
}

#[derive(Debug)]
pub struct PipelineRt {
    pub name: String,
    pub middleware: Vec<usize>,
    pub backends: Vec<usize>,
}

#[derive(Debug)]
pub struct Generation {
    pub id: u64,
    pub settings: Settings,
    pub networks: Vec<NetworkRt>,
    pub pipelines: Vec<PipelineRt>,
    pub endpoints: Vec<String>,
    pub middleware: Vec<(String, Middleware)>,
    pub backends: Vec<(String, Backend)>,
    /// Every `lua` middleware, for the per-worker Lua hosts.
    pub lua_stages: Vec<StageSpec>,
    pub lua: LuaSettings,
    pub management: Option<ManagementRt>,
    /// Every file this generation was built from (config files, scripts dir), for reload watching.
    pub watch: Vec<std::path::PathBuf>,
    pub watch_enabled: bool,
    pub watch_interval: Duration,
}

/// The management API as served.
#[derive(Debug, Clone)]
pub struct ManagementRt {
    pub network: String,
    /// "/admin" (leading slash, no trailing slash).
    pub base_path: String,
    pub token: Option<String>,
}

/// What a worker needs to build its Lua host.
#[derive(Debug, Clone)]
pub struct LuaSettings {
    pub scripts_path: std::path::PathBuf,
    pub limits: LuaLimits,
    pub cache_entries: usize,
}

impl Generation {
    /// Compile a validated config. Fails only on what validation cannot see.
    pub fn build(cfg: &Config, id: u64) -> Result<Generation, String> {
        let p = &cfg.proxy;
        let ms = Duration::from_millis;
        let settings = Settings {
            gateway_id: p.id.clone(),
            workers: p.workers.max(1),
            max_connections: p.max_connections.max(1),
            limits: Limits {
                max_head_bytes: p.max_header_bytes,
                max_headers: p.max_headers,
                max_uri_len: p.max_uri_bytes,
                max_body_bytes: if p.max_body_bytes == 0 { u64::MAX } else { p.max_body_bytes },
            },
            buffered_body_bytes: p.buffered_body_bytes,
            header_timeout: ms(p.header_timeout_ms),
            idle_timeout: ms(p.idle_timeout_ms),
            connect_timeout: ms(p.connect_timeout_ms),
            upstream_idle_timeout: ms(p.upstream_idle_timeout_ms),
            upstream_pool_size: p.upstream_pool_size,
            drain_timeout: ms(p.drain_timeout_ms),
            access_log: cfg.logging.access_log,
        };

        let mut lua_specs = Vec::new();
        let middleware: Vec<(String, Middleware)> = cfg
            .middleware
            .values()
            .map(|m| {
                let mw = match &m.kind {
                    MiddlewareKind::Lua { script, options, continue_on_error } => {
                        lua_specs.push((m.name.clone(), script.clone(), options.clone(), *continue_on_error));
                        Middleware::Lua
                    }
                    MiddlewareKind::PathFilter { allow, deny, status } => {
                        Middleware::PathFilter { allow: allow.clone(), deny: deny.clone(), status: *status }
                    }
                    MiddlewareKind::Headers { request_set, request_remove, response_set, response_remove } => {
                        Middleware::Headers {
                            request_set: request_set.clone(),
                            request_remove: request_remove.clone(),
                            response_set: response_set.clone(),
                            response_remove: response_remove.clone(),
                        }
                    }
                };
                (m.name.clone(), mw)
            })
            .collect();
        let backends: Vec<(String, Backend)> = cfg
            .backends
            .values()
            .map(|b| {
                let be = match &b.kind {
                    BackendKind::Http(h) => Backend::Http(HttpUpstream::new(b.name.clone(), h)),
                    BackendKind::Echo => Backend::Echo,
                    BackendKind::Dicom(d) => Backend::Dicom(DicomTarget {
                        name: b.name.clone(),
                        aet: d.aet.clone(),
                        addr: d.addr,
                        local_aet: d.local_aet.clone(),
                        timeout: ms(d.timeout_ms),
                        dimse_timeout: ms(d.dimse_timeout_ms),
                    }),
                };
                (b.name.clone(), be)
            })
            .collect();
        let mut lua_stages: Vec<StageSpec> = Vec::new();
        for (name, script, options, continue_on_error) in lua_specs {
            let source =
                std::fs::read(&script).map_err(|e| format!("{}: cannot read script: {e}", script.display()))?;
            lua_stages.push(StageSpec {
                mw: middleware.iter().position(|(n, _)| *n == name).unwrap_or(usize::MAX),
                name,
                script,
                options,
                continue_on_error,
                source: std::sync::Arc::new(source),
            });
        }
        let endpoints: Vec<String> = cfg.endpoints.keys().cloned().collect();
        let mut networks: Vec<NetworkRt> = cfg
            .networks
            .values()
            .map(|n| NetworkRt {
                name: n.name.clone(),
                http: n.http.as_ref().map(|h| h.addr),
                routes: Vec::new(),
                dicom: n.dicom.as_ref().map(|h| h.addr),
                dicom_routes: Vec::new(),
                dicom_limits: n.dicom.as_ref().map_or(
                    DicomLimits {
                        max_pdu: crate::config::DEFAULT_MAX_PDU,
                        max_associations: crate::config::DEFAULT_MAX_ASSOCIATIONS,
                        max_associations_per_calling_ae: 0,
                        buffered_dataset_bytes: crate::config::DEFAULT_BUFFERED_DATASET_BYTES,
                    },
                    |d| DicomLimits {
                        max_pdu: d.max_pdu,
                        max_associations: d.max_associations,
                        max_associations_per_calling_ae: d.max_associations_per_calling_ae,
                        buffered_dataset_bytes: d.buffered_dataset_bytes,
                    },
                ),
            })
            .collect();

        let index = |names: &Vec<String>, n: &str, what: &str| -> Result<usize, String> {
            names.iter().position(|x| x == n).ok_or_else(|| format!("unknown {what} '{n}'"))
        };
        let mw_names: Vec<String> = middleware.iter().map(|(n, _)| n.clone()).collect();
        let be_names: Vec<String> = backends.iter().map(|(n, _)| n.clone()).collect();
        let net_names: Vec<String> = networks.iter().map(|n| n.name.clone()).collect();

        let mut pipelines = Vec::new();
        for (pi, pl) in cfg.pipelines.values().enumerate() {
            let mw = pl.middleware.iter().map(|m| index(&mw_names, m, "middleware")).collect::<Result<Vec<_>, _>>()?;
            let be = pl.backends.iter().map(|b| index(&be_names, b, "backend")).collect::<Result<Vec<_>, _>>()?;
            if be.is_empty() {
                return Err(format!("{}: pipeline '{}' has no backend", pl.origin, pl.name));
            }
            for ep in &pl.endpoints {
                let ei = index(&endpoints, ep, "endpoint")?;
                match &cfg.endpoints[ep].kind {
                    EndpointKind::Http { path_prefix, .. } => {
                        for net in &pl.networks {
                            let ni = index(&net_names, net, "network")?;
                            networks[ni].routes.push(Route { prefix: path_prefix.clone(), pipeline: pi, endpoint: ei });
                        }
                    }
                    EndpointKind::Dicom(d) => {
                        // the first dicom backend of the pipeline
                        let backend = be
                            .iter()
                            .copied()
                            .find(|&b| matches!(backends[b].1, Backend::Dicom(_)))
                            .ok_or_else(|| format!("{}: pipeline '{}' has no dicom backend", pl.origin, pl.name))?;
                        let file = cfg.endpoints[ep].origin.file.display().to_string();
                        let of_pipeline = |name: &str, line: usize, key: &str| -> Result<usize, String> {
                            be.iter()
                                .copied()
                                .find(|&b| backends[b].0 == name && matches!(backends[b].1, Backend::Dicom(_)))
                                .ok_or_else(|| {
                                    format!(
                                        "{file}:{line}: endpoints.{ep}.options.{key}: '{name}' is not a dicom backend of pipeline '{}'",
                                        pl.name
                                    )
                                })
                        };
                        let mut calling_ae_routes = Vec::new();
                        for (ae, b, line) in &d.calling_ae_routes {
                            calling_ae_routes.push((ae.clone(), of_pipeline(b, *line, "calling_ae_routes")?));
                        }
                        let mut peer_routes = Vec::new();
                        for (net, b, line) in &d.peer_routes {
                            peer_routes.push((*net, of_pipeline(b, *line, "peer_routes")?));
                        }
                        let mut move_destinations = Vec::new();
                        for (b, line) in &d.move_destinations {
                            let i = backends
                                .iter()
                                .position(|(n, k)| n == b && matches!(k, Backend::Dicom(_)))
                                .ok_or_else(|| {
                                    format!("{file}:{line}: endpoints.{ep}.options.move_destinations: '{b}' is not a dicom backend")
                                })?;
                            move_destinations.push(i);
                        }
                        for net in &pl.networks {
                            let ni = index(&net_names, net, "network")?;
                            networks[ni].dicom_routes.push(DicomRoute {
                                ae_title: d.ae_title.clone(),
                                allowed_calling_aes: d.allowed_calling_aes.clone(),
                                pipeline: pi,
                                endpoint: ei,
                                backend,
                                calling_ae_routes: calling_ae_routes.clone(),
                                peer_routes: peer_routes.clone(),
                                local_echo: d.local_echo,
                                move_destinations: move_destinations.clone(),
                                sop_classes: d.sop_classes.clone(),
                                transfer_syntaxes: d.transfer_syntaxes.clone(),
                            });
                        }
                    }
                }
            }
            pipelines.push(PipelineRt { name: pl.name.clone(), middleware: mw, backends: be });
        }
        for n in &mut networks {
            sort_routes(&mut n.routes);
        }
        let lua = LuaSettings {
            scripts_path: p.scripts_path.clone(),
            limits: LuaLimits { instructions: p.lua_max_instructions, memory: p.lua_memory_bytes },
            cache_entries: p.lua_cache_entries,
        };
        let management = match &cfg.management {
            Some(m) if m.enabled => {
                let token = match (&m.token, &m.token_file) {
                    (Some(t), _) => Some(t.clone()),
                    (None, Some(f)) => Some(
                        std::fs::read_to_string(f)
                            .map_err(|e| format!("management.token_file {}: {e}", f.display()))?
                            .trim()
                            .to_string(),
                    ),
                    _ => None,
                };
                Some(ManagementRt {
                    network: m.network.clone(),
                    base_path: format!("/{}", m.base_path.trim_matches('/')),
                    token,
                })
            }
            _ => None,
        };
        let mut watch = cfg.files.clone();
        watch.push(p.pipelines_path.clone());
        if !lua_stages.is_empty() {
            watch.push(p.scripts_path.clone());
        }
        Ok(Generation {
            id,
            settings,
            networks,
            pipelines,
            endpoints,
            middleware,
            backends,
            lua_stages,
            lua,
            management,
            watch,
            watch_enabled: p.watch,
            watch_interval: Duration::from_millis(p.watch_interval_ms),
        })
    }

    /// The dicom route for an association to `called_ae` (spaces trimmed)
    /// arriving on the network named `net`.
    pub fn dicom_route(&self, net: &str, called_ae: &str) -> Option<&DicomRoute> {
        let called = called_ae.trim_matches([' ', '\0']);
        self.networks.iter().find(|n| n.name == net)?.dicom_routes.iter().find(|r| r.ae_title == called)
    }

    /// Route a normalised path arriving on the network named `net`.
    pub fn route(&self, net: &str, path: &str) -> Option<RouteMatch> {
        match_route(&self.networks.iter().find(|n| n.name == net)?.routes, path)
    }
}
