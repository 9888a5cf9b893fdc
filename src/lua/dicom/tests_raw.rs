//! The raw fast path (`raw.rs`) against the parsed path: the same scripts on
//! the same data sets, once as usual and once with the fast path disabled;
//! the reads, errors and the bytes sent must mean the same.

use super::tests::{ctx, decode, encode, host_with, sample, store_rq, EXPLICIT, IMPLICIT};
use super::*;
use crate::lua::host::LuaHost;
use dicom_core::header::Header;
use dicom_core::value::{PrimitiveValue, Value as DicomValue};
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

const BIG: &str = "1.2.840.10008.1.2.2";
const JPEG: &str = "1.2.840.10008.1.2.4.50";

/// A data set written by hand, element by element (odd lengths, defined
/// lengths, encapsulated pixel data: what dicom-object would not write).
struct B {
    explicit: bool,
    big: bool,
    out: Vec<u8>,
}

impl B {
    fn new(ts: &str) -> B {
        B { explicit: ts != IMPLICIT, big: ts == BIG, out: Vec::new() }
    }
    fn child(&self) -> B {
        B { explicit: self.explicit, big: self.big, out: Vec::new() }
    }
    fn u16(&mut self, n: u16) {
        self.out.extend_from_slice(&if self.big { n.to_be_bytes() } else { n.to_le_bytes() });
    }
    fn u32(&mut self, n: u32) {
        self.out.extend_from_slice(&if self.big { n.to_be_bytes() } else { n.to_le_bytes() });
    }
    fn header(&mut self, t: Tag, vr: &str, len: u32) {
        self.u16(t.0);
        self.u16(t.1);
        if !self.explicit {
            return self.u32(len);
        }
        self.out.extend_from_slice(vr.as_bytes());
        if ["OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT", "SV", "UV"].contains(&vr) {
            self.out.extend_from_slice(&[0, 0]);
            self.u32(len);
        } else {
            self.u16(len as u16);
        }
    }
    /// An element with exactly these value bytes (no padding added).
    fn el(mut self, t: Tag, vr: &str, v: &[u8]) -> B {
        self.header(t, vr, v.len() as u32);
        self.out.extend_from_slice(v);
        self
    }
    fn us(self, t: Tag, n: u16) -> B {
        let v = if self.big { n.to_be_bytes() } else { n.to_le_bytes() };
        self.el(t, "US", &v)
    }
    /// A sequence; `defined`: its length, then each item's.
    fn sq(mut self, t: Tag, defined: bool, items: Vec<(bool, B)>) -> B {
        let mut body = self.child();
        for (item_defined, content) in items {
            body.u16(0xFFFE);
            body.u16(0xE000);
            body.u32(if item_defined { content.out.len() as u32 } else { u32::MAX });
            body.out.extend_from_slice(&content.out);
            if !item_defined {
                body.u16(0xFFFE);
                body.u16(0xE00D);
                body.u32(0);
            }
        }
        if !defined {
            body.u16(0xFFFE);
            body.u16(0xE0DD);
            body.u32(0);
        }
        self.header(t, "SQ", if defined { body.out.len() as u32 } else { u32::MAX });
        self.out.extend_from_slice(&body.out);
        self
    }
    /// Encapsulated pixel data: an empty offset table and `fragments`.
    fn encapsulated(mut self, fragments: &[&[u8]]) -> B {
        self.header(tags::PIXEL_DATA, "OB", u32::MAX);
        for f in std::iter::once(&[][..]).chain(fragments.iter().copied()) {
            self.u16(0xFFFE);
            self.u16(0xE000);
            self.u32(f.len() as u32);
            self.out.extend_from_slice(f);
        }
        self.u16(0xFFFE);
        self.u16(0xE0DD);
        self.u32(0);
        self
    }
}

