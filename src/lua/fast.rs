//! Raw C functions for the hottest accesses of `req`/`res`: reading and
//! assigning `req.headers[name]` and reading `req.method`, `req.path`,
//! `res.status`. Going through mlua's callback machinery costs ~2,300
//! instructions per access; these cost a few hundred.
//!
//! Every function handles only the plain case (a string key, a string or
//! nil value, a valid name and value, a single header field, a message in
//! the slot) and otherwise hands the very same arguments to the mlua
//! implementation it shadows (kept as an upvalue), so errors, coercions
//! and edge cases behave exactly as before.
//!
//! Safety argument (Lua errors are longjmps):
//! - No Lua API call that can raise (allocate, call a metamethod or a
//!   function) runs while a Rust value with a destructor is alive in these
//!   frames: the Rust work (RefCell borrows, header edits) happens in inner
//!   functions that touch no Lua API and return plain data (a pointer and a
//!   length, an enum); only then does the outer `extern "C-unwind"` function
//!   push results or call the fallback.
//! - A pointer returned by an inner function points into the message (a
//!   header value, the method or path) after its `RefCell` guard is gone;
//!   it is read by `lua_pushlstring`, which copies the bytes before it can
//!   run anything else (an allocation failure raises before the copy; an
//!   emergency collection runs no finalizers), and no Rust code runs in
//!   between, so nothing can change the message meanwhile.
//! - Nothing here panics: no indexing, no unwrap; the inner functions only
//!   compare bytes and call `Headers` methods.
//! - The slot lives in a Lua userdata (`Holder`) owned by the Lua state:
//!   it is reachable from the closures as an upvalue, so it outlives every
//!   call; its `__gc` drops the `Rc` (after which the fast path finds
//!   `None` and falls back). The metatables are hidden (`__metatable =
//!   false`, no debug library), so scripts cannot call these functions with
//!   other upvalues or arguments of their own choosing beyond those of the
//!   metamethods.

use super::objects::Slot;
use http1::{is_valid_field_name, is_valid_field_value};
use mlua::{ffi, AnyUserData, Function, Lua};
use std::ffi::{c_char, c_int};

/// The contents of a holder userdata.
type Holder = Option<Slot>;

/// `__gc` of a holder: drop the `Rc` it holds.
unsafe extern "C-unwind" fn holder_gc(l: *mut ffi::lua_State) -> c_int {
    let p = ffi::lua_touserdata(l, 1) as *mut Holder;
    if !p.is_null() {
        // only Rust destructors run here (no Lua calls, no panics)
        drop((*p).take());
    }
    0
}

/// The slot of the holder at `idx` (an upvalue), if not yet collected.
unsafe fn holder<'a>(l: *mut ffi::lua_State, idx: c_int) -> Option<&'a Slot> {
    let p = ffi::lua_touserdata(l, idx) as *const Holder;
    if p.is_null() {
        return None;
    }
    (*p).as_ref()
}

/// The string at `idx`, if it is a string (no coercion: numbers fall back).
unsafe fn string_arg<'a>(l: *mut ffi::lua_State, idx: c_int) -> Option<&'a [u8]> {
    if ffi::lua_type(l, idx) != ffi::LUA_TSTRING {
        return None;
    }
    let mut len = 0usize;
    let p = ffi::lua_tolstring(l, idx, &mut len);
    if p.is_null() {
        return None;
    }
    Some(std::slice::from_raw_parts(p as *const u8, len))
}

/// What an inner function found.
enum Found {
    Bytes(*const u8, usize),
    Integer(i64),
    Nil,
    /// Let the mlua implementation handle it.
    Fallback,
}

unsafe fn push_found(l: *mut ffi::lua_State, f: Found) -> bool {
    match f {
        Found::Bytes(p, n) => {
            ffi::lua_pushlstring(l, p as *const c_char, n);
        }
        Found::Integer(n) => ffi::lua_pushinteger(l, n),
        Found::Nil => ffi::lua_pushnil(l),
        Found::Fallback => return false,
    }
    true
}

/// `hdr[name]`: one field's value, nil when absent; several fields (joined
/// by the slow path) and everything unusual fall back.
fn header_get(slot: &Slot, name: &[u8]) -> Found {
    let Ok(name) = std::str::from_utf8(name) else { return Found::Fallback };
    let Ok(cur) = slot.try_borrow() else { return Found::Fallback };
    let Some(msg) = cur.as_ref() else { return Found::Fallback };
    let Ok(s) = msg.try_borrow() else { return Found::Fallback };
    let mut values = s.headers.get_all(name);
    match (values.next(), values.next()) {
        (None, _) => Found::Nil,
        (Some(v), None) => Found::Bytes(v.as_ptr(), v.len()),
        _ => Found::Fallback,
    }
}

