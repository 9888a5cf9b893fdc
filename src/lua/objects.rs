//! The `req` and `res` objects scripts see. The Rust side is a userdata over
//! the message being processed (`MessageState`); the Lua prelude wraps it in a
//! table whose `body` field can suspend the hook until the body is buffered.

use http1::{is_valid_field_name, is_valid_field_value, Headers};
use mlua::{AnyUserData, Lua, LuaString, MetaMethod, Table, UserData, UserDataMethods, Value};
use std::cell::RefCell;
use std::rc::Rc;

/// Whether a message's body is available to scripts yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// The message has a body that has not been buffered.
    Pending,
    /// The whole body (possibly empty).
    Loaded(Vec<u8>),
}

/// A request or response as stages see and change it.
#[derive(Debug)]
pub struct MessageState {
    pub is_request: bool,
    pub method: String,
    /// The normalised path, endpoint prefix included.
    pub path: String,
    pub query: Option<String>,
    pub status: u16,
    pub headers: Headers,
    pub body: Body,
    /// A script assigned the body (framing must be recomputed).
    pub body_changed: bool,
    pub path_changed: bool,
    /// The client's address (formatted only if a script asks for it).
    pub peer: Option<std::net::SocketAddr>,
}

pub type Message = Rc<RefCell<MessageState>>;

/// Which message a host's `req` (or `res`) object stands for right now. The
/// objects are created once per state and pointed at the message of the
/// call being run, so a hook call allocates no userdata; outside a call the
/// slot is empty and using a stashed `req` is an error.
pub(crate) type Slot = Rc<RefCell<Option<Message>>>;

/// The userdata behind `req`/`res`.
pub(crate) struct MsgUd(pub Slot);
/// The userdata behind `req.headers`/`res.headers`.
pub(crate) struct HeadersUd(pub Slot);

fn current(slot: &Slot) -> mlua::Result<Message> {
    slot.try_borrow()
        .map_err(|_| bad(IN_USE))?
        .clone()
        .ok_or_else(|| bad("req/res objects are only valid during the hook call they were passed to"))
}

/// A message touched while another access to it runs (e.g. from a `__gc`
/// finalizer a collection started in the middle of one).
const IN_USE: &str = "req/res is in use (touched from a finalizer?)";

fn bad(msg: impl Into<String>) -> mlua::Error {
    mlua::Error::runtime(msg.into())
}

impl UserData for MsgUd {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_method("get", |lua, this, key: LuaString| {
            let msg = current(&this.0)?;
            let s = msg.try_borrow().map_err(|_| bad(IN_USE))?;
            let key = key.to_str()?;
            Ok(match &*key {
                "method" if s.is_request => Value::String(lua.create_string(&s.method)?),
                "path" if s.is_request => Value::String(lua.create_string(&s.path)?),
                "query" if s.is_request => Value::Table(query_table(lua, s.query.as_deref())?),
                "raw_query" if s.is_request => match &s.query {
                    Some(q) => Value::String(lua.create_string(q)?),
                    None => Value::Nil,
                },
                "peer" if s.is_request => match s.peer {
                    Some(p) => Value::String(lua.create_string(p.to_string())?),
                    None => Value::Nil,
                },
                "status" if !s.is_request => Value::Integer(i64::from(s.status)),
                "headers" => Value::UserData(lua.create_userdata(HeadersUd(this.0.clone()))?),
                _ => Value::Nil,
            })
        });
        m.add_method("set", |_, this, (key, value): (LuaString, Value)| {
            let msg = current(&this.0)?;
            let mut s = msg.try_borrow_mut().map_err(|_| bad(IN_USE))?;
            let key = key.to_str()?;
            match (&*key, value) {
                ("method", Value::String(v)) if s.is_request => {
                    let v = v.to_str()?.to_string();
                    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
                    {
                        return Err(bad(format!("invalid method '{v}'")));
                    }
                    s.method = v;
                }
                ("path", Value::String(v)) if s.is_request => {
                    let v = v.to_str()?.to_string();
                    if !v.starts_with('/') || v.bytes().any(|b| b <= b' ' || b == 0x7f || b == b'?' || b == b'#') {
                        return Err(bad(format!("invalid path '{v}' (must start with '/', no spaces, '?' or '#')")));
                    }
                    s.path = v;
                    s.path_changed = true;
                }
                ("query", Value::Nil) if s.is_request => s.query = None,
                ("query", Value::String(v)) if s.is_request => {
                    let v = v.to_str()?.to_string();
                    if v.bytes().any(|b| b <= b' ' || b == 0x7f || b == b'#') {
                        return Err(bad("invalid query string"));
                    }
                    s.query = Some(v);
                }
                ("query", Value::Table(t)) if s.is_request => s.query = Some(encode_query(&t)?),
                ("status", Value::Integer(n)) if !s.is_request => {
                    if !(100..=999).contains(&n) {
                        return Err(bad(format!("invalid status {n}")));
                    }
                    s.status = n as u16;
                }
                ("body", Value::String(v)) => {
                    s.body = Body::Loaded(v.as_bytes().to_vec());
                    s.body_changed = true;
                }
                ("body", Value::Nil) => {
                    s.body = Body::Loaded(Vec::new());
                    s.body_changed = true;
                }
                ("headers", Value::Table(t)) => {
                    let mut h = Headers::new();
                    for pair in t.pairs::<String, Value>() {
                        let (name, value) = pair?;
                        append_checked(&mut h, &name, &value)?;
                    }
                    s.headers = h;
                }
                (k, v) => {
                    let what = if s.is_request { "req" } else { "res" };
                    return Err(bad(format!("cannot set {what}.{k} to a {}", v.type_name())));
                }
            }
            Ok(())
        });
        m.add_method("body", |lua, this, ()| match &current(&this.0)?.try_borrow().map_err(|_| bad(IN_USE))?.body {
            Body::Loaded(b) => Ok(Value::String(lua.create_string(b)?)),
            Body::Pending => Ok(Value::Nil),
        });
        m.add_method("default_content_type", |_, this, ct: String| {
            let msg = current(&this.0)?;
            let mut s = msg.try_borrow_mut().map_err(|_| bad(IN_USE))?;
            if !s.headers.contains("content-type") {
                s.headers.append("Content-Type", ct.as_bytes());
            }
            Ok(())
        });
    }
}

