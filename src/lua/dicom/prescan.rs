//! A walk over a data set's element headers before dicom-object parses it.
//! The parser allocates (and zero-fills) whatever length a header declares
//! before reading the value, so ten bytes declaring a 4 GiB value would cost
//! 4 GiB and a minute. Every defined length must fit in the bytes left.
//!
//! The same walk, strict, lists the top-level elements for the raw fast
//! path (`raw.rs`).

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;

const UNDEFINED: u32 = 0xFFFF_FFFF;
/// Sequence + item levels a data set may nest (real ones use a handful).
pub(crate) const MAX_DEPTH: usize = 128;

struct Frame {
    /// Explicit VR inside (an explicit UN of undefined length holds implicit VR).
    explicit: bool,
    /// Encapsulated pixel data: items are raw fragments.
    fragments: bool,
    /// Where a defined-length sequence (or, strict, item) ends.
    end: Option<usize>,
    /// An item (strict walks only).
    item: bool,
}

/// One top-level element: where its header and value start. It ends where
/// the next one starts (or at the end of the data set).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Top {
    pub tag: Tag,
    /// The VR of the header (explicit VR only).
    pub vr: Option<VR>,
    pub start: usize,
    pub value: usize,
    /// The declared length (0xFFFF_FFFF: undefined).
    pub len: u32,
}

/// Check that every declared length fits. `explicit`/`big_endian` describe
/// the transfer syntax.
pub(crate) fn check_lengths(b: &[u8], explicit: bool, big_endian: bool) -> Result<(), String> {
    walk(b, explicit, big_endian, None)
}

/// The top-level elements, in ascending tag order; an error unless the whole
/// structure is sound: besides `check_lengths`, every explicit VR known, no
/// item or delimiter at the top level, sequences and items ending exactly
/// where they declare, every undefined length closed, tags ascending.
pub(crate) fn top_level(b: &[u8], explicit: bool, big_endian: bool) -> Result<Vec<Top>, String> {
    let mut top = Vec::with_capacity(32);
    walk(b, explicit, big_endian, Some(&mut top))?;
    if top.windows(2).any(|w| w[0].tag >= w[1].tag) {
        return Err("top-level elements out of order".into());
    }
    Ok(top)
}

/// The walk; `top` given: strict, and the top-level elements go there.
fn walk(b: &[u8], explicit: bool, big_endian: bool, mut top: Option<&mut Vec<Top>>) -> Result<(), String> {
    let strict = top.is_some();
    let u16_at = |p: usize| -> Option<u16> {
        let s: [u8; 2] = b.get(p..p + 2)?.try_into().ok()?;
        Some(if big_endian { u16::from_be_bytes(s) } else { u16::from_le_bytes(s) })
    };
    let u32_at = |p: usize| -> Option<u32> {
        let s: [u8; 4] = b.get(p..p + 4)?.try_into().ok()?;
        Some(if big_endian { u32::from_be_bytes(s) } else { u32::from_le_bytes(s) })
    };
    let truncated = |p: usize| format!("malformed data set: truncated element header at byte {p}");
    let unsound = |p: usize, what: &str| format!("malformed data set: {what} at byte {p}");
    let mut stack: Vec<Frame> = Vec::new();
    let mut pos = 0usize;
    while pos < b.len() {
        // the parser and the encoder recurse once per level: bound the depth
        // so a hostile data set cannot overflow a worker's stack
        if stack.len() > MAX_DEPTH {
            return Err(unsound(pos, "sequences nested too deeply"));
        }
        while let Some(end) = stack.last().and_then(|f| f.end).filter(|e| pos >= *e) {
            if strict && pos != end {
                return Err(unsound(pos, "an element runs past the end of its sequence or item"));
            }
            stack.pop();
        }
        let (explicit, fragments) = stack.last().map_or((explicit, false), |f| (f.explicit, f.fragments));
        let in_item = stack.last().is_some_and(|f| f.item);
        let (Some(group), Some(element)) = (u16_at(pos), u16_at(pos + 2)) else { return Err(truncated(pos)) };
        let tag = Tag(group, element);
        let left = |p: usize, len: u32| -> Result<(), String> {
            if len as usize > b.len() - p {
                return Err(format!("malformed data set: {tag} declares {len} bytes, {} left", b.len() - p));
            }
            Ok(())
        };
        if group == 0xFFFE {
            if strict && (stack.is_empty() || in_item && element == 0xE000) {
                return Err(unsound(pos, "an item out of place"));
            }
            let len = u32_at(pos + 4).ok_or_else(|| truncated(pos))?;
            pos += 8;
            let open = stack.last().is_some_and(|f| f.end.is_none());
            match element {
                0xE000 if fragments => {
                    left(pos, len)?;
                    pos += len as usize;
                }
                0xE000 if strict => {
                    let end = if len == UNDEFINED {
                        None
                    } else {
                        left(pos, len)?;
                        Some(pos + len as usize)
                    };
                    stack.push(Frame { explicit, fragments: false, end, item: true });
                }
                0xE000 if len != UNDEFINED => left(pos, len)?,
                0xE00D if strict && in_item && open => {
                    stack.pop();
                }
                0xE0DD if strict && !in_item && open => {
                    stack.pop();
                }
                0xE0DD if !strict && open => {
                    stack.pop();
                }
                _ if strict => return Err(unsound(pos - 8, "a delimiter out of place")),
                // dicom-parser reads any other (FFFE,xxxx) header with a
                // defined length as an element and allocates that length
                0xE00D => {}
                _ if len != UNDEFINED => left(pos, len)?,
                _ => {}
            }
            continue;
        }
        if strict && !stack.is_empty() && !in_item {
            return Err(unsound(pos, "an element outside any item"));
        }
        let (vr, len, header) = if explicit {
            let vr_bytes = b.get(pos + 4..pos + 6).ok_or_else(|| truncated(pos))?;
            // dicom-parser reads an unknown VR as UN, with a 4-byte length
            let known = vr_of([vr_bytes[0], vr_bytes[1]]);
            if strict && known.is_none() {
                return Err(unsound(pos, "an unknown VR"));
            }
            let vr = Some(known.unwrap_or(VR::UN));
            let long = matches!(
                vr,
                Some(
                    VR::OB
                        | VR::OD
                        | VR::OF
                        | VR::OL
                        | VR::OV
                        | VR::OW
                        | VR::SQ
                        | VR::UC
                        | VR::UN
                        | VR::UR
                        | VR::UT
                        | VR::SV
                        | VR::UV
                )
            );
            if long {
                (vr, u32_at(pos + 8).ok_or_else(|| truncated(pos))?, 12)
            } else {
                (vr, u32::from(u16_at(pos + 6).ok_or_else(|| truncated(pos))?), 8)
            }
        } else {
            (None, u32_at(pos + 4).ok_or_else(|| truncated(pos))?, 8)
        };
        if let Some(top) = top.as_deref_mut().filter(|_| stack.is_empty()) {
            top.push(Top { tag, vr, start: pos, value: pos + header, len });
        }
        pos += header;
        let is_sq = vr == Some(VR::SQ)
            || (!explicit
                && tag.0.is_multiple_of(2)
                && StandardDataDictionary.by_tag(tag).is_some_and(|e| e.vr().exact() == Some(VR::SQ)));
        if len == UNDEFINED {
            let frame = if tag == Tag(0x7FE0, 0x0010) && !is_sq {
                Frame { explicit, fragments: true, end: None, item: false }
            } else {
                if strict && explicit && vr != Some(VR::SQ) {
                    // an explicit UN of undefined length: PS3.5 says implicit VR
                    // inside, dicom-parser reads explicit; the raw path stays out
                    return Err(unsound(pos, "an undefined length"));
                }
                // as dicom-parser reads it: the transfer syntax's VR encoding inside
                Frame { explicit, fragments: false, end: None, item: false }
            };
            stack.push(frame);
            continue;
        }
        left(pos, len)?;
        if is_sq {
            stack.push(Frame { explicit, fragments: false, end: Some(pos + len as usize), item: false });
        } else {
            pos += len as usize;
        }
    }
    if strict {
        while let Some(end) = stack.last().and_then(|f| f.end) {
            if pos != end {
                return Err(unsound(pos, "a sequence or item runs past the end"));
            }
            stack.pop();
        }
        if !stack.is_empty() {
            return Err(unsound(pos, "an undefined length never closed"));
        }
    }
    Ok(())
}

