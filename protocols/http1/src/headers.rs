/// An ordered, case-insensitive multimap of header fields that keeps all names
/// and values in one byte buffer (two allocations per message, not two per
/// field). Removal marks entries dead; `set` removes then appends.
/// Names are stored as received (original case) and compared ASCII
/// case-insensitively. Values are raw bytes (obs-text allowed).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers {
    // implementation detail: one Vec<u8> of bytes + Vec of (name range, value range)
}

impl Headers {
    pub fn new() -> Self { todo!() }
    pub fn with_capacity(fields: usize, bytes: usize) -> Self { todo!() }
    /// Number of live fields.
    pub fn len(&self) -> usize { todo!() }
    pub fn is_empty(&self) -> bool { todo!() }
    /// Live fields in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> + '_ { std::iter::empty() }
    /// First value of `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&[u8]> { todo!() }
    /// First value of `name` as UTF-8 text, trimmed of OWS, or None.
    pub fn get_str(&self, name: &str) -> Option<&str> { todo!() }
    /// All values of `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a { std::iter::empty() }
    pub fn contains(&self, name: &str) -> bool { todo!() }
    /// Append a field (keeps existing ones of the same name).
    pub fn append(&mut self, name: &str, value: &[u8]) { todo!() }
    /// Replace every field named `name` with one field.
    pub fn set(&mut self, name: &str, value: &[u8]) { todo!() }
    /// Remove every field named `name`; true if any was removed.
    pub fn remove(&mut self, name: &str) -> bool { todo!() }
    /// Keep only fields for which `keep(name, value)` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &[u8]) -> bool) { todo!() }
    /// True if any comma-separated element of any `name` field equals `token`
    /// (ASCII case-insensitive, OWS trimmed). For `Connection: close`, etc.
    pub fn has_token(&self, name: &str, token: &str) -> bool { todo!() }
    /// Remove all fields.
    pub fn clear(&mut self) { todo!() }
}

impl std::fmt::Debug for Headers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { todo!() }
}

/// True for the hop-by-hop fields a proxy never forwards (RFC 9110 §7.6.1):
/// Connection, Keep-Alive, Proxy-Connection, TE, Trailer, Transfer-Encoding,
/// Upgrade (ASCII case-insensitive).
pub fn is_hop_by_hop(name: &str) -> bool { todo!() }

/// Remove hop-by-hop fields, including every field named in `Connection`.
pub fn remove_hop_by_hop(headers: &mut Headers) { todo!() }
