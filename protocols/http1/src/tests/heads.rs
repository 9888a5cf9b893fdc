use super::{req, res};
use crate::{parse_request, parse_response, Limits, Version};

const CURL_GET: &[u8] = b"GET /index.html?x=1&y=2 HTTP/1.1\r\nHost: example.com\r\n\
User-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n";

#[test]
fn a_curl_get_parses_into_method_target_version_and_fields() {
    let head = req(CURL_GET);
    assert_eq!(head.method, "GET");
    assert_eq!(head.target, "/index.html?x=1&y=2");
    assert_eq!(head.version, Version::Http11);
    assert_eq!(head.path(), "/index.html");
    assert_eq!(head.query(), Some("x=1&y=2"));
    assert_eq!(head.headers.len(), 3);
    assert_eq!(head.headers.get("HOST"), Some(&b"example.com"[..]));
    assert_eq!(head.headers.get_str("user-agent"), Some("curl/8.5.0"));
    assert!(head.keep_alive());
    assert!(!head.is_head());
}

#[test]
fn a_post_head_stops_where_the_body_begins() {
    let msg = b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello";
    let (head, n) = parse_request(msg, &Limits::default()).unwrap().unwrap();
    assert_eq!(head.method, "POST");
    assert_eq!(&msg[n..], b"hello");
    assert_eq!(head.query(), None);
}

#[test]
fn a_head_request_is_recognised() {
    let head = req(b"HEAD /x HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(head.is_head());
}

#[test]
fn absolute_form_targets_expose_their_path_and_query() {
    let head = req(b"GET http://example.com:8080/a/b?q=1 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(head.path(), "/a/b");
    assert_eq!(head.query(), Some("q=1"));
    let head = req(b"GET http://example.com HTTP/1.1\r\n\r\n");
    assert_eq!(head.path(), "/");
    assert_eq!(head.query(), None);
    let head = req(b"GET https://example.com?z HTTP/1.1\r\n\r\n");
    assert_eq!(head.path(), "/");
    assert_eq!(head.query(), Some("z"));
}

#[test]
fn authority_and_asterisk_forms_are_kept_whole() {
    assert_eq!(req(b"CONNECT db.local:5432 HTTP/1.1\r\n\r\n").path(), "db.local:5432");
    assert_eq!(req(b"OPTIONS * HTTP/1.1\r\n\r\n").path(), "*");
}

#[test]
fn keep_alive_follows_version_and_connection_tokens() {
    assert!(req(b"GET / HTTP/1.1\r\n\r\n").keep_alive());
    assert!(!req(b"GET / HTTP/1.1\r\nConnection: Close\r\n\r\n").keep_alive());
    assert!(!req(b"GET / HTTP/1.1\r\nConnection: upgrade, close\r\n\r\n").keep_alive());
    assert!(!req(b"GET / HTTP/1.0\r\n\r\n").keep_alive());
    assert!(req(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive());
    assert!(!res(b"HTTP/1.0 200 OK\r\n\r\n").keep_alive());
    assert!(res(b"HTTP/1.1 200 OK\r\n\r\n").keep_alive());
    assert!(!res(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n").keep_alive());
}

#[test]
fn expect_continue_counts_only_in_http11() {
    assert!(req(b"PUT / HTTP/1.1\r\nExpect: 100-Continue\r\n\r\n").expects_continue());
    assert!(!req(b"PUT / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n").expects_continue());
    assert!(!req(b"PUT / HTTP/1.1\r\n\r\n").expects_continue());
}

#[test]
fn leading_empty_lines_are_skipped() {
    let head = req(b"\r\n\r\nGET / HTTP/1.1\r\n\r\n");
    assert_eq!(head.target, "/");
}

#[test]
fn incomplete_heads_are_a_value_not_an_error() {
    assert_eq!(parse_request(b"", &Limits::default()), Ok(None));
    assert_eq!(parse_request(b"GET / HTTP/1.1\r\nHost: a\r\n", &Limits::default()), Ok(None));
    assert_eq!(parse_response(b"HTTP/1.1 200 OK\r\n", &Limits::default()), Ok(None));
}

#[test]
fn trailing_whitespace_is_trimmed_from_values() {
    let head = req(b"GET / HTTP/1.1\r\nX-A:   spaced \t \r\n\r\n");
    assert_eq!(head.headers.get("x-a"), Some(&b"spaced"[..]));
}

#[test]
fn an_nginx_response_parses() {
    let head = res(b"HTTP/1.1 404 Not Found\r\nServer: nginx\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(head.status, 404);
    assert_eq!(head.reason, "Not Found");
    assert_eq!(head.headers.get_str("server"), Some("nginx"));
    assert!(!head.is_informational());
    assert!(res(b"HTTP/1.1 100 Continue\r\n\r\n").is_informational());
}

#[test]
fn a_response_without_reason_phrase_parses() {
    let head = res(b"HTTP/1.1 204 \r\n\r\n");
    assert_eq!(head.status, 204);
    assert_eq!(head.reason, "");
}
