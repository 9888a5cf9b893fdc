//! The utility part of the `harmony` table exposed to scripts: logging,
//! JSON, the per-worker cache, wall-clock time, base64, SHA-256/HMAC and
//! UUIDs. Every function is binary-safe: Lua strings are byte strings.
//!
//! Errors are raised as Lua errors whose message starts with the function's
//! name, e.g. `harmony.cache.set: bad argument #2 (string, number or boolean
//! expected, got table)`.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use mlua::{Lua, LuaString, MultiValue, Table, Value};
use sha2::{Digest, Sha256};

use super::cache::{Cache, CacheValue};
use super::json;

/// What the API functions need from the host.
pub(crate) struct ApiEnv {
    pub cache: Rc<RefCell<Cache>>,
    /// Monotonic milliseconds since some fixed start (for cache TTLs); the host sets it.
    pub clock: Rc<dyn Fn() -> u64>,
}

/// Install `log`, `json`, `cache`, `now`, `base64`, `sha256`, `hmac_sha256`
/// and `uuid` into the `harmony` table.
pub(crate) fn install(lua: &Lua, harmony: &Table, env: ApiEnv) -> mlua::Result<()> {
    install_log(lua, harmony)?;
    install_json(lua, harmony)?;
    install_cache(lua, harmony, env)?;
    install_codec(lua, harmony)?;

    harmony.set(
        "now",
        lua.create_function(|_, ()| {
            let ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
            Ok(ms as f64 / 1000.0)
        })?,
    )?;

    let rng = Rc::new(RefCell::new(RandomPool::default()));
    harmony.set(
        "uuid",
        lua.create_function(move |_, ()| {
            let mut b = [0u8; 16];
            rng.borrow_mut().fill(&mut b).map_err(|e| rt_err(format!("harmony.uuid: no OS randomness: {e}")))?;
            Ok(format_uuid_v4(b))
        })?,
    )?;
    Ok(())
}

fn rt_err(msg: String) -> mlua::Error {
    mlua::Error::RuntimeError(msg)
}

fn bad_arg(func: &str, n: usize, expected: &str, got: &Value) -> mlua::Error {
    rt_err(format!("{func}: bad argument #{n} ({expected} expected, got {})", got.type_name()))
}

/// A string argument (numbers are converted, as Lua's string functions do).
fn bytes_arg(lua: &Lua, func: &str, n: usize, v: Value) -> mlua::Result<LuaString> {
    match v {
        Value::String(s) => Ok(s),
        Value::Integer(_) | Value::Number(_) => {
            lua.coerce_string(v.clone())?.ok_or_else(|| bad_arg(func, n, "string", &v))
        }
        other => Err(bad_arg(func, n, "string", &other)),
    }
}

// ---- log -------------------------------------------------------------------

fn install_log(lua: &Lua, harmony: &Table) -> mlua::Result<()> {
    let log_t = lua.create_table()?;
    for (name, level) in [
        ("debug", log::Level::Debug),
        ("info", log::Level::Info),
        ("warn", log::Level::Warn),
        ("error", log::Level::Error),
    ] {
        let f = lua.create_function(move |lua, args: MultiValue| {
            if log::log_enabled!(target: "lua", level) {
                let msg = format_log_args(lua, args);
                log::log!(target: "lua", level, "{msg}");
            }
            Ok(())
        })?;
        log_t.set(name, f)?;
    }
    harmony.set("log", log_t)
}

/// All arguments converted with `tostring` semantics and joined by spaces.
/// Non-UTF-8 bytes are replaced; a failing `__tostring` falls back to
/// `<type: address>` so logging itself never raises.
fn format_log_args(lua: &Lua, args: MultiValue) -> String {
    let mut msg = String::new();
    for (i, v) in args.into_iter().enumerate() {
        if i > 0 {
            msg.push(' ');
        }
        match &v {
            Value::String(s) => msg.push_str(&s.to_string_lossy()),
            Value::Number(_) => match lua.coerce_string(v.clone()) {
                Ok(Some(s)) => msg.push_str(&s.to_string_lossy()),
                _ => msg.push_str(&v.to_string().unwrap_or_default()),
            },
            _ => match v.to_string() {
                Ok(s) => msg.push_str(&s),
                Err(_) => {
                    let _ = write!(msg, "<{}: {:p}>", v.type_name(), v.to_pointer());
                }
            },
        }
    }
    msg
}

