//! Hook coroutines driven through Lua's C API. mlua's `Thread::resume`
//! costs ~2,000 instructions a call around the script itself (argument
//! conversion through its reference thread, status probes with
//! `lua_getstack`, result conversion, `reset`); a hook call here pushes
//! five registry slots and calls `lua_resume`, and converts a result to an
//! mlua `Value` only when there is one (a hook that returns nothing, the
//! usual case, converts nothing).
//!
//! The coroutines are still mlua `Thread`s: mlua anchors them and frees
//! them when dropped; only their stacks are driven here. An idle coroutine
//! has an empty stack; one that finished normally is emptied and can be
//! reused; one that failed outside the hook's own `xpcall` is dropped.
//!
//! Safety: every function runs only Lua API calls that cannot raise
//! (`lua_rawgeti`, `lua_rawequal`, `lua_settop` on frames without
//! to-be-closed variables, `lua_resume`, which runs protected) while no Rust
//! value with a destructor is alive across them, or goes through mlua's
//! `exec_raw`, which runs its closure protected.

use mlua::{ffi, IntoLua, Lua, Thread, Value};
use std::ffi::c_int;

/// A Lua value anchored in the registry for the life of the state, pushed
/// with one `lua_rawgeti`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Anchor(c_int);

impl Anchor {
    pub(super) fn new(lua: &Lua, value: impl IntoLua) -> mlua::Result<Anchor> {
        let mut r = ffi::LUA_NOREF;
        let slot = &mut r as *mut c_int;
        // SAFETY: the closure runs protected with `value` on top of the
        // stack; luaL_ref pops it (it may raise only a memory error, with
        // nothing to drop in this frame).
        unsafe {
            lua.exec_raw::<()>(value, move |state| {
                *slot = ffi::luaL_ref(state, ffi::LUA_REGISTRYINDEX);
            })?;
        }
        if r == ffi::LUA_NOREF || r == ffi::LUA_REFNIL {
            return Err(mlua::Error::runtime("cannot anchor a nil value"));
        }
        Ok(Anchor(r))
    }

    /// Push the value on `co`'s stack.
    unsafe fn push(self, co: *mut ffi::lua_State) {
        ffi::lua_rawgeti(co, ffi::LUA_REGISTRYINDEX, ffi::lua_Integer::from(self.0));
    }
}

/// The argument a hook gets besides `ctx`.
pub(super) enum Arg<'a> {
    /// A state-long object (`req`, `res`, `msg`).
    Anchored(Anchor),
    /// A value made for this call (`assoc`).
    Value(&'a Value),
}

/// How a resume ended.
pub(super) enum Resumed {
    /// `xpcall` returned: `ok`, and the hook's first result
    /// (or the error value); the coroutine is idle again.
    Finished { ok: bool, value: Value },
    /// The hook yielded; `need_body`: with the host's NEED_BODY sentinel.
    Yielded { need_body: bool },
    /// The resume itself failed; the coroutine is dead.
    Failed(String),
}

/// An idle coroutine for `lua` (its stack emptied), registered as the
/// host's, so scripts cannot resume or close it (sandbox.rs).
pub(super) fn new_thread(lua: &Lua, body: &mlua::Function) -> mlua::Result<Thread> {
    let t = lua.create_thread(body.clone())?;
    lua.named_registry_value::<mlua::Table>(super::sandbox::HOST_THREADS)?.raw_set(&t, true)?;
    // SAFETY: a new thread; mlua pushed `body`, which we push ourselves per call
    unsafe { ffi::lua_settop(t.state(), 0) };
    Ok(t)
}

/// Run `xpcall(f, handler, arg, ctx)` on the idle coroutine `co`;
/// `call` is `[xpcall, f, handler]`.
pub(super) fn start(lua: &Lua, co: &Thread, call: [Anchor; 3], arg: Arg, ctx: Anchor, sentinel: Anchor) -> Resumed {
    let s = co.state();
    // SAFETY: `co` is idle (empty stack, status OK) and belongs to `lua`
    unsafe {
        if ffi::lua_checkstack(s, 5) == 0 {
            return Resumed::Failed("cannot grow the coroutine stack".into());
        }
        for a in call {
            a.push(s);
        }
        if let Err(e) = push_arg(lua, s, arg) {
            ffi::lua_settop(s, 0);
            return Resumed::Failed(e.to_string());
        }
        ctx.push(s);
        drive(lua, co, 4, sentinel)
    }
}

