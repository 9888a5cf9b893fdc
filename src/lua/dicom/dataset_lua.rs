//! The data set object scripts see (`msg.dataset` and its sequence items):
//! a userdata naming its message and the path of (sequence tag, item index)
//! from the root, so items stay views into the one shared data set.

use super::dataset::{
    approx_size, check_settable, item, resolve, tag_str, vr_for, with_item_mut, DatasetState, ItemPath, GROWTH_MAX,
};
use super::msg::{DimseMsg, DimseSlot, DimseState};
use super::raw::{is_text, Raw};
use dicom_core::value::{DataSetSequence, PrimitiveValue, Value as DicomValue, C};
use dicom_core::{DataElement, Length, Tag, VR};
use dicom_object::mem::InMemElement;
use dicom_object::InMemDicomObject;
use mlua::{Lua, MetaMethod, UserData, UserDataMethods, Value};
use std::cell::RefMut;

/// A data set, or one item of a sequence inside it.
pub(crate) struct DsUd {
    slot: DimseSlot,
    /// The message's `id`, not the message: the object (which a script may
    /// keep, and which lives until the Lua GC gets to it) must hold no Rust
    /// memory of its own. The GC sees only the userdata's bytes, so what it
    /// pointed to would pile up between two collections (RSS grew from 7 to
    /// 20 MB over 160,000 C-STOREs when it held the message).
    id: u64,
    path: ItemPath,
}

fn bad(msg: impl Into<String>) -> mlua::Error {
    mlua::Error::runtime(msg.into())
}

fn borrow(msg: &DimseMsg) -> mlua::Result<RefMut<'_, DimseState>> {
    msg.try_borrow_mut().map_err(|_| bad("the data set is in use"))
}

impl DsUd {
    pub(crate) fn root(slot: DimseSlot, id: u64) -> DsUd {
        DsUd { slot, id, path: Vec::new() }
    }

    fn child(&self, tag: Tag, index: usize) -> mlua::Result<DsUd> {
        if self.path.len() >= MAX_ITEM_DEPTH {
            return Err(bad(format!("sequence items nest at most {MAX_ITEM_DEPTH} deep")));
        }
        let mut path = self.path.clone();
        path.push((tag, index));
        Ok(DsUd { slot: self.slot.clone(), id: self.id, path })
    }

    /// Count bytes a script adds to the data set (see `Dataset::grow`).
    fn grow(&self, bytes: usize) -> mlua::Result<()> {
        let msg = self.msg()?;
        let mut state = borrow(&msg)?;
        match &mut state.dataset {
            DatasetState::Loaded(ds) => ds.grow(bytes).map_err(bad),
            _ => Ok(()),
        }
    }

    /// The message, if this object still belongs to the running call.
    fn msg(&self) -> mlua::Result<DimseMsg> {
        let stale = || bad("a data set is only valid during the hook call of its message");
        let msg = self.slot.try_borrow().ok().and_then(|s| s.clone()).ok_or_else(stale)?;
        let id = msg.try_borrow().map_err(|_| bad("the data set is in use"))?.id;
        if id != self.id {
            return Err(stale());
        }
        Ok(msg)
    }

    /// Run `f` on this object's item; `f` says whether it changed something,
    /// which marks the data set changed.
    fn with<R>(&self, f: impl FnOnce(&mut InMemDicomObject) -> mlua::Result<(R, bool)>) -> mlua::Result<R> {
        let msg = self.msg()?;
        let mut state = borrow(&msg)?;
        let DatasetState::Loaded(ds) = &mut state.dataset else {
            return Err(bad("the data set is no longer available"));
        };
        let root = ds.object().map_err(bad)?;
        let (v, changed) = with_item_mut(root, &self.path, |obj| f(obj).map_err(|e| clean(&e))).map_err(bad)?;
        if changed {
            ds.touch();
        }
        Ok(v)
    }

    fn read<R>(&self, f: impl FnOnce(&InMemDicomObject) -> mlua::Result<R>) -> mlua::Result<R> {
        let msg = self.msg()?;
        let mut state = borrow(&msg)?;
        let DatasetState::Loaded(ds) = &mut state.dataset else {
            return Err(bad("the data set is no longer available"));
        };
        let root = ds.object().map_err(bad)?;
        f(item(root, &self.path).map_err(bad)?)
    }

