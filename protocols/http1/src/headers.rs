use std::ops::Range;

/// One field: where its name and value live in `Headers::bytes`, and whether
/// it is still present (removal only clears `live`, so ranges stay valid).
/// The bytes hold every field in wire form, `name: value\r\n`: `name` ends two
/// bytes before `value` starts, and the field's line is
/// `name.start..value.end + 2`, so serializing is copying lines.
#[derive(Clone, Debug)]
struct Entry {
    name: Range<usize>,
    value: Range<usize>,
    live: bool,
}

impl Entry {
    /// Live and named `name` (ASCII case-insensitive). The length, known
    /// from the range, rules out most fields before any byte is compared.
    #[inline]
    fn is_named(&self, bytes: &[u8], name: &[u8]) -> bool {
        self.live
            && self.name.end.wrapping_sub(self.name.start) == name.len()
            && bytes.get(self.name.clone()).is_some_and(|n| eq_ignore_case(n, name))
    }
}

/// An ordered, case-insensitive multimap of header fields that keeps all
/// fields in one byte buffer, in wire form (two allocations per message, not
/// two per field; serializing copies runs of lines). Removal marks entries
/// dead; `set` removes then appends.
/// Names are stored as received (original case) and compared ASCII
/// case-insensitively. Values are raw bytes (obs-text allowed).
///
/// Two `Headers` are equal when their live fields are equal, in order (names
/// compared byte for byte); dead entries and buffer layout do not matter.
#[derive(Clone, Default)]
pub struct Headers {
    // Names are copied from `&str`, so every name range is valid UTF-8.
    bytes: Vec<u8>,
    entries: Vec<Entry>,
}

impl Headers {
    /// An empty field list; allocates nothing until the first `append`.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty field list with room for `fields` fields and `bytes` bytes
    /// of names plus values.
    pub fn with_capacity(fields: usize, bytes: usize) -> Self {
        Self { bytes: Vec::with_capacity(bytes), entries: Vec::with_capacity(fields) }
    }

    /// Bytes the field list holds (its lines, removed ones included until
    /// the list is rebuilt): what it costs in memory.
    pub fn byte_len(&self) -> usize {
        self.bytes.len()
    }

    /// Number of live fields.
    pub fn len(&self) -> usize {
        self.entries.iter().filter(|e| e.live).count()
    }

    /// True if there are no live fields.
    pub fn is_empty(&self) -> bool {
        !self.entries.iter().any(|e| e.live)
    }

