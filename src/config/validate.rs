//! `[pipelines.*]`: references to networks, endpoints, middleware and
//! backends, and route conflicts between pipelines.

use std::collections::BTreeMap;

use super::build::{origin, Defined, Items};
use super::model::{BackendKind, Config, EndpointKind, Origin, Pipeline};
use super::source::Ctx;
use super::value::{Tbl, Val};

/// Builds every pipeline. Reference checks need `check_refs` (every file
/// parsed cleanly); otherwise a name may be "missing" only because its
/// file had a syntax error.
pub(crate) fn pipelines(
    cx: &mut Ctx,
    items: &Items<'_, '_>,
    defined: &Defined<'_, '_, '_>,
    config: &Config,
    check_refs: bool,
) -> BTreeMap<String, Pipeline> {
    let mut out = BTreeMap::new();
    // Earlier definitions (file, line) claim routes first.
    let mut ordered: Vec<(&String, &Val<'_, '_>)> = items.iter().collect();
    ordered.sort_by_key(|(_, v)| (v.src.path.clone(), v.line()));
    // (network, path_prefix) → (pipeline, origin)
    let mut routes: BTreeMap<(String, String), (String, Origin)> = BTreeMap::new();
    // (network, called AE title) → (pipeline, origin)
    let mut ae_routes: BTreeMap<(String, String), (String, Origin)> = BTreeMap::new();

    for (name, v) in ordered {
        let Some(t) = v.table(cx) else { continue };
        t.check_keys(cx, &["id", "description", "networks", "endpoints", "middleware", "backends"], &[]);
        t.str(cx, "id");
        let description = t.str(cx, "description").map(str::to_string);
        let networks = names(cx, &t, "networks", true);
        let endpoints = names(cx, &t, "endpoints", true);
        let middleware = names(cx, &t, "middleware", false);
        let backends = names(cx, &t, "backends", true);

        // A pipeline is a DICOM pipeline when its (first valid) endpoint is.
        let is_dicom = |e: &str| config.endpoints.get(e).map(|ep| matches!(ep.kind, EndpointKind::Dicom { .. }));
        let dicom = endpoints.iter().find_map(|(e, _)| is_dicom(e)).unwrap_or(false);
        for (e, ev) in &endpoints {
            if is_dicom(e).is_some_and(|d| d != dicom) {
                ev.err(cx, "a pipeline cannot mix dicom and HTTP endpoints (use one pipeline for each)");
            }
        }
        // only Lua stages (on_associate / on_dimse) act on DICOM
        if dicom {
            for (m, mv) in &middleware {
                let lua =
                    config.middleware.get(m).map(|mw| matches!(mw.kind, crate::config::MiddlewareKind::Lua { .. }));
                if lua == Some(false) {
                    mv.err(cx, format!("middleware '{m}' is not a lua middleware: a dicom pipeline runs only lua stages (on_associate, on_dimse)"));
                }
            }
        }
        for (b, bv) in &backends {
            match config.backends.get(b).map(|be| matches!(be.kind, BackendKind::Dicom(_))) {
                Some(false) if dicom => bv.err(
                    cx,
                    format!("backend '{b}' is not a dicom backend (a pipeline with dicom endpoints needs service = \"dicom\" backends)"),
                ),
                Some(true) if !dicom => bv.err(
                    cx,
                    format!("backend '{b}' is a dicom backend; it needs a pipeline with dicom endpoints"),
                ),
                _ => {}
            }
        }

        if check_refs {
            let (declared, table) =
                if dicom { (defined.dicom_networks, "dicom") } else { (defined.http_networks, "http") };
            for (n, nv) in &networks {
                match config.networks.get(n) {
                    None => nv.err(cx, format!("unknown network '{n}'")),
                    Some(_) if !declared.contains(n) => nv.err(
                        cx,
                        format!("network '{n}' has no [network.{n}.{table}] listener for this pipeline's endpoints"),
                    ),
                    Some(_) => {}
                }
            }
            refs(cx, &endpoints, defined.endpoints, "endpoint");
            refs(cx, &middleware, defined.middleware, "middleware");
            refs(cx, &backends, defined.backends, "backend");
        }

        // Route conflicts: same network + same endpoint path prefix.
        // Same network + same called AE title, likewise.
        for (n, _) in &networks {
            if config.networks.get(n).is_none_or(|net| net.dicom.is_none()) {
                continue;
            }
            for (e, ev) in &endpoints {
                let Some(EndpointKind::Dicom(crate::config::DicomEndpoint { ae_title, .. })) =
                    config.endpoints.get(e).map(|ep| &ep.kind)
                else {
                    continue;
                };
                let key = (n.clone(), ae_title.clone());
                if let Some((other, at)) = ae_routes.get(&key) {
                    let who = if other == name {
                        "this pipeline already".to_string()
                    } else {
                        format!("pipeline '{other}' ({at}) and pipeline '{name}' ({}) both", origin(v))
                    };
                    ev.err(cx, format!("duplicate route: {who} claim AE title '{ae_title}' on network '{n}'"));
                } else {
                    ae_routes.insert(key, (name.clone(), origin(v)));
                }
            }
        }
        for (n, _) in &networks {
            if config.networks.get(n).is_none_or(|net| net.http.is_none()) {
                continue;
            }
            for (e, ev) in &endpoints {
                let Some(EndpointKind::Http { path_prefix, .. }) = config.endpoints.get(e).map(|ep| &ep.kind) else {
                    continue;
                };
                let key = (n.clone(), path_prefix.clone());
                if let Some((other, at)) = routes.get(&key) {
                    let who = if other == name {
                        "this pipeline already".to_string()
                    } else {
                        format!("pipeline '{other}' ({at}) and pipeline '{name}' ({}) both", origin(v))
                    };
                    ev.err(cx, format!("duplicate route: {who} claim path prefix '{path_prefix}' on network '{n}'"));
                } else {
                    routes.insert(key, (name.clone(), origin(v)));
                }
            }
        }

        let list = |l: &[(String, Val<'_, '_>)]| l.iter().map(|(s, _)| s.clone()).collect();
        out.insert(
            name.clone(),
            Pipeline {
                name: name.clone(),
                description,
                networks: list(&networks),
                endpoints: list(&endpoints),
                middleware: list(&middleware),
                backends: list(&backends),
                origin: origin(v),
            },
        );
    }
    out
}

/// An array of names; `required` ones must be present and non-empty. A name
/// listed twice is an error.
fn names<'a, 'i>(cx: &mut Ctx, t: &Tbl<'a, 'i>, key: &str, required: bool) -> Vec<(String, Val<'a, 'i>)> {
    let Some(v) = t.get(key) else {
        if required {
            t.missing(cx, key, "");
        }
        return Vec::new();
    };
    let Some(list) = v.str_array(cx) else {
        return Vec::new();
    };
    if required && list.is_empty() {
        v.err(cx, "must list at least one name");
    }
    let mut out: Vec<(String, Val<'a, 'i>)> = Vec::new();
    for (s, ev) in list {
        if out.iter().any(|(o, _)| o == s) {
            ev.err(cx, format!("'{s}' is listed twice"));
        } else {
            out.push((s.to_string(), ev));
        }
    }
    out
}

fn refs(cx: &mut Ctx, list: &[(String, Val<'_, '_>)], defined: &Items<'_, '_>, what: &str) {
    for (n, v) in list {
        if !defined.contains_key(n) {
            v.err(cx, format!("unknown {what} '{n}'"));
        }
    }
}
