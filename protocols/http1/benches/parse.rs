//! Micro-benchmarks for the hot paths: request heads as load generators and
//! curl send them, a typical origin response head, and chunked decoding.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use http1::{parse_request, parse_response, BodyDecoder, BodyKind, Limits};
use std::hint::black_box;

const WRK_GET: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n";

const CURL_GET: &[u8] = b"GET /api/v1/studies?limit=10 HTTP/1.1\r\n\
Host: pacs.example.org:8080\r\n\
User-Agent: curl/8.5.0\r\n\
Accept: */*\r\n\
Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.ZRrHA1JJJW8opsbCGfG_HACGpVUMN_a9IV7pAx_Zmeo\r\n\r\n";

const NGINX_RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\n\
Server: nginx/1.24.0\r\n\
Date: Mon, 01 Jan 2024 00:00:00 GMT\r\n\
Content-Type: application/json\r\n\
Content-Length: 1234\r\n\
Connection: keep-alive\r\n\
Last-Modified: Sun, 31 Dec 2023 23:59:59 GMT\r\n\
ETag: \"65920e7f-4d2\"\r\n\
Accept-Ranges: bytes\r\n\r\n";

fn heads(c: &mut Criterion) {
    let limits = Limits::default();
    let mut group = c.benchmark_group("head");
    for (name, msg) in [("wrk_get", WRK_GET), ("curl_get", CURL_GET)] {
        group.throughput(Throughput::Bytes(msg.len() as u64));
        group.bench_function(name, |b| b.iter(|| parse_request(black_box(msg), &limits).ok().flatten()));
    }
    group.throughput(Throughput::Bytes(NGINX_RESPONSE.len() as u64));
    group.bench_function("nginx_response", |b| {
        b.iter(|| parse_response(black_box(NGINX_RESPONSE), &limits).ok().flatten())
    });
    group.finish();
}

/// 64 KiB of payload in 4 KiB chunks, then the last chunk.
fn chunked_body() -> Vec<u8> {
    let mut body = Vec::new();
    for i in 0..16u8 {
        body.extend_from_slice(b"1000\r\n");
        body.extend(std::iter::repeat_n(b'a' + i, 4096));
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    body
}

fn chunked(c: &mut Criterion) {
    let body = chunked_body();
    let limits = Limits::default();
    let mut group = c.benchmark_group("body");
    group.throughput(Throughput::Bytes(64 * 1024));
    group.bench_function("chunked_64k_in_4k_chunks", |b| {
        b.iter(|| {
            let mut dec = BodyDecoder::new(BodyKind::Chunked, &limits);
            let mut input = black_box(&body[..]);
            let mut payload = 0;
            while let Ok(step) = dec.decode(input) {
                payload += step.data.len();
                input = input.get(step.consumed..).unwrap_or_default();
                if step.done || step.consumed == 0 {
                    break;
                }
            }
            payload
        })
    });
    group.finish();
}

criterion_group!(benches, heads, chunked);
criterion_main!(benches);
