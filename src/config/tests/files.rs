//! Shipped configs, the pipelines directory, relative paths, and problems
//! that span files.

use std::path::Path;

use super::super::model::{BackendKind, EndpointKind, MiddlewareKind};
use super::{errs, has, ok, tmp, write, BASE};

fn repo(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

#[test]
fn shipped_default_config_loads() {
    let c = ok(&repo("config/harmony.toml"));
    assert_eq!(c.proxy.id, "harmony-dev");
    assert_eq!(c.proxy.workers, 1);
    assert_eq!(c.files.len(), 3, "{:?}", c.files);
    assert!(c.files.iter().all(|f| f.is_absolute()));
    let net = &c.networks["default"];
    assert_eq!(net.http.as_ref().unwrap().addr, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(c.pipelines["echo"].endpoints, ["echo_in"]);
    assert_eq!(c.pipelines["api"].middleware, ["api_headers"]);
    let EndpointKind::Http { path_prefix, .. } = &c.endpoints["api_in"].kind else { panic!("not http") };
    assert_eq!(path_prefix, "/api");
    assert!(matches!(c.backends["echo_out"].kind, BackendKind::Echo));
    let BackendKind::Http(b) = &c.backends["api_upstream"].kind else { panic!("api_upstream is http") };
    assert_eq!(b.targets, ["127.0.0.1:8081".parse().unwrap()]);
    assert_eq!((b.host_header.as_str(), b.base_path.as_str()), ("127.0.0.1:8081", ""));
    let MiddlewareKind::Headers { request_set, response_remove, .. } = &c.middleware["api_headers"].kind else {
        panic!("api_headers is headers")
    };
    assert_eq!(request_set, &[("x-harmony-gateway".to_string(), "harmony-dev".to_string())]);
    assert_eq!(response_remove, &["server"]);
    assert!(c.pipelines["api"].origin.file.ends_with("pipelines/http-proxy.toml"));
}

#[test]
fn shipped_fhir_example_loads() {
    let c = ok(&repo("config/examples/fhir.toml"));
    assert_eq!(c.files.len(), 1);
    let MiddlewareKind::PathFilter { allow, deny, status } = &c.middleware["fhir_resources"].kind else {
        panic!("path_filter")
    };
    assert_eq!(allow, &["/Patient", "/Patient/*", "/Observation", "/Observation/*"]);
    assert_eq!(deny.len(), 2);
    assert_eq!(*status, 404);
    let BackendKind::Http(b) = &c.backends["fhir_server"].kind else { panic!() };
    assert_eq!(b.base_path, "/fhir/R4");
    assert_eq!(b.timeout_ms, 15000);
}

#[test]
fn shipped_imaging_example_loads_and_builds() {
    let c = ok(&repo("config/examples/imaging.toml"));
    let d = c.networks["imaging"].dicom.as_ref().expect("dicom listener");
    assert_eq!((d.max_pdu, d.max_associations, d.max_associations_per_calling_ae), (131072, 64, 8));
    let g = crate::pipeline::Generation::build(&c, 1).unwrap();
    let r = g.dicom_route("imaging", "HARMONY").expect("route");
    assert!(r.local_echo);
    assert_eq!(g.backends[r.backend].0, "pacs");
    assert_eq!(r.calling_ae_routes.len(), 2);
    assert_eq!(g.backends[r.move_destinations[0]].0, "ws01");
    assert_eq!(g.lua_stages.len(), 1);
    assert!(g.lua_stages[0].script.ends_with("scripts/dicom/deidentify.lua"));
}

#[test]
fn relative_paths_resolve_against_the_naming_file() {
    let dir = tmp("relative");
    let main = write(
        &dir,
        "etc/harmony.toml",
        "[proxy]\npipelines_path = \"pipes\"\nscripts_path = \"../lua\"\n\
         [network.default.http]\nbind_port = 8080\n\
         [logging]\nlog_to_file = true\nfile_path = \"logs/h.log\"\n\
         [management]\nenabled = true\nnetwork = \"default\"\ntoken_file = \"secret/token\"\n",
    );
    write(&dir, "etc/secret/token", "s3cret\n");
    write(&dir, "etc/pipes/a.toml", "[backends.b]\nservice = \"echo\"\n");
    write(&dir, "etc/pipes/notes.txt", "not toml, ignored");
    let c = ok(&main);
    let etc = dir.join("etc");
    assert_eq!(c.main_file, etc.join("harmony.toml"));
    assert_eq!(c.proxy.pipelines_path, etc.join("pipes"));
    assert_eq!(c.proxy.scripts_path, dir.join("lua"));
    assert_eq!(c.logging.file.as_deref(), Some(etc.join("logs/h.log").as_path()));
    let m = c.management.unwrap();
    assert_eq!(m.token_file.as_deref(), Some(etc.join("secret/token").as_path()));
    assert_eq!(m.base_path, "admin");
    assert_eq!(c.files, [etc.join("harmony.toml"), etc.join("pipes/a.toml")]);
    assert!(c.backends.contains_key("b"));
}

#[test]
fn default_pipelines_dir_may_be_absent_but_explicit_must_exist() {
    let dir = tmp("pipedir");
    let c = ok(&write(&dir, "harmony.toml", BASE));
    assert_eq!(c.proxy.pipelines_path, dir.join("pipelines"));
    assert_eq!(c.proxy.scripts_path, dir.parent().unwrap().join("scripts"));
    let main = write(&dir, "other.toml", "[proxy]\npipelines_path = \"nope\"\n");
    let e = errs(&main);
    has(&e, "other.toml", 2, "proxy.pipelines_path", "does not exist");
}

#[test]
fn pipeline_files_are_read_in_name_order() {
    let dir = tmp("order");
    let main = write(&dir, "harmony.toml", BASE);
    write(&dir, "pipelines/b.toml", "[backends.x]\nservice = \"echo\"\n");
    write(&dir, "pipelines/a.toml", "[backends.y]\nservice = \"echo\"\n");
    let c = ok(&main);
    let names: Vec<_> = c.files.iter().map(|f| f.file_name().unwrap().to_owned()).collect();
    assert_eq!(names, ["harmony.toml", "a.toml", "b.toml"]);
}

#[test]
fn duplicate_names_across_pipeline_files() {
    let dir = tmp("dupnames");
    let main = write(&dir, "harmony.toml", &format!("{BASE}[endpoints.in]\nservice = \"http\"\n"));
    write(&dir, "pipelines/a.toml", "# a\n[backends.up]\nservice = \"echo\"\n");
    write(&dir, "pipelines/b.toml", "\n\n[backends.up]\nservice = \"echo\"\n[endpoints.in]\nservice = \"http\"\n");
    let e = errs(&main);
    has(&e, "pipelines/b.toml", 3, "backends.up", "defined twice");
    has(&e, "pipelines/b.toml", 3, "backends.up", "pipelines/a.toml:2");
    has(&e, "pipelines/b.toml", 5, "endpoints.in", "harmony.toml:7");
    assert_eq!(e.len(), 2, "{e}");
}

#[test]
fn duplicate_route_names_both_pipelines_and_files() {
    let dir = tmp("duproute");
    let main = write(&dir, "harmony.toml", BASE);
    let pipe = |p: &str, e: &str, prefix: &str| {
        format!(
            "[pipelines.{p}]\nnetworks = [\"default\"]\nendpoints = [\"{e}\"]\nbackends = [\"{p}_b\"]\n\
             [endpoints.{e}]\nservice = \"http\"\noptions = {{ path_prefix = \"{prefix}\" }}\n\
             [backends.{p}_b]\nservice = \"echo\"\n"
        )
    };
    write(&dir, "pipelines/one.toml", &pipe("one", "e1", "/api"));
    write(&dir, "pipelines/two.toml", &pipe("two", "e2", "/api/"));
    let e = errs(&main);
    has(&e, "pipelines/two.toml", 3, "pipelines.two.endpoints[0]", "duplicate route");
    has(&e, "pipelines/two.toml", 3, "pipelines.two.endpoints[0]", "pipeline 'one'");
    has(&e, "pipelines/two.toml", 3, "pipelines.two.endpoints[0]", "pipelines/one.toml:1");
    has(&e, "pipelines/two.toml", 3, "pipelines.two.endpoints[0]", "'/api' on network 'default'");
    assert_eq!(e.len(), 1, "{e}");
}

#[test]
fn pipeline_files_cannot_hold_main_tables() {
    let dir = tmp("mainonly");
    let main = write(&dir, "harmony.toml", BASE);
    write(&dir, "pipelines/p.toml", "[proxy]\nworkers = 2\n[wat]\n");
    let e = errs(&main);
    has(&e, "p.toml", 1, "proxy", "only allowed in the main config file");
    has(&e, "p.toml", 3, "wat", "unknown key");
}

#[test]
fn syntax_errors_report_lines_and_suppress_dangling_references() {
    let dir = tmp("syntax");
    let main = write(
        &dir,
        "harmony.toml",
        &format!("{BASE}[pipelines.p]\nnetworks = [\"default\"]\nendpoints = [\"e\"]\nbackends = [\"b\"]\n"),
    );
    write(&dir, "pipelines/p.toml", "[endpoints.e]\nservice = \"http\"\n\n[backends.b]\nservice = echo\n");
    let e = errs(&main);
    has(&e, "pipelines/p.toml", 5, "syntax", "");
    assert!(!e.iter().any(|x| x.message.contains("unknown endpoint")), "{e}");
}

#[test]
fn unreadable_main_file() {
    let dir = tmp("missing");
    let e = errs(&dir.join("nope.toml"));
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].line, 0);
    assert!(e.to_string().contains("nope.toml: cannot read config file"), "{e}");
}

#[test]
fn duplicate_name_in_one_file() {
    let dir = tmp("dup_one_file");
    let main = write(&dir, "harmony.toml", BASE);
    write(&dir, "pipelines/p.toml", "[backends.b]\nservice = \"echo\"\n\n[backends.b]\nservice = \"echo\"\n");
    let e = errs(&main);
    has(&e, "pipelines/p.toml", 4, "syntax", "duplicate key b: already defined earlier");
}