// ---- json ------------------------------------------------------------------

fn install_json(lua: &Lua, harmony: &Table) -> mlua::Result<()> {
    let t = lua.create_table()?;
    t.set(
        "encode",
        lua.create_function(|lua, v: Value| {
            let text = json::encode(&v).map_err(|e| rt_err(format!("harmony.json.encode: {e}")))?;
            lua.create_string(text)
        })?,
    )?;
    t.set(
        "decode",
        lua.create_function(|lua, v: Value| {
            let s = match v {
                Value::String(s) => s,
                other => return Err(bad_arg("harmony.json.decode", 1, "string", &other)),
            };
            json::decode(lua, &s.as_bytes()).map_err(|e| rt_err(format!("harmony.json.decode: {e}")))
        })?,
    )?;
    t.set("null", Value::NULL)?;
    harmony.set("json", t)
}

// ---- cache -----------------------------------------------------------------

fn cache_key(lua: &Lua, func: &str, v: Value) -> mlua::Result<String> {
    let s = bytes_arg(lua, func, 1, v)?;
    let key = s.to_str().map_err(|_| rt_err(format!("{func}: cache key must be valid UTF-8")))?.to_string();
    Ok(key)
}

/// Optional TTL in (possibly fractional) seconds → milliseconds, rounded up.
fn ttl_arg(func: &str, n: usize, v: Value) -> mlua::Result<Option<u64>> {
    let secs = match v {
        Value::Nil => return Ok(None),
        Value::Integer(i) => i as f64,
        Value::Number(f) => f,
        other => return Err(bad_arg(func, n, "number (ttl in seconds)", &other)),
    };
    if !(secs > 0.0 && secs.is_finite()) {
        return Err(rt_err(format!("{func}: ttl must be a positive number of seconds, got {secs}")));
    }
    // `as` saturates for huge values.
    Ok(Some((secs * 1000.0).ceil() as u64))
}

fn install_cache(lua: &Lua, harmony: &Table, env: ApiEnv) -> mlua::Result<()> {
    let t = lua.create_table()?;
    let ApiEnv { cache, clock } = env;

    let (c, clk) = (cache.clone(), clock.clone());
    t.set(
        "get",
        lua.create_function(move |lua, key: Value| {
            let key = cache_key(lua, "harmony.cache.get", key)?;
            let v = c.borrow_mut().get(&key, clk());
            Ok(match v {
                None => Value::Nil,
                Some(CacheValue::Str(b)) => Value::String(lua.create_string(b)?),
                Some(CacheValue::Int(i)) => Value::Integer(i),
                Some(CacheValue::Num(f)) => Value::Number(f),
                Some(CacheValue::Bool(b)) => Value::Boolean(b),
            })
        })?,
    )?;

    let (c, clk) = (cache.clone(), clock.clone());
    t.set(
        "set",
        lua.create_function(move |lua, (key, value, ttl): (Value, Value, Value)| {
            const F: &str = "harmony.cache.set";
            let key = cache_key(lua, F, key)?;
            let value = match value {
                Value::String(s) => CacheValue::Str(s.as_bytes().to_vec()),
                Value::Integer(i) => CacheValue::Int(i),
                Value::Number(f) => CacheValue::Num(f),
                Value::Boolean(b) => CacheValue::Bool(b),
                other => return Err(bad_arg(F, 2, "string, number or boolean", &other)),
            };
            let ttl = ttl_arg(F, 3, ttl)?;
            c.borrow_mut().set(&key, value, ttl, clk());
            Ok(())
        })?,
    )?;

    let (c, clk) = (cache.clone(), clock);
    t.set(
        "incr",
        lua.create_function(move |lua, (key, delta, ttl): (Value, Value, Value)| {
            const F: &str = "harmony.cache.incr";
            let key = cache_key(lua, F, key)?;
            let delta = match delta {
                Value::Nil => 1,
                Value::Integer(i) => i,
                Value::Number(f) if f.fract() == 0.0 && f >= -(2f64.powi(63)) && f < 2f64.powi(63) => f as i64,
                other => {
                    let what = if other.is_number() { "number with a fraction" } else { other.type_name() };
                    return Err(rt_err(format!("{F}: bad argument #2 (integer expected, got {what})")));
                }
            };
            let ttl = ttl_arg(F, 3, ttl)?;
            c.borrow_mut().incr(&key, delta, ttl, clk()).map_err(|e| rt_err(format!("{F}: {e}")))
        })?,
    )?;

    let c = cache;
    t.set(
        "delete",
        lua.create_function(move |lua, key: Value| {
            let key = cache_key(lua, "harmony.cache.delete", key)?;
            Ok(c.borrow_mut().delete(&key))
        })?,
    )?;

    harmony.set("cache", t)
}

