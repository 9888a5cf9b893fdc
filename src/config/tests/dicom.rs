//! `[network.N.dicom]`, `service = "dicom"` endpoints and backends, and the
//! pipeline rules for them.

use super::super::model::{BackendKind, EndpointKind};
use super::{errs_main, has, ok, tmp, write, BASE};

/// BASE (lines 1-6) plus a dicom network (lines 7-9).
const DICOM_NET: &str = "[network.imaging.dicom]\nbind_address = \"127.0.0.1\"\nbind_port = 11112\n";

/// A valid dicom pipeline (lines 10-26 after BASE + DICOM_NET).
const DICOM_PIPELINE: &str = "[pipelines.img]
networks = [\"imaging\"]
endpoints = [\"dicom_in\"]
backends = [\"pacs\"]

[endpoints.dicom_in]
service = \"dicom\"
options = { ae_title = \"HARMONY\", allowed_calling_aes = [\"CT01\", \"MR02\"] }

[backends.pacs]
service = \"dicom\"
options = { aet = \"ORTHANC\", host = \"localhost\", port = 4242, local_aet = \"HARMONY\", timeout_ms = 2500 }
";

#[test]
fn dicom_relay_config_loads() {
    let dir = tmp("dicom_ok");
    let main = write(&dir, "harmony.toml", &format!("{BASE}{DICOM_NET}{DICOM_PIPELINE}"));
    let c = ok(&main);
    let net = &c.networks["imaging"];
    assert!(net.http.is_none());
    assert_eq!(net.dicom.as_ref().unwrap().addr.to_string(), "127.0.0.1:11112");
    let EndpointKind::Dicom(ep) = &c.endpoints["dicom_in"].kind else { panic!("not dicom") };
    assert_eq!(ep.ae_title, "HARMONY");
    assert_eq!(ep.allowed_calling_aes, &["CT01".to_string(), "MR02".to_string()]);
    assert!(!ep.local_echo);
    let BackendKind::Dicom(b) = &c.backends["pacs"].kind else { panic!("not dicom") };
    assert_eq!(b.aet, "ORTHANC");
    assert_eq!(b.addr.to_string(), "127.0.0.1:4242");
    assert_eq!(b.local_aet.as_deref(), Some("HARMONY"));
    assert_eq!(b.timeout_ms, 2500);
    let g = crate::pipeline::Generation::build(&c, 1).unwrap();
    let r = g.dicom_route("imaging", "HARMONY  ").expect("route by called AE");
    assert_eq!(g.backends[r.backend].0, "pacs");
    assert!(g.dicom_route("imaging", "NOPE").is_none());
    assert!(g.dicom_route("default", "HARMONY").is_none());
}

#[test]
fn dicom_endpoint_and_backend_option_errors() {
    let e = errs_main(
        "dicom_opts",
        "[endpoints.a]\nservice = \"dicom\"\n\
         [endpoints.b]\nservice = \"dicom\"\noptions = { ae_title = \"WAY_TOO_LONG_AE_TITLE\" }\n\
         [endpoints.c]\nservice = \"dicom\"\noptions = { ae_title = \"OK\", allowed_calling_aes = [\"A\\\\B\"], x = 1 }\n\
         [backends.d]\nservice = \"dicom\"\noptions = { aet = \"X\", host = \"pacs.example\" }\n\
         [backends.f]\nservice = \"dicom\"\noptions = { host = \"127.0.0.1\", port = 70000 }\n",
    );
    has(&e, "harmony.toml", 7, "endpoints.a.options", "missing required key");
    has(&e, "harmony.toml", 11, "endpoints.b.options.ae_title", "invalid AE title 'WAY_TOO_LONG_AE_TITLE'");
    has(&e, "harmony.toml", 14, "endpoints.c.options.allowed_calling_aes[0]", "invalid AE title");
    has(&e, "harmony.toml", 14, "endpoints.c.options.x", "unknown key");
    has(&e, "harmony.toml", 17, "backends.d.options.host", "invalid host 'pacs.example'");
    has(&e, "harmony.toml", 17, "backends.d.options.port", "missing required key");
    has(&e, "harmony.toml", 20, "backends.f.options.aet", "missing required key");
    has(&e, "harmony.toml", 20, "backends.f.options.port", "must be between 1 and 65535");
    assert_eq!(e.len(), 8, "{e}");
}

#[test]
fn dicom_pipeline_rules() {
    // lines 10-..: a dicom pipeline with middleware, on an HTTP-only network,
    // mixing endpoint kinds and an HTTP backend
    let extra = format!(
        "{DICOM_NET}[pipelines.bad]
networks = [\"default\"]
endpoints = [\"d_in\", \"h_in\"]
middleware = [\"hdr\"]
backends = [\"web\"]

[endpoints.d_in]
service = \"dicom\"
options = {{ ae_title = \"HARMONY\" }}

[endpoints.h_in]
service = \"http\"
options = {{ path_prefix = \"/x\" }}

[middleware.hdr]
type = \"headers\"
options = {{ request_set = {{ a = \"b\" }} }}

[backends.web]
service = \"http\"
options = {{ base_url = \"http://127.0.0.1:9\" }}

[pipelines.web]
networks = [\"default\"]
endpoints = [\"h2\"]
backends = [\"pacs\"]

[endpoints.h2]
service = \"http\"
options = {{ path_prefix = \"/y\" }}

[backends.pacs]
service = \"dicom\"
options = {{ aet = \"PACS\", host = \"127.0.0.1\", port = 104 }}
"
    );
    let e = errs_main("dicom_rules", &extra);
    has(&e, "harmony.toml", 11, "pipelines.bad.networks[0]", "has no [network.default.dicom] listener");
    has(&e, "harmony.toml", 12, "pipelines.bad.endpoints[1]", "cannot mix dicom and HTTP endpoints");
    has(&e, "harmony.toml", 13, "pipelines.bad.middleware[0]", "a dicom pipeline runs only lua stages");
    has(&e, "harmony.toml", 14, "pipelines.bad.backends[0]", "backend 'web' is not a dicom backend");
    has(&e, "harmony.toml", 35, "pipelines.web.backends[0]", "backend 'pacs' is a dicom backend");
    assert_eq!(e.len(), 5, "{e}");
}

#[test]
fn dicom_duplicate_ae_and_address() {
    let extra = format!(
        "{DICOM_NET}{DICOM_PIPELINE}
[pipelines.img2]
networks = [\"imaging\"]
endpoints = [\"dicom_in2\"]
backends = [\"pacs\"]

[endpoints.dicom_in2]
service = \"dicom\"
options = {{ ae_title = \"HARMONY\" }}

[network.other.dicom]
bind_address = \"127.0.0.1\"
bind_port = 8080
"
    );
    let e = errs_main("dicom_dup", &extra);
    has(&e, "harmony.toml", 25, "pipelines.img2.endpoints[0]", "duplicate route");
    has(&e, "harmony.toml", 25, "pipelines.img2.endpoints[0]", "claim AE title 'HARMONY' on network 'imaging'");
    has(&e, "harmony.toml", 32, "network.other.dicom", "already used by network 'default'");
    assert_eq!(e.len(), 2, "{e}");
}

#[test]
fn dicom_routing_limits_and_timeouts_load() {
    let dir = tmp("dicom_routing_ok");
    let net = "[network.imaging.dicom]\nbind_address = \"127.0.0.1\"\nbind_port = 11112\n\
               max_pdu = 32768\nmax_associations = 5\nmax_associations_per_calling_ae = 2\n";
    let pipeline = DICOM_PIPELINE
        .replace(
            "allowed_calling_aes = [\"CT01\", \"MR02\"] }",
            "calling_ae_routes = { CT01 = \"pacs\" }, peer_routes = { \"10.0.0.0/8\" = \"pacs\", \"::1\" = \"pacs\" }, echo = \"local\", move_destinations = [\"pacs\"] }",
        )
        .replace("timeout_ms = 2500 }", "timeout_ms = 2500, dimse_timeout_ms = 900 }");
    let main = write(&dir, "harmony.toml", &format!("{BASE}{net}{pipeline}"));
    let c = ok(&main);
    let d = c.networks["imaging"].dicom.as_ref().unwrap();
    assert_eq!((d.max_pdu, d.max_associations, d.max_associations_per_calling_ae), (32768, 5, 2));
    let BackendKind::Dicom(b) = &c.backends["pacs"].kind else { panic!("not dicom") };
    assert_eq!(b.dimse_timeout_ms, 900);
    let g = crate::pipeline::Generation::build(&c, 1).unwrap();
    let r = g.dicom_route("imaging", "HARMONY").unwrap();
    assert!(r.local_echo);
    assert_eq!(r.calling_ae_routes, vec![("CT01".to_string(), r.backend)]);
    assert_eq!(r.move_destinations, vec![r.backend]);
    assert!(r.peer_routes[0].0.contains("10.1.2.3".parse().unwrap()));
    assert!(!r.peer_routes[0].0.contains("11.1.2.3".parse().unwrap()));
    assert!(r.peer_routes[1].0.contains("::1".parse().unwrap()));
    assert_eq!(g.networks.iter().find(|n| n.name == "imaging").unwrap().dicom_limits.max_pdu, 32768);

    // a route to a backend outside the pipeline fails the build with file:line
    let bad = pipeline.replace("calling_ae_routes = { CT01 = \"pacs\" }", "calling_ae_routes = { CT01 = \"nope\" }");
    let main = write(&dir, "harmony.toml", &format!("{BASE}{net}{bad}"));
    let e = crate::pipeline::Generation::build(&ok(&main), 1).unwrap_err();
    assert!(e.contains("harmony.toml:") && e.contains("'nope' is not a dicom backend of pipeline 'img'"), "{e}");
}

#[test]
fn dicom_routing_option_errors() {
    let e = errs_main(
        "dicom_routing_errs",
        "[network.imaging.dicom]\nbind_port = 11112\nmax_pdu = 100\nmax_associations = 0\n\
         [endpoints.a]\nservice = \"dicom\"\n\
         options = { ae_title = \"A\", echo = \"maybe\", peer_routes = { \"10.0.0.0/99\" = \"x\" }, sop_classes = [\"1.2.x\"], transfer_syntaxes = [] }\n\
         [backends.b]\nservice = \"dicom\"\noptions = { aet = \"B\", host = \"127.0.0.1\", port = 1, dimse_timeout_ms = 0 }\n",
    );
    has(&e, "harmony.toml", 9, "network.imaging.dicom.max_pdu", "must be between 4096");
    has(&e, "harmony.toml", 10, "network.imaging.dicom.max_associations", "must be between 1");
    has(&e, "harmony.toml", 13, "endpoints.a.options.echo", "invalid echo 'maybe'");
    has(&e, "harmony.toml", 13, "endpoints.a.options.peer_routes.\"10.0.0.0/99\"", "invalid peer network");
    has(&e, "harmony.toml", 13, "endpoints.a.options.sop_classes[0]", "invalid UID '1.2.x'");
    has(&e, "harmony.toml", 13, "endpoints.a.options.transfer_syntaxes", "must not be empty");
    has(&e, "harmony.toml", 16, "backends.b.options.dimse_timeout_ms", "must be between 1");
}
