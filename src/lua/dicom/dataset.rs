//! `Dataset`: the bytes of one DIMSE data set and its transfer syntax,
//! parsed with dicom-object only when a script touches it, and re-encoded
//! only when a script changed it. Plus the addressing of nested items and
//! the keyword/tag/VR look-ups shared with the Lua side. No mlua here.

use super::raw::Raw;
use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_core::value::{DataSetSequence, Value as DicomValue};
use dicom_core::{DataElement, Length, Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Where an item lives: (sequence tag, item index) from the root down.
pub(crate) type ItemPath = Vec<(Tag, usize)>;

/// One data set as it travels through the proxy.
pub struct Dataset {
    raw: Vec<u8>,
    ts: String,
    parsed: Option<InMemDicomObject>,
    changed: bool,
    fast: Fast,
    /// Bytes scripts added (values set, items copied or appended): the data
    /// set lives in Rust memory, outside the Lua memory limit, so its growth
    /// has a budget of its own.
    grown: usize,
}

/// How much scripts may add to one data set (values, copied items).
pub(crate) const GROWTH_MAX: usize = 16 << 20;

/// The encoded size of an object, roughly (values and headers), counted up
/// to `limit` (the walk stops there).
pub(crate) fn approx_size(obj: &InMemDicomObject, limit: usize) -> usize {
    let mut total = 0usize;
    for e in obj.iter() {
        total += 12;
        total += match e.value() {
            DicomValue::Primitive(p) => p.calculate_byte_len(),
            DicomValue::Sequence(seq) => seq.items().iter().map(|i| 8 + approx_size(i, limit)).sum(),
            DicomValue::PixelSequence(ps) => ps.fragments().iter().map(|f| 8 + f.len()).sum(),
        };
        if total > limit {
            return total;
        }
    }
    total
}

/// The raw fast path (`raw.rs`) of a data set not parsed yet.
#[derive(Debug)]
enum Fast {
    /// Not looked at yet.
    Untried,
    /// The index is built; changes so far are its patches.
    Ready(Raw),
    /// Parsing failed after changes were made raw: the patches still make
    /// the bytes to send, but nothing more goes through the fast path.
    Frozen(Raw),
    /// Not available (unsound bytes, transfer syntax) or already handed over.
    Off,
}

impl std::fmt::Debug for Dataset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataset")
            .field("bytes", &self.raw.len())
            .field("transfer_syntax", &self.ts)
            .field("parsed", &self.parsed.is_some())
            .field("changed", &self.changed)
            .field("fast", &matches!(self.fast, Fast::Ready(_)))
            .finish()
    }
}

/// Whether a message carries a data set and whether scripts can see it yet.
#[derive(Debug)]
pub enum DatasetState {
    /// The message has no data set.
    Absent,
    /// The message has a data set that has not been buffered yet.
    Pending,
    /// The whole data set.
    Loaded(Dataset),
}

const IMPLICIT_VR_LE: &str = "1.2.840.10008.1.2";

fn transfer_syntax(uid: &str) -> Result<&'static dicom_encoding::TransferSyntax, String> {
    use dicom_encoding::TransferSyntaxIndex;
    let uid = uid.trim_end_matches(['\0', ' ']);
    TransferSyntaxRegistry.get(uid).ok_or_else(|| format!("unsupported transfer syntax {uid}"))
}

impl Dataset {
    /// A data set as received, in `transfer_syntax` (a UID).
    pub fn new(raw: Vec<u8>, transfer_syntax: &str) -> Dataset {
        Dataset { raw, ts: transfer_syntax.to_string(), parsed: None, changed: false, fast: Fast::Untried, grown: 0 }
    }

    /// Count `bytes` a script adds; an error past `GROWTH_MAX`.
    pub(crate) fn grow(&mut self, bytes: usize) -> Result<(), String> {
        self.grown = self.grown.saturating_add(bytes);
        if self.grown > GROWTH_MAX {
            return Err(format!(
                "scripts may add at most {} MiB to a data set (values set, items copied or appended)",
                GROWTH_MAX >> 20
            ));
        }
        Ok(())
    }

    /// Whether a script changed it.
    pub fn changed(&self) -> bool {
        self.changed
    }