/// Hand-written data sets: `flags` picks a character set, defined or
/// undefined lengths, encapsulated pixel data, a private element at the end.
fn hand(ts: &str, flags: u8) -> Vec<u8> {
    let (charset, defined, encapsulated, trailer) = (flags & 1 != 0, flags & 2 != 0, flags & 4 != 0, flags & 8 != 0);
    let mut b = B::new(ts);
    if charset {
        b = b.el(tags::SPECIFIC_CHARACTER_SET, "CS", b"ISO_IR 100");
    }
    let item = |uid: &[u8]| {
        B::new(ts).el(tags::REFERENCED_SOP_CLASS_UID, "UI", b"1.2.840.10008.3.1.2.3.1\0").el(
            tags::REFERENCED_SOP_INSTANCE_UID,
            "UI",
            uid,
        )
    };
    let nested = B::new(ts).el(tags::SERIES_INSTANCE_UID, "UI", b"1.2.9\0").sq(
        tags::REFERENCED_INSTANCE_SEQUENCE,
        defined,
        vec![(defined, item(b"7.7")), (!defined, item(b"7.8\0"))],
    );
    b = b
        .el(tags::SOP_CLASS_UID, "UI", b"1.2.840.10008.5.1.4.1.1.7\0")
        .el(tags::SOP_INSTANCE_UID, "UI", b"1.2.3")
        .el(tags::STUDY_DATE, "DA", b"20240131")
        .el(tags::ACCESSION_NUMBER, "SH", b"")
        .sq(tags::REFERENCED_STUDY_SEQUENCE, defined, vec![(defined, item(b"1.2.3.4.5.6"))])
        .sq(tags::REFERENCED_SERIES_SEQUENCE, !defined, vec![(true, nested), (false, B::new(ts))])
        .el(Tag(0x0009, 0x0010), "LO", b"ACME 1.0")
        .el(Tag(0x0009, 0x1001), "LO", b"secret")
        .el(Tag(0x0009, 0x1002), "OB", &[0xE9, 0, 0xFF, 1])
        .el(tags::PATIENT_NAME, "PN", b"Doe^John")
        .el(tags::PATIENT_ID, "LO", b"ABC")
        .el(tags::PATIENT_BIRTH_DATE, "DA", b"")
        .el(tags::PATIENT_AGE, "AS", b"042Y")
        .el(tags::PATIENT_COMMENTS, "LT", b"  first line \\ second  ")
        .el(tags::SLICE_THICKNESS, "DS", b"2.5 ")
        .el(tags::SERIES_NUMBER, "IS", b" 7")
        .el(tags::INSTANCE_NUMBER, "IS", b"")
        .sq(tags::REQUEST_ATTRIBUTES_SEQUENCE, false, vec![])
        .us(tags::ROWS, 2)
        .us(tags::COLUMNS, 2);
    b = if encapsulated && ts == EXPLICIT {
        b.encapsulated(&[b"\xFF\xD8\xFF\xD9", b"ab"])
    } else {
        b.el(tags::PIXEL_DATA, "OW", &[1, 2, 3, 4, 5, 6, 7, 8])
    };
    if trailer {
        b = b.el(Tag(0x7FE1, 0x0010), "LO", b"TRAILER ").el(Tag(0xFFFA, 0xFFFA), "SQ", b"");
    }
    b.out
}

