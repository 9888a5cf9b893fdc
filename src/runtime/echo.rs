//! The `echo` backend: answers with the request it received, as JSON.

use super::client::Client;
use super::request_body::Sink;
use super::worker::Worker;
use crate::lua::MessageState;
use crate::pipeline::LocalResponse;
use http1::Headers;

impl Worker {
    pub(crate) fn dispatch_echo(&mut self, c: &mut Client, state: MessageState, buffered: Option<Vec<u8>>) {
        let ex = c.ex.as_mut().expect("exchange");
        let mut headers = serde_json::Map::new();
        for (name, value) in state.headers.iter() {
            let key = name.to_ascii_lowercase();
            let val = String::from_utf8_lossy(value).into_owned();
            match headers.get_mut(&key) {
                Some(serde_json::Value::String(prev)) => {
                    prev.push_str(", ");
                    prev.push_str(&val);
                }
                _ => {
                    headers.insert(key, val.into());
                }
            }
        }
        ex.echo = Some(serde_json::json!({
            "method": state.method,
            "path": state.path,
            "query": state.query.unwrap_or_default(),
            "version": if ex.client_version == http1::Version::Http10 { "HTTP/1.0" } else { "HTTP/1.1" },
            "headers": headers,
        }));
        match buffered {
            Some(body) => self.finish_echo(c, body),
            None if ex.has_body => {
                ex.sink = Sink::Collect { buf: Vec::new(), for_stage: false };
                ex.continue_owed = ex.expects_continue;
            }
            None => self.finish_echo(c, Vec::new()),
        }
    }

    pub(crate) fn finish_echo(&mut self, c: &mut Client, body: Vec<u8>) {
        let ex = c.ex.as_mut().expect("exchange");
        let mut v = ex.echo.take().unwrap_or_default();
        match String::from_utf8(body) {
            Ok(s) => v["body"] = serde_json::Value::String(s),
            Err(e) => {
                v["body"] = serde_json::Value::String(crate::base64::encode(e.as_bytes()));
                v["body_encoding"] = "base64".into();
            }
        }
        v["request_id"] = ex.request_id.clone().into();
        v["peer"] = c.peer.to_string().into();
        if let Some(ctx) = ex.ctx.as_ref() {
            v["pipeline"] = ex.gen.pipelines[ctx.pipeline].name.clone().into();
            v["endpoint"] = ex.gen.endpoints[ctx.endpoint].clone().into();
            v["route_path"] = ctx.route_path.clone().into();
        }
        let mut body = serde_json::to_vec_pretty(&v).unwrap_or_default();
        body.push(b'\n');
        let mut headers = Headers::with_capacity(4, 64);
        headers.append("Content-Type", b"application/json");
        self.local_response(c, LocalResponse { status: 200, headers, body }, true);
    }
}
