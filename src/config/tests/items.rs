//! Endpoints, backends, middleware, registrations and pipeline references.

use super::super::model::{BackendKind, EndpointKind, MiddlewareKind};
use super::{errs_main, has, ok, tmp, write, BASE};

/// BASE plus a valid pipeline `p` (lines 7-10) using endpoint `e` and
/// backend `b`, defined by the caller in `items`.
fn with_pipeline(items: &str) -> String {
    format!("{BASE}[pipelines.p]\nnetworks = [\"default\"]\nendpoints = [\"e\"]\nbackends = [\"b\"]\n{items}")
}

#[test]
fn services_unknown_unsupported_and_misused() {
    let e = errs_main(
        "services",
        "[endpoints.a]\nservice = \"dicomweb\"\n[endpoints.b]\nservice = \"nope\"\n\
         [endpoints.c]\nservice = \"echo\"\n[backends.d]\nservice = \"jmix\"\n[backends.f]\noptions = {}\n",
    );
    has(&e, "harmony.toml", 8, "endpoints.a.service", "service 'dicomweb' is not supported by this build yet");
    has(&e, "harmony.toml", 10, "endpoints.b.service", "unknown service 'nope'");
    // Harmony's own examples put `service = "echo"` on endpoints: accepted
    assert!(!e.iter().any(|x| x.key == "endpoints.c.service"), "{e:?}");
    has(&e, "harmony.toml", 14, "backends.d.service", "service 'jmix' is not supported");
    has(&e, "harmony.toml", 15, "backends.f.service", "missing required key");
    assert_eq!(e.len(), 4, "{e}");
}

#[test]
fn registrations() {
    let e = errs_main(
        "registrations",
        "[services.http]\nmodule = \"libfoo.so\"\n[services.weird]\nmodule = \"\"\n\
         [middleware_types.headers]\nmodule = \"x\"\n[middleware_types.path_filter]\nid = \"pf\"\n",
    );
    has(&e, "harmony.toml", 8, "services.http.module", "custom service modules are not supported");
    has(&e, "harmony.toml", 9, "services.weird", "unknown built-in service 'weird'");
    has(&e, "harmony.toml", 12, "middleware_types.headers.module", "custom middleware modules");
    has(&e, "harmony.toml", 13, "middleware_types.path_filter.module", "missing required key");
    assert_eq!(e.len(), 4, "{e}");
}

#[test]
fn endpoint_prefixes() {
    let dir = tmp("prefix");
    let main = write(
        &dir,
        "harmony.toml",
        &with_pipeline("[endpoints.e]\nservice = \"fhir\"\noptions = { path_prefix = \"/fhir/\" }\n[backends.b]\nservice = \"echo\"\n[endpoints.root]\nservice = \"http\"\n"),
    );
    let c = ok(&main);
    let EndpointKind::Http { service, path_prefix } = &c.endpoints["e"].kind else { panic!("not http") };
    assert_eq!((service.as_str(), path_prefix.as_str()), ("fhir", "/fhir"));
    let EndpointKind::Http { path_prefix, .. } = &c.endpoints["root"].kind else { panic!("not http") };
    assert_eq!(path_prefix, "/");
    assert_eq!(c.endpoints["e"].origin.line, 11);

    let e = errs_main("prefix_bad", "[endpoints.e]\nservice = \"http\"\noptions = { path_prefix = \"api\" }\n");
    has(&e, "harmony.toml", 9, "endpoints.e.options.path_prefix", "must start with '/'");
}

