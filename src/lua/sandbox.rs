//! A sandboxed Lua 5.4 state: only the safe standard libraries, text-only
//! `load`, `require` confined to `scripts_path`, an instruction budget per
//! hook call and a memory limit per state.

use mlua::chunk::ChunkMode;
use mlua::{HookTriggers, Lua, LuaOptions, StdLib, Table, Value, VmState};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// Registry key of the (weak-keyed) set of the host's hook coroutines.
pub(crate) const HOST_THREADS: &str = "harmony.host_threads";

/// Instructions between two budget checks.
const HOOK_EVERY: u32 = 1000;

/// Resource limits for one Lua state.
#[derive(Debug, Clone)]
pub struct LuaLimits {
    /// Lua VM instructions one hook call (or one `init`) may run.
    pub instructions: u64,
    /// Bytes the whole state may allocate.
    pub memory: usize,
}

/// The per-call instruction counter shared with the VM hook.
pub(crate) struct Budget {
    used: Cell<u64>,
    limit: u64,
    kills: Cell<u64>,
    /// Set once this call ran out: from then on nothing may catch the error.
    killed: Cell<bool>,
}

impl Budget {
    /// Start a new call's budget.
    pub(crate) fn reset(&self) {
        self.used.set(0);
        self.killed.set(false);
    }
    /// How many calls were stopped by the budget so far.
    pub(crate) fn kills(&self) -> u64 {
        self.kills.get()
    }
}

