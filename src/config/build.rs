//! Builds the typed [`Config`] from the parsed files: top-level tables,
//! merging named items across files, then the per-section builders.

use std::collections::{BTreeMap, BTreeSet};

use toml::de::DeTable;

use super::items::{backend, endpoint, registrations};
use super::middleware::middleware;
use super::model::{Config, Origin};
use super::settings::{logging, management, networks, proxy, storage};
use super::source::{Ctx, Source};
use super::validate::pipelines;
use super::value::{Tbl, Val};

/// One parsed file.
#[derive(Clone, Copy)]
pub(crate) struct Doc<'a, 'i> {
    pub src: &'a Source,
    pub t: &'a DeTable<'i>,
}

/// Tables only the main file may contain.
const MAIN_ONLY: &[&str] = &["proxy", "network", "management", "logging", "storage"];
/// Named-item tables, allowed in the main file and in pipeline files.
const NAMED: &[&str] = &["pipelines", "endpoints", "middleware", "backends", "services", "middleware_types"];
/// Harmony tables this build knows about but does not implement.
const UNSUPPORTED_TOP: &[&str] = &["policies", "rules", "peers", "targets", "authentications"];

/// Named items of every file, merged: name → its table value.
pub(crate) type Items<'a, 'i> = BTreeMap<String, Val<'a, 'i>>;

pub(crate) fn build(cx: &mut Ctx, main: Doc<'_, '_>, pipes: &[Doc<'_, '_>], syntax_ok: bool) -> Option<Config> {
    let main_root = Tbl::root(main.src, main.t);
    let known_main: Vec<&str> = MAIN_ONLY.iter().chain(NAMED).copied().collect();
    main_root.check_keys(cx, &known_main, UNSUPPORTED_TOP);
    let mut roots = vec![main_root.clone()];
    for d in pipes {
        let root = Tbl::root(d.src, d.t);
        for (name, v) in root.entries() {
            if MAIN_ONLY.contains(&name) {
                v.key_err(cx, "only allowed in the main config file");
            }
        }
        root.check_keys(cx, &[NAMED, MAIN_ONLY].concat(), UNSUPPORTED_TOP);
        roots.push(root);
    }

    let get = |cx: &mut Ctx, name: &str| main_root.table(cx, name);
    let proxy_t = get(cx, "proxy");
    let settings = proxy(cx, main.src, proxy_t.as_ref());
    let network_t = get(cx, "network");
    let (nets, declared) = networks(cx, network_t.as_ref());
    let management_t = get(cx, "management");
    let mgmt = management(cx, management_t.as_ref(), &nets, &declared.http);
    let logging_t = get(cx, "logging");
    let log = logging(cx, logging_t.as_ref());
    let storage_t = get(cx, "storage");
    storage(cx, storage_t.as_ref());

    let services = collect(cx, &roots, "services");
    registrations(cx, "services", &services);
    let mw_types = collect(cx, &roots, "middleware_types");
    registrations(cx, "middleware_types", &mw_types);

    let mut config = Config {
        main_file: main.src.path.clone(),
        files: roots.iter().map(|r| r.src.path.clone()).collect(),
        proxy: settings,
        networks: nets,
        management: mgmt,
        logging: log,
        pipelines: BTreeMap::new(),
        endpoints: BTreeMap::new(),
        middleware: BTreeMap::new(),
        backends: BTreeMap::new(),
    };

    let endpoint_items = collect(cx, &roots, "endpoints");
    for (name, v) in &endpoint_items {
        if let Some(e) = endpoint(cx, name, v) {
            config.endpoints.insert(name.clone(), e);
        }
    }
    let middleware_items = collect(cx, &roots, "middleware");
    for (name, v) in &middleware_items {
        if let Some(m) = middleware(cx, name, v, &config.proxy.scripts_path) {
            config.middleware.insert(name.clone(), m);
        }
    }
    let backend_items = collect(cx, &roots, "backends");
    for (name, v) in &backend_items {
        if let Some(b) = backend(cx, name, v, config.proxy.upstream_timeout_ms) {
            config.backends.insert(name.clone(), b);
        }
    }
    let pipeline_items = collect(cx, &roots, "pipelines");
    let defined = Defined {
        http_networks: &declared.http,
        dicom_networks: &declared.dicom,
        endpoints: &endpoint_items,
        middleware: &middleware_items,
        backends: &backend_items,
    };
    // Dangling references are only meaningful when every file parsed.
    config.pipelines = pipelines(cx, &pipeline_items, &defined, &config, syntax_ok);
    Some(config)
}

/// Names defined anywhere (even if their definition had errors), for
/// reference checks.
pub(crate) struct Defined<'r, 'a, 'i> {
    /// Networks that declare an `http` table (valid or not).
    pub http_networks: &'r BTreeSet<String>,
    /// Networks that declare a `dicom` table (valid or not).
    pub dicom_networks: &'r BTreeSet<String>,
    pub endpoints: &'r Items<'a, 'i>,
    pub middleware: &'r Items<'a, 'i>,
    pub backends: &'r Items<'a, 'i>,
}

/// Merges `[section.NAME]` tables of every file; a name defined twice is an
/// error naming both places. Item names must be `[A-Za-z0-9_-]+`.
fn collect<'a, 'i>(cx: &mut Ctx, roots: &[Tbl<'a, 'i>], section: &str) -> Items<'a, 'i> {
    let mut out: Items<'a, 'i> = BTreeMap::new();
    for root in roots {
        let Some(t) = root.table(cx, section) else {
            continue;
        };
        for (name, v) in t.entries() {
            if !valid_name(name) {
                v.key_err(cx, "invalid name (use letters, digits, '_' and '-' only)");
                continue;
            }
            if let Some(first) = out.get(name) {
                let first_at = origin(first);
                v.key_err(cx, format!("'{name}' is defined twice: at {first_at} and here"));
                continue;
            }
            out.insert(name.to_string(), v);
        }
    }
    out
}

pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Where a value's key is, as an [`Origin`].
pub(crate) fn origin(v: &Val<'_, '_>) -> Origin {
    Origin { file: v.src.path.clone(), line: v.line() }
}
