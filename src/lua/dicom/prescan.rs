//! A walk over a data set's element headers before dicom-object parses it.
//! The parser allocates (and zero-fills) whatever length a header declares
//! before reading the value, so ten bytes declaring a 4 GiB value would cost
//! 4 GiB and a minute. Every defined length must fit in the bytes left.

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;

const UNDEFINED: u32 = 0xFFFF_FFFF;

struct Frame {
    /// Explicit VR inside (an explicit UN of undefined length holds implicit VR).
    explicit: bool,
    /// Encapsulated pixel data: items are raw fragments.
    fragments: bool,
    /// Where a defined-length sequence ends.
    end: Option<usize>,
}

/// Check that every declared length fits. `explicit`/`big_endian` describe
/// the transfer syntax.
pub(crate) fn check_lengths(b: &[u8], explicit: bool, big_endian: bool) -> Result<(), String> {
    let u16_at = |p: usize| -> Option<u16> {
        let s: [u8; 2] = b.get(p..p + 2)?.try_into().ok()?;
        Some(if big_endian { u16::from_be_bytes(s) } else { u16::from_le_bytes(s) })
    };
    let u32_at = |p: usize| -> Option<u32> {
        let s: [u8; 4] = b.get(p..p + 4)?.try_into().ok()?;
        Some(if big_endian { u32::from_be_bytes(s) } else { u32::from_le_bytes(s) })
    };
    let truncated = |p: usize| format!("malformed data set: truncated element header at byte {p}");
    let mut stack: Vec<Frame> = Vec::new();
    let mut pos = 0usize;
    while pos < b.len() {
        while stack.last().is_some_and(|f| f.end.is_some_and(|e| pos >= e)) {
            stack.pop();
        }
        let (explicit, fragments) = stack.last().map_or((explicit, false), |f| (f.explicit, f.fragments));
        let (Some(group), Some(element)) = (u16_at(pos), u16_at(pos + 2)) else { return Err(truncated(pos)) };
        let tag = Tag(group, element);
        let left = |p: usize, len: u32| -> Result<(), String> {
            if len as usize > b.len() - p {
                return Err(format!("malformed data set: {tag} declares {len} bytes, {} left", b.len() - p));
            }
            Ok(())
        };
        if group == 0xFFFE {
            let len = u32_at(pos + 4).ok_or_else(|| truncated(pos))?;
            pos += 8;
            match element {
                0xE000 if fragments => {
                    left(pos, len)?;
                    pos += len as usize;
                }
                0xE000 if len != UNDEFINED => left(pos, len)?,
                0xE0DD if stack.last().is_some_and(|f| f.end.is_none()) => {
                    stack.pop();
                }
                _ => {}
            }
            continue;
        }
        let (vr, len, header) = if explicit {
            let vr_bytes = b.get(pos + 4..pos + 6).ok_or_else(|| truncated(pos))?;
            let vr = std::str::from_utf8(vr_bytes).ok().and_then(|s| s.parse::<VR>().ok());
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
        pos += header;
        let is_sq = vr == Some(VR::SQ)
            || (!explicit
                && tag.0.is_multiple_of(2)
                && StandardDataDictionary.by_tag(tag).is_some_and(|e| e.vr().exact() == Some(VR::SQ)));
        if len == UNDEFINED {
            let frame = if tag == Tag(0x7FE0, 0x0010) && !is_sq {
                Frame { explicit, fragments: true, end: None }
            } else {
                Frame { explicit: explicit && vr != Some(VR::UN), fragments: false, end: None }
            };
            stack.push(frame);
            continue;
        }
        left(pos, len)?;
        if is_sq {
            stack.push(Frame { explicit, fragments: false, end: Some(pos + len as usize) });
        } else {
            pos += len as usize;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_declared_lengths_are_refused() {
        // (0010,0010) implicit, 0xFFFF4E50 bytes declared, 2 present
        let b = [0x10, 0, 0x10, 0, b'P', b'N', 0xFF, 0xFF, 1, 2];
        assert!(check_lengths(&b, false, false).is_err());
        // explicit OB with a 4 GiB length
        let b = [0x09, 0, 0x10, 0, b'O', b'B', 0, 0, 0xF0, 0xFF, 0xFF, 0xFF];
        assert!(check_lengths(&b, true, false).is_err());
        // a sane explicit element passes
        let b = [0x10, 0, 0x10, 0, b'P', b'N', 2, 0, b'A', b' '];
        assert!(check_lengths(&b, true, false).is_ok());
    }
}
