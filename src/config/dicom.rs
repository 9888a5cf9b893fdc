//! DICOM items: `[network.N.dicom]` listener keys, `service = "dicom"`
//! endpoint and backend options.

use super::items::backend_timeout;
use super::model::{DicomBackend, DicomEndpoint, DicomListener, EndpointKind, PeerNet};
use super::settings::{listener, parse_ip};
use super::source::Ctx;
use super::value::{Tbl, Val};

/// Default cap on PDU bodies either peer may send (also written into the
/// Maximum Length both peers are told).
pub const DEFAULT_MAX_PDU: u32 = 128 * 1024;
/// Default number of associations one dicom listener serves at once.
pub const DEFAULT_MAX_ASSOCIATIONS: usize = 64;
/// Default size of a data set a script may make the proxy buffer.
pub const DEFAULT_BUFFERED_DATASET_BYTES: usize = 64 << 20;
/// Default time a peer has to answer a DIMSE request (pending responses
/// restart it).
pub const DEFAULT_DIMSE_TIMEOUT_MS: u64 = 120_000;

/// `[network.N.dicom]`: the listener keys plus the association limits.
pub(crate) fn dicom_listener(cx: &mut Ctx, h: &Tbl<'_, '_>) -> Option<DicomListener> {
    const EXTRA: &[&str] =
        &["max_pdu", "max_associations", "max_associations_per_calling_ae", "buffered_dataset_bytes"];
    let addr = listener(cx, h, EXTRA)?.addr;
    let max_pdu = h.uint(cx, "max_pdu", 4096, 16 << 20).unwrap_or(u64::from(DEFAULT_MAX_PDU)) as u32;
    let max_associations =
        h.uint(cx, "max_associations", 1, 100_000).unwrap_or(DEFAULT_MAX_ASSOCIATIONS as u64) as usize;
    let per_ae = h.uint(cx, "max_associations_per_calling_ae", 0, 100_000).unwrap_or(0) as usize;
    let buffered =
        h.uint(cx, "buffered_dataset_bytes", 1024, 4 << 30).unwrap_or(DEFAULT_BUFFERED_DATASET_BYTES as u64) as usize;
    Some(DicomListener {
        addr,
        max_pdu,
        max_associations,
        max_associations_per_calling_ae: per_ae,
        buffered_dataset_bytes: buffered,
    })
}

/// A DICOM AE title: 1-16 characters of the default character repertoire
/// (printable ASCII without backslash), not only spaces. Returns it trimmed.
fn ae_title<'a>(cx: &mut Ctx, v: &Val<'a, '_>) -> Option<&'a str> {
    let s = v.str(cx)?;
    let ok = !s.is_empty()
        && s.len() <= 16
        && !s.trim().is_empty()
        && s.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'\\');
    if !ok {
        v.err(cx, format!("invalid AE title '{s}' (1-16 printable ASCII characters, no backslash, not only spaces)"));
        return None;
    }
    Some(s.trim())
}

/// `"10.0.0.0/8"`, `"::1"`, `"127.0.0.1/32"`.
fn peer_net(s: &str) -> Option<PeerNet> {
    let (ip, bits) = match s.split_once('/') {
        Some((ip, bits)) => (ip, Some(bits.parse::<u8>().ok()?)),
        None => (s, None),
    };
    let ip = parse_ip(ip)?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let bits = bits.unwrap_or(max);
    (bits <= max).then_some(PeerNet { ip, bits })
}