/// Run `f(arg, ctx)` with `handler` as message handler by `lua_pcall` on
/// the idle coroutine `co`, for a hook that has nothing to wait for (its
/// body is loaded): the same outcome as `start`, without the resume and
/// the `xpcall` frame (~500 instructions a call). The call is not
/// yieldable: a `coroutine.yield` in it fails it like any error.
pub(super) fn call(lua: &Lua, co: &Thread, f: Anchor, handler: Anchor, arg: Arg, ctx: Anchor) -> Resumed {
    let s = co.state();
    // SAFETY: `co` is idle (empty stack, status OK) and belongs to `lua`;
    // `lua_pcallk` runs protected.
    unsafe {
        if ffi::lua_checkstack(s, 4) == 0 {
            return Resumed::Failed("cannot grow the coroutine stack".into());
        }
        handler.push(s);
        f.push(s);
        if let Err(e) = push_arg(lua, s, arg) {
            ffi::lua_settop(s, 0);
            return Resumed::Failed(e.to_string());
        }
        ctx.push(s);
        // stack: handler, f, arg, ctx; after: handler, result (or the error)
        let status = ffi::lua_pcallk(s, 2, 1, 1, 0, None);
        let value = if ffi::lua_type(s, -1) != ffi::LUA_TNIL { take_top(lua, s) } else { Ok(Value::Nil) };
        ffi::lua_settop(s, 0);
        match value {
            Ok(value) => Resumed::Finished { ok: status == ffi::LUA_OK, value },
            Err(e) => Resumed::Failed(format!("cannot read the hook's result: {e}")),
        }
    }
}

/// Push a hook's argument on `s`.
unsafe fn push_arg(lua: &Lua, s: *mut ffi::lua_State, arg: Arg) -> mlua::Result<()> {
    match arg {
        Arg::Anchored(a) => {
            a.push(s);
            Ok(())
        }
        // mlua pushes `v` on the main stack; move it across
        Arg::Value(v) => lua.exec_raw::<()>(v, |state| ffi::lua_xmove(state, s, 1)),
    }
}

/// Continue a coroutine that yielded (its yielded values already popped).
pub(super) fn resume(lua: &Lua, co: &Thread, sentinel: Anchor) -> Resumed {
    // SAFETY: `co` is suspended in a yield and belongs to `lua`
    unsafe { drive(lua, co, 0, sentinel) }
}

unsafe fn drive(lua: &Lua, co: &Thread, nargs: c_int, sentinel: Anchor) -> Resumed {
    let s = co.state();
    let mut nres: c_int = 0;
    let status = ffi::lua_resume(s, std::ptr::null_mut(), nargs, &mut nres);
    match status {
        ffi::LUA_OK => {
            // xpcall's results: ok, then the hook's first result (or the error)
            let ok = nres >= 1 && ffi::lua_toboolean(s, -nres) != 0;
            let value = if nres >= 2 && ffi::lua_type(s, 1 - nres) != ffi::LUA_TNIL {
                ffi::lua_settop(s, 1 - nres); // the second result on top
                take_top(lua, s)
            } else {
                Ok(Value::Nil)
            };
            ffi::lua_settop(s, 0);
            match value {
                Ok(value) => Resumed::Finished { ok, value },
                // a result we cannot read must not pass for "no result"
                // (an on_dimse refusal would become a success)
                Err(e) => Resumed::Failed(format!("cannot read the hook's result: {e}")),
            }
        }
        ffi::LUA_YIELD => {
            let mut need_body = false;
            if nres >= 1 {
                if ffi::lua_checkstack(s, 1) == 0 {
                    return Resumed::Failed("cannot grow the coroutine stack".into());
                }
                sentinel.push(s);
                need_body = ffi::lua_rawequal(s, -1, -1 - nres) != 0;
                ffi::lua_settop(s, -2);
            }
            ffi::lua_settop(s, -1 - nres); // a resume passes no values back
            Resumed::Yielded { need_body }
        }
        _ => {
            let msg = if ffi::lua_type(s, -1) == ffi::LUA_TSTRING {
                let mut len = 0usize;
                let p = ffi::lua_tolstring(s, -1, &mut len);
                String::from_utf8_lossy(std::slice::from_raw_parts(p as *const u8, len)).into_owned()
            } else {
                format!("coroutine failed (status {status})")
            };
            Resumed::Failed(msg)
        }
    }
}

/// Pop the top of `s` as an mlua value (the caller empties the stack
/// either way).
unsafe fn take_top(lua: &Lua, s: *mut ffi::lua_State) -> mlua::Result<Value> {
    lua.exec_raw::<Value>((), |state| ffi::lua_xmove(s, state, 1))
}