    /// Run `f` on the raw fast path of the root data set (see `raw.rs`);
    /// `f` says whether it changed something. `None`: not available here
    /// (an item, a data set parsed already, bytes the fast path stays out
    /// of) or `f` declined: the caller takes the parsed path.
    fn fast<R>(&self, f: impl FnOnce(&mut Raw, &[u8]) -> Option<(R, bool)>) -> mlua::Result<Option<R>> {
        if !self.path.is_empty() {
            return Ok(None);
        }
        let msg = self.msg()?;
        let mut state = borrow(&msg)?;
        let DatasetState::Loaded(ds) = &mut state.dataset else {
            return Err(bad("the data set is no longer available"));
        };
        let Some((v, changed)) = ds.fast().and_then(|(r, raw)| f(r, raw)) else { return Ok(None) };
        if changed {
            ds.touch();
        }
        Ok(Some(v))
    }

    fn get(&self, lua: &Lua, tag: Tag) -> mlua::Result<Value> {
        // values are converted to plain data first, Lua objects made after
        // the borrow ends (a Lua allocation may run a script's finalizer)
        let fast = self.fast(|r, raw| r.get(raw, tag).map(|v| (v, false)))?;
        let plain = match fast {
            Some(v) => v.map(|(vr, p)| to_plain(&DataElement::new(tag, vr, p))),
            None => self.read(|obj| Ok(obj.get(tag).map(to_plain)))?,
        };
        match plain {
            None => Ok(Value::Nil),
            Some(p) => plain_to_lua(lua, p, |i| self.child(tag, i)),
        }
    }

    fn set(&self, lua: &Lua, tag: Tag, value: Value, vr: Option<String>) -> mlua::Result<()> {
        check_settable(tag).map_err(bad)?;
        if value.is_nil() {
            if self.fast(|r, _| r.delete(tag).map(|gone| ((), gone)))?.is_some() {
                return Ok(());
            }
            return self.with(|obj| Ok(((), obj.remove_element(tag))));
        }
        if let Some(vr) = self.fast(|r, _| r.vr_for(tag, vr.as_deref()).map(|vr| (vr, false)))? {
            if let Some(p) = fast_value(vr, &value) {
                self.grow(p.calculate_byte_len() + 12)?;
                if self.fast(|r, _| r.set(tag, vr, p).then_some(((), true)))?.is_some() {
                    return Ok(());
                }
            }
        }
        // build the items of a sequence before borrowing the message: they
        // may copy other items of this same data set
        let pending = self.read(|obj| vr_for(obj, tag, vr.as_deref()).map_err(bad))?;
        let elt = build_element(lua, tag, pending, &value, 0)?;
        self.grow(element_size(&elt))?;
        self.with(|obj| {
            obj.put(elt);
            Ok(((), true))
        })
    }
}

/// The value a set on the fast path stores: what `build_element` would
/// build, for text VRs and scalar values only (anything else, errors
/// included, is left to the parsed path).
fn fast_value(vr: VR, value: &Value) -> Option<PrimitiveValue> {
    if !is_text(vr) {
        return None;
    }
    match value {
        Value::String(s) if s.as_bytes().is_empty() => Some(PrimitiveValue::Empty),
        Value::String(_) | Value::Integer(_) | Value::Number(_) => primitive(vr, value).ok(),
        _ => None,
    }
}

/// An element's value as plain Rust data (no Lua objects).
enum Plain {
    Str(String),
    Bytes(Vec<u8>),
    Ints(Vec<i64>),
    Floats(Vec<f64>),
    Items(usize),
    Fragments(Vec<Vec<u8>>),
    Empty,
}

fn is_binary(vr: VR) -> bool {
    matches!(vr, VR::OB | VR::OW | VR::OD | VR::OF | VR::OL | VR::OV | VR::UN)
}