#[test]
fn backend_urls() {
    let e = errs_main(
        "urls",
        "[backends.a]\nservice = \"http\"\noptions = { base_url = \"https://10.0.0.1\" }\n\
         [backends.b]\nservice = \"http\"\noptions = { base_url = \"http://example.com\" }\n\
         [backends.c]\nservice = \"fhir\"\n[backends.c.options]\ntargets = [\n  \"http://10.0.0.1/x\",\n  \"http://10.0.0.2/y\",\n]\n\
         [backends.d]\nservice = \"http\"\noptions = { base_url = \"http://1.2.3.4\", targets = [] }\n\
         [backends.f]\nservice = \"http\"\noptions = { base_url = \"http://1.2.3.4/?a\", timeout_ms = 0 }\n\
         [backends.g]\nservice = \"http\"\n",
    );
    has(&e, "harmony.toml", 9, "backends.a.options.base_url", "https upstreams come with the TLS issue");
    has(&e, "harmony.toml", 12, "backends.b.options.base_url", "host must be an IP address or localhost");
    has(&e, "harmony.toml", 18, "backends.c.options.targets[1]", "same path");
    has(&e, "harmony.toml", 22, "backends.d.options.targets", "either base_url or targets");
    has(&e, "harmony.toml", 25, "backends.f.options.base_url", "query strings");
    has(&e, "harmony.toml", 25, "backends.f.options.timeout_ms", "between 1 and");
    has(&e, "harmony.toml", 26, "backends.g.options", "missing required key");
    assert_eq!(e.len(), 7, "{e}");
}

#[test]
fn backend_targets_and_timeouts() {
    let dir = tmp("targets");
    let main = write(
        &dir,
        "harmony.toml",
        &with_pipeline(
            "[endpoints.e]\nservice = \"http\"\n[backends.b]\nservice = \"http\"\ntimeout_secs = 3\nmax_retries = 2\n\
             options = { targets = [\"http://127.0.0.1:9001/v1/\", \"http://localhost:9002/v1\"], preserve_host = true }\n\
             [backends.c]\nservice = \"http\"\noptions = { base_url = \"http://[::1]\" }\n",
        ),
    );
    let c = ok(&main);
    let BackendKind::Http(b) = &c.backends["b"].kind else { panic!() };
    assert_eq!(b.targets, ["127.0.0.1:9001".parse().unwrap(), "127.0.0.1:9002".parse().unwrap()]);
    assert_eq!((b.base_path.as_str(), b.host_header.as_str()), ("/v1", "127.0.0.1:9001"));
    assert_eq!(b.timeout_ms, 3000);
    assert!(b.preserve_host);
    let BackendKind::Http(b) = &c.backends["c"].kind else { panic!() };
    assert_eq!(b.host_header, "[::1]");
    assert_eq!(b.timeout_ms, 30_000);
}

#[test]
fn middleware_types_and_options() {
    let e = errs_main(
        "mw",
        "[middleware.a]\ntype = \"lua\"\n[middleware.b]\ntype = \"magic\"\n\
         [middleware.c]\ntype = \"headers\"\n[middleware.c.options]\nrequest_set = { \"bad name\" = \"x\", ok = \"a\\r\\nb\" }\n\
         response_remove = [\"content-length\", 7]\nrequest_add = []\n\
         [middleware.d]\ntype = \"path_filter\"\noptions = { rules = [\"Patient\", \"/a*b\", \"/P/{id}\"], status = 500 }\n",
    );
    has(&e, "harmony.toml", 7, "middleware.a.options", "lua middleware needs options.script");
    has(&e, "harmony.toml", 10, "middleware.b.type", "unknown middleware type 'magic'");
    has(&e, "harmony.toml", 14, "middleware.c.options.request_set.\"bad name\"", "invalid header name");
    has(&e, "harmony.toml", 14, "middleware.c.options.request_set.ok", "CR, LF or NUL");
    has(&e, "harmony.toml", 15, "middleware.c.options.response_remove[0]", "managed by the proxy");
    has(&e, "harmony.toml", 15, "middleware.c.options.response_remove[1]", "expected a string");
    has(&e, "harmony.toml", 16, "middleware.c.options.request_add", "unknown key");
    has(&e, "harmony.toml", 19, "middleware.d.options.rules[0]", "must start with '/'");
    has(&e, "harmony.toml", 19, "middleware.d.options.rules[1]", "only allowed at the end");
    has(&e, "harmony.toml", 19, "middleware.d.options.rules[2]", "segments are not supported");
    has(&e, "harmony.toml", 19, "middleware.d.options.status", "403 or 404");
    assert_eq!(e.len(), 11, "{e}");
}