/// `hdr[name] = value` for a string or nil value; false: fall back (also
/// for every error, which the slow path reports in its own words).
fn header_set(slot: &Slot, name: &[u8], value: Option<&[u8]>) -> bool {
    // valid names are ASCII (checked next); anything else falls back
    if !name.is_ascii() {
        return false;
    }
    // SAFETY: ASCII bytes are valid UTF-8.
    let name = unsafe { std::str::from_utf8_unchecked(name) };
    if !is_valid_field_name(name)
        || ["content-length", "transfer-encoding", "connection"].iter().any(|m| name.eq_ignore_ascii_case(m))
    {
        return false;
    }
    if value.is_some_and(|v| !is_valid_field_value(v)) {
        return false;
    }
    let Ok(cur) = slot.try_borrow() else { return false };
    let Some(msg) = cur.as_ref() else { return false };
    let Ok(mut s) = msg.try_borrow_mut() else { return false };
    // over the cap: the slow path reports it
    if s.headers.byte_len() + name.len() + value.map_or(0, <[u8]>::len) > super::objects::SCRIPT_HEADER_BYTES {
        return false;
    }
    s.headers.remove(name);
    if let Some(v) = value {
        s.headers.append(name, v);
    }
    true
}

/// `ud:get(key)` for `method`, `path` (requests) and `status` (responses).
fn field_get(slot: &Slot, key: &[u8]) -> Found {
    let Ok(cur) = slot.try_borrow() else { return Found::Fallback };
    let Some(msg) = cur.as_ref() else { return Found::Fallback };
    let Ok(s) = msg.try_borrow() else { return Found::Fallback };
    match key {
        b"method" if s.is_request => Found::Bytes(s.method.as_ptr(), s.method.len()),
        b"path" if s.is_request => Found::Bytes(s.path.as_ptr(), s.path.len()),
        b"status" if !s.is_request => Found::Integer(i64::from(s.status)),
        _ => Found::Fallback,
    }
}

/// `__index(hdr, name)`; upvalues: the holder, the mlua headers userdata.
unsafe extern "C-unwind" fn header_index(l: *mut ffi::lua_State) -> c_int {
    let found = match (holder(l, ffi::lua_upvalueindex(1)), string_arg(l, 2)) {
        (Some(slot), Some(name)) => header_get(slot, name),
        _ => Found::Fallback,
    };
    if push_found(l, found) {
        return 1;
    }
    // slow[name], through the mlua userdata's own __index
    ffi::lua_settop(l, 2);
    ffi::lua_pushvalue(l, ffi::lua_upvalueindex(2));
    ffi::lua_replace(l, 1);
    ffi::lua_gettable(l, 1);
    1
}

/// `__newindex(hdr, name, value)`; upvalues as for `header_index`.
unsafe extern "C-unwind" fn header_newindex(l: *mut ffi::lua_State) -> c_int {
    let value = match ffi::lua_type(l, 3) {
        ffi::LUA_TNIL => Some(None),
        ffi::LUA_TSTRING => string_arg(l, 3).map(Some),
        _ => None,
    };
    let done = match (holder(l, ffi::lua_upvalueindex(1)), string_arg(l, 2), value) {
        (Some(slot), Some(name), Some(value)) => header_set(slot, name, value),
        _ => false,
    };
    if done {
        return 0;
    }
    // slow[name] = value, through the mlua userdata's own __newindex
    ffi::lua_settop(l, 3);
    ffi::lua_pushvalue(l, ffi::lua_upvalueindex(2));
    ffi::lua_replace(l, 1);
    ffi::lua_settable(l, 1);
    0
}

/// `__index(fields, key)` of `req`/`res`, for the keys the prelude's
/// `fields` table does not hold; upvalues: the holder, the mlua `get`
/// method, the mlua userdata, the prelude's `body_of`.
unsafe extern "C-unwind" fn msg_index(l: *mut ffi::lua_State) -> c_int {
    let is_body = string_arg(l, 2) == Some(b"body".as_slice());
    if is_body {
        // body_of(ud) may yield until the proxy has buffered the body; the
        // continuation then returns its result
        ffi::lua_settop(l, 0);
        ffi::lua_pushvalue(l, ffi::lua_upvalueindex(4));
        ffi::lua_pushvalue(l, ffi::lua_upvalueindex(3));
        ffi::lua_callk(l, 1, 1, 0, Some(msg_index_k));
        return 1;
    }
    let found = match (holder(l, ffi::lua_upvalueindex(1)), string_arg(l, 2)) {
        (Some(slot), Some(key)) => field_get(slot, key),
        _ => Found::Fallback,
    };
    if push_found(l, found) {
        return 1;
    }
    // get(ud, key)
    ffi::lua_settop(l, 2);
    ffi::lua_pushvalue(l, ffi::lua_upvalueindex(2));
    ffi::lua_pushvalue(l, ffi::lua_upvalueindex(3));
    ffi::lua_pushvalue(l, 2);
    ffi::lua_call(l, 2, 1);
    1
}

