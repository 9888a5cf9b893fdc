//! Error reporting: file:line:key for each kind of problem in the main
//! file's settings, and many errors reported at once.

use super::{errs_main, has};

#[test]
fn unknown_proxy_key_has_file_line_key() {
    let dir = super::tmp("unknown_proxy");
    let main = super::write(&dir, "harmony.toml", "[proxy]\nid = \"x\"\nwrokers = 2\n");
    let e = super::errs(&main);
    assert_eq!(e.len(), 1, "{e}");
    let line = e.to_string();
    assert!(line.ends_with("harmony.toml:3: proxy.wrokers: unknown key (did you mean 'workers'?)"), "{line}");
}

#[test]
fn unknown_keys_at_nested_levels() {
    let e = errs_main(
        "unknown_nested",
        "bind_prot = 1\n\
         [endpoints.e]\nservice = \"http\"\n[endpoints.e.options]\npath_prefx = \"/x\"\n\
         [logging]\nacces_log = true\n\
         [frobnicate]\n\
         [policies.p]\n",
    );
    has(&e, "harmony.toml", 7, "network.default.http.bind_prot", "unknown key");
    has(&e, "harmony.toml", 11, "endpoints.e.options.path_prefx", "unknown key (did you mean 'path_prefix'?)");
    has(&e, "harmony.toml", 13, "logging.acces_log", "unknown key");
    has(&e, "harmony.toml", 14, "frobnicate", "unknown key");
    has(&e, "harmony.toml", 15, "policies", "not supported by this build yet");
    assert_eq!(e.len(), 5, "{e}");
}

#[test]
fn syntax_error_has_line() {
    let e = errs_main("syntax_main", "[proxy2\nx = 1\n");
    has(&e, "harmony.toml", 7, "syntax", "");
}

#[test]
fn wrong_types() {
    let dir = super::tmp("types");
    let main = super::write(
        &dir,
        "harmony.toml",
        "[proxy]\nworkers = \"2\"\nid = 5\n[network.default.http]\nbind_port = \"8080\"\n\
         [logging]\naccess_log = \"yes\"\n[endpoints]\ne = 3\n",
    );
    let e = super::errs(&main);
    has(&e, "harmony.toml", 2, "proxy.workers", "expected an integer, found string");
    has(&e, "harmony.toml", 3, "proxy.id", "expected a string, found integer");
    has(&e, "harmony.toml", 5, "network.default.http.bind_port", "expected an integer");
    has(&e, "harmony.toml", 7, "logging.access_log", "expected a boolean");
    has(&e, "harmony.toml", 9, "endpoints.e", "expected a table, found integer");
}

#[test]
fn invalid_values() {
    let dir = super::tmp("values");
    let main = super::write(
        &dir,
        "harmony.toml",
        "[proxy]\nworkers = 0\nlog_level = \"loud\"\nidle_timeout_ms = 0\nmax_body_bytes = -1\n\
         [network.a.http]\nbind_address = \"nowhere\"\nbind_port = 70000\n\
         [network.b.http]\nbind_address = \"0.0.0.0\"\n\
         [logging]\nformat = \"xml\"\nlog_to_file = true\n",
    );
    let e = super::errs(&main);
    has(&e, "harmony.toml", 2, "proxy.workers", "between 1 and 64");
    has(&e, "harmony.toml", 3, "proxy.log_level", "invalid log level 'loud'");
    has(&e, "harmony.toml", 4, "proxy.idle_timeout_ms", "between 1 and");
    has(&e, "harmony.toml", 5, "proxy.max_body_bytes", "between 0 and");
    has(&e, "harmony.toml", 7, "network.a.http.bind_address", "invalid bind address");
    has(&e, "harmony.toml", 8, "network.a.http.bind_port", "between 1 and 65535");
    has(&e, "harmony.toml", 9, "network.b.http.bind_port", "missing required key");
    has(&e, "harmony.toml", 12, "logging.format", "invalid format");
    has(&e, "harmony.toml", 11, "logging.file_path", "missing required key");
    assert_eq!(e.len(), 9, "{e}");
}