/// Text VRs in which `\` separates values.
fn is_multi_text(vr: VR) -> bool {
    matches!(
        vr,
        VR::AE
            | VR::AS
            | VR::CS
            | VR::DA
            | VR::DS
            | VR::DT
            | VR::IS
            | VR::LO
            | VR::PN
            | VR::SH
            | VR::TM
            | VR::UC
            | VR::UI
    )
}

fn to_plain(e: &InMemElement) -> Plain {
    let vr = e.vr();
    let p = match e.value() {
        DicomValue::Sequence(s) => return Plain::Items(s.items().len()),
        DicomValue::PixelSequence(s) => return Plain::Fragments(s.fragments().to_vec()),
        DicomValue::Primitive(p) => p,
    };
    if is_binary(vr) {
        return Plain::Bytes(p.to_bytes().into_owned());
    }
    let text = || Plain::Str(p.to_str().trim_matches(['\0', ' ']).to_string());
    match vr {
        VR::AT => match p {
            PrimitiveValue::Tags(tags) => Plain::Str(tags.iter().map(|t| tag_str(*t)).collect::<Vec<_>>().join("\\")),
            _ => text(),
        },
        VR::US | VR::SS | VR::UL | VR::SL | VR::SV | VR::UV | VR::IS => {
            if p.multiplicity() == 0 || p.to_str().trim_matches(['\0', ' ']).is_empty() {
                return Plain::Empty;
            }
            p.to_multi_int::<i64>().map(Plain::Ints).unwrap_or_else(|_| text())
        }
        VR::FL | VR::FD | VR::DS => {
            if p.multiplicity() == 0 || p.to_str().trim_matches(['\0', ' ']).is_empty() {
                return Plain::Empty;
            }
            p.to_multi_float64().map(Plain::Floats).unwrap_or_else(|_| text())
        }
        _ => text(),
    }
}

fn plain_to_lua(lua: &Lua, p: Plain, child: impl Fn(usize) -> mlua::Result<DsUd>) -> mlua::Result<Value> {
    fn many<T: mlua::IntoLua + Copy>(lua: &Lua, v: &[T]) -> mlua::Result<Value> {
        match v {
            [one] => one.into_lua(lua),
            _ => Ok(Value::Table(lua.create_sequence_from(v.iter().copied())?)),
        }
    }
    Ok(match p {
        Plain::Str(s) => Value::String(lua.create_string(s)?),
        Plain::Bytes(b) => Value::String(lua.create_string(b)?),
        Plain::Ints(v) => many(lua, &v)?,
        Plain::Floats(v) => many(lua, &v)?,
        Plain::Empty => Value::Nil,
        Plain::Items(n) => {
            let t = lua.create_table_with_capacity(n, 0)?;
            for i in 0..n {
                t.raw_push(lua.create_userdata(child(i)?)?)?;
            }
            Value::Table(t)
        }
        Plain::Fragments(f) => {
            let t = lua.create_table_with_capacity(f.len(), 0)?;
            for frag in f {
                t.raw_push(lua.create_string(frag)?)?;
            }
            Value::Table(t)
        }
    })
}

/// The values of a (possibly multi-valued) Lua value: a table is a list.
fn scalars(value: &Value) -> mlua::Result<Vec<Value>> {
    match value {
        Value::Table(t) => t.sequence_values::<Value>().collect(),
        v => Ok(vec![v.clone()]),
    }
}

fn text_of(v: &Value) -> mlua::Result<String> {
    Ok(match v {
        Value::String(s) => String::from_utf8_lossy(&s.as_bytes()).into_owned(),
        Value::Integer(n) => n.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Boolean(b) => b.to_string(),
        other => return Err(bad(format!("cannot use a {} as a DICOM value", other.type_name()))),
    })
}

fn number_of(v: &Value) -> mlua::Result<f64> {
    match v {
        Value::Integer(n) => Ok(*n as f64),
        Value::Number(n) => Ok(*n),
        Value::String(s) => {
            s.to_str()?.trim().parse::<f64>().map_err(|_| bad(format!("'{}' is not a number", s.to_string_lossy())))
        }
        other => Err(bad(format!("expected a number, got a {}", other.type_name()))),
    }
}

