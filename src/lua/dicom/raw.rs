//! The raw fast path: reading and setting top-level text elements without
//! parsing the data set. An index of the top-level elements (from the strict
//! prescan walk), the changes as patches (tag → new value or deletion), and
//! the original bytes with the patches spliced in, in tag order.
//!
//! It answers only what it is sure the parsed path would answer the same
//! way: top-level elements of text VRs whose bytes are plain ASCII, in a
//! character set where ASCII is itself. Everything else is `None`, and the
//! caller falls back to dicom-object (`apply` hands the patches over).

use super::prescan::{top_level, Top};
use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;
use dicom_encoding::text::SpecificCharacterSet;
use dicom_object::InMemDicomObject;
use std::collections::BTreeMap;

const UNDEFINED: u32 = 0xFFFF_FFFF;
const CHARSET: Tag = Tag(0x0008, 0x0005);

/// A change to one top-level element.
#[derive(Debug, Clone)]
enum Patch {
    Delete,
    Set(VR, PrimitiveValue),
}

/// The index and the patches of one data set.
#[derive(Debug)]
pub(crate) struct Raw {
    explicit: bool,
    big: bool,
    top: Vec<Top>,
    patches: BTreeMap<Tag, Patch>,
}

/// The VRs the fast path handles (all text).
pub(crate) fn is_text(vr: VR) -> bool {
    use VR::*;
    matches!(vr, AE | AS | CS | DA | DS | DT | IS | LO | LT | PN | SH | ST | TM | UC | UI | UR | UT)
}

/// Text VRs whose value is one string (no `\` separation).
fn is_single(vr: VR) -> bool {
    matches!(vr, VR::LT | VR::ST | VR::UR | VR::UT)
}

/// Explicit VRs with a 4-byte length.
fn is_long(vr: VR) -> bool {
    matches!(vr, VR::UC | VR::UR | VR::UT)
}

/// Whether `name` (the first value of Specific Character Set) decodes and
/// encodes printable ASCII as itself in dicom-rs: unknown names are ignored
/// (the default repertoire); the Japanese, Korean and GBK sets are left out.
fn ascii_transparent(name: &str) -> bool {
    let n = name.trim_end();
    SpecificCharacterSet::from_code(n).is_none()
        || !["13", "87", "149", "58", "GBK", "GB2312"].iter().any(|x| n.ends_with(x))
}

impl Raw {
    /// The index of `raw`; an error if the structure is unsound or the
    /// character set is one the fast path stays out of.
    pub(crate) fn build(raw: &[u8], explicit: bool, big: bool) -> Result<Raw, String> {
        let top = top_level(raw, explicit, big)?;
        let r = Raw { explicit, big, top, patches: BTreeMap::new() };
        if let Some(t) = r.find(CHARSET) {
            let v = r.value(raw, t).ok_or("unreadable specific character set")?;
            let first = std::str::from_utf8(v).ok().and_then(|s| s.split('\\').next()).unwrap_or_default();
            if !ascii_readable(v) || !ascii_transparent(first) {
                return Err("character set not handled raw".into());
            }
        }
        Ok(r)
    }

    /// Whether a script changed anything here.
    pub(crate) fn is_patched(&self) -> bool {
        !self.patches.is_empty()
    }

    fn position(&self, tag: Tag) -> Result<usize, usize> {
        self.top.binary_search_by(|t| t.tag.cmp(&tag))
    }

    fn find(&self, tag: Tag) -> Option<&Top> {
        self.position(tag).ok().map(|i| &self.top[i])
    }

    /// Where element `i` ends.
    fn end(&self, i: usize, raw_len: usize) -> usize {
        self.top.get(i + 1).map_or(raw_len, |t| t.start)
    }