// ---- base64, hashes ----------------------------------------------------------

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

fn install_codec(lua: &Lua, harmony: &Table) -> mlua::Result<()> {
    let b64 = lua.create_table()?;
    b64.set(
        "encode",
        lua.create_function(|lua, v: Value| {
            let s = bytes_arg(lua, "harmony.base64.encode", 1, v)?;
            Ok(crate::base64::encode(&s.as_bytes()))
        })?,
    )?;
    b64.set(
        "decode",
        lua.create_function(|lua, v: Value| {
            let s = bytes_arg(lua, "harmony.base64.decode", 1, v)?;
            let bytes =
                crate::base64::decode(&s.as_bytes()).map_err(|e| rt_err(format!("harmony.base64.decode: {e}")))?;
            lua.create_string(bytes)
        })?,
    )?;
    harmony.set("base64", b64)?;

    harmony.set(
        "sha256",
        lua.create_function(|lua, v: Value| {
            let s = bytes_arg(lua, "harmony.sha256", 1, v)?;
            Ok(hex(&Sha256::digest(&*s.as_bytes())))
        })?,
    )?;
    harmony.set(
        "hmac_sha256",
        lua.create_function(|lua, (key, data): (Value, Value)| {
            let key = bytes_arg(lua, "harmony.hmac_sha256", 1, key)?;
            let data = bytes_arg(lua, "harmony.hmac_sha256", 2, data)?;
            let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key.as_bytes())
                .map_err(|e| rt_err(format!("harmony.hmac_sha256: {e}")))?;
            mac.update(&data.as_bytes());
            Ok(hex(&mac.finalize().into_bytes()))
        })?,
    )?;
    Ok(())
}

// ---- uuid --------------------------------------------------------------------

/// Buffered OS randomness, refilled 256 bytes at a time.
struct RandomPool {
    buf: [u8; 256],
    pos: usize,
}

impl Default for RandomPool {
    fn default() -> Self {
        RandomPool { buf: [0; 256], pos: 256 }
    }
}

impl RandomPool {
    fn fill(&mut self, out: &mut [u8]) -> std::io::Result<()> {
        let mut done = 0;
        while done < out.len() {
            if self.pos == self.buf.len() {
                os_random(&mut self.buf)?;
                self.pos = 0;
            }
            let n = (out.len() - done).min(self.buf.len() - self.pos);
            out[done..done + n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
            // Never hand out the same bytes twice.
            self.buf[self.pos..self.pos + n].fill(0);
            self.pos += n;
            done += n;
        }
        Ok(())
    }
}

/// Fill `buf` from getrandom(2), falling back to /dev/urandom.
fn os_random(buf: &mut [u8]) -> std::io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        // SAFETY: the pointer and length describe the unfilled tail of `buf`.
        let r = unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), buf.len() - filled, 0) };
        if r < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            use std::io::Read;
            return std::fs::File::open("/dev/urandom")?.read_exact(&mut buf[filled..]);
        }
        filled += r as usize;
    }
    Ok(())
}