fn int_of(v: &Value, lo: i128, hi: i128, vr: VR) -> mlua::Result<i128> {
    let n = match v {
        Value::Integer(n) => i128::from(*n),
        Value::Number(f) if f.fract() == 0.0 && f.is_finite() => *f as i128,
        Value::String(s) => s
            .to_str()?
            .trim()
            .parse::<i128>()
            .map_err(|_| bad(format!("'{}' is not an integer", s.to_string_lossy())))?,
        other => return Err(bad(format!("{vr:?} needs integers, got a {}", other.type_name()))),
    };
    if n < lo || n > hi {
        return Err(bad(format!("{n} is out of range for {vr:?}")));
    }
    Ok(n)
}

/// A Decimal String of at most 16 characters.
fn ds_text(f: f64) -> mlua::Result<String> {
    if !f.is_finite() {
        return Err(bad("DS values must be finite numbers"));
    }
    if f.fract() == 0.0 && f.abs() < 1e15 {
        return Ok(format!("{}", f as i64));
    }
    let plain = format!("{f}");
    if plain.len() <= 16 {
        return Ok(plain);
    }
    for p in (0..=10).rev() {
        let s = format!("{f:.p$e}");
        if s.len() <= 16 {
            return Ok(s);
        }
    }
    Err(bad(format!("{f} does not fit a DS value")))
}

fn primitive(vr: VR, value: &Value) -> mlua::Result<PrimitiveValue> {
    macro_rules! ints {
        ($t:ty, $variant:ident) => {{
            let mut out: C<$t> = C::new();
            for v in scalars(value)? {
                out.push(int_of(&v, i128::from(<$t>::MIN), i128::from(<$t>::MAX), vr)? as $t);
            }
            PrimitiveValue::$variant(out)
        }};
    }
    macro_rules! chunks {
        ($t:ty, $n:expr, $variant:ident) => {{
            let Value::String(s) = value else {
                return Err(bad(format!("{vr:?} values are byte strings, not a {}", value.type_name())));
            };
            let b = s.as_bytes();
            if b.len() % $n != 0 {
                return Err(bad(format!("{vr:?} values need a multiple of {} bytes", $n)));
            }
            PrimitiveValue::$variant(
                b.chunks_exact($n).map(|c| <$t>::from_le_bytes(c.try_into().unwrap_or_default())).collect(),
            )
        }};
    }
    Ok(match vr {
        VR::US => ints!(u16, U16),
        VR::SS => ints!(i16, I16),
        VR::UL => ints!(u32, U32),
        VR::SL => ints!(i32, I32),
        VR::SV => ints!(i64, I64),
        VR::UV => ints!(u64, U64),
        VR::FL => PrimitiveValue::F32(
            scalars(value)?.iter().map(|v| number_of(v).map(|f| f as f32)).collect::<mlua::Result<_>>()?,
        ),
        VR::FD => PrimitiveValue::F64(scalars(value)?.iter().map(number_of).collect::<mlua::Result<_>>()?),
        VR::IS => PrimitiveValue::Strs(
            scalars(value)?
                .iter()
                .map(|v| int_of(v, -(1 << 31), (1 << 31) - 1, vr).map(|n| n.to_string()))
                .collect::<mlua::Result<_>>()?,
        ),
        VR::DS => PrimitiveValue::Strs(
            scalars(value)?
                .iter()
                .map(|v| match v {
                    Value::String(_) => text_of(v),
                    v => ds_text(number_of(v)?),
                })
                .collect::<mlua::Result<_>>()?,
        ),
        VR::OB | VR::UN => match value {
            Value::String(s) => PrimitiveValue::U8(s.as_bytes().iter().copied().collect()),
            other => return Err(bad(format!("{vr:?} values are byte strings, not a {}", other.type_name()))),
        },
        VR::OW => chunks!(u16, 2, U16),
        VR::OF => chunks!(f32, 4, F32),
        VR::OL => chunks!(u32, 4, U32),
        VR::OD => chunks!(f64, 8, F64),
        VR::OV => chunks!(u64, 8, U64),
        VR::AT => {
            let mut tags: C<Tag> = C::new();
            for v in scalars(value)? {
                let t = text_of(&v)?;
                for part in t.split('\\') {
                    tags.push(resolve(part).map_err(bad)?);
                }
            }
            PrimitiveValue::Tags(tags)
        }
        vr if is_multi_text(vr) => {
            let mut out: C<String> = C::new();
            for v in scalars(value)? {
                out.extend(text_of(&v)?.split('\\').map(str::to_string));
            }
            PrimitiveValue::Strs(out)
        }
        _ => match value {
            Value::Table(_) => return Err(bad(format!("{vr:?} holds a single value, not a list"))),
            v => PrimitiveValue::Str(text_of(v)?),
        },
    })
}