/// `service = "dicom"` endpoint options.
pub(crate) fn dicom_endpoint(cx: &mut Ctx, t: &Tbl<'_, '_>, o: Option<&Tbl<'_, '_>>) -> Option<EndpointKind> {
    let Some(o) = o else {
        t.missing(cx, "options", "dicom endpoints need options.ae_title");
        return None;
    };
    o.check_keys(
        cx,
        &[
            "ae_title",
            "allowed_calling_aes",
            "calling_ae_routes",
            "peer_routes",
            "echo",
            "move_destinations",
            "sop_classes",
            "transfer_syntaxes",
        ],
        &[],
    );
    let ae = match o.get("ae_title") {
        Some(v) => ae_title(cx, &v),
        None => {
            o.missing(cx, "ae_title", "");
            None
        }
    };
    let mut ok = true;
    let mut allowed = Vec::new();
    if let Some(v) = o.get("allowed_calling_aes") {
        match v.array(cx) {
            Some(list) => {
                for ev in list {
                    match ae_title(cx, &ev) {
                        Some(a) => allowed.push(a.to_string()),
                        None => ok = false,
                    }
                }
            }
            None => ok = false,
        }
    }
    let mut calling_ae_routes = Vec::new();
    if let Some(t) = o.table(cx, "calling_ae_routes") {
        for (ae, v) in t.entries() {
            let trimmed = ae.trim();
            if trimmed.is_empty() || trimmed.len() > 16 {
                v.key_err(cx, format!("invalid AE title '{ae}'"));
                ok = false;
            }
            match v.str(cx) {
                Some(b) => calling_ae_routes.push((trimmed.to_string(), b.to_string(), v.line())),
                None => ok = false,
            }
        }
    }
    let mut peer_routes = Vec::new();
    if let Some(t) = o.table(cx, "peer_routes") {
        for (net, v) in t.entries() {
            let Some(pn) = peer_net(net) else {
                v.key_err(cx, format!("invalid peer network '{net}' (an IP address, optionally /prefix-length)"));
                ok = false;
                continue;
            };
            match v.str(cx) {
                Some(b) => peer_routes.push((pn, b.to_string(), v.line())),
                None => ok = false,
            }
        }
    }
    let local_echo = match o.get("echo") {
        None => false,
        Some(v) => match v.str(cx) {
            Some("forward") => false,
            Some("local") => true,
            Some(other) => {
                v.err(cx, format!("invalid echo '{other}' (\"forward\" or \"local\")"));
                ok = false;
                false
            }
            None => false,
        },
    };
    let mut move_destinations = Vec::new();
    if let Some(v) = o.get("move_destinations") {
        match v.str_array(cx) {
            Some(list) => move_destinations.extend(list.into_iter().map(|(s, v)| (s.to_string(), v.line()))),
            None => ok = false,
        }
    }
    let mut uids = |key: &str| -> Option<Vec<String>> {
        let v = o.get(key)?;
        let list = v.str_array(cx)?;
        let mut out = Vec::new();
        for (u, uv) in list {
            let valid = !u.is_empty() && u.len() <= 64 && u.bytes().all(|b| b.is_ascii_digit() || b == b'.');
            if !valid {
                uv.err(cx, format!("invalid UID '{u}' (digits and dots, at most 64 characters)"));
                ok = false;
            }
            out.push(u.to_string());
        }
        if out.is_empty() {
            v.err(cx, format!("{key} must not be empty (leave it out to accept what the backend accepts)"));
            ok = false;
        }
        Some(out)
    };
    let sop_classes = uids("sop_classes");
    let transfer_syntaxes = uids("transfer_syntaxes");
    let ae = ae?;
    ok.then(|| {
        EndpointKind::Dicom(DicomEndpoint {
            sop_classes,
            transfer_syntaxes,
            ae_title: ae.to_string(),
            allowed_calling_aes: allowed,
            calling_ae_routes,
            peer_routes,
            local_echo,
            move_destinations,
        })
    })
}

/// `service = "dicom"` backend options.
pub(crate) fn dicom_backend(
    cx: &mut Ctx,
    t: &Tbl<'_, '_>,
    o: Option<&Tbl<'_, '_>>,
    timeout: u64,
) -> Option<DicomBackend> {
    let Some(o) = o else {
        t.missing(cx, "options", "dicom backends need options.aet, options.host and options.port");
        return None;
    };
    o.check_keys(cx, &["aet", "host", "port", "local_aet", "timeout_ms", "dimse_timeout_ms"], &[]);
    let mut ok = true;
    let aet = match o.get("aet") {
        Some(v) => ae_title(cx, &v),
        None => {
            o.missing(cx, "aet", "");
            None
        }
    };
    let ip = match o.get("host") {
        Some(v) => v.str(cx).and_then(|s| {
            let ip = parse_ip(s);
            if ip.is_none() {
                v.err(cx, format!("invalid host '{s}' (expected an IP address or localhost; no DNS in this build)"));
            }
            ip
        }),
        None => {
            o.missing(cx, "host", "");
            None
        }
    };
    let port = match o.get("port") {
        Some(v) => v.uint(cx, 1, 65535),
        None => {
            o.missing(cx, "port", "");
            None
        }
    };
    let local_aet = match o.get("local_aet") {
        Some(v) => match ae_title(cx, &v) {
            Some(a) => Some(a.to_string()),
            None => {
                ok = false;
                None
            }
        },
        None => None,
    };
    let timeout_ms = backend_timeout(cx, t, o, timeout, &mut ok);
    let dimse_timeout_ms = match o.get("dimse_timeout_ms") {
        None => DEFAULT_DIMSE_TIMEOUT_MS,
        Some(v) => v.uint(cx, 1, 86_400_000).unwrap_or_else(|| {
            ok = false;
            DEFAULT_DIMSE_TIMEOUT_MS
        }),
    };
    let addr = std::net::SocketAddr::new(ip?, port? as u16);
    let aet = aet?.to_string();
    ok.then_some(DicomBackend { aet, addr, local_aet, timeout_ms, dimse_timeout_ms })
}