    /// The transfer syntax UID.
    pub fn transfer_syntax(&self) -> &str {
        &self.ts
    }

    /// The bytes to send: the original bytes when no script changed it,
    /// else re-encoded in the same transfer syntax.
    pub fn into_bytes(self) -> Result<Vec<u8>, String> {
        let obj = match (self.parsed, self.fast) {
            (Some(obj), _) if self.changed => obj,
            (None, Fast::Ready(r) | Fast::Frozen(r)) if r.is_patched() => return Ok(r.splice(&self.raw)),
            _ => return Ok(self.raw),
        };
        let ts = transfer_syntax(&self.ts)?;
        let mut out = Vec::with_capacity(self.raw.len() + 256);
        catch_unwind(AssertUnwindSafe(|| {
            obj.write_dataset_with_ts(&mut out, ts).map_err(|e| format!("encoding the data set failed: {e}"))
        }))
        .map_err(|_| "encoding the data set failed (internal error)".to_string())??;
        Ok(out)
    }

    /// The parsed data set (parsed on first use, with the changes made on
    /// the fast path so far).
    pub(crate) fn object(&mut self) -> Result<&mut InMemDicomObject, String> {
        if self.parsed.is_none() {
            let (ts, explicit, big) = self.encoding()?;
            let raw = &self.raw[..];
            super::prescan::check_lengths(raw, explicit, big)?;
            // dicom-object reports errors, but malformed input must never take
            // the worker down: a panic in the parser is a parse error too
            let parsed = catch_unwind(AssertUnwindSafe(|| parse(raw, ts.uid(), explicit)))
                .map_err(|_| "malformed data set (parser failure)".to_string())
                .and_then(|r| r);
            let mut obj = match parsed {
                Ok(obj) => obj,
                Err(e) => {
                    if let Fast::Ready(r) = std::mem::replace(&mut self.fast, Fast::Off) {
                        self.fast = Fast::Frozen(r);
                    }
                    return Err(e);
                }
            };
            if let Fast::Ready(r) = std::mem::replace(&mut self.fast, Fast::Off) {
                r.apply(&mut obj);
            }
            self.parsed = Some(obj);
        }
        self.parsed.as_mut().ok_or_else(|| "data set unavailable".to_string())
    }

    /// The transfer syntax, whether its VR is explicit, whether big endian.
    fn encoding(&self) -> Result<(&'static dicom_encoding::TransferSyntax, bool, bool), String> {
        let ts = transfer_syntax(&self.ts)?;
        if !ts.can_decode_dataset() {
            return Err(format!("cannot read data sets in transfer syntax {}", ts.uid()));
        }
        let explicit = ts.uid() != IMPLICIT_VR_LE;
        let big = ts.endianness() == dicom_encoding::Endianness::Big;
        Ok((ts, explicit, big))
    }

    /// The raw fast path, if the data set is not parsed yet and its bytes
    /// allow it (the index is built on first use).
    pub(crate) fn fast(&mut self) -> Option<(&mut Raw, &[u8])> {
        if self.parsed.is_some() {
            return None;
        }
        if matches!(self.fast, Fast::Untried) {
            self.fast = match self.encoding().and_then(|(_, explicit, big)| Raw::build(&self.raw, explicit, big)) {
                Ok(r) => Fast::Ready(r),
                Err(_) => Fast::Off,
            };
        }
        match &mut self.fast {
            Fast::Ready(r) => Some((r, &self.raw[..])),
            _ => None,
        }
    }

    /// Take the parsed path for everything (the differential tests).
    #[cfg(test)]
    pub(crate) fn without_fast_path(&mut self) {
        self.fast = Fast::Off;
    }

    /// Whether dicom-object parsed it.
    #[cfg(test)]
    pub(crate) fn is_parsed(&self) -> bool {
        self.parsed.is_some()
    }

    /// Mark the data set as changed (the caller just changed it).
    pub(crate) fn touch(&mut self) {
        self.changed = true;
    }
}

