//! The proxy's error type: each error knows its HTTP status and renders the
//! small JSON body clients get (`{"error","detail","request_id"}`).

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyError {
    /// The request itself is bad (parse/framing error): 400/413/414/431/501.
    BadRequest { status: u16, detail: String },
    /// No pipeline serves this network + path.
    NoRoute,
    /// The client did not send a complete head in time.
    HeaderTimeout,
    /// The client stopped sending its body.
    BodyTimeout,
    /// Upstream refused, reset, closed early or sent a malformed response.
    BadGateway(String),
    /// Upstream did not connect or answer in time.
    GatewayTimeout(String),
    /// Something on our side went wrong (never expected).
    Internal(String),
}

impl ProxyError {
    pub fn status(&self) -> u16 {
        match self {
            ProxyError::BadRequest { status, .. } => *status,
            ProxyError::NoRoute => 404,
            ProxyError::HeaderTimeout | ProxyError::BodyTimeout => 408,
            ProxyError::BadGateway(_) => 502,
            ProxyError::GatewayTimeout(_) => 504,
            ProxyError::Internal(_) => 500,
        }
    }

    /// Short machine-readable code for the JSON body.
    pub fn code(&self) -> &'static str {
        match self.status() {
            400 => "bad_request",
            404 => "not_found",
            408 => "request_timeout",
            413 => "payload_too_large",
            414 => "uri_too_long",
            431 => "request_header_fields_too_large",
            501 => "not_implemented",
            502 => "bad_gateway",
            504 => "gateway_timeout",
            _ => "internal_error",
        }
    }

    pub fn detail(&self) -> String {
        match self {
            ProxyError::BadRequest { detail, .. } => detail.clone(),
            ProxyError::NoRoute => "no pipeline serves this path".into(),
            ProxyError::HeaderTimeout => "request head not received in time".into(),
            ProxyError::BodyTimeout => "request body not received in time".into(),
            ProxyError::BadGateway(d) | ProxyError::GatewayTimeout(d) | ProxyError::Internal(d) => d.clone(),
        }
    }

    pub fn from_http1(e: &http1::Error) -> Self {
        ProxyError::BadRequest { status: e.status(), detail: e.to_string() }
    }

    /// The JSON body: `{"error":..,"detail":..,"request_id":..}`.
    pub fn body(&self, request_id: &str) -> Vec<u8> {
        let v = serde_json::json!({
            "error": self.code(),
            "detail": self.detail(),
            "request_id": request_id,
        });
        let mut b = serde_json::to_vec(&v).unwrap_or_default();
        b.push(b'\n');
        b
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status(), self.code(), self.detail())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_json_with_request_id() {
        let e = ProxyError::BadGateway("upstream refused the connection".into());
        let v: serde_json::Value = serde_json::from_slice(&e.body("abc")).unwrap();
        assert_eq!(v["error"], "bad_gateway");
        assert_eq!(v["request_id"], "abc");
        assert_eq!(e.status(), 502);
    }
}