/// Header names are case-insensitive; several fields read as one value
/// joined by ", "; assigning nil removes; assigning a table sets several.
impl UserData for HeadersUd {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_meta_method(MetaMethod::Index, |lua, this, name: LuaString| {
            let msg = current(&this.0)?;
            let s = msg.try_borrow().map_err(|_| bad(IN_USE))?;
            let name = name.to_str()?;
            let mut values = s.headers.get_all(&name);
            let Some(first) = values.next() else { return Ok(Value::Nil) };
            let mut joined = first.to_vec();
            for v in values {
                joined.extend_from_slice(b", ");
                joined.extend_from_slice(v);
            }
            Ok(Value::String(lua.create_string(&joined)?))
        });
        m.add_meta_method(MetaMethod::NewIndex, |_, this, (name, value): (LuaString, Value)| {
            let msg = current(&this.0)?;
            let mut s = msg.try_borrow_mut().map_err(|_| bad(IN_USE))?;
            let name = name.to_str()?;
            let name: &str = &name;
            check_name(name)?;
            s.headers.remove(name);
            if !value.is_nil() {
                append_values(&mut s.headers, name, &value)?;
            }
            Ok(())
        });
        m.add_meta_method(MetaMethod::Pairs, |lua, this, ()| {
            let msg = current(&this.0)?;
            let s = msg.try_borrow().map_err(|_| bad(IN_USE))?;
            let t = lua.create_table()?;
            for (name, value) in s.headers.iter() {
                let key = name.to_ascii_lowercase();
                let merged = match t.get::<Option<mlua::LuaString>>(key.as_str())? {
                    Some(prev) => {
                        let mut v = prev.as_bytes().to_vec();
                        v.extend_from_slice(b", ");
                        v.extend_from_slice(value);
                        v
                    }
                    None => value.to_vec(),
                };
                t.set(key, lua.create_string(&merged)?)?;
            }
            let next: mlua::Function = lua.globals().get("next")?;
            Ok((next, t, Value::Nil))
        });
    }
}

/// A header name scripts may set: a token, and not one of the framing fields.
fn check_name(name: &str) -> mlua::Result<()> {
    if !is_valid_field_name(name) {
        return Err(bad(format!("invalid header name '{name}'")));
    }
    if ["content-length", "transfer-encoding", "connection"].iter().any(|m| name.eq_ignore_ascii_case(m)) {
        return Err(bad(format!("header '{name}' is managed by the proxy")));
    }
    Ok(())
}

fn append_checked(h: &mut Headers, name: &str, value: &Value) -> mlua::Result<()> {
    check_name(name)?;
    append_values(h, name, value)
}

/// The most bytes a message's header list may hold after scripts changed
/// it (header values are copied into Rust memory, outside the Lua limit).
pub(crate) const SCRIPT_HEADER_BYTES: usize = 1 << 20;