#[test]
fn path_filter_accepts_harmony_rule_tables() {
    let dir = tmp("pf_harmony");
    let main = write(
        &dir,
        "harmony.toml",
        &format!(
            "{BASE}[middleware.f]\ntype = \"path_filter\"\n\
             [[middleware.f.options.rules]]\nallow = \"/ImagingStudy\"\n\
             [[middleware.f.options.rules]]\ndeny = \"*\"\n\
             [middleware.g]\ntype = \"path_filter\"\noptions = {{ deny = [\"/admin/*\"], status = 403 }}\n"
        ),
    );
    let c = ok(&main);
    let MiddlewareKind::PathFilter { allow, deny, status } = &c.middleware["f"].kind else { panic!() };
    assert_eq!(
        (allow.as_slice(), deny.as_slice(), *status),
        (&["/ImagingStudy".to_string()][..], &["*".to_string()][..], 404)
    );
    let MiddlewareKind::PathFilter { allow, status, .. } = &c.middleware["g"].kind else { panic!() };
    assert!(allow.is_empty());
    assert_eq!(*status, 403);
}

#[test]
fn pipeline_references() {
    let e = errs_main(
        "refs",
        "[network.nohttp]\nid = \"x\"\n\
         [pipelines.p]\nnetworks = [\"default\", \"ghost\", \"nohttp\"]\nendpoints = [\"e\", \"e\"]\n\
         middleware = [\"m\"]\nbackends = [\"b\"]\nextra = 1\n\
         [pipelines.q]\ndescription = \"no lists\"\n\
         [endpoints.e]\nservice = \"http\"\n",
    );
    has(&e, "harmony.toml", 10, "pipelines.p.networks[1]", "unknown network 'ghost'");
    has(&e, "harmony.toml", 10, "pipelines.p.networks[2]", "no [network.nohttp.http] listener");
    has(&e, "harmony.toml", 11, "pipelines.p.endpoints[1]", "listed twice");
    has(&e, "harmony.toml", 12, "pipelines.p.middleware[0]", "unknown middleware 'm'");
    has(&e, "harmony.toml", 13, "pipelines.p.backends[0]", "unknown backend 'b'");
    has(&e, "harmony.toml", 14, "pipelines.p.extra", "unknown key");
    has(&e, "harmony.toml", 15, "pipelines.q.networks", "missing required key");
    has(&e, "harmony.toml", 15, "pipelines.q.endpoints", "missing required key");
    has(&e, "harmony.toml", 15, "pipelines.q.backends", "missing required key");
    assert_eq!(e.len(), 9, "{e}");
}

#[test]
fn same_endpoint_in_two_pipelines_is_a_duplicate_route() {
    let e = errs_main(
        "shared_ep",
        "[pipelines.a]\nnetworks = [\"default\"]\nendpoints = [\"e\"]\nbackends = [\"b\"]\n\
         [pipelines.z]\nnetworks = [\"default\"]\nendpoints = [\"e\"]\nbackends = [\"b\"]\n\
         [endpoints.e]\nservice = \"http\"\n[backends.b]\nservice = \"echo\"\n",
    );
    has(&e, "harmony.toml", 13, "pipelines.z.endpoints[0]", "pipeline 'a'");
    assert_eq!(e.len(), 1, "{e}");
}

#[test]
fn invalid_item_names() {
    let e = errs_main("names", "[backends.\"a.b\"]\nservice = \"echo\"\n");
    has(&e, "harmony.toml", 7, "backends.\"a.b\"", "invalid name");
}