    /// Live fields in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> + '_ {
        self.entries.iter().filter(|e| e.live).map(move |e| (self.name_of(e), self.value_of(e)))
    }

    /// First value of `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.entries.iter().find(|e| e.is_named(&self.bytes, name.as_bytes())).map(|e| self.value_of(e))
    }

    /// First value of `name` as UTF-8 text, trimmed of OWS, or None.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        let value = self.get(name)?;
        std::str::from_utf8(trim_ows(value)).ok()
    }

    /// All values of `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.entries.iter().filter(move |e| e.is_named(&self.bytes, name.as_bytes())).map(move |e| self.value_of(e))
    }

    /// True if at least one live field is named `name` (case-insensitive).
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Append a field (keeps existing ones of the same name).
    pub fn append(&mut self, name: &str, value: &[u8]) {
        let name_start = self.bytes.len();
        self.bytes.reserve(name.len() + value.len() + 4);
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.extend_from_slice(b": ");
        let value_start = self.bytes.len();
        self.bytes.extend_from_slice(value);
        let value_end = self.bytes.len();
        self.bytes.extend_from_slice(b"\r\n");
        self.entries.push(Entry { name: name_start..value_start - 2, value: value_start..value_end, live: true });
    }

    /// Fields whose lines are already in wire form: `block` holds them back
    /// to back, each `(name_len, value_len)` line being `name: value\r\n`
    /// (the caller has checked that). `name` bytes must be valid UTF-8.
    /// One copy of the whole block instead of one per name and value.
    pub(crate) fn from_wire_lines(block: &[u8], lines: impl Iterator<Item = (usize, usize)>, slack: usize) -> Self {
        let mut bytes = Vec::with_capacity(block.len() + slack);
        bytes.extend_from_slice(block);
        let mut entries = Vec::with_capacity(lines.size_hint().0 + 8);
        let mut at = 0;
        for (name_len, value_len) in lines {
            let value_start = at + name_len + 2;
            entries.push(Entry { name: at..at + name_len, value: value_start..value_start + value_len, live: true });
            at = value_start + value_len + 2;
        }
        Self { bytes, entries }
    }

    /// Like `write_lines`, leaving out the fields for which `skip(name)` is
    /// true (a proxy rewriting some fields as it copies the rest).
    pub fn write_lines_except(&self, out: &mut Vec<u8>, mut skip: impl FnMut(&[u8]) -> bool) {
        let mut run: Option<Range<usize>> = None;
        for e in self.entries.iter().filter(|e| e.live) {
            if skip(self.bytes.get(e.name.clone()).unwrap_or_default()) {
                continue;
            }
            let line = e.name.start..e.value.end + 2;
            run = match run {
                Some(r) if r.end == line.start => Some(r.start..line.end),
                Some(r) => {
                    out.extend_from_slice(self.bytes.get(r).unwrap_or_default());
                    Some(line)
                }
                None => Some(line),
            };
        }
        if let Some(r) = run {
            out.extend_from_slice(self.bytes.get(r).unwrap_or_default());
        }
    }

    /// Append every live field in wire form (`name: value\r\n` each) to `out`,
    /// copying each run of adjacent live lines at once.
    pub fn write_lines(&self, out: &mut Vec<u8>) {
        self.write_lines_except(out, |_| false);
    }

    /// Replace every field named `name` with one field.
    pub fn set(&mut self, name: &str, value: &[u8]) {
        self.remove(name);
        self.append(name, value);
    }

    /// Remove every field named `name`; true if any was removed.
    pub fn remove(&mut self, name: &str) -> bool {
        let mut removed = false;
        for e in &mut self.entries {
            if e.is_named(&self.bytes, name.as_bytes()) {
                e.live = false;
                removed = true;
            }
        }
        removed
    }

    /// Keep only fields for which `keep(name, value)` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &[u8]) -> bool) {
        for e in &mut self.entries {
            if e.live {
                let name = name_str(&self.bytes, &e.name);
                let value = self.bytes.get(e.value.clone()).unwrap_or_default();
                e.live = keep(name, value);
            }
        }
    }

    /// True if any comma-separated element of any `name` field equals `token`
    /// (ASCII case-insensitive, OWS trimmed). For `Connection: close`, etc.
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        let mut values =
            self.entries.iter().filter(|e| e.is_named(&self.bytes, name.as_bytes())).map(|e| self.value_of(e));
        values
            .any(|value| value.split(|&b| b == b',').any(|element| eq_ignore_case(trim_ows(element), token.as_bytes())))
    }

    /// Remove all fields.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.entries.clear();
    }

    fn name_of(&self, e: &Entry) -> &str {
        name_str(&self.bytes, &e.name)
    }

    fn value_of(&self, e: &Entry) -> &[u8] {
        self.bytes.get(e.value.clone()).unwrap_or_default()
    }
}

/// Name ranges always cover exactly the bytes of a `&str`: copied whole by
/// `append`, or, by `from_wire_lines`, httparse's field names, which are
/// `&str`s of the very bytes copied (`wire_block` checks they are in place).
/// So they are valid UTF-8, and this, which runs for every field on every
/// serialization, does not re-validate.
fn name_str<'a>(bytes: &'a [u8], range: &Range<usize>) -> &'a str {
    let b = bytes.get(range.clone()).unwrap_or_default();
    debug_assert!(std::str::from_utf8(b).is_ok());
    // SAFETY: see above — `b` is a byte-for-byte copy of a `&str`.
    unsafe { std::str::from_utf8_unchecked(b) }
}

impl PartialEq for Headers {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for Headers {}

impl std::fmt::Debug for Headers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter().map(|(name, value)| (name, String::from_utf8_lossy(value)))).finish()
    }
}