/// `VR::from_binary` without its UTF-8 check and string match: the same
/// 34 codes, matched as two bytes (the walk reads one per element).
fn vr_of(code: [u8; 2]) -> Option<VR> {
    use VR::*;
    Some(match &code {
        b"AE" => AE,
        b"AS" => AS,
        b"AT" => AT,
        b"CS" => CS,
        b"DA" => DA,
        b"DS" => DS,
        b"DT" => DT,
        b"FL" => FL,
        b"FD" => FD,
        b"IS" => IS,
        b"LO" => LO,
        b"LT" => LT,
        b"OB" => OB,
        b"OD" => OD,
        b"OF" => OF,
        b"OL" => OL,
        b"OV" => OV,
        b"OW" => OW,
        b"PN" => PN,
        b"SH" => SH,
        b"SL" => SL,
        b"SQ" => SQ,
        b"SS" => SS,
        b"ST" => ST,
        b"SV" => SV,
        b"TM" => TM,
        b"UC" => UC,
        b"UI" => UI,
        b"UL" => UL,
        b"UN" => UN,
        b"UR" => UR,
        b"US" => US,
        b"UT" => UT,
        b"UV" => UV,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vr_codes_match_dicom_core() {
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                assert_eq!(vr_of([a, b]), VR::from_binary([a, b]), "{a:#04x} {b:#04x}");
            }
        }
    }

    #[test]
    fn huge_declared_lengths_are_refused() {
        // (0010,0010) implicit, 0xFFFF4E50 bytes declared, 2 present
        let b = [0x10, 0, 0x10, 0, b'P', b'N', 0xFF, 0xFF, 1, 2];
        assert!(check_lengths(&b, false, false).is_err());
        // explicit OB with a 4 GiB length
        let b = [0x09, 0, 0x10, 0, b'O', b'B', 0, 0, 0xF0, 0xFF, 0xFF, 0xFF];
        assert!(check_lengths(&b, true, false).is_err());
        // an unknown VR is read as UN, with a 4-byte length: "ISO_" is 1.6 GB
        let b = [0x08, 0, 0x05, 0, b'C', 0xF6, 10, 0, b'I', b'S', b'O', b'_', b'I', b'R'];
        assert!(check_lengths(&b, true, false).is_err());
        // a sane explicit element passes
        let b = [0x10, 0, 0x10, 0, b'P', b'N', 2, 0, b'A', b' '];
        assert!(check_lengths(&b, true, false).is_ok());
    }
}
