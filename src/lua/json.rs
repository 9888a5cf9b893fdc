//! JSON ⇄ Lua values for `harmony.json`.
//!
//! Mapping:
//! * JSON `null` ⇄ [`Value::NULL`] (a null lightuserdata, exposed to scripts as
//!   `harmony.json.null`) everywhere — in objects, arrays and at top level — so
//!   documents round-trip. `nil` also encodes as `null`.
//! * JSON arrays decode to tables carrying mlua's array metatable, so an empty
//!   array re-encodes as `[]`. On encode, a table is an array if it carries that
//!   metatable (elements `1..#t`, holes → `null`) or if its keys are exactly the
//!   integers `1..n` with `n >= 1`; every other table is an object (string or
//!   integer keys; integers become decimal strings; keys are emitted sorted so
//!   output is deterministic). An empty plain table encodes as `{}`.
//! * Numbers: JSON numbers without fraction/exponent that fit in `i64` decode to
//!   Lua integers, others to floats; floats encode with a `.0`/exponent so they
//!   stay floats. NaN and ±inf cannot be encoded.
//! * Strings must be valid UTF-8 in both directions (use base64 for binary).

use mlua::{Lua, LuaSerdeExt, Table, Value};

/// Maximum table nesting accepted by [`encode`] (also catches cycles).
const ENCODE_MAX_DEPTH: usize = 64;
/// Maximum array/object nesting accepted by [`decode`].
const DECODE_MAX_DEPTH: usize = 128;

/// Lua value → JSON text.
pub(crate) fn encode(value: &Value) -> Result<String, String> {
    // Fetch the array metatable once, from the state owning the value.
    let array_mt = match value {
        Value::Table(t) => t.weak_lua().try_upgrade().map(|lua| lua.array_metatable()),
        _ => None,
    };
    let mut out = String::new();
    encode_value(value, &mut out, 0, array_mt.as_ref())?;
    Ok(out)
}

fn encode_value(v: &Value, out: &mut String, depth: usize, array_mt: Option<&Table>) -> Result<(), String> {
    match v {
        Value::Nil => out.push_str("null"),
        Value::LightUserData(ud) if ud.0.is_null() => out.push_str("null"),
        Value::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Integer(i) => out.push_str(&i.to_string()),
        Value::Number(n) => encode_float(*n, out)?,
        Value::String(s) => {
            let s = s.to_str().map_err(|_| {
                "cannot encode a string that is not valid UTF-8 (base64-encode binary data)".to_string()
            })?;
            encode_str(&s, out);
        }
        Value::Table(t) => encode_table(t, out, depth + 1, array_mt)?,
        other => return Err(format!("cannot encode a value of type {}", other.type_name())),
    }
    Ok(())
}

fn encode_float(n: f64, out: &mut String) -> Result<(), String> {
    if !n.is_finite() {
        return Err(format!("cannot encode non-finite number {n}"));
    }
    // Debug formatting is the shortest round-trip representation, always with
    // a '.' or an exponent ("1.0", "0.1", "1e300", "1e-7") — all valid JSON.
    out.push_str(&format!("{n:?}"));
    Ok(())
}

fn encode_str(s: &str, out: &mut String) {
    out.reserve(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || c == '\u{7f}' || c == '\u{2028}' || c == '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn is_array_table(t: &Table, array_mt: Option<&Table>) -> bool {
    match (t.metatable(), array_mt) {
        (Some(mt), Some(a)) => &mt == a,
        _ => false,
    }
}

fn encode_table(t: &Table, out: &mut String, depth: usize, array_mt: Option<&Table>) -> Result<(), String> {
    if depth > ENCODE_MAX_DEPTH {
        return Err(format!("tables nested deeper than {ENCODE_MAX_DEPTH} levels (or a cycle)"));
    }
    if is_array_table(t, array_mt) {
        let n = t.raw_len();
        out.push('[');
        for i in 1..=n {
            if i > 1 {
                out.push(',');
            }
            let v: Value = t.raw_get(i).map_err(|e| e.to_string())?;
            encode_value(&v, out, depth, array_mt)?;
        }
        out.push(']');
        return Ok(());
    }

    let mut pairs: Vec<(Value, Value)> = Vec::new();
    t.for_each(|k: Value, v: Value| {
        pairs.push((k, v));
        Ok(())
    })
    .map_err(|e| e.to_string())?;

    // A sequence 1..n (n >= 1) of integer keys is an array.
    let n = pairs.len();
    let is_seq =
        n > 0 && pairs.iter().all(|(k, _)| matches!(k, Value::Integer(i) if *i >= 1 && (*i as u64) <= n as u64));
    // All keys are distinct, so n distinct integers within 1..=n cover it exactly.
    if is_seq {
        pairs.sort_unstable_by_key(|(k, _)| k.as_integer().unwrap_or(0));
        out.push('[');
        for (i, (_, v)) in pairs.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            encode_value(v, out, depth, array_mt)?;
        }
        out.push(']');
        return Ok(());
    }

    let mut entries: Vec<(String, Value)> = Vec::with_capacity(n);
    for (k, v) in pairs {
        let key = match &k {
            Value::String(s) => {
                s.to_str().map_err(|_| "cannot encode an object key that is not valid UTF-8".to_string())?.to_string()
            }
            Value::Integer(i) => i.to_string(),
            other => {
                return Err(format!(
                    "cannot encode a table key of type {} (object keys must be strings or integers)",
                    other.type_name()
                ));
            }
        };
        entries.push((key, v));
    }
    entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    out.push('{');
    for (i, (k, v)) in entries.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        encode_str(k, out);
        out.push(':');
        encode_value(v, out, depth, array_mt)?;
    }
    out.push('}');
    Ok(())
}

