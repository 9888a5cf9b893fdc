//! The shipped scripts in scripts/ through the running proxy: header
//! rewriting, deny, the FHIR Patient mapping, A/B routing and rate limiting.
//! Each test runs the script as an operator would configure it.

mod common;

use common::lua::*;
use common::origin::Origin;
use common::*;
use serde_json::{json, Value};

#[test]
fn header_rewrite_sets_removes_and_renames_both_ways() {
    let o = Origin::start();
    let opts = r#"request_set = { "x-gateway" = "harmony", "x-test" = "set" }
request_remove = ["x-debug"]
rename = { "x-old" = "x-new" }
response_set = { "x-frame-options" = "DENY" }
response_remove = ["server"]
response_rename = { "x-origin-port" = "x-backend-port" }"#;
    let rest = format!(
        "{}{}{}",
        pipeline("api", "/api", &["rewrite"], &["origin"]),
        http_backend("origin", &o.base_url()),
        lua_mw("rewrite", "header_rewrite.lua", opts)
    );
    let h = start_shipped("hdr-rewrite", "", &rest);
    let r = request(
        h.port,
        "GET",
        "/api/headers",
        &[("X-Debug", "1"), ("X-Old", "moved"), ("X-Test", "client"), ("X-Test", "client2")],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(seen(&v, "x-gateway"), Some("harmony"), "{v}");
    assert_eq!(seen_all(&v, "x-test"), vec!["set"], "set replaces every field: {v}");
    assert_eq!(seen(&v, "x-debug"), None, "{v}");
    assert_eq!(seen(&v, "x-old"), None, "{v}");
    assert_eq!(seen(&v, "x-new"), Some("moved"), "{v}");
    // response side
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    assert!(r.headers_named("server").is_empty(), "{:?}", r.headers);
    assert_eq!(r.header("x-origin-port"), None);
    assert_eq!(r.header("x-backend-port"), Some(o.port.to_string().as_str()));
    // a request without the renamed header gets no x-new
    let v = get(h.port, "/api/headers").json();
    assert_eq!(seen(&v, "x-new"), None, "{v}");
}

#[test]
fn header_rewrite_refuses_proxy_managed_headers_at_check() {
    let dir = TempDir::new("hdr-check");
    let cfg = format!(
        "{}{}{}{}",
        base_config(free_port(), &format!("scripts_path = {}\n", toml_str(shipped_scripts().to_str().unwrap()))),
        pipeline("api", "/api", &["rewrite"], &["e"]),
        echo_backend("e"),
        lua_mw("rewrite", "header_rewrite.lua", r#"request_set = { "content-length" = "5" }"#)
    );
    let cfg_path = dir.write("harmony.toml", cfg.as_bytes());
    std::fs::create_dir_all(dir.join("pipelines")).unwrap();
    let (st, _, err) = run_harmony(&["--check", cfg_path.to_str().unwrap()], std::time::Duration::from_secs(20));
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(err.contains("header_rewrite.lua") && err.contains("managed by the proxy"), "{err}");
}

fn deny_proxy(tag: &str, opts: &str) -> (Origin, Harmony) {
    let o = Origin::start();
    let rest = format!(
        "{}{}{}",
        pipeline("api", "/api", &["deny"], &["origin"]),
        http_backend("origin", &o.base_url()),
        lua_mw("deny", "deny.lua", opts)
    );
    let h = start_shipped(tag, "", &rest);
    (o, h)
}

fn assert_forbidden(r: &Response, method: &str, path: &str) {
    let v = r.assert_error(403);
    assert_eq!(v["error"], "forbidden", "{v}");
    assert_eq!(v["method"], method, "{v}");
    assert_eq!(v["path"], path, "{v}");
    assert_eq!(Some(v["request_id"].as_str().unwrap()), r.header("x-request-id"), "{v}");
}

#[test]
fn deny_by_method_or_path() {
    let (o, h) = deny_proxy("deny-any", "methods = [\"DELETE\"]\npaths = [\"^/api/admin\", \"%.php$\"]");
    assert_forbidden(&request(h.port, "DELETE", "/api/items/1", &[], b""), "DELETE", "/api/items/1");
    assert_forbidden(&get(h.port, "/api/admin/users"), "GET", "/api/admin/users");
    assert_forbidden(&get(h.port, "/api/x/index.php?a=1"), "GET", "/api/x/index.php");
    // the path is normalised before the script sees it: no spelling tricks
    for sneaky in ["/api//admin/users", "/api/./admin/users", "/api/%61dmin/users", "/api/x/../admin/users"] {
        let r = get(h.port, sneaky);
        assert_eq!(r.status, 403, "{sneaky} got through: {}", r.text());
    }
    assert_eq!(get(h.port, "/api/items/1").status, 200);
    assert_eq!(request(h.port, "POST", "/api/items", &[], b"{}").status, 200);
    assert_eq!(o.requests(), 2, "denied requests must not reach the origin: {:?}", o.targets());
}

#[test]
fn deny_all_needs_method_and_path() {
    let (o, h) = deny_proxy(
        "deny-all",
        "methods = [\"delete\"]\npaths = [\"^/api/admin\"]\nmatch = \"all\"\nstatus = 405\nmessage = \"no deleting admin things\"",
    );
    let r = request(h.port, "DELETE", "/api/admin/users/7", &[], b"");
    let v = r.assert_error(405);
    assert_eq!(v["error"], "forbidden");
    assert_eq!(v["detail"], "no deleting admin things");
    assert_eq!(request(h.port, "DELETE", "/api/items/7", &[], b"").status, 200);
    assert_eq!(get(h.port, "/api/admin/users").status, 200);
    assert_eq!(o.requests(), 2);
}

fn fhir_proxy(tag: &str) -> (Origin, Harmony) {
    let o = Origin::start();
    let rest = format!(
        "{}{}{}",
        pipeline("fhir", "/fhir", &["patient_map"], &["origin"]),
        http_backend("origin", &o.base_url()),
        lua_mw("patient_map", "fhir/patient_from_flat.lua", "mrn_system = \"urn:oid:1.2.36.146.595.217.0.1\"")
    );
    let h = start_shipped(tag, "", &rest);
    (o, h)
}

#[test]
fn fhir_patient_mapping_reaches_the_origin() {
    let (o, h) = fhir_proxy("fhir-map");
    let flat = json!({
        "id": "p1", "first_name": "Ada", "last_name": "Lovelace", "birth_date": "1815-12-10",
        "gender": "F", "mrn": "MRN-1", "phone": "+44 20 1234", "email": "ada@example.org"
    });
    let body = serde_json::to_vec(&flat).unwrap();
    // /echo-body sends back exactly what the origin received
    let r = request(h.port, "POST", "/fhir/echo-body", &[("Content-Type", "application/json")], &body);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/fhir+json"));
    assert_eq!(r.framing, "length");
    let expected = json!({
        "resourceType": "Patient",
        "id": "p1",
        "identifier": [{ "system": "urn:oid:1.2.36.146.595.217.0.1", "value": "MRN-1" }],
        "name": [{ "family": "Lovelace", "given": ["Ada"] }],
        "birthDate": "1815-12-10",
        "gender": "female",
        "telecom": [
            { "system": "phone", "value": "+44 20 1234" },
            { "system": "email", "value": "ada@example.org" }
        ]
    });
    assert_eq!(r.json(), expected);

    // the origin got a correct Content-Length for the new body
    let r = request(h.port, "PUT", "/fhir/Patient/p1", &[("Content-Type", "application/json")], &body);
    let v = r.json();
    let sent = serde_json::to_vec(&expected).unwrap().len();
    let cl: usize = seen(&v, "content-length").expect("Content-Length upstream").parse().unwrap();
    assert_eq!(cl, v["body_bytes"].as_u64().unwrap() as usize, "{v}");
    assert_eq!(cl, sent, "{v}");
    assert_eq!(seen(&v, "content-type"), Some("application/fhir+json"));
    assert_eq!(seen(&v, "transfer-encoding"), None);

    // minimal record: only what is there; unknown gender
    let r = request(h.port, "POST", "/fhir/echo-body", &[], br#"{"last_name":"Doe","gender":"x","mrn":42}"#);
    assert_eq!(
        r.json(),
        json!({
            "resourceType": "Patient",
            "identifier": [{ "system": "urn:oid:1.2.36.146.595.217.0.1", "value": "42" }],
            "name": [{ "family": "Doe" }],
            "gender": "unknown"
        })
    );

    // GET passes untouched
    let r = get(h.port, "/fhir/Patient/p1");
    assert_eq!(r.json()["target"], "/Patient/p1");
    assert_eq!(o.requests(), 4);
}

#[test]
fn fhir_patient_mapping_rejects_bad_input_with_operation_outcome() {
    let (o, h) = fhir_proxy("fhir-bad");
    let cases: [(&[u8], &[&str]); 5] = [
        (br#"{"first_name":"Ada","birth_date":"1815-12-10"}"#, &["last_name is required"]),
        (br#"{"last_name":"Lovelace","birth_date":"1815-02-30"}"#, &["birth_date must be a date"]),
        (br#"{"last_name":"Lovelace","birth_date":"10/12/1815"}"#, &["birth_date must be a date"]),
        (br#"{"birth_date":"1815-13-01"}"#, &["last_name is required", "birth_date must be a date"]),
        (b"{not json", &["not valid JSON"]),
    ];
    for (body, problems) in cases {
        let r = request(h.port, "POST", "/fhir/Patient", &[("Content-Type", "application/json")], body);
        assert_eq!(r.status, 400, "{}", r.text());
        assert_eq!(r.header("content-type"), Some("application/fhir+json"));
        let v = r.json();
        assert_eq!(v["resourceType"], "OperationOutcome", "{v}");
        let issues = v["issue"].as_array().unwrap();
        assert_eq!(issues.len(), problems.len(), "{v}");
        for (issue, want) in issues.iter().zip(problems.iter()) {
            assert_eq!(issue["severity"], "error");
            assert_eq!(issue["code"], "invalid");
            assert!(issue["diagnostics"].as_str().unwrap().contains(want), "{issue} lacks {want}");
        }
    }
    // leap day is a real date
    let r = request(h.port, "POST", "/fhir/echo-body", &[], br#"{"last_name":"L","birth_date":"2000-02-29"}"#);
    assert_eq!(r.json()["birthDate"], "2000-02-29");
    assert_eq!(o.requests(), 1, "rejected records must not reach the origin");
}

#[test]
fn ab_route_picks_the_backend_by_header_and_sticky_hash() {
    let (a, b) = (Origin::start(), Origin::start());
    let opts = "backend_a = \"v1\"\nbackend_b = \"v2\"\nsticky_header = \"x-user-id\"\npercent_b = 50\nresponse_header = \"x-variant-served\"";
    let rest = format!(
        "{}{}{}{}{}{}",
        pipeline("api", "/api", &["ab"], &["v1", "v2"]),
        http_backend("v1", &a.base_url()),
        http_backend("v2", &b.base_url()),
        lua_mw("ab", "ab_route.lua", opts),
        pipeline("all_b", "/allb", &["ab_all"], &["v1", "v2"]),
        lua_mw("ab_all", "ab_route.lua", "backend_b = \"v2\"\nsticky_header = \"x-user-id\"\npercent_b = 100"),
    );
    let h = start_shipped("ab", "", &rest);
    let port_of = |r: &Response| r.header("x-origin-port").unwrap().parse::<u16>().unwrap();

    let r = request(h.port, "GET", "/api/headers", &[("X-Variant", "b")], b"");
    assert_eq!(port_of(&r), b.port);
    assert_eq!(r.header("x-variant-served"), Some("b"));
    let r = request(h.port, "GET", "/api/headers", &[("X-Variant", "a")], b"");
    assert_eq!(port_of(&r), a.port);
    assert_eq!(r.header("x-variant-served"), Some("a"));
    let r = get(h.port, "/api/headers");
    assert_eq!(port_of(&r), a.port);

    // sticky: one user always lands on the same backend; users spread over both
    let mut on_b = 0;
    for user in 0..40 {
        let id = format!("user-{user}");
        let first = port_of(&request(h.port, "GET", "/api/headers", &[("X-User-Id", &id)], b""));
        for _ in 0..2 {
            assert_eq!(port_of(&request(h.port, "GET", "/api/headers", &[("X-User-Id", &id)], b"")), first, "{id}");
        }
        if first == b.port {
            on_b += 1;
        }
    }
    assert!((5..=35).contains(&on_b), "50% split put {on_b}/40 users on B");
    // the explicit header beats the sticky hash
    let r = request(h.port, "GET", "/api/headers", &[("X-User-Id", "user-1"), ("X-Variant", "nope")], b"");
    assert_eq!(port_of(&r), a.port);

    // percent_b = 100 and no backend_a: all sticky users on B, others on the first backend
    let r = request(h.port, "GET", "/allb/headers", &[("X-User-Id", "anyone")], b"");
    assert_eq!(port_of(&r), b.port);
    assert_eq!(port_of(&get(h.port, "/allb/headers")), a.port);
}

fn rate_proxy(tag: &str) -> (Origin, Harmony) {
    let o = Origin::start();
    let rest = format!(
        "{}{}{}{}{}",
        pipeline("api", "/api", &["limit"], &["origin"]),
        http_backend("origin", &o.base_url()),
        // 0.001 tokens/s: no token comes back during the test
        lua_mw("limit", "rate_limit.lua", "rate = 0.001\nburst = 3"),
        pipeline("keyed", "/keyed", &["limit_key"], &["origin"]),
        lua_mw("limit_key", "rate_limit.lua", "rate = 0.001\nburst = 2\nkey = \"x-api-key\"\nname = \"keyed\""),
    );
    let h = start_shipped(tag, "", &rest);
    (o, h)
}

fn assert_limited(r: &Response) -> Value {
    let v = r.assert_error(429);
    assert_eq!(v["error"], "rate_limited", "{v}");
    let retry: u64 = r.header("retry-after").expect("Retry-After").parse().unwrap();
    assert!((900..=1000).contains(&retry), "Retry-After {retry}");
    assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
    v
}

#[test]
fn rate_limit_lets_the_burst_pass_then_429() {
    let (o, h) = rate_proxy("rate");
    for remaining in ["2", "1", "0"] {
        let r = get(h.port, "/api/headers");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-ratelimit-remaining"), Some(remaining));
        assert_eq!(r.header("x-ratelimit-limit"), Some("3"));
    }
    // every new connection has a new client port: the key is the IP
    assert_limited(&get(h.port, "/api/headers"));
    assert_limited(&get(h.port, "/api/headers"));
    assert_eq!(o.requests(), 3);
}

#[test]
fn rate_limit_keyed_by_header_has_a_bucket_per_key() {
    let (o, h) = rate_proxy("rate-key");
    let with_key = |k: &str| request(h.port, "GET", "/keyed/headers", &[("X-Api-Key", k)], b"");
    assert_eq!(with_key("k1").status, 200);
    assert_eq!(with_key("k1").status, 200);
    assert_limited(&with_key("k1"));
    let r = with_key("k2");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-ratelimit-remaining"), Some("1"));
    // no key: counted by IP, in its own bucket
    assert_eq!(get(h.port, "/keyed/headers").status, 200);
    // the other pipeline's middleware has its own namespace
    assert_eq!(get(h.port, "/api/headers").header("x-ratelimit-remaining"), Some("2"));
    assert_eq!(o.requests(), 5);
}