/// Sequence/item levels a script may build or address (a data set from
/// the network is bounded likewise by the pre-scan).
const MAX_ITEM_DEPTH: usize = 64;

/// Roughly the bytes an element adds to a data set.
fn element_size(e: &InMemElement) -> usize {
    12 + match e.value() {
        DicomValue::Primitive(p) => p.calculate_byte_len(),
        DicomValue::Sequence(seq) => seq.items().iter().map(|i| 8 + approx_size(i, GROWTH_MAX)).sum(),
        DicomValue::PixelSequence(ps) => ps.fragments().iter().map(|f| 8 + f.len()).sum(),
    }
}

/// An item from a Lua table of `keyword = value` (or a copy of an item
/// object); `depth` counts the nesting of tables (a table may even contain
/// itself).
fn item_from(lua: &Lua, value: &Value, depth: usize) -> mlua::Result<InMemDicomObject> {
    if depth >= MAX_ITEM_DEPTH {
        return Err(bad(format!("sequence items nest at most {MAX_ITEM_DEPTH} deep")));
    }
    match value {
        Value::Table(t) => {
            let mut obj = InMemDicomObject::new_empty();
            for pair in t.pairs::<mlua::LuaString, Value>() {
                let (k, v) = pair?;
                let tag = resolve(&k.to_str()?).map_err(bad)?;
                check_settable(tag).map_err(bad)?;
                if v.is_nil() {
                    continue;
                }
                let vr = vr_for(&obj, tag, None).map_err(bad)?;
                obj.put(build_element(lua, tag, vr, &v, depth + 1)?);
            }
            Ok(obj)
        }
        Value::UserData(ud) => {
            let src = ud.borrow::<DsUd>().map_err(|_| bad("a sequence item must be a table or a data set item"))?;
            // the copy lives in Rust memory: its size counts against the growth budget
            let size = src.read(|obj| Ok(approx_size(obj, GROWTH_MAX + 1)))?;
            if size > GROWTH_MAX {
                return Err(bad(format!("an item copy of more than {} MiB", GROWTH_MAX >> 20)));
            }
            src.read(|obj| Ok(obj.clone()))
        }
        Value::Nil => Ok(InMemDicomObject::new_empty()),
        other => Err(bad(format!("a sequence item must be a table, not a {}", other.type_name()))),
    }
}

fn build_element(lua: &Lua, tag: Tag, vr: VR, value: &Value, depth: usize) -> mlua::Result<InMemElement> {
    // "" is an empty value of any VR (a C-FIND return key, a type 2 attribute)
    if matches!(value, Value::String(s) if s.as_bytes().is_empty()) {
        return Ok(match vr {
            VR::SQ => DataElement::new(tag, vr, DataSetSequence::new(C::<InMemDicomObject>::new(), Length::UNDEFINED)),
            _ => DataElement::new(tag, vr, PrimitiveValue::Empty),
        });
    }
    if vr != VR::SQ {
        let p = primitive(vr, value).map_err(|e| bad(format!("{}: {}", tag_str(tag), clean(&e))))?;
        return Ok(DataElement::new(tag, vr, p));
    }
    let items: C<InMemDicomObject> = match value {
        // a table with string keys is one item; a list is several
        Value::Table(t) if t.raw_len() == 0 && !t.is_empty() => {
            std::iter::once(item_from(lua, value, depth)).collect::<mlua::Result<_>>()?
        }
        Value::Table(t) => {
            t.sequence_values::<Value>().map(|v| item_from(lua, &v?, depth)).collect::<mlua::Result<_>>()?
        }
        Value::UserData(_) => std::iter::once(item_from(lua, value, depth)).collect::<mlua::Result<_>>()?,
        other => {
            return Err(bad(format!("{}: a sequence needs a list of items, not a {}", tag_str(tag), other.type_name())))
        }
    };
    Ok(DataElement::new(tag, VR::SQ, DataSetSequence::new(items, Length::UNDEFINED)))
}