/// JSON text → Lua value. Errors read "invalid JSON at line L column C: ...".
pub(crate) fn decode(lua: &Lua, text: &[u8]) -> Result<Value, String> {
    let mut p = Parser { lua, s: text, pos: 0, array_mt: lua.array_metatable() };
    if let Err(e) = std::str::from_utf8(text) {
        p.pos = e.valid_up_to();
        return Err(p.err("invalid UTF-8"));
    }
    p.skip_ws();
    let v = p.value(0)?;
    p.skip_ws();
    if p.pos < p.s.len() {
        return Err(p.err("trailing characters after the JSON value"));
    }
    Ok(v)
}

struct Parser<'a> {
    lua: &'a Lua,
    s: &'a [u8],
    pos: usize,
    array_mt: Table,
}

impl Parser<'_> {
    /// An error at the current position (line and column are 1-based; the
    /// column counts characters, not bytes).
    fn err(&self, msg: &str) -> String {
        let upto = &self.s[..self.pos.min(self.s.len())];
        let line = upto.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = upto.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let col = upto[line_start..].iter().filter(|&&b| (b & 0xC0) != 0x80).count() + 1;
        format!("invalid JSON at line {line} column {col}: {msg}")
    }

    fn lua_err(&self, e: mlua::Error) -> String {
        self.err(&e.to_string())
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn expect_lit(&mut self, lit: &[u8], v: Value) -> Result<Value, String> {
        if self.s[self.pos..].starts_with(lit) {
            self.pos += lit.len();
            Ok(v)
        } else {
            Err(self.err("unexpected character"))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, String> {
        match self.peek() {
            None => Err(self.err("unexpected end of input")),
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => {
                let bytes = self.string()?;
                self.lua.create_string(bytes).map(Value::String).map_err(|e| self.lua_err(e))
            }
            Some(b't') => self.expect_lit(b"true", Value::Boolean(true)),
            Some(b'f') => self.expect_lit(b"false", Value::Boolean(false)),
            Some(b'n') => self.expect_lit(b"null", Value::NULL),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.err("unexpected character")),
        }
    }

    fn enter(&self, depth: usize) -> Result<(), String> {
        if depth > DECODE_MAX_DEPTH {
            Err(self.err(&format!("nesting deeper than {DECODE_MAX_DEPTH} levels")))
        } else {
            Ok(())
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value, String> {
        self.enter(depth)?;
        self.pos += 1; // '['
        let t = self.lua.create_table().map_err(|e| self.lua_err(e))?;
        t.set_metatable(Some(self.array_mt.clone())).map_err(|e| self.lua_err(e))?;
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Value::Table(t));
        }
        let mut i = 0usize;
        loop {
            self.skip_ws();
            let v = self.value(depth)?;
            i += 1;
            t.raw_set(i, v).map_err(|e| self.lua_err(e))?;
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Value::Table(t));
                }
                None => return Err(self.err("unexpected end of input in array")),
                Some(_) => return Err(self.err("expected ',' or ']' in array")),
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value, String> {
        self.enter(depth)?;
        self.pos += 1; // '{'
        let t = self.lua.create_table().map_err(|e| self.lua_err(e))?;
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Value::Table(t));
        }
        loop {
            self.skip_ws();
            match self.peek() {
                Some(b'"') => {}
                None => return Err(self.err("unexpected end of input in object")),
                Some(_) => return Err(self.err("expected a string key in object")),
            }
            let key = self.string()?;
            self.skip_ws();
            if self.peek() != Some(b':') {
                return Err(self.err("expected ':' after object key"));
            }
            self.pos += 1;
            self.skip_ws();
            let v = self.value(depth)?;
            let key = self.lua.create_string(key).map_err(|e| self.lua_err(e))?;
            t.raw_set(key, v).map_err(|e| self.lua_err(e))?;
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Value::Table(t));
                }
                None => return Err(self.err("unexpected end of input in object")),
                Some(_) => return Err(self.err("expected ',' or '}' in object")),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let mut n = 0u32;
        for _ in 0..4 {
            let d = match self.peek() {
                Some(c @ b'0'..=b'9') => c - b'0',
                Some(c @ b'a'..=b'f') => c - b'a' + 10,
                Some(c @ b'A'..=b'F') => c - b'A' + 10,
                _ => return Err(self.err("invalid \\u escape")),
            };
            n = n * 16 + u32::from(d);
            self.pos += 1;
        }
        Ok(n)
    }

    /// Parses a string starting at '"'; returns its UTF-8 bytes.
    fn string(&mut self) -> Result<Vec<u8>, String> {
        self.pos += 1; // opening quote
        let mut out = Vec::new();
        loop {
            // Copy a run of plain bytes at once (input is known valid UTF-8).
            let start = self.pos;
            while let Some(b) = self.peek() {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            out.extend_from_slice(&self.s[start..self.pos]);
            match self.peek() {
                None => return Err(self.err("unterminated string")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let esc = self.peek().ok_or_else(|| self.err("unterminated string"))?;
                    self.pos += 1;
                    let c = match esc {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{08}',
                        b'f' => '\u{0c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => self.unicode_escape()?,
                        _ => {
                            self.pos -= 1;
                            return Err(self.err("invalid escape sequence"));
                        }
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                Some(_) => return Err(self.err("control character in string")),
            }
        }
    }

    /// After "\u": reads 4 hex digits (and a low surrogate if needed).
    fn unicode_escape(&mut self) -> Result<char, String> {
        let hi = self.hex4()?;
        let cp = if (0xD800..0xDC00).contains(&hi) {
            if !self.s[self.pos..].starts_with(b"\\u") {
                return Err(self.err("unpaired surrogate in \\u escape"));
            }
            self.pos += 2;
            let lo = self.hex4()?;
            if !(0xDC00..0xE000).contains(&lo) {
                return Err(self.err("unpaired surrogate in \\u escape"));
            }
            0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
        } else if (0xDC00..0xE000).contains(&hi) {
            return Err(self.err("unpaired surrogate in \\u escape"));
        } else {
            hi
        };
        char::from_u32(cp).ok_or_else(|| self.err("invalid \\u escape"))
    }

    fn number(&mut self) -> Result<Value, String> {
        let start = self.pos;
        let digits = |p: &mut Self| {
            let s = p.pos;
            while let Some(b'0'..=b'9') = p.peek() {
                p.pos += 1;
            }
            p.pos - s
        };
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => {
                self.pos += 1;
                if let Some(b'0'..=b'9') = self.peek() {
                    return Err(self.err("leading zeros are not allowed"));
                }
            }
            Some(b'1'..=b'9') => {
                digits(self);
            }
            _ => return Err(self.err("invalid number")),
        }
        let mut is_float = false;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            is_float = true;
            if digits(self) == 0 {
                return Err(self.err("expected digits after '.'"));
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            is_float = true;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if digits(self) == 0 {
                return Err(self.err("expected digits in exponent"));
            }
        }
        // The slice is ASCII digits/signs only.
        let text = std::str::from_utf8(&self.s[start..self.pos]).unwrap_or_default();
        if !is_float {
            if let Ok(i) = text.parse::<i64>() {
                return Ok(Value::Integer(i));
            }
        }
        match text.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(Value::Number(f)),
            _ => {
                self.pos = start;
                Err(self.err("number out of range"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt(lua: &Lua, text: &str) -> String {
        let v = decode(lua, text.as_bytes()).unwrap_or_else(|e| panic!("{text}: {e}"));
        encode(&v).unwrap()
    }

    fn eval(lua: &Lua, code: &str) -> Value {
        lua.load(code).eval().unwrap()
    }

    #[test]
    fn round_trips() {
        let lua = Lua::new();
        for s in [
            r#"{"a":[1,2,{"b":null}],"c":{"d":"e"},"f":true,"g":false}"#,
            "[]",
            "{}",
            "[[],{},[[]]]",
            "null",
            "[null,1,null]",
            r#""h\u00e9llo \u2603 \ud83d\ude00""#,
            "0",
            "-12",
            "1.5",
            "9223372036854775807",
            "-9223372036854775808",
        ] {
            let expected = match s {
                r#""h\u00e9llo \u2603 \ud83d\ude00""# => "\"héllo ☃ 😀\"".to_string(),
                _ => s.to_string(),
            };
            assert_eq!(rt(&lua, s), expected, "round trip of {s}");
        }
        // Whitespace is accepted and dropped.
        assert_eq!(rt(&lua, " { \"a\" :\n[ 1 , 2 ]\t} "), r#"{"a":[1,2]}"#);
    }

    #[test]
    fn empty_array_stays_array() {
        let lua = Lua::new();
        let v = decode(&lua, br#"{"xs":[]}"#).unwrap();
        let t = v.as_table().unwrap();
        let xs: Table = t.get("xs").unwrap();
        assert_eq!(xs.raw_len(), 0);
        assert_eq!(encode(&v).unwrap(), r#"{"xs":[]}"#);
        // Plain empty Lua table is an object; with the array metatable, an array.
        assert_eq!(encode(&eval(&lua, "return {}")).unwrap(), "{}");
        let arr = lua.create_table().unwrap();
        arr.set_metatable(Some(lua.array_metatable())).unwrap();
        assert_eq!(encode(&Value::Table(arr)).unwrap(), "[]");
    }

    #[test]
    fn numbers_int_vs_float() {
        let lua = Lua::new();
        assert_eq!(decode(&lua, b"42").unwrap(), Value::Integer(42));
        assert_eq!(decode(&lua, b"-0").unwrap(), Value::Integer(0));
        assert_eq!(decode(&lua, b"42.0").unwrap(), Value::Number(42.0));
        assert_eq!(decode(&lua, b"1e2").unwrap(), Value::Number(100.0));
        assert_eq!(decode(&lua, b"1E-2").unwrap(), Value::Number(0.01));
        // Beyond i64 → float.
        assert_eq!(decode(&lua, b"9223372036854775808").unwrap(), Value::Number(9223372036854775808.0));
        assert_eq!(encode(&Value::Integer(3)).unwrap(), "3");
        assert_eq!(encode(&Value::Number(3.0)).unwrap(), "3.0");
        assert_eq!(encode(&Value::Number(0.1)).unwrap(), "0.1");
        assert_eq!(encode(&Value::Number(1e300)).unwrap(), "1e300");
        assert_eq!(encode(&Value::Number(-2.5e-7)).unwrap(), "-2.5e-7");
        assert_eq!(decode(&lua, encode(&Value::Number(1e300)).unwrap().as_bytes()).unwrap(), Value::Number(1e300));
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(encode(&Value::Number(bad)).unwrap_err().contains("non-finite"));
        }
        assert!(decode(&lua, b"1e400").unwrap_err().contains("out of range"));
    }

    #[test]
    fn null_handling() {
        let lua = Lua::new();
        assert_eq!(decode(&lua, b"null").unwrap(), Value::NULL);
        let v = decode(&lua, br#"{"a":null,"b":[null]}"#).unwrap();
        let t = v.as_table().unwrap();
        assert_eq!(t.get::<Value>("a").unwrap(), Value::NULL);
        let b: Table = t.get("b").unwrap();
        assert_eq!(b.raw_len(), 1);
        assert_eq!(b.get::<Value>(1).unwrap(), Value::NULL);
        assert_eq!(encode(&Value::Nil).unwrap(), "null");
        assert_eq!(encode(&Value::NULL).unwrap(), "null");
        // Holes in arrays marked with the array metatable become null.
        let arr = lua.create_table().unwrap();
        arr.set_metatable(Some(lua.array_metatable())).unwrap();
        arr.raw_set(1, 1).unwrap();
        arr.raw_set(3, 3).unwrap();
        let enc = encode(&Value::Table(arr)).unwrap();
        assert!(enc == "[1,null,3]" || enc == "[1]", "{enc}");
    }

    #[test]
    fn table_shapes() {
        let lua = Lua::new();
        assert_eq!(encode(&eval(&lua, "return {1, 'two', true}")).unwrap(), r#"[1,"two",true]"#);
        assert_eq!(encode(&eval(&lua, "return {[2]='b', [1]='a'}")).unwrap(), r#"["a","b"]"#);
        // Sparse / mixed / zero-based → objects with stringified integer keys, sorted.
        assert_eq!(encode(&eval(&lua, "return {[1]='a', [3]='c'}")).unwrap(), r#"{"1":"a","3":"c"}"#);
        assert_eq!(encode(&eval(&lua, "return {[0]='z'}")).unwrap(), r#"{"0":"z"}"#);
        assert_eq!(encode(&eval(&lua, "return {1, x=2}")).unwrap(), r#"{"1":1,"x":2}"#);
        assert_eq!(encode(&eval(&lua, "return {b=1, a=2, c={d=3}}")).unwrap(), r#"{"a":2,"b":1,"c":{"d":3}}"#);
        // Escapes.
        assert_eq!(encode(&eval(&lua, r#"return "q\"b\\n\n\r\t\1\127""#)).unwrap(), r#""q\"b\\n\n\r\t\u0001\u007f""#);
    }

    #[test]
    fn encode_errors() {
        let lua = Lua::new();
        let e = encode(&eval(&lua, "return {f = function() end}")).unwrap_err();
        assert!(e.contains("function"), "{e}");
        assert!(encode(&eval(&lua, "return {[1.5] = 1}")).unwrap_err().contains("key of type number"));
        assert!(encode(&eval(&lua, "return {[true] = 1}")).unwrap_err().contains("boolean"));
        assert!(encode(&eval(&lua, "return '\\255'")).unwrap_err().contains("UTF-8"));
        let ud = lua.create_any_userdata(5u32).unwrap();
        assert!(encode(&Value::UserData(ud)).unwrap_err().contains("userdata"));
        assert!(encode(&Value::LightUserData(mlua::LightUserData(8 as *mut _))).is_err());
        // Cycles and excessive depth.
        let e = encode(&eval(&lua, "local t = {}; t.self = t; return t")).unwrap_err();
        assert!(e.contains("deeper than 64"), "{e}");
        let nest = |n: usize| format!("local t = {{}}; for i = 2, {n} do t = {{t}} end; return t");
        assert!(encode(&eval(&lua, &nest(64))).is_ok());
        assert!(encode(&eval(&lua, &nest(65))).is_err());
    }

    #[test]
    fn decode_depth_limit() {
        let lua = Lua::new();
        let ok = format!("{}{}", "[".repeat(128), "]".repeat(128));
        assert!(decode(&lua, ok.as_bytes()).is_ok());
        let bad = format!("{}{}", "[".repeat(129), "]".repeat(129));
        let e = decode(&lua, bad.as_bytes()).unwrap_err();
        assert!(e.contains("nesting deeper than 128") && e.contains("column 129"), "{e}");
        let bad_obj = "{\"a\":".repeat(200);
        assert!(decode(&lua, bad_obj.as_bytes()).unwrap_err().contains("nesting"));
    }

    #[test]
    fn decode_errors_with_position() {
        let lua = Lua::new();
        let cases: &[(&str, &str)] = &[
            ("", "line 1 column 1: unexpected end of input"),
            ("{\n  \"a\": tru\n}", "line 2 column 8: unexpected character"),
            ("[1,]", "line 1 column 4: unexpected character"),
            ("[1 2]", "line 1 column 4: expected ',' or ']'"),
            ("{\"a\" 1}", "line 1 column 6: expected ':'"),
            ("{a:1}", "line 1 column 2: expected a string key"),
            ("\"abc", "line 1 column 5: unterminated string"),
            ("\"a\nb\"", "line 1 column 3: control character"),
            ("\"\\x\"", "line 1 column 3: invalid escape"),
            ("\"\\ud800\"", "unpaired surrogate"),
            ("\"\\udc00\"", "unpaired surrogate"),
            ("\"\\u12g4\"", "invalid \\u escape"),
            ("01", "leading zeros"),
            ("1.", "expected digits after '.'"),
            ("1e+", "expected digits in exponent"),
            ("-", "invalid number"),
            ("[1] x", "line 1 column 5: trailing characters"),
            ("{\"é\": @}", "line 1 column 7: unexpected character"),
            ("NaN", "unexpected character"),
        ];
        for (input, want) in cases {
            let e = decode(&lua, input.as_bytes()).unwrap_err();
            assert!(e.starts_with("invalid JSON at line "), "{input:?}: {e}");
            assert!(e.contains(want), "{input:?}: got {e:?}, want {want:?}");
        }
        let e = decode(&lua, b"[\"ok\", \"\xff\"]").unwrap_err();
        assert!(e.contains("column 9: invalid UTF-8"), "{e}");
    }

    #[test]
    fn duplicate_keys_last_wins() {
        let lua = Lua::new();
        assert_eq!(rt(&lua, r#"{"a":1,"a":2}"#), r#"{"a":2}"#);
    }
}