/// Parse a data set without ever reaching the end of the input.
///
/// dicom-parser detects the end of a data set by failing to read one more
/// element header, and its error type captures a full backtrace every time
/// (snafu `Backtrace` = `force_capture`): a few microseconds of stack
/// unwinding per message. So the bytes are read as a Part-10 stream (a
/// minimal file meta group in front) with a sentinel element (FFFF,FFFF) at
/// the end and `read_until` that tag: the reader stops on the sentinel
/// without an error. The meta group is never exposed; the object is the
/// data set alone.
fn parse(raw: &[u8], ts_uid: &str, explicit: bool) -> Result<InMemDicomObject, String> {
    let mut buf = Vec::with_capacity(raw.len() + 160);
    buf.extend_from_slice(b"DICM");
    let mut meta = Vec::with_capacity(128);
    let mut ui = |elem: u16, v: &str| {
        let mut v = v.as_bytes().to_vec();
        if v.len() % 2 == 1 {
            v.push(0);
        }
        meta.extend_from_slice(&0x0002u16.to_le_bytes());
        meta.extend_from_slice(&elem.to_le_bytes());
        meta.extend_from_slice(b"UI");
        meta.extend_from_slice(&(v.len() as u16).to_le_bytes());
        meta.extend_from_slice(&v);
    };
    ui(0x0002, "1.2");
    ui(0x0003, "1.2");
    ui(0x0010, ts_uid);
    ui(0x0012, "1.2");
    // (0002,0000) UL group length, (0002,0001) OB 00\01
    let version: [u8; 14] = [0x02, 0, 0x01, 0, b'O', b'B', 0, 0, 2, 0, 0, 0, 0, 1];
    buf.extend_from_slice(&[0x02, 0, 0, 0, b'U', b'L', 4, 0]);
    buf.extend_from_slice(&((meta.len() + version.len()) as u32).to_le_bytes());
    buf.extend_from_slice(&version);
    buf.extend_from_slice(&meta);
    buf.extend_from_slice(raw);
    if explicit {
        buf.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF, b'U', b'N', 0, 0, 0, 0, 0, 0]);
    } else {
        buf.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0]);
    }
    let file = dicom_object::OpenFileOptions::new()
        .read_preamble(dicom_object::file::ReadPreamble::Never)
        .read_until(Tag(0xFFFF, 0xFFFF))
        .from_reader(&buf[..])
        .map_err(|e| format!("malformed data set: {e}"))?;
    Ok(file.into_inner())
}

/// The item at `path` below `obj`.
pub(crate) fn item<'a>(obj: &'a InMemDicomObject, path: &[(Tag, usize)]) -> Result<&'a InMemDicomObject, String> {
    let mut cur = obj;
    for (tag, index) in path {
        cur = cur
            .get(*tag)
            .and_then(|e| e.items())
            .and_then(|items| items.get(*index))
            .ok_or_else(|| format!("sequence item {} {} no longer exists", tag_str(*tag), index + 1))?;
    }
    Ok(cur)
}

/// Run `f` on the item at `path`. Sequences on the way are put back with an
/// undefined length, so the encoder recomputes them.
pub(crate) fn with_item_mut<R>(
    obj: &mut InMemDicomObject,
    path: &[(Tag, usize)],
    f: impl FnOnce(&mut InMemDicomObject) -> Result<R, String>,
) -> Result<R, String> {
    let Some(((tag, index), rest)) = path.split_first() else { return f(obj) };
    let gone = || format!("sequence item {} {} no longer exists", tag_str(*tag), index + 1);
    if obj.get(*tag).and_then(|e| e.items()).is_none_or(|items| *index >= items.len()) {
        return Err(gone());
    }
    let elt = obj.take_element(*tag).map_err(|_| gone())?;
    let (header, value) = elt.into_parts();
    let mut items = match value {
        DicomValue::Sequence(seq) => seq.into_items(),
        other => {
            // checked above; put it back untouched anyway
            obj.put(DataElement::new(*tag, header.vr, other));
            return Err(gone());
        }
    };
    let r = match items.get_mut(*index) {
        Some(it) => with_item_mut(it, rest, f),
        None => Err(gone()),
    };
    obj.put(DataElement::new(*tag, VR::SQ, DataSetSequence::new(items, Length::UNDEFINED)));
    r
}

/// "(gggg,eeee)".
pub(crate) fn tag_str(t: Tag) -> String {
    format!("({:04X},{:04X})", t.0, t.1)
}