fn clean(e: &mlua::Error) -> String {
    match e {
        mlua::Error::RuntimeError(m) => m.clone(),
        e => e.to_string(),
    }
}

/// A tag argument: a keyword, a "(gggg,eeee)" string or a 32-bit integer.
fn tag_arg(v: &Value) -> mlua::Result<Tag> {
    match v {
        Value::String(s) => resolve(&s.to_str()?).map_err(bad),
        Value::Integer(n) if (0..=0xFFFF_FFFF).contains(n) => Ok(Tag((*n >> 16) as u16, (*n & 0xFFFF) as u16)),
        other => Err(bad(format!("a DICOM attribute is a keyword or a tag string, not a {}", other.type_name()))),
    }
}

impl UserData for DsUd {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_method("get", |lua, this, key: Value| this.get(lua, tag_arg(&key)?));
        m.add_method("set", |lua, this, (key, value, vr): (Value, Value, Option<String>)| {
            this.set(lua, tag_arg(&key)?, value, vr)
        });
        m.add_method("delete", |_, this, key: Value| {
            let tag = tag_arg(&key)?;
            if let Some(gone) = this.fast(|r, _| r.delete(tag).map(|gone| (gone, gone)))? {
                return Ok(gone);
            }
            this.with(|obj| {
                let gone = obj.remove_element(tag);
                Ok((gone, gone))
            })
        });
        m.add_method("has", |_, this, key: Value| {
            let tag = tag_arg(&key)?;
            if let Some(has) = this.fast(|r, _| Some((r.has(tag), false)))? {
                return Ok(has);
            }
            this.read(|obj| Ok(obj.get(tag).is_some()))
        });
        m.add_method("vr", |_, this, key: Value| {
            let tag = tag_arg(&key)?;
            this.read(|obj| Ok(obj.get(tag).map(|e| e.vr().to_string().to_string())))
        });
        m.add_method("tags", |lua, this, ()| {
            let tags: Vec<String> = this.read(|obj| Ok(obj.tags().map(tag_str).collect()))?;
            lua.create_sequence_from(tags)
        });
        m.add_method("append_item", |lua, this, (key, value): (Value, Value)| {
            let tag = tag_arg(&key)?;
            check_settable(tag).map_err(bad)?;
            let vr = this.read(|obj| vr_for(obj, tag, None).map_err(bad))?;
            if vr != VR::SQ {
                return Err(bad(format!("{} is not a sequence", tag_str(tag))));
            }
            let new_item = item_from(lua, &value, this.path.len())?;
            this.grow(8 + approx_size(&new_item, GROWTH_MAX))?;
            let index = this.with(|obj| {
                let mut items: C<InMemDicomObject> = match obj.take_element(tag).ok().map(|e| e.into_value()) {
                    Some(DicomValue::Sequence(s)) => s.into_items(),
                    _ => C::new(),
                };
                items.push(new_item);
                let index = items.len() - 1;
                obj.put(DataElement::new(tag, VR::SQ, DataSetSequence::new(items, Length::UNDEFINED)));
                Ok((index, true))
            })?;
            this.child(tag, index)
        });
        m.add_meta_method(MetaMethod::Index, |lua, this, key: Value| this.get(lua, tag_arg(&key)?));
        m.add_meta_method(MetaMethod::NewIndex, |lua, this, (key, value): (Value, Value)| {
            this.set(lua, tag_arg(&key)?, value, None)
        });
        m.add_meta_method(MetaMethod::ToString, |_, this, ()| {
            Ok(match this.path.last() {
                None => "dataset".to_string(),
                Some((t, i)) => format!("dataset item {} #{}", tag_str(*t), i + 1),
            })
        });
    }
}