    /// The value bytes of a defined-length element.
    fn value<'a>(&self, raw: &'a [u8], t: &Top) -> Option<&'a [u8]> {
        if t.len == UNDEFINED {
            return None;
        }
        raw.get(t.value..t.value + t.len as usize)
    }

    /// The VR dicom-object gives an element as read (explicit: the header's;
    /// implicit: the dictionary's). `None` for the tags whose VR depends on
    /// Pixel Representation.
    fn vr_read(&self, t: &Top) -> Option<VR> {
        let entry = StandardDataDictionary.by_tag(t.tag);
        if entry.is_some_and(|e| e.vr() == VirtualVr::Xs) {
            return None;
        }
        if self.explicit {
            return t.vr;
        }
        if t.tag == Tag(0x7FE0, 0x0010) || (t.tag.0 >> 8 == 0x60 && t.tag.1 == 0x3000) {
            return Some(VR::OW);
        }
        Some(entry.map(|e| e.vr().relaxed()).unwrap_or(VR::UN))
    }

    /// The current value of a top-level element, as dicom-object would hold
    /// it: `Some(None)` when absent, `None` when only the parsed path knows.
    pub(crate) fn get(&self, raw: &[u8], tag: Tag) -> Option<Option<(VR, PrimitiveValue)>> {
        match self.patches.get(&tag) {
            Some(Patch::Delete) => return Some(None),
            Some(Patch::Set(vr, p)) => return Some(Some((*vr, p.clone()))),
            None => {}
        }
        let Some(t) = self.find(tag) else { return Some(None) };
        let vr = self.vr_read(t).filter(|vr| is_text(*vr))?;
        let v = self.value(raw, t)?;
        if v.is_empty() {
            return Some(Some((vr, PrimitiveValue::Empty)));
        }
        if !ascii_readable(v) {
            return None;
        }
        let text = std::str::from_utf8(v).ok()?;
        let p = if is_single(vr) {
            PrimitiveValue::Str(text.to_string())
        } else {
            PrimitiveValue::Strs(text.split('\\').map(str::to_string).collect())
        };
        Some(Some((vr, p)))
    }

    /// Whether the element is there.
    pub(crate) fn has(&self, tag: Tag) -> bool {
        match self.patches.get(&tag) {
            Some(Patch::Delete) => false,
            Some(Patch::Set(..)) => true,
            None => self.find(tag).is_some(),
        }
    }

    /// The VR a new value of `tag` gets (the rule of `dataset::vr_for`), if
    /// the fast path can tell.
    pub(crate) fn vr_for(&self, tag: Tag, explicit: Option<&str>) -> Option<VR> {
        if let Some(v) = explicit {
            return v.parse::<VR>().ok();
        }
        match self.patches.get(&tag) {
            Some(Patch::Set(vr, _)) => return Some(*vr),
            Some(Patch::Delete) => {}
            None => {
                if let Some(t) = self.find(tag) {
                    return self.vr_read(t);
                }
            }
        }
        if tag.0 % 2 == 1 && (0x0010..=0x00FF).contains(&tag.1) {
            return Some(VR::LO);
        }
        if tag.0.is_multiple_of(2) {
            return StandardDataDictionary.by_tag(tag).map(|e| e.vr().relaxed());
        }
        None
    }

    /// Record a new value; false (nothing recorded) when the fast path does
    /// not handle it: not a text VR, not printable ASCII, too long for its
    /// header, or the Specific Character Set itself.
    pub(crate) fn set(&mut self, tag: Tag, vr: VR, value: PrimitiveValue) -> bool {
        if tag == CHARSET || !is_text(vr) {
            return false;
        }
        let printable = |s: &str| s.bytes().all(|c| (0x20..=0x7E).contains(&c));
        let len = match &value {
            PrimitiveValue::Empty => 0,
            PrimitiveValue::Str(s) if printable(s) => s.len(),
            PrimitiveValue::Strs(v) if v.iter().all(|s| printable(s)) => {
                v.iter().map(String::len).sum::<usize>() + v.len().saturating_sub(1)
            }
            _ => return false,
        };
        let limit = if !self.explicit || is_long(vr) { u32::MAX as usize - 1 } else { u16::MAX as usize };
        if len + len % 2 > limit {
            return false;
        }
        self.patches.insert(tag, Patch::Set(vr, value));
        true
    }

    /// Delete an element: whether it was there; `None` for the Specific
    /// Character Set (re-encoding the other text depends on it).
    pub(crate) fn delete(&mut self, tag: Tag) -> Option<bool> {
        if tag == CHARSET {
            return None;
        }
        let gone = self.has(tag);
        if self.find(tag).is_some() {
            self.patches.insert(tag, Patch::Delete);
        } else {
            self.patches.remove(&tag);
        }
        Some(gone)
    }

    /// Hand the patches over to the parsed object.
    pub(crate) fn apply(self, obj: &mut InMemDicomObject) {
        for (tag, patch) in self.patches {
            match patch {
                Patch::Delete => {
                    obj.remove_element(tag);
                }
                Patch::Set(vr, p) => {
                    obj.put(DataElement::new(tag, vr, p));
                }
            }
        }
    }

    /// The original bytes with the patches in.
    pub(crate) fn splice(&self, raw: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(raw.len() + 64);
        let mut pos = 0;
        for (tag, patch) in &self.patches {
            let (at, next) = match self.position(*tag) {
                Ok(i) => (self.top[i].start, self.end(i, raw.len())),
                Err(i) => {
                    let at = self.top.get(i).map_or(raw.len(), |t| t.start);
                    (at, at)
                }
            };
            out.extend_from_slice(&raw[pos..at]);
            if let Patch::Set(vr, p) = patch {
                self.encode(&mut out, *tag, *vr, p);
            }
            pos = next;
        }
        out.extend_from_slice(&raw[pos..]);
        out
    }

    /// One element as dicom-object's writer encodes it.
    fn encode(&self, out: &mut Vec<u8>, tag: Tag, vr: VR, p: &PrimitiveValue) {
        let mut value = Vec::new();
        match p {
            PrimitiveValue::Str(s) => value.extend_from_slice(s.as_bytes()),
            PrimitiveValue::Strs(v) => {
                for (i, s) in v.iter().enumerate() {
                    if i > 0 {
                        value.push(b'\\');
                    }
                    value.extend_from_slice(s.as_bytes());
                }
            }
            _ => {}
        }
        if value.len() % 2 == 1 {
            value.push(if vr == VR::UI { 0 } else { b' ' });
        }
        let u16b = |n: u16| if self.big { n.to_be_bytes() } else { n.to_le_bytes() };
        let u32b = |n: u32| if self.big { n.to_be_bytes() } else { n.to_le_bytes() };
        out.extend_from_slice(&u16b(tag.0));
        out.extend_from_slice(&u16b(tag.1));
        let len = value.len() as u32;
        if !self.explicit {
            out.extend_from_slice(&u32b(len));
        } else {
            out.extend_from_slice(&vr.to_bytes());
            if is_long(vr) {
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(&u32b(len));
            } else {
                out.extend_from_slice(&u16b(len as u16));
            }
        }
        out.extend_from_slice(&value);
    }
}

/// Bytes that read the same in every character set the fast path allows:
/// printable ASCII (and NUL, UID padding).
fn ascii_readable(v: &[u8]) -> bool {
    v.iter().all(|&c| c == 0 || (0x20..=0x7E).contains(&c))
}