/// Build a sandboxed state. Returns the state and its budget.
pub(crate) fn new_state(scripts_path: &Path, limits: &LuaLimits) -> mlua::Result<(Lua, Rc<Budget>)> {
    // SAFETY: the debug library is loaded only to take `debug.traceback` for
    // error reports; the `debug` global is removed before any script runs.
    let lua = unsafe {
        Lua::unsafe_new_with(
            StdLib::STRING
                | StdLib::TABLE
                | StdLib::MATH
                | StdLib::UTF8
                | StdLib::COROUTINE
                | StdLib::OS
                | StdLib::DEBUG,
            LuaOptions::default(),
        )
    };
    let g = lua.globals();
    let debug: Table = g.get("debug")?;
    let traceback: mlua::Function = debug.get("traceback")?;
    lua.set_named_registry_value("harmony.traceback", traceback)?;
    g.set("debug", Value::Nil)?;

    // os: only time and clock
    let os: Table = g.get("os")?;
    let safe_os = lua.create_table()?;
    safe_os.set("time", os.get::<mlua::Function>("time")?)?;
    safe_os.set("clock", os.get::<mlua::Function>("clock")?)?;
    g.set("os", safe_os)?;

    for name in ["dofile", "loadfile"] {
        g.set(name, Value::Nil)?;
    }
    let string: Table = g.get("string")?;
    string.set("dump", Value::Nil)?;

    // load: text chunks only (no bytecode: it can crash the VM)
    let raw_load: mlua::Function = g.get("load")?;
    lua.set_named_registry_value("harmony.raw_load", raw_load)?;
    let safe_load = lua
        .load(
            r#"
            local raw_load, select = ...
            return function(chunk, name, _mode, ...)
              if select('#', ...) > 0 then return raw_load(chunk, name, "t", (...)) end
              return raw_load(chunk, name, "t")
            end"#,
        )
        .set_name("=harmony.load")
        .call::<mlua::Function>((
            lua.named_registry_value::<mlua::Function>("harmony.raw_load")?,
            g.get::<mlua::Function>("select")?,
        ))?;
    g.set("load", safe_load)?;

    // collectgarbage: only the harmless queries
    let raw_gc: mlua::Function = g.get("collectgarbage")?;
    let gc = lua.create_function(move |_, (opt, arg): (Option<String>, Option<i64>)| {
        let opt = opt.unwrap_or_else(|| "collect".to_string());
        match opt.as_str() {
            "collect" | "count" | "step" => raw_gc.call::<mlua::MultiValue>((opt, arg)),
            other => Err(mlua::Error::runtime(format!("collectgarbage('{other}') is not allowed"))),
        }
    })?;
    g.set("collectgarbage", gc)?;

    // print goes to the log
    let print = lua.create_function(|_, args: mlua::Variadic<Value>| {
        let parts: Vec<String> = args.iter().map(|v| v.to_string().unwrap_or_else(|_| format!("{v:?}"))).collect();
        log::info!(target: "lua", "{}", parts.join("\t"));
        Ok(())
    })?;
    g.set("print", print)?;

    install_require(&lua, scripts_path)?;

    lua.set_memory_limit(limits.memory)?;
    // Generational GC: hook calls make short-lived garbage (data set
    // objects, strings), which the incremental collector let pile up — with
    // on_dimse reading every data set, the heap drifted from 0.6 to 4 MB
    // (live: 0.1-0.4 MB) over 280,000 C-STOREs and RSS with it; in
    // generational mode it stays at ~0.1 MB for the same CPU.
    lua.gc_set_mode(mlua::state::GcMode::Generational(mlua::state::GcGenParams::default()));
    let budget = Rc::new(Budget {
        used: Cell::new(0),
        limit: limits.instructions,
        kills: Cell::new(0),
        killed: Cell::new(false),
    });
    let b = budget.clone();
    lua.set_global_hook(HookTriggers::new().every_nth_instruction(HOOK_EVERY), move |_, _| {
        let used = b.used.get() + u64::from(HOOK_EVERY);
        b.used.set(used);
        if used > b.limit {
            if !b.killed.replace(true) {
                b.kills.set(b.kills.get() + 1);
            }
            return Err(mlua::Error::runtime(format!("instruction budget exceeded ({} instructions)", b.limit)));
        }
        Ok(VmState::Continue)
    })?;
    // pcall, xpcall and coroutines would otherwise catch the budget error and
    // go on looping: once a call is out of budget they re-raise it
    let k = budget.clone();
    let killed = lua.create_function(move |_, ()| Ok(k.killed.get()))?;
    // the host's own wrapper around each hook keeps the plain xpcall: it
    // does not loop, and it must see the budget error to report it
    lua.set_named_registry_value("harmony.raw_xpcall", g.get::<mlua::Function>("xpcall")?)?;
    // weak keys: a coroutine the host drops is collected as usual
    let host_threads = lua.create_table()?;
    let weak = lua.create_table()?;
    weak.set("__mode", "k")?;
    host_threads.set_metatable(Some(weak))?;
    lua.set_named_registry_value(HOST_THREADS, &host_threads)?;
    lua.load(
        r#"
        local killed, pcall, xpcall, co_create, co_resume, co_close, error, MSG, HOST = ...
        local function pass(...)
          if killed() then error(MSG, 0) end
          return ...
        end
        local function unwrap(ok, ...)
          if not ok then error((...), 0) end
          return ...
        end
        _G.pcall = function(...) return pass(pcall(...)) end
        _G.xpcall = function(...) return pass(xpcall(...)) end
        -- the coroutines the host runs hooks in (coroutine.running() hands
        -- them out) are the host's: resuming or closing one from a script
        -- would run another request's hook on this one's data
        local REFUSED = "a hook's own coroutine cannot be resumed or closed by a script"
        coroutine.resume = function(co, ...)
          if HOST[co] then return false, REFUSED end -- resume's way to fail
          return pass(co_resume(co, ...))
        end
        coroutine.close = function(co)
          if HOST[co] then error(REFUSED, 2) end -- as for closing a running one
          return co_close(co)
        end
        coroutine.wrap = function(f)
          local co = co_create(f)
          return function(...) return unwrap(pass(co_resume(co, ...))) end
        end"#,
    )
    .set_name("=harmony.budget")
    .call::<()>((
        killed,
        g.get::<mlua::Function>("pcall")?,
        g.get::<mlua::Function>("xpcall")?,
        lua.globals().get::<Table>("coroutine")?.get::<mlua::Function>("create")?,
        lua.globals().get::<Table>("coroutine")?.get::<mlua::Function>("resume")?,
        lua.globals().get::<Table>("coroutine")?.get::<mlua::Function>("close")?,
        g.get::<mlua::Function>("error")?,
        format!("instruction budget exceeded ({} instructions)", limits.instructions),
        host_threads,
    ))?;
    Ok((lua, budget))
}

/// `require("a.b")` loads `scripts_path/a/b.lua` (text only), once per state.
fn install_require(lua: &Lua, scripts_path: &Path) -> mlua::Result<()> {
    let root: PathBuf = scripts_path.canonicalize().unwrap_or_else(|_| scripts_path.to_path_buf());
    let loaded = lua.create_table()?;
    lua.set_named_registry_value("harmony.loaded", loaded)?;
    let require = lua.create_function(move |lua, name: String| {
        let loaded: Table = lua.named_registry_value("harmony.loaded")?;
        if let Some(v) = loaded.get::<Option<Value>>(name.as_str())? {
            return Ok(v);
        }
        let path = module_path(&root, &name).map_err(mlua::Error::runtime)?;
        let src = std::fs::read(&path)
            .map_err(|e| mlua::Error::runtime(format!("module '{name}': {}: {e}", path.display())))?;
        let chunk_name = super::host::chunk_name(&path, &root);
        let value: Value = lua.load(src).set_name(chunk_name).set_mode(ChunkMode::Text).call(name.as_str())?;
        let value = if value.is_nil() { Value::Boolean(true) } else { value };
        loaded.set(name.as_str(), value.clone())?;
        Ok(value)
    })?;
    lua.globals().set("require", require)
}