/// Continuation of `msg_index` after `body_of` yielded: its result is on top.
unsafe extern "C-unwind" fn msg_index_k(_l: *mut ffi::lua_State, _status: c_int, _ctx: ffi::lua_KContext) -> c_int {
    1
}

/// Push a new, still empty holder userdata and above it a metatable with
/// `__gc` and `__metatable = false`, for the caller to add fields to;
/// `finish_holder` then fills the holder and sets the metatable.
unsafe fn push_holder(l: *mut ffi::lua_State) {
    let p = ffi::lua_newuserdatauv(l, std::mem::size_of::<Holder>(), 0) as *mut Holder;
    // nothing owned yet: write None first, so a raise below leaks nothing
    std::ptr::write(p, None);
    ffi::lua_createtable(l, 0, 4);
    ffi::lua_pushcfunction(l, holder_gc);
    ffi::lua_setfield(l, -2, c"__gc".as_ptr());
    ffi::lua_pushboolean(l, 0);
    ffi::lua_setfield(l, -2, c"__metatable".as_ptr());
}

/// Fill the holder at `ud_idx` and set the metatable on top of the stack.
unsafe fn finish_holder(l: *mut ffi::lua_State, ud_idx: c_int, slot: &Slot) {
    let p = ffi::lua_touserdata(l, ud_idx) as *mut Holder;
    // lua_setmetatable does not allocate or raise
    *p = Some(slot.clone());
    ffi::lua_setmetatable(l, ud_idx);
}

/// The fast `req.headers` object (a userdata whose metamethods are the C
/// functions above, `pairs` going to the mlua object) and the fast
/// `__index` for the prelude's `wrap`; `ud` is the mlua message userdata.
pub(crate) fn fast_objects(
    lua: &Lua,
    slot: &Slot,
    ud: &AnyUserData,
    slow_hdr: &AnyUserData,
    slow_get: &Function,
) -> mlua::Result<(AnyUserData, Function)> {
    let body_of: Function = lua.named_registry_value("harmony.body_of")?;
    let pairs: Function = lua
        .load("local slow, pairs = ... return function() return pairs(slow) end")
        .set_name("=harmony.headers")
        .call((slow_hdr, lua.globals().get::<Function>("pairs")?))?;
    // SAFETY: see the module comment; `f` runs in protected mode and owns
    // nothing with a destructor (it only borrows `slot`).
    unsafe {
        lua.exec_raw::<(AnyUserData, Function)>((slow_hdr, slow_get, pairs, ud, body_of), |l| {
            // 1 slow_hdr, 2 slow_get, 3 pairs, 4 ud, 5 body_of
            push_holder(l); // 6 holder of index, 7 its metatable
            finish_holder(l, 6, slot);
            ffi::lua_pushvalue(l, 2);
            ffi::lua_pushvalue(l, 4);
            ffi::lua_pushvalue(l, 5);
            ffi::lua_pushcclosure(l, msg_index, 4); // 6 index
            ffi::lua_replace(l, 4); // 4 index
            ffi::lua_settop(l, 4);
            push_holder(l); // 5 hdr, 6 its metatable
            ffi::lua_pushvalue(l, 5);
            ffi::lua_pushvalue(l, 1);
            ffi::lua_pushcclosure(l, header_index, 2);
            ffi::lua_setfield(l, 6, c"__index".as_ptr());
            ffi::lua_pushvalue(l, 5);
            ffi::lua_pushvalue(l, 1);
            ffi::lua_pushcclosure(l, header_newindex, 2);
            ffi::lua_setfield(l, 6, c"__newindex".as_ptr());
            ffi::lua_pushvalue(l, 3);
            ffi::lua_setfield(l, 6, c"__pairs".as_ptr());
            finish_holder(l, 5, slot);
            // 1 slow_hdr, 2 slow_get, 3 pairs, 4 index, 5 hdr: leave (hdr, index)
            ffi::lua_replace(l, 1);
            ffi::lua_replace(l, 2);
            ffi::lua_settop(l, 2);
        })
    }
}
