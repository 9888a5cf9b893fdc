//! Per-call cost of a Harmony-like hook (a userdata header write and a method
//! read, through a coroutine) with the per-call budget mechanism of each VM.
use mlua::{Lua, MetaMethod, UserData, UserDataMethods, Value};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Instant;

struct Hdrs(Rc<RefCell<Vec<(String, String)>>>);
impl UserData for Hdrs {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_meta_method(MetaMethod::NewIndex, |_, this, (k, v): (mlua::LuaString, Value)| {
            let k = k.to_str()?.to_string();
            let mut h = this.0.borrow_mut();
            h.retain(|(n, _)| !n.eq_ignore_ascii_case(&k));
            if let Value::String(s) = v {
                h.push((k, s.to_str()?.to_string()));
            }
            Ok(())
        });
    }
}
struct Msg;
impl UserData for Msg {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_method("get", |lua, _, _k: mlua::LuaString| lua.create_string("GET"));
    }
}

fn main() -> mlua::Result<()> {
    let lua = Lua::new();
    let used = Rc::new(Cell::new(0u64));
    #[cfg(feature = "lua54")]
    {
        let u = used.clone();
        lua.set_global_hook(mlua::HookTriggers::new().every_nth_instruction(1000), move |_, _| {
            u.set(u.get() + 1000);
            if u.get() > 1_000_000 { return Err(mlua::Error::runtime("budget")); }
            Ok(mlua::VmState::Continue)
        })?;
    }
    #[cfg(feature = "luau")]
    {
        let u = used.clone();
        lua.set_interrupt(move |_| {
            u.set(u.get() + 1);
            if u.get() > 100_000 { return Err(mlua::Error::runtime("budget")); }
            Ok(mlua::VmState::Continue)
        });
    }
    let hdrs = Rc::new(RefCell::new(Vec::new()));
    let h = lua.create_userdata(Hdrs(hdrs.clone()))?;
    let msg = lua.create_userdata(Msg)?;
    let req: mlua::Table = lua.load(r#"
        local h, m = ...
        local get = m.get
        return setmetatable({}, { __index = function(_, k) if k == "headers" then return h end return get(m, k) end })
    "#).call((h, msg))?;

    let hook: mlua::Function = lua.load(r#"
        return function(req)
          req.headers["x-gateway"] = "bench"
          if req.method == "DELETE" then return 1 end
          req.headers["x-lua"] = "1"
          req.headers["server"] = nil
        end"#).eval()?;
    let run: mlua::Function = lua.load(r#"return function(f, r) return pcall(f, r) end"#).eval()?;
    let n = 300_000;
    let mut pool: Vec<mlua::Thread> = Vec::new();
    let t0 = Instant::now();
    for _ in 0..n {
        used.set(0);
        let th = match pool.pop() { Some(t) => t, None => lua.create_thread(run.clone())? };
        let _: mlua::MultiValue = th.resume((hook.clone(), req.clone()))?;
        th.reset(run.clone())?;
        pool.push(th);
    }
    let dt = t0.elapsed();
    let vm = if cfg!(feature = "luau") { "luau (interrupt)" } else { "lua54 (count hook)" };
    println!("{vm}: {:.0} ns per hook call ({} calls)", dt.as_nanos() as f64 / n as f64, n);
    // the budget really stops an endless loop
    used.set(0);
    let r = lua.load("while true do end").exec();
    println!("{vm}: endless loop stopped: {}", r.is_err());
    Ok(())
}