/// Map a module name to a file inside `root`, refusing anything that could leave it.
fn module_path(root: &Path, name: &str) -> Result<PathBuf, String> {
    let ok = !name.is_empty()
        && name
            .split('.')
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
    if !ok {
        return Err(format!(
            "module '{name}': names are dot-separated words (letters, digits, _ and -), resolved inside scripts_path"
        ));
    }
    let rel: PathBuf = name.split('.').collect();
    let path = root.join(rel).with_extension("lua");
    let real = path.canonicalize().map_err(|e| format!("module '{name}': {}: {e}", path.display()))?;
    if !real.starts_with(root) {
        return Err(format!("module '{name}' resolves outside scripts_path"));
    }
    Ok(real)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> (Lua, Rc<Budget>) {
        let dir = std::env::temp_dir().join(format!("harmony-sandbox-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("lib")).unwrap();
        std::fs::write(dir.join("lib/util.lua"), "return { twice = function(x) return 2 * x end }").unwrap();
        new_state(&dir, &LuaLimits { instructions: 100_000, memory: 8 << 20 }).unwrap()
    }

    fn err_of(lua: &Lua, code: &str) -> String {
        lua.load(code).exec().err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn dangerous_globals_are_gone() {
        let (lua, _) = state();
        for code in [
            "io.open('/etc/passwd')",
            "os.execute('true')",
            "dofile('/etc/passwd')",
            "loadfile('/x')",
            "debug.getinfo(1)",
            "string.dump(print)",
            "package.loadlib('x','y')",
        ] {
            assert!(!err_of(&lua, code).is_empty(), "{code} should fail");
        }
        assert!(lua.load("return os.time() > 0 and os.clock() >= 0").eval::<bool>().unwrap());
    }

    #[test]
    fn bytecode_is_refused_and_text_load_works() {
        let (lua, _) = state();
        let r: (Value, Value) = lua.load("return load('\\27Lua...')").eval().unwrap();
        assert!(r.0.is_nil());
        assert!(r.1.to_string().unwrap().contains("binary"), "{:?}", r.1);
        assert_eq!(lua.load("return load('return 1 + 1')()").eval::<i64>().unwrap(), 2);
    }

    #[test]
    fn require_stays_inside_scripts_path() {
        let (lua, _) = state();
        assert_eq!(lua.load("return require('lib.util').twice(21)").eval::<i64>().unwrap(), 42);
        assert!(err_of(&lua, "require('../x')").contains("names are"));
        assert!(err_of(&lua, "require('/etc/passwd')").contains("names are"));
        assert!(err_of(&lua, "require('nope')").contains("nope"));
    }

    #[test]
    fn the_budget_cannot_be_caught() {
        let (lua, budget) = state();
        for code in [
            "while true do pcall(function() while true do end end) end",
            "while true do xpcall(function() while true do end end, function() end) end",
            "while true do coroutine.resume(coroutine.create(function() while true do end end)) end",
            "while true do pcall(coroutine.wrap(function() while true do end end)) end",
        ] {
            budget.reset();
            assert!(err_of(&lua, code).contains("instruction budget exceeded"), "{code}");
        }
        budget.reset();
        assert_eq!(lua.load("return select(2, pcall(error, 'x'))").eval::<String>().unwrap(), "x");
    }

    #[test]
    fn budgets_stop_loops_and_bombs() {
        let (lua, budget) = state();
        budget.reset();
        assert!(err_of(&lua, "while true do end").contains("instruction budget exceeded"));
        assert_eq!(budget.kills(), 1);
        budget.reset();
        let e = err_of(&lua, "local s = string.rep('x', 1024 * 1024 * 64)");
        assert!(e.contains("memory") || e.contains("not enough"), "{e}");
        // the state still works afterwards
        budget.reset();
        assert_eq!(lua.load("return 1 + 2").eval::<i64>().unwrap(), 3);
    }
}