fn hex4(s: &[u8]) -> Option<u16> {
    if s.len() != 4 || !s.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u16::from_str_radix(std::str::from_utf8(s).ok()?, 16).ok()
}

/// A tag from "(gggg,eeee)", "gggg,eeee", "ggggeeee" or a dictionary keyword.
pub(crate) fn resolve(key: &str) -> Result<Tag, String> {
    let b = key.as_bytes();
    let parts = match b.len() {
        11 if b[0] == b'(' && b[5] == b',' && b[10] == b')' => Some((&b[1..5], &b[6..10])),
        9 if b[4] == b',' => Some((&b[..4], &b[5..])),
        8 => Some((&b[..4], &b[4..])),
        _ => None,
    };
    if let Some((g, e)) = parts {
        if let (Some(g), Some(e)) = (hex4(g), hex4(e)) {
            return Ok(Tag(g, e));
        }
    }
    let looks_like_keyword = !key.is_empty() && key.bytes().all(|c| c.is_ascii_alphanumeric());
    if looks_like_keyword {
        if let Some(entry) = StandardDataDictionary.by_name(key) {
            return Ok(entry.tag());
        }
    }
    Err(format!("unknown DICOM attribute '{key}' (use a keyword such as PatientName or a tag such as \"(0010,0010)\")"))
}

/// Tags scripts may set: not the command group, the file meta group or item delimiters.
pub(crate) fn check_settable(t: Tag) -> Result<(), String> {
    match t.0 {
        0x0000 => Err(format!("{}: command elements are set on msg, not on the data set", tag_str(t))),
        0x0002 => Err(format!("{}: file meta elements (group 0002) are not part of a data set", tag_str(t))),
        0xFFFE => Err(format!("{}: item delimiters are not attributes", tag_str(t))),
        _ => Ok(()),
    }
}

/// The VR for a new value of `tag`: the explicit one, else the element's
/// current one, else the standard dictionary's.
pub(crate) fn vr_for(obj: &InMemDicomObject, tag: Tag, explicit: Option<&str>) -> Result<VR, String> {
    if let Some(v) = explicit {
        return v.parse::<VR>().map_err(|_| format!("unknown VR '{v}'"));
    }
    if let Some(e) = obj.get(tag) {
        return Ok(e.vr());
    }
    if tag.0 % 2 == 1 && (0x0010..=0x00FF).contains(&tag.1) {
        return Ok(VR::LO); // private creator
    }
    if tag.0.is_multiple_of(2) {
        if let Some(entry) = StandardDataDictionary.by_tag(tag) {
            return Ok(entry.vr().relaxed());
        }
    }
    Err(format!("{}: not in the standard dictionary; give its VR: ds:set(tag, value, \"LO\")", tag_str(tag)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_resolve_as_tags_or_keywords() {
        assert_eq!(resolve("PatientName").unwrap(), Tag(0x0010, 0x0010));
        assert_eq!(resolve("(0010,0010)").unwrap(), Tag(0x0010, 0x0010));
        assert_eq!(resolve("0010,0020").unwrap(), Tag(0x0010, 0x0020));
        assert_eq!(resolve("0009100a").unwrap(), Tag(0x0009, 0x100A));
        for bad in ["", "Nope", "(0010,001G)", "(ééé,0010)", "ééééé", "Patient Name", "(0010;0010)"] {
            assert!(resolve(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn garbage_never_panics() {
        for raw in [vec![], vec![0xFF; 3], vec![0x10, 0, 0x10, 0, b'P', b'N', 0xFF, 0xFF, 1, 2], vec![0; 7]] {
            for ts in ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.3"] {
                let mut d = Dataset::new(raw.clone(), ts);
                let _ = d.object();
                let _ = d.into_bytes();
            }
        }
    }

    #[test]
    fn deflated_data_sets_are_an_error() {
        let mut d = Dataset::new(vec![0x10, 0, 0x10, 0, b'P', b'N', 2, 0, b'A', b' '], "1.2.840.10008.1.2.1.99");
        let e = d.object().expect_err("deflate is not readable here");
        assert!(e.contains("transfer syntax"), "{e}");
    }
}