/// Append a value (or a list of values) for an already checked name.
fn append_values(h: &mut Headers, name: &str, value: &Value) -> mlua::Result<()> {
    let mut push = |v: &Value| -> mlua::Result<()> {
        let mut checked = |bytes: &[u8]| -> mlua::Result<()> {
            if !is_valid_field_value(bytes) {
                return Err(bad(format!("header '{name}': value contains CR, LF or NUL")));
            }
            if h.byte_len() + name.len() + bytes.len() > SCRIPT_HEADER_BYTES {
                return Err(bad(format!(
                    "header '{name}': a message's headers may hold at most {} KiB (they live outside the Lua memory limit)",
                    SCRIPT_HEADER_BYTES >> 10
                )));
            }
            h.append(name, bytes);
            Ok(())
        };
        match v {
            Value::String(s) => checked(&s.as_bytes()),
            Value::Integer(n) => checked(n.to_string().as_bytes()),
            Value::Number(n) => checked(n.to_string().as_bytes()),
            Value::Boolean(b) => checked(b.to_string().as_bytes()),
            other => Err(bad(format!("header '{name}': cannot use a {} as a value", other.type_name()))),
        }
    };
    match value {
        Value::Table(t) => {
            for v in t.sequence_values::<Value>() {
                push(&v?)?;
            }
            Ok(())
        }
        v => push(v),
    }
}

fn pct_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let h = (b[i + 1] as char).to_digit(16);
                let l = (b[i + 2] as char).to_digit(16);
                if let (Some(h), Some(l)) = (h, l) {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            c => out.push(c),
        }
        i += 1;
    }
    out
}

/// `a=1&b=x%20y&a=2` → `{ a = {"1","2"}, b = "x y" }` (a repeated key becomes a list).
fn query_table(lua: &Lua, q: Option<&str>) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    for pair in q.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = lua.create_string(pct_decode(k))?;
        let v = lua.create_string(pct_decode(v))?;
        match t.get::<Value>(k.clone())? {
            Value::Nil => t.set(k, v)?,
            Value::Table(list) => list.push(v)?,
            prev => {
                let list = lua.create_sequence_from([prev, Value::String(v)])?;
                t.set(k, list)?;
            }
        }
    }
    Ok(t)
}

fn pct_encode(out: &mut String, b: &[u8]) {
    for &c in b {
        if c.is_ascii_alphanumeric() || b"-._~".contains(&c) {
            out.push(c as char);
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
}

/// The inverse of `query_table` (keys sorted for a stable result).
fn encode_query(t: &Table) -> mlua::Result<String> {
    let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for pair in t.pairs::<mlua::LuaString, Value>() {
        let (k, v) = pair?;
        let key = k.as_bytes().to_vec();
        let scalar = |v: &Value| -> mlua::Result<Vec<u8>> {
            Ok(match v {
                Value::String(s) => s.as_bytes().to_vec(),
                Value::Integer(n) => n.to_string().into_bytes(),
                Value::Number(n) => n.to_string().into_bytes(),
                Value::Boolean(b) => b.to_string().into_bytes(),
                other => return Err(bad(format!("query value cannot be a {}", other.type_name()))),
            })
        };
        match &v {
            Value::Table(list) => {
                for item in list.sequence_values::<Value>() {
                    pairs.push((key.clone(), scalar(&item?)?));
                }
            }
            v => pairs.push((key, scalar(v)?)),
        }
    }
    pairs.sort();
    let mut out = String::new();
    for (k, v) in pairs {
        if !out.is_empty() {
            out.push('&');
        }
        pct_encode(&mut out, &k);
        out.push('=');
        pct_encode(&mut out, &v);
    }
    Ok(out)
}

/// Create the userdata for a message slot and for its headers.
pub(crate) fn slot_userdata(lua: &Lua, slot: &Slot) -> mlua::Result<(AnyUserData, AnyUserData)> {
    Ok((lua.create_userdata(MsgUd(slot.clone()))?, lua.create_userdata(HeadersUd(slot.clone()))?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding_and_encoding() {
        let lua = Lua::new();
        let t = query_table(&lua, Some("a=1&b=x%20y+z&a=2&flag")).unwrap();
        let a: Table = t.get("a").unwrap();
        assert_eq!(a.get::<String>(1).unwrap(), "1");
        assert_eq!(a.get::<String>(2).unwrap(), "2");
        assert_eq!(t.get::<String>("b").unwrap(), "x y z");
        assert_eq!(t.get::<String>("flag").unwrap(), "");
        let t2 = lua.create_table().unwrap();
        t2.set("q", "a b&c").unwrap();
        t2.set("n", 5).unwrap();
        assert_eq!(encode_query(&t2).unwrap(), "n=5&q=a%20b%26c");
        assert_eq!(pct_decode("%zz%4"), b"%zz%4");
    }
}