/// Strip leading and trailing optional whitespace (SP / HTAB).
pub(crate) fn trim_ows(mut value: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = value {
        value = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = value {
        value = rest;
    }
    value
}

/// `a == b` ignoring ASCII case, like `<[u8]>::eq_ignore_ascii_case` but
/// eight bytes at a time: field names are compared on every lookup, and the
/// byte-wise version cost ~15 instructions a byte (callgrind).
pub(crate) fn eq_ignore_case(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n < 8 {
        return a.eq_ignore_ascii_case(b);
    }
    let word =
        |s: &[u8], at: usize| s.get(at..at + 8).and_then(|w| <[u8; 8]>::try_from(w).ok()).map(u64::from_le_bytes);
    let same = |at: usize| match (word(a, at), word(b, at)) {
        (Some(x), Some(y)) => lower8(x) == lower8(y),
        _ => false,
    };
    // whole words, then the last eight bytes (overlapping the previous word)
    (0..n / 8).all(|i| same(i * 8)) && (n.is_multiple_of(8) || same(n - 8))
}

/// Each byte of `x` in `b'A'..=b'Z'` made lowercase, every other byte kept.
fn lower8(x: u64) -> u64 {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    const ONES: u64 = 0x0101_0101_0101_0101;
    let low7 = x & !HIGH; // no byte exceeds 0x7f, so the sums below never carry
    let at_least_a = low7 + ONES * (0x80 - b'A' as u64);
    let above_z = low7 + ONES * (0x80 - b'Z' as u64 - 1);
    let upper = at_least_a & !above_z & !x & HIGH; // ASCII bytes in A..=Z
    x | (upper >> 2)
}

/// The hop-by-hop field names (RFC 9110 §7.6.1), plus the legacy
/// `Proxy-Connection` that some clients still send.
const HOP_BY_HOP: [&str; 7] =
    ["connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"];

/// True for the hop-by-hop fields a proxy never forwards (RFC 9110 §7.6.1):
/// Connection, Keep-Alive, Proxy-Connection, TE, Trailer, Transfer-Encoding,
/// Upgrade (ASCII case-insensitive).
pub fn is_hop_by_hop(name: &str) -> bool {
    is_hop_by_hop_bytes(name.as_bytes())
}

fn is_hop_by_hop_bytes(name: &[u8]) -> bool {
    hop_by_hop_index(name).is_some()
}

/// Which of `HOP_BY_HOP` `name` is. The length (and for 7 and 10 the first
/// byte) picks the one candidate, so most fields are ruled out without
/// comparing a byte and the others cost one comparison.
fn hop_by_hop_index(name: &[u8]) -> Option<usize> {
    let first = name.first()?.to_ascii_lowercase();
    let index = match name.len() {
        2 => 3,
        7 if first == b't' => 4,
        7 => 6,
        10 if first == b'c' => 0,
        10 => 1,
        16 => 2,
        17 => 5,
        _ => return None,
    };
    eq_ignore_case(HOP_BY_HOP[index].as_bytes(), name).then_some(index)
}

/// Remove hop-by-hop fields, including every field named in `Connection`.
pub fn remove_hop_by_hop(headers: &mut Headers) {
    // One pass, without allocating: each field of the fixed set goes; for a
    // Connection field, so do the fields its elements name (elements that
    // are themselves in the fixed set go anyway, so only other names,
    // which are rare, cost a scan).
    let Headers { bytes, entries } = headers;
    for i in 0..entries.len() {
        let Some(e) = entries.get(i).filter(|e| e.live) else { continue };
        let Some(which) = hop_by_hop_index(bytes.get(e.name.clone()).unwrap_or_default()) else { continue };
        if which == 0 {
            for token in bytes.get(e.value.clone()).unwrap_or_default().split(|&b| b == b',') {
                let token = trim_ows(token);
                if token.is_empty() || is_hop_by_hop_bytes(token) {
                    continue;
                }
                for other in entries.iter_mut() {
                    if other.is_named(bytes, token) {
                        other.live = false;
                    }
                }
            }
        }
        if let Some(e) = entries.get_mut(i) {
            e.live = false;
        }
    }
}

/// True if `name` is a valid field name (a non-empty RFC 9110 token), i.e.
/// safe to serialize. Useful before `append`ing names that came from
/// configuration or scripts rather than from the parser.
pub fn is_valid_field_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(is_tchar)
}

/// True if `value` is a valid field value (RFC 9110 §5.5: visible ASCII,
/// SP, HTAB and obs-text; no CR, LF or NUL), i.e. safe to serialize without
/// header injection. Useful before `append`ing values that came from
/// configuration or scripts rather than from the parser.
pub fn is_valid_field_value(value: &[u8]) -> bool {
    value.iter().all(|&b| b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80)
}

pub(crate) fn is_tchar(b: u8) -> bool {
    TCHAR[usize::from(b)]
}

/// `tchar` (RFC 9110 §5.6.2) by byte: a table, since names are checked
/// byte by byte on every script header write.
static TCHAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~'
            );
        b += 1;
    }
    t
};