#[test]
fn many_errors_are_all_reported_sorted() {
    let dir = super::tmp("many");
    let main =
        super::write(&dir, "harmony.toml", "[proxy]\nworkers = 100\nwrokers = 1\n[network.x.http]\nbind_port = 0\n");
    super::write(&dir, "pipelines/p.toml", "[backends.b]\nservice = \"jmix\"\n[middleware.m]\ntype = \"lua\"\n");
    let e = super::errs(&main);
    let lines: Vec<String> = e.to_string().lines().map(String::from).collect();
    assert_eq!(lines.len(), 5, "{e}");
    let tails: Vec<&str> = lines.iter().map(|l| l.rsplit('/').next().unwrap()).collect();
    assert_eq!(
        tails,
        [
            "harmony.toml:2: proxy.workers: must be between 1 and 64",
            "harmony.toml:3: proxy.wrokers: unknown key (did you mean 'workers'?)",
            "harmony.toml:5: network.x.http.bind_port: must be between 1 and 65535",
            "p.toml:2: backends.b.service: service 'jmix' is not supported by this build yet",
            "p.toml:3: middleware.m.options: missing required key (lua middleware needs options.script)",
        ]
    );
}

#[test]
fn same_address_on_two_networks() {
    let e = errs_main("sameaddr", "[network.other.http]\nbind_address = \"127.0.0.1\"\nbind_port = 8080\n");
    has(&e, "harmony.toml", 7, "network.other.http", "already used by network 'default'");
}

#[test]
fn unsupported_network_features() {
    let e = errs_main(
        "netfeat",
        "[network.default.tls]\nbind_port = 8443\n[network.wg]\nenable_wireguard = true\ninterface = \"wg0\"\n",
    );
    has(&e, "harmony.toml", 7, "network.default.tls", "not supported by this build yet");
    has(&e, "harmony.toml", 10, "network.wg.enable_wireguard", "WireGuard is not supported");
    assert_eq!(e.len(), 2, "{e}");
}

#[test]
fn management_checks() {
    let e = errs_main(
        "mgmt",
        "[management]\nenabled = true\nnetwork = \"nope\"\nbase_path = \"/a b/\"\ntoken = \"t\"\ntoken_file = \"missing\"\n",
    );
    has(&e, "harmony.toml", 9, "management.network", "unknown network 'nope'");
    has(&e, "harmony.toml", 10, "management.base_path", "invalid base path");
    has(&e, "harmony.toml", 12, "management.token_file", "does not exist");
    has(&e, "harmony.toml", 12, "management.token_file", "not both");
    let e = errs_main("mgmt2", "[management]\nenabled = true\n");
    has(&e, "harmony.toml", 7, "management.network", "missing required key");
}

#[test]
fn harmony_keys_accepted_without_effect() {
    let dir = super::tmp("harmony_keys");
    let main = super::write(
        &dir,
        "harmony.toml",
        "[proxy]\nid = \"gw\"\nlog_level = \"error\"\nstore_dir = \"/tmp\"\ntransforms_path = \"transforms\"\n\
         jwks_cache_duration_hours = 24\n\
         [network.default]\nid = \"n\"\nenable_wireguard = false\ninterface = \"wg0\"\n\
         [network.default.http]\nbind_address = \"0.0.0.0\"\nbind_port = 8080\n\
         [management]\nenabled = false\nbase_path = \"admin\"\npoll_interval_secs = 30\n\
         [logging]\nlog_to_file = false\nlog_file_path = \"x.log\"\n\
         [storage]\nbackend = \"filesystem\"\n[storage.options]\npath = \"/tmp/h\"\n\
         [services.http]\nmodule = \"\"\n[services.dicom]\nmodule = \"\"\n\
         [middleware_types.lua]\nmodule = \"\"\n",
    );
    let c = super::ok(&main);
    assert_eq!(c.proxy.log_level, "error");
    assert!(c.logging.file.is_none());
    assert!(!c.management.unwrap().enabled);
}

#[test]
fn invalid_listener_does_not_cascade() {
    let dir = super::tmp("cascade");
    let main = super::write(
        &dir,
        "harmony.toml",
        "[network.default.http]\nbind_port = 0\n\
         [pipelines.p]\nnetworks = [\"default\"]\nendpoints = [\"e\"]\nbackends = [\"b\"]\n\
         [endpoints.e]\nservice = \"http\"\n[backends.b]\nservice = \"echo\"\n",
    );
    let e = super::errs(&main);
    has(&e, "harmony.toml", 2, "network.default.http.bind_port", "between 1 and 65535");
    assert_eq!(e.len(), 1, "{e}");
}