/// RFC 4122 version-4 (random) UUID in canonical lowercase form.
fn format_uuid_v4(mut b: [u8; 16]) -> String {
    b[6] = (b[6] & 0x0f) | 0x40; // version 4
    b[8] = (b[8] & 0x3f) | 0x80; // variant 10xx
    let h = hex(&b);
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn setup() -> (Lua, Rc<Cell<u64>>, Rc<RefCell<Cache>>) {
        let lua = Lua::new();
        let now = Rc::new(Cell::new(1_000u64));
        let cache = Rc::new(RefCell::new(Cache::new(100)));
        let n = now.clone();
        let env = ApiEnv { cache: cache.clone(), clock: Rc::new(move || n.get()) };
        let h = lua.create_table().unwrap();
        install(&lua, &h, env).unwrap();
        lua.globals().set("harmony", h).unwrap();
        (lua, now, cache)
    }

    fn eval<T: mlua::FromLuaMulti>(lua: &Lua, code: &str) -> T {
        lua.load(code).eval().unwrap_or_else(|e| panic!("{code}: {e}"))
    }

    /// Runs `code` expecting a Lua error; returns its message.
    fn eval_err(lua: &Lua, code: &str) -> String {
        let wrapped = format!(
            "local ok, e = pcall(function() {code} end); assert(not ok, 'expected an error'); return tostring(e)"
        );
        eval(lua, &wrapped)
    }

    #[test]
    fn hashes() {
        let (lua, ..) = setup();
        let s: String = eval(&lua, "return harmony.sha256('abc')");
        assert_eq!(s, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        let s: String = eval(&lua, "return harmony.sha256('')");
        assert_eq!(s, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        let s: String = eval(&lua, "return harmony.hmac_sha256('Jefe', 'what do ya want for nothing?')");
        assert_eq!(s, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
        // RFC 4231 test case 6: key longer than the block size.
        let s: String = eval(&lua, "return harmony.hmac_sha256(string.rep('\\170', 131), 'Test Using Larger Than Block-Size Key - Hash Key First')");
        assert_eq!(s, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
        // Binary-safe input and number coercion.
        let bin: String = eval(&lua, "return harmony.sha256('a\\0b')");
        assert_eq!(bin, hex(&Sha256::digest(b"a\0b")));
        let num: String = eval(&lua, "return harmony.sha256(12)");
        assert_eq!(num, hex(&Sha256::digest(b"12")));
        let e = eval_err(&lua, "harmony.sha256({})");
        assert!(e.contains("harmony.sha256: bad argument #1 (string expected, got table)"), "{e}");
        let e = eval_err(&lua, "harmony.hmac_sha256('k')");
        assert!(e.contains("bad argument #2 (string expected, got nil)"), "{e}");
    }

    #[test]
    fn base64() {
        let (lua, ..) = setup();
        let ok: bool = eval(
            &lua,
            r#"
            local bin = ''
            for i = 0, 255 do bin = bin .. string.char(i) end
            local enc = harmony.base64.encode(bin)
            assert(#enc == 344 and enc:sub(-2) == '==')
            assert(harmony.base64.decode(enc) == bin)
            assert(harmony.base64.encode('foobar') == 'Zm9vYmFy')
            assert(harmony.base64.encode('') == '')
            assert(harmony.base64.decode('Zm8') == 'fo')
            assert(harmony.base64.decode('AP8=') == '\0\255')
            return true
        "#,
        );
        assert!(ok);
        let e = eval_err(&lua, "harmony.base64.decode('Zm!v')");
        assert!(e.contains("harmony.base64.decode: invalid base64 character"), "{e}");
        let e = eval_err(&lua, "harmony.base64.decode('Z')");
        assert!(e.contains("invalid base64"), "{e}");
    }

    #[test]
    fn uuid() {
        let (lua, ..) = setup();
        let ids: Vec<String> = eval(&lua, "local t = {} for i = 1, 200 do t[i] = harmony.uuid() end return t");
        let mut seen = std::collections::HashSet::new();
        for id in &ids {
            assert_eq!(id.len(), 36, "{id}");
            for (i, c) in id.chars().enumerate() {
                if [8, 13, 18, 23].contains(&i) {
                    assert_eq!(c, '-', "{id}");
                } else {
                    assert!(c.is_ascii_hexdigit() && !c.is_ascii_uppercase(), "{id}");
                }
            }
            assert_eq!(&id[14..15], "4", "version nibble: {id}");
            assert!("89ab".contains(&id[19..20]), "variant: {id}");
            assert!(seen.insert(id.clone()), "duplicate {id}");
        }
        assert_eq!(format_uuid_v4([0xff; 16]), "ffffffff-ffff-4fff-bfff-ffffffffffff");
        assert_eq!(format_uuid_v4([0; 16]), "00000000-0000-4000-8000-000000000000");
    }

    #[test]
    fn random_pool_refills_and_never_repeats() {
        let mut pool = RandomPool::default();
        let mut a = [0u8; 300];
        pool.fill(&mut a).unwrap();
        let mut b = [0u8; 300];
        pool.fill(&mut b).unwrap();
        assert_ne!(a, b);
        assert!(a.iter().any(|&x| x != 0));
    }

    #[test]
    fn json_api() {
        let (lua, ..) = setup();
        let s: String = eval(&lua, "return harmony.json.encode({a = {1, 2, 3}, b = 'x', c = harmony.json.null})");
        assert_eq!(s, r#"{"a":[1,2,3],"b":"x","c":null}"#);
        let ok: bool = eval(
            &lua,
            r#"
            local v = harmony.json.decode('{"a":[],"b":[1,2.5,"s",true,null],"n":null}')
            assert(#v.a == 0 and #v.b == 5)
            assert(math.type(v.b[1]) == 'integer' and math.type(v.b[2]) == 'float')
            assert(v.b[5] == harmony.json.null and v.n == harmony.json.null)
            assert(harmony.json.encode(v) == '{"a":[],"b":[1,2.5,"s",true,null],"n":null}')
            return true
        "#,
        );
        assert!(ok);
        let e = eval_err(&lua, "harmony.json.decode('{\"a\":}')");
        assert!(e.contains("harmony.json.decode: invalid JSON at line 1 column 6"), "{e}");
        let e = eval_err(&lua, "harmony.json.decode(nil)");
        assert!(e.contains("bad argument #1 (string expected, got nil)"), "{e}");
        let e = eval_err(&lua, "harmony.json.encode({f = print})");
        assert!(e.contains("harmony.json.encode: cannot encode a value of type function"), "{e}");
        let e = eval_err(&lua, "harmony.json.encode(0/0)");
        assert!(e.contains("non-finite"), "{e}");
    }

    #[test]
    fn cache_api() {
        let (lua, now, cache) = setup();
        let ok: bool = eval(
            &lua,
            r#"
            local c = harmony.cache
            c.set('s', 'a\0b')
            c.set('i', 7)
            c.set('f', 7.0)
            c.set('t', true)
            c.set('no', false)
            assert(c.get('s') == 'a\0b')
            assert(math.type(c.get('i')) == 'integer' and c.get('i') == 7)
            assert(math.type(c.get('f')) == 'float')
            assert(c.get('t') == true and c.get('no') == false)
            assert(c.get('missing') == nil)
            assert(c.incr('n') == 1)
            assert(c.incr('n', 5) == 6)
            assert(c.incr('n', -2.0) == 4)
            assert(c.delete('n') == true and c.delete('n') == false)
            assert(c.get('n') == nil)
            c.set('short', 'v', 0.5)
            assert(c.incr('ctr', 1, 2) == 1)
            return true
        "#,
        );
        assert!(ok);
        assert_eq!(cache.borrow().len(), 7);
        now.set(1_499);
        assert!(eval::<bool>(&lua, "return harmony.cache.get('short') == 'v'"));
        now.set(1_500);
        assert!(eval::<bool>(&lua, "return harmony.cache.get('short') == nil"));
        // incr keeps the TTL set at creation.
        assert!(eval::<bool>(&lua, "return harmony.cache.incr('ctr', 1, 100) == 2"));
        now.set(2_999);
        assert!(eval::<bool>(&lua, "return harmony.cache.get('ctr') == 2"));
        now.set(3_000);
        assert!(eval::<bool>(&lua, "return harmony.cache.get('ctr') == nil"));
        // Fractional TTL rounds up to a whole millisecond.
        assert!(eval::<bool>(&lua, "harmony.cache.set('tiny', 1, 0.0001) return harmony.cache.get('tiny') == 1"));
        now.set(3_001);
        assert!(eval::<bool>(&lua, "return harmony.cache.get('tiny') == nil"));
    }

    #[test]
    fn cache_api_errors() {
        let (lua, ..) = setup();
        let cases = [
            (
                "harmony.cache.set('k', {})",
                "harmony.cache.set: bad argument #2 (string, number or boolean expected, got table)",
            ),
            ("harmony.cache.set('k', nil)", "bad argument #2 (string, number or boolean expected, got nil)"),
            ("harmony.cache.set({}, 1)", "harmony.cache.set: bad argument #1 (string expected, got table)"),
            ("harmony.cache.set('k', 1, 'x')", "bad argument #3 (number (ttl in seconds) expected, got string)"),
            ("harmony.cache.set('k', 1, 0)", "ttl must be a positive number of seconds"),
            ("harmony.cache.set('k', 1, -1)", "ttl must be a positive number of seconds"),
            ("harmony.cache.set('k', 1, 0/0)", "ttl must be a positive number of seconds"),
            ("harmony.cache.get('\\255')", "cache key must be valid UTF-8"),
            ("harmony.cache.get()", "harmony.cache.get: bad argument #1 (string expected, got nil)"),
            ("harmony.cache.incr('k', 1.5)", "bad argument #2 (integer expected, got number with a fraction)"),
            ("harmony.cache.incr('k', 'x')", "bad argument #2 (integer expected, got string)"),
            (
                "harmony.cache.set('s', 'str') harmony.cache.incr('s')",
                "harmony.cache.incr: cache entry 's' holds a string, not an integer",
            ),
            ("harmony.cache.set('m', math.maxinteger) harmony.cache.incr('m')", "overflow"),
            ("harmony.cache.delete(true)", "harmony.cache.delete: bad argument #1"),
        ];
        for (code, want) in cases {
            let e = eval_err(&lua, code);
            assert!(e.contains(want), "{code}: got {e:?}, want {want:?}");
        }
        // Numbers are accepted as keys (converted like Lua's string functions).
        assert!(eval::<bool>(&lua, "harmony.cache.set(5, 'five') return harmony.cache.get('5') == 'five'"));
    }

    #[test]
    fn now_is_wall_clock_seconds() {
        let (lua, ..) = setup();
        let t: f64 = eval(&lua, "return harmony.now()");
        let sys = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
        assert!((sys - t).abs() < 5.0, "{t} vs {sys}");
        assert!(((t * 1000.0).round() - t * 1000.0).abs() < 1e-3, "ms precision: {t}");
        assert!(eval::<bool>(&lua, "return math.type(harmony.now()) == 'float'"));
    }

    #[test]
    fn log_formatting() {
        let (lua, ..) = setup();
        let args: MultiValue = eval(
            &lua,
            "return 'a', 1, 2.0, true, nil, setmetatable({}, {__tostring = function() return 'T' end}), 'b\\255'",
        );
        assert_eq!(format_log_args(&lua, args), "a 1 2.0 true nil T b\u{fffd}");
        let args: MultiValue = eval(&lua, "return setmetatable({}, {__tostring = function() error('boom') end})");
        assert!(format_log_args(&lua, args).starts_with("<table: 0x"));
        let args: MultiValue = eval(&lua, "return {}, harmony.json.null");
        let s = format_log_args(&lua, args);
        assert!(s.starts_with("table: 0x") && s.ends_with(" null"), "{s}");
        // The log functions themselves never fail.
        eval::<()>(&lua, "harmony.log.debug('x', {}) harmony.log.info() harmony.log.warn(1) harmony.log.error(nil)");
    }
}