/// The data sets: dicom-object's own encodings (`canonical`: the parsed
/// path re-encodes them byte for byte) and the hand-written ones.
fn data_sets() -> Vec<(String, String, Vec<u8>, bool)> {
    let mut out = Vec::new();
    let minimal = InMemDicomObject::from_element_iter([DataElement::new(tags::PATIENT_NAME, VR::PN, "A^B")]);
    let mut latin = sample();
    latin.put(DataElement::new(tags::PATIENT_NAME, VR::PN, "Jos\u{e9}^Mar\u{ed}a"));
    let mut japanese = sample();
    japanese.put(DataElement::new(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO 2022 IR 87"));
    for ts in [EXPLICIT, IMPLICIT, BIG] {
        for (name, obj) in [
            ("sample", sample()),
            ("minimal", minimal.clone()),
            ("empty", InMemDicomObject::new_empty()),
            ("latin", latin.clone()),
            ("japanese", japanese.clone()),
        ] {
            out.push((format!("{name} {ts}"), ts.to_string(), encode(&obj, ts), true));
        }
        for flags in 0..16 {
            out.push((format!("hand {flags} {ts}"), ts.to_string(), hand(ts, flags), false));
        }
    }
    for flags in [4, 5, 12, 15] {
        out.push((format!("hand {flags} {JPEG}"), JPEG.to_string(), hand(EXPLICIT, flags), false));
    }
    out
}

/// Operation sequences: each body runs under pcall with `ds` and `out(...)`.
const SCRIPTS: &[&str] = &[
    "ds.PatientName = 'X'",
    "ds.PatientName = 'ODD'; ds.PatientID = 'EVEN'",
    "ds.PatientName = ''; ds.PatientID = ''; ds.StudyDate = ''",
    "ds.PatientName = nil",
    "out(ds:delete('PatientName'), ds:delete('PatientWeight'), ds:delete('PatientName'))",
    "ds.ImageType = 'A\\\\B'",
    "ds.SOPInstanceUID = '1.2.345'; ds.StudyInstanceUID = '1.2'; out(ds.SOPInstanceUID, ds.StudyInstanceUID)",
    "ds.InstanceCreationDate = '20200101'; ds.StudyDescription = 'desc'",
    "ds['(7FE1,0010)'] = 'CREATOR'; ds:set('(7FE1,1001)', 'x', 'LO')",
    "ds:set('(0009,1002)', 'y', 'LO'); ds:set('(0009,0010)', 'NEW CREATOR')",
    "ds.StudyDescription = 'd'; ds.StudyDescription = nil; out(ds:has('StudyDescription'))",
    "ds.PatientName = nil; ds.PatientName = 'Y'; out(ds.PatientName, ds:has('PatientName'))",
    "ds.PatientName = '  A^B '; out(ds.PatientName)",
    "out(ds.PatientName, ds.PatientID, ds.SOPInstanceUID, ds.SOPClassUID, ds.StudyDate, ds.AccessionNumber)",
    "out(ds.SeriesNumber, ds.InstanceNumber, ds.SliceThickness, ds.ImageType, ds.PatientAge, ds.PatientComments)",
    "out(ds:has('PatientName'), ds:has('PatientWeight'), ds:has('ReferencedStudySequence'), ds.PatientWeight)",
    "ds.SeriesNumber = 12; ds.InstanceNumber = '13'; out(ds.SeriesNumber, ds.InstanceNumber)",
    "ds.SliceThickness = 1.25; ds.PixelSpacing = '0.5\\\\0.5'; out(ds.SliceThickness, ds.PixelSpacing)",
    "ds.SliceThickness = '1.5\\\\2'; out(ds.SliceThickness)",
    "ds.PatientID = 42; ds.PatientName = 1.5; out(ds.PatientID, ds.PatientName)",
    "ds.SeriesNumber = 'many'",
    "ds.SeriesNumber = 2^40",
    "ds:set('PatientName', 'x', 'QQ')",
    "ds['(0009,1003)'] = 'x'",
    "ds.PatientName = 'Jos\\u{e9}'; out(ds.PatientName)",
    "ds.PatientName = 'X'; out(#ds.ReferencedStudySequence, ds.PatientName)",
    "ds.PatientName = 'X'; ds.PatientID = nil; out(table.concat(ds:tags(), ','))",
    "ds.PatientName = 'X'; out(ds:vr('PatientName'), ds:vr('PatientID'))",
    "ds.PatientName = 'X'; ds:append_item('ReferencedStudySequence', { ReferencedSOPInstanceUID = '9.9' })",
    "ds.PatientName = 'X'; ds.Rows = 4",
    "ds.ReferencedStudySequence = nil; ds.PixelData = nil; ds.PatientName = 'Z'",
    "ds.SpecificCharacterSet = 'ISO_IR 192'; ds.PatientName = 'X'",
    "ds.PatientName = 'X'; ds.SpecificCharacterSet = nil",
    "ds.PatientComments = string.rep('a', 70000)",
    "ds.PatientComments = string.rep('ab', 20000); out(#ds.PatientComments)",
    "ds.PatientName = 'X'; ds.PatientName = 'Y'; ds.PatientName = {'A', 'B'}; out(ds.PatientName)",
    "ds.OtherPatientIDs = 'P1\\\\P2'; ds.PatientSex = 'O'; ds.AccessionNumber = 'ACC'; ds.StudyID = 'S'; \
     ds.RetrieveURL = 'http://x/y'; ds.TextValue = 'long text'; out(ds.OtherPatientIDs, ds.RetrieveURL, ds.TextValue)",
    "out(ds.SpecificCharacterSet, ds['(0009,1001)'], ds['(0009,0010)']); ds.PatientName = 'P'",
    "for i = 1, 3 do ds.PatientName = 'N' .. i end; ds:delete('PatientID'); ds.PatientID = 'Q'; out(ds:get('PatientID'))",
];

fn runner(body: &str) -> LuaHost {
    let script = format!(
        "return {{ on_dimse = function(msg, ctx)
           local outs = {{}}
           local function out(...)
             for i = 1, select('#', ...) do
               local v = select(i, ...)
               if type(v) == 'table' then
                 local parts = {{}}
                 for _, x in ipairs(v) do parts[#parts + 1] = tostring(x) end
                 v = '{{' .. table.concat(parts, ',') .. '}}'
               end
               outs[#outs + 1] = tostring(v)
             end
           end
           local ok, e = pcall(function() local ds = msg.dataset; {body} end)
           ctx.vars.out = table.concat(outs, '|')
           if not ok then ctx.vars.err = tostring(e) end
         end }}"
    );
    host_with("raw", &script, serde_json::json!({}), false)
}

/// What a run gave: the error, the reads, whether changed, the bytes.
type Outcome = (Option<String>, String, bool, Result<Vec<u8>, String>);

fn run(h: &LuaHost, raw: &[u8], ts: &str, fast: bool) -> Outcome {
    let mut d = Dataset::new(raw.to_vec(), ts);
    if !fast {
        d.without_fast_path();
    }
    let msg = store_rq(DatasetState::Loaded(d), ts);
    let c = ctx(h);
    assert!(matches!(h.call_dimse(0, &msg, &c, "a"), DicomOutcome::Continue));
    let vars = c.vars().unwrap();
    let err = vars.get::<Option<String>>("err").unwrap();
    let out = vars.get::<Option<String>>("out").unwrap().unwrap_or_default();
    let DatasetState::Loaded(d) = std::mem::replace(&mut msg.borrow_mut().dataset, DatasetState::Absent) else {
        panic!("no data set")
    };
    (err, out, d.changed(), d.into_bytes())
}

/// A data set's meaning: every element, sequences recursively, text with
/// its padding trimmed, bytes with a padding NUL trimmed.
fn meaning(obj: &InMemDicomObject, out: &mut Vec<String>, depth: usize) {
    for e in obj.iter() {
        let head = format!("{:depth$}{} {:?}", "", e.tag(), e.vr());
        match e.value() {
            DicomValue::Sequence(s) => {
                out.push(format!("{head} items {}", s.items().len()));
                for item in s.items() {
                    meaning(item, out, depth + 1);
                }
            }
            DicomValue::PixelSequence(s) => out.push(format!("{head} {:?} {:?}", s.offset_table(), s.fragments())),
            DicomValue::Primitive(p) => {
                let v = match p {
                    PrimitiveValue::Str(_) | PrimitiveValue::Strs(_) => {
                        p.to_str().trim_end_matches(['\0', ' ']).to_string()
                    }
                    PrimitiveValue::Empty => String::new(),
                    p => {
                        let b = p.to_bytes();
                        format!("{:?}", b.strip_suffix(&[0]).unwrap_or(&b))
                    }
                };
                out.push(format!("{head} {v:?}"));
            }
        }
    }
}

fn meaning_of(raw: &[u8], ts: &str) -> Vec<String> {
    let mut out = Vec::new();
    meaning(&decode(raw, ts), &mut out, 0);
    out
}

#[test]
fn the_fast_path_means_what_the_parsed_path_means() {
    let sets = data_sets();
    let mut exact = 0;
    let mut compared = 0;
    for body in SCRIPTS {
        let h = runner(body);
        for (name, ts, raw, canonical) in &sets {
            let fast = run(&h, raw, ts, true);
            let parsed = run(&h, raw, ts, false);
            let what = format!("{name}: {body}");
            assert_eq!(fast.0, parsed.0, "error, {what}");
            assert_eq!(fast.1, parsed.1, "reads, {what}");
            assert_eq!(fast.2, parsed.2, "changed, {what}");
            match (&fast.3, &parsed.3) {
                (Ok(f), Ok(p)) => {
                    if !fast.2 {
                        assert_eq!(f, raw, "unchanged bytes, {what}");
                    }
                    assert_eq!(meaning_of(f, ts), meaning_of(p, ts), "meaning, {what}");
                    compared += 1;
                    if *canonical {
                        assert_eq!(f, p, "bytes, {what}");
                        exact += 1;
                    }
                }
                (Err(_), Err(_)) => {}
                (f, p) => panic!("into_bytes differs, {what}: {:?} / {:?}", f.as_ref().err(), p.as_ref().err()),
            }
        }
    }
    assert!(compared > 1500 && exact > 300, "{compared} {exact}");
}

#[test]
fn the_fast_path_is_taken_for_text_and_left_for_the_rest() {
    let h = runner("ds.PatientName = 'X'; out(ds.PatientID, ds:has('Rows'))");
    for ts in [EXPLICIT, IMPLICIT, BIG] {
        let mut d = Dataset::new(encode(&sample(), ts), ts);
        assert!(d.fast().is_some(), "{ts}");
        let msg = store_rq(DatasetState::Loaded(d), ts);
        assert!(matches!(h.call_dimse(0, &msg, &ctx(&h), "a"), DicomOutcome::Continue));
        let DatasetState::Loaded(d) = &mut msg.borrow_mut().dataset else { panic!() };
        assert!(!d.is_parsed(), "{ts}: set and reads of text stay raw");
        assert!(d.changed());
    }
    // a sequence read parses
    let h = runner("ds.PatientName = 'X'; out(#ds.ReferencedStudySequence)");
    let msg = store_rq(DatasetState::Loaded(Dataset::new(encode(&sample(), EXPLICIT), EXPLICIT)), EXPLICIT);
    assert!(matches!(h.call_dimse(0, &msg, &ctx(&h), "a"), DicomOutcome::Continue));
    let DatasetState::Loaded(d) = &mut msg.borrow_mut().dataset else { panic!() };
    assert!(d.is_parsed());
    // character sets where ASCII is not itself, deflate: never raw
    let mut jp = sample();
    jp.put(DataElement::new(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 13"));
    assert!(Dataset::new(encode(&jp, EXPLICIT), EXPLICIT).fast().is_none());
    assert!(Dataset::new(encode(&sample(), EXPLICIT), "1.2.840.10008.1.2.1.99").fast().is_none());
}

#[test]
fn garbage_never_panics_on_the_fast_path() {
    let scripts = [
        "ds.PatientName = 'x'; out(ds.PatientID, ds:has('PatientName'))",
        "ds.PatientName = nil; ds.StudyDescription = 'y'",
        "ds.PatientName = 'x'; local _ = ds:tags()",
    ];
    let mut inputs: Vec<(Vec<u8>, &str)> = vec![
        (vec![0x10, 0, 0x10, 0, b'P', b'N', 0xFF, 0xFF, 1, 2], EXPLICIT),
        (vec![0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF], IMPLICIT),
        (vec![0xFF; 12], EXPLICIT),
    ];
    for ts in [EXPLICIT, IMPLICIT, BIG] {
        for raw in [encode(&sample(), ts), hand(ts, 15), hand(ts, 6)] {
            inputs.extend((0..raw.len()).step_by(3).map(|n| (raw[..n].to_vec(), ts)));
            // flipped bytes in the headers
            for at in (0..raw.len()).step_by(5) {
                let mut bad = raw.clone();
                bad[at] ^= 0xA5;
                inputs.push((bad, ts));
            }
        }
    }
    let mut diverged = 0;
    for body in scripts {
        let h = runner(body);
        for (raw, ts) in &inputs {
            let fast = run(&h, raw, ts, true);
            let parsed = run(&h, raw, ts, false);
            // where the parsed path read the bytes, the fast path agrees
            if parsed.0.is_none() {
                assert_eq!(fast.0, None, "{body} {ts} {raw:?}");
                assert_eq!(fast.1, parsed.1);
                if let (Ok(f), Ok(p)) = (&fast.3, &parsed.3) {
                    assert_eq!(meaning_of(f, ts), meaning_of(p, ts));
                }
            } else if fast.0.is_none() {
                diverged += 1;
            }
        }
    }
    // the strict walk could accept what the parser refuses (values it does
    // not read); on these inputs it never does
    assert_eq!(diverged, 0, "of {}", inputs.len() * scripts.len());
}

// ---------------------------------------------------------------------------
// Review: hostile bytes against the prescan (`check_lengths` must stop every
// declared length dicom-parser would allocate) and resource escapes.

/// Explicit VR LE bytes: one sane element, then a top-level (FFFE,xxxx)
/// header with `len` and nothing after it.
fn stray_ffe(element: u16, len: u32) -> Vec<u8> {
    let mut b = B::new(EXPLICIT).el(Tag(0x0010, 0x0010), "PN", b"A ").out;
    b.extend_from_slice(&0xFFFEu16.to_le_bytes());
    b.extend_from_slice(&element.to_le_bytes());
    b.extend_from_slice(&len.to_le_bytes());
    b
}

#[test]
fn review_stray_item_tags_declare_lengths_too() {
    // dicom-parser reads any (FFFE,xxxx) at the top level other than an item
    // delimiter (E00D) as an element of VR UN and allocates + zero-fills its
    // length before reading; the non-strict walk steps over 8 bytes.
    for element in [0xE0DD, 0x1234, 0x0000] {
        let b = stray_ffe(element, 0xFFFF_FFF0);
        assert!(
            super::prescan::check_lengths(&b, true, false).is_err(),
            "(FFFE,{element:04X}) declaring 4 GiB passes check_lengths"
        );
    }
}

#[test]
fn review_stray_item_tag_reaches_the_parser_allocation() {
    let b = stray_ffe(0x1234, 0x1000_0000);
    let mut d = Dataset::new(b, EXPLICIT);
    let t = std::time::Instant::now();
    let e = d.object().expect_err("truncated");
    // with the prescan working, the error is its own ("declares N bytes")
    assert!(e.contains("declares"), "parser reached ({:?}): {e}", t.elapsed());
}

/// Explicit VR LE: (0009,1000) UN of undefined length, an item of undefined
/// length, then an element whose header reads one way as implicit VR (what
/// the prescan assumes inside an explicit UN of undefined length) and
/// another as explicit VR (what dicom-parser 0.10 does: it keeps the
/// transfer syntax and only drops the VR).
fn un_undefined_smuggle(declared: u32) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&[0x09, 0x00, 0x00, 0x10, b'U', b'N', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF]);
    b.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
    // (0009,1010): implicit, length "OB\0\0" = 0x424F; explicit, OB of `declared`
    b.extend_from_slice(&[0x09, 0x00, 0x10, 0x10, b'O', b'B', 0, 0]);
    let implicit_len = u32::from_le_bytes([b'O', b'B', 0, 0]) as usize;
    let mut value = vec![0u8; implicit_len];
    value[..4].copy_from_slice(&declared.to_le_bytes());
    b.extend_from_slice(&value);
    b
}

#[test]
fn review_un_of_undefined_length_is_read_like_the_parser() {
    let b = un_undefined_smuggle(0xFFFF_FFF0);
    assert!(
        super::prescan::check_lengths(&b, true, false).is_err(),
        "an OB declaring 4 GiB (as dicom-parser reads it) passes check_lengths"
    );
}

#[test]
fn review_un_smuggle_reaches_the_parser_allocation() {
    let mut d = Dataset::new(un_undefined_smuggle(0x1000_0000), EXPLICIT);
    let t = std::time::Instant::now();
    let e = d.object().expect_err("truncated");
    assert!(e.contains("declares"), "parser reached ({:?}): {e}", t.elapsed());
}

/// Explicit VR LE: `depth` sequences of undefined length, each in an item
/// of the one above, all closed.
fn nested(depth: usize) -> Vec<u8> {
    let mut b = Vec::with_capacity(depth * 36);
    for _ in 0..depth {
        b.extend_from_slice(&[0x08, 0x00, 0x10, 0x11, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF]);
        b.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
    }
    for _ in 0..depth {
        b.extend_from_slice(&[0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]);
        b.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
    }
    b
}

#[test]
fn review_deeply_nested_network_data_set_is_refused() {
    // a worker thread has the default 2 MiB stack
    let r = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(|| {
            let mut d = Dataset::new(nested(50_000), EXPLICIT);
            d.object().map(|_| ())
        })
        .unwrap()
        .join()
        .unwrap();
    assert!(r.is_err(), "a 50,000-deep data set should be refused before parsing");
}

#[test]
fn review_moderately_nested_data_sets_still_parse() {
    let mut d = Dataset::new(nested(64), EXPLICIT);
    assert!(d.object().is_ok());
    assert_eq!(d.into_bytes().unwrap(), nested(64));
}

fn review_run(script: &str, msg: &DimseMsg) -> (bool, std::time::Duration) {
    let h = super::tests::host_with("review", script, serde_json::json!({}), false);
    let c = ctx(&h);
    let t = std::time::Instant::now();
    let out = h.call_dimse(0, msg, &c, "a");
    (matches!(out, DicomOutcome::Continue), t.elapsed())
}

#[test]
fn review_self_copy_cannot_escape_the_memory_limit() {
    // each round copies the whole data set (with all earlier copies) into
    // one of its own items: 2^n copies for n rounds, a few instructions each.
    // 16 rounds: ~60 MB of Rust memory, 32 MiB Lua limit; 30 rounds: ~1 TB.
    let script = r#"return { on_dimse = function(msg)
        local ds = msg.dataset
        for i = 1, 16 do ds.ReferencedStudySequence = { ds, ds } end
      end }"#;
    let msg = super::tests::loaded(EXPLICIT);
    let (ok, took) = review_run(script, &msg);
    let loaded = matches!(&msg.borrow().dataset, DatasetState::Loaded(_));
    let size = if loaded { super::tests::take_bytes(&msg).len() } else { 0 };
    assert!(!ok, "the call went through ({took:?}) leaving a data set of {size} bytes (Lua limit 32 MiB)");
}

#[test]
fn review_deep_nesting_by_script_is_bounded() {
    // ~10 instructions per level; with_item_mut recurses once per level and
    // every append walks the whole path
    let script = r#"return { on_dimse = function(msg)
        local it = msg.dataset
        for i = 1, 20000 do it = it:append_item("ReferencedStudySequence", {}) end
      end }"#;
    let msg = super::tests::loaded(EXPLICIT);
    let (ok, took) = review_run(script, &msg);
    assert!(!ok || took < std::time::Duration::from_millis(200), "20,000 levels took {took:?}");
}
