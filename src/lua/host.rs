//! `LuaHost`: one sandboxed state per worker per generation, every `lua`
//! middleware script loaded and initialised, and hook calls run as
//! coroutines so a script reading `req.body` can wait for it.

use super::api::{self, ApiEnv};
use super::cache::Cache;
use super::coro::{self, Anchor, Arg, Resumed};
use super::ctx::{CtxSlot, CtxUd, LuaCtx};
use super::dicom::{DimseSlot, DimseUd};
use super::objects::{slot_userdata, Body, Message, Slot};
use super::sandbox::{new_state, Budget, LuaLimits};
use crate::pipeline::LocalResponse;
use http1::{is_valid_field_name, is_valid_field_value, Headers};
use mlua::chunk::ChunkMode;
use mlua::{Function, Lua, LuaSerdeExt, Table, Thread, Value};
use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// The hooks a script may define.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    Request,
    Response,
    /// DICOM association (dispatch ready for the DICOM layer).
    Associate,
    /// DICOM message (dispatch ready for the DICOM layer).
    Dimse,
}

impl Hook {
    pub(super) fn name(self) -> &'static str {
        match self {
            Hook::Request => "on_request",
            Hook::Response => "on_response",
            Hook::Associate => "on_associate",
            Hook::Dimse => "on_dimse",
        }
    }
}

/// One `lua` middleware as configured.
#[derive(Debug, Clone)]
pub struct StageSpec {
    /// Index of the middleware in the generation.
    pub mw: usize,
    pub name: String,
    /// Absolute path of the script.
    pub script: PathBuf,
    /// The middleware's options, handed to `init(opts)`.
    pub options: serde_json::Value,
    /// `on_error = "continue"`: a failing hook lets the request pass.
    pub continue_on_error: bool,
    /// The script's text, read once when the generation is built, so the
    /// check and every worker load exactly the same bytes.
    pub source: std::sync::Arc<Vec<u8>>,
}

struct Stage {
    spec: StageSpec,
    /// The hook functions, anchored for the raw calls (see coro.rs).
    hooks: [Option<Anchor>; 4],
}

/// What a hook call decided.
pub enum Outcome {
    Continue,
    Respond(LocalResponse),
    /// The hook reads the body: buffer it, set `Body::Loaded`, then `resume`.
    NeedBody(Pending),
    /// The hook failed (and the stage does not continue on error).
    Failed {
        error_id: String,
    },
}

/// A suspended hook call.
pub struct Pending {
    call: Call,
    hook: Hook,
    msg: Message,
    /// A `harmony.respond` this call made before it waited for the body.
    response: Option<LocalResponse>,
}

/// A hook coroutine and whom it runs for (HTTP and DICOM hooks alike).
pub(super) struct Call {
    thread: Thread,
    pub(super) mw: usize,
    ctx: LuaCtx,
    pub(super) request_id: String,
}

/// How a hook coroutine stopped.
pub(super) enum Ended {
    /// The hook returned: its first result (nil when none).
    Returned(Value),
    /// The hook raised this error value (a traceback or a sentinel).
    Raised(Value),
    /// The hook waits for a body or data set.
    Waiting(Call),
    /// The call itself failed (budget, memory, a stray yield).
    Broken(String),
}

/// Which kind of hook is running: `harmony.respond` and `harmony.reject`
/// are only for their own hooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    Idle,
    Http,
    Associate,
    Dimse,
}

/// What the host learned about its scripts while loading them.
#[derive(Debug)]
pub struct LoadError(pub Vec<String>);

pub(super) struct Prelude {
    /// The unwrapped `xpcall`: the body of every hook coroutine.
    xpcall: Function,
    xpcall_anchor: Anchor,
    /// The message handler each hook runs under.
    handler: Anchor,
    need_body: Anchor,
    respond: Value,
    pub(super) reject: Value,
}

/// The `req` (or `res`) object of a state: made once, pointed at the
/// message of the call being run.
struct MsgObject {
    slot: Slot,
    proxy: Anchor,
}

pub struct LuaHost {
    lua: Lua,
    /// Indexed by middleware index (None: not a Lua middleware).
    stages: Vec<Option<Stage>>,
    budget: Rc<Budget>,
    pub(super) prelude: Prelude,
    response_slot: Rc<RefCell<Option<LocalResponse>>>,
    idle_threads: RefCell<Vec<Thread>>,
    req: MsgObject,
    res: MsgObject,
    /// Shared gateway/pipeline/endpoint names for `ctx` (a few; linear search).
    names: RefCell<Vec<Rc<str>>>,
    /// The state's `ctx` object and the request it points at.
    ctx_slot: CtxSlot,
    ctx_ud: Anchor,
    errors: Cell<u64>,
    kills_reported: Cell<u64>,
    errors_reported: Cell<u64>,
    mode: Rc<Cell<Mode>>,
    /// What `harmony.reject` chose during the running on_associate.
    pub(super) reject_slot: Rc<Cell<Option<dimse::negotiate::RejectReason>>>,
    /// The `msg` object of on_dimse and the message it points at.
    pub(super) dimse_slot: DimseSlot,
    pub(super) dimse_proxy: Anchor,
}

fn error_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0);
    format!("lua-{:x}-{}", t & 0xffff_ffff, N.fetch_add(1, Ordering::Relaxed))
}

impl LuaHost {
    /// Build a state, load every script, run every `init`. All problems are
    /// collected (file:line: message).
    pub(crate) fn build(
        scripts_path: &Path,
        limits: &LuaLimits,
        specs: &[StageSpec],
        cache: Rc<RefCell<Cache>>,
    ) -> Result<LuaHost, LoadError> {
        let fail = |e: mlua::Error| LoadError(vec![format!("lua: {e}")]);
        let (lua, budget) = new_state(scripts_path, limits).map_err(fail)?;
        let response_slot: Rc<RefCell<Option<LocalResponse>>> = Rc::new(RefCell::new(None));
        let mode = Rc::new(Cell::new(Mode::Idle));
        let reject_slot = Rc::new(Cell::new(None));
        let prelude =
            Self::install(&lua, response_slot.clone(), cache, mode.clone(), reject_slot.clone()).map_err(fail)?;
        let mut stages: Vec<Option<Stage>> = Vec::new();
        let mut errors = Vec::new();
        for spec in specs {
            budget.reset();
            match load_stage(&lua, spec, scripts_path) {
                Ok(stage) => {
                    if stages.len() <= spec.mw {
                        stages.resize_with(spec.mw + 1, || None);
                    }
                    stages[spec.mw] = Some(stage);
                }
                Err(e) => {
                    // chunk names are relative to scripts_path; report full paths
                    let rel = chunk_name(&spec.script, scripts_path);
                    let msg = clean(&e).replace(&format!("{}:", &rel[1..]), &format!("{}:", spec.script.display()));
                    errors.push(format!("{}: middleware '{}': {msg}", spec.script.display(), spec.name))
                }
            }
        }
        if !errors.is_empty() {
            return Err(LoadError(errors));
        }
        let object = |wrap: &Function| -> mlua::Result<MsgObject> {
            let slot: Slot = Rc::new(RefCell::new(None));
            let (ud, slow_hdr) = slot_userdata(&lua, &slot)?;
            let slow_get: Function = mlua::ObjectLike::get(&ud, "get")?;
            let (hdr, index) = super::fast::fast_objects(&lua, &slot, &ud, &slow_hdr, &slow_get)?;
            let proxy: Table = wrap.call((ud, hdr, index))?;
            Ok(MsgObject { slot, proxy: Anchor::new(&lua, proxy)? })
        };
        let wrap: Function = lua.named_registry_value("harmony.wrap").map_err(fail)?;
        let req = object(&wrap).map_err(fail)?;
        let ctx_slot: CtxSlot = Rc::new(RefCell::new(None));
        let ctx_ud = lua.create_userdata(CtxUd(ctx_slot.clone())).map_err(fail)?;
        let ctx_ud = Anchor::new(&lua, ctx_ud).map_err(fail)?;
        let res = object(&wrap).map_err(fail)?;
        let dimse_slot: DimseSlot = Rc::new(RefCell::new(None));
        let wrap_dimse: Function = lua.named_registry_value("harmony.wrap_dimse").map_err(fail)?;
        let dimse_ud = lua.create_userdata(DimseUd(dimse_slot.clone())).map_err(fail)?;
        let dimse_proxy: Table = wrap_dimse.call(dimse_ud).map_err(fail)?;
        let dimse_proxy = Anchor::new(&lua, dimse_proxy).map_err(fail)?;
        lua.gc_collect().map_err(fail)?;
        Ok(LuaHost {
            lua,
            stages,
            budget,
            prelude,
            response_slot,
            idle_threads: RefCell::new(Vec::new()),
            req,
            res,
            names: RefCell::new(Vec::new()),
            ctx_slot,
            ctx_ud,
            errors: Cell::new(0),
            kills_reported: Cell::new(0),
            errors_reported: Cell::new(0),
            mode,
            reject_slot,
            dimse_slot,
            dimse_proxy,
        })
    }

    fn install(
        lua: &Lua,
        slot: Rc<RefCell<Option<LocalResponse>>>,
        cache: Rc<RefCell<Cache>>,
        mode: Rc<Cell<Mode>>,
        reject_slot: Rc<Cell<Option<dimse::negotiate::RejectReason>>>,
    ) -> mlua::Result<Prelude> {
        let harmony = lua.create_table()?;
        let start = std::time::Instant::now();
        api::install(lua, &harmony, ApiEnv { cache, clock: Rc::new(move || start.elapsed().as_millis() as u64) })?;
        let json: Table = harmony.get("json")?;
        let respond_mode = mode.clone();
        let set_response =
            lua.create_function(move |_, (status, headers, body): (i64, Option<Table>, Option<mlua::LuaString>)| {
                if matches!(respond_mode.get(), Mode::Associate | Mode::Dimse) {
                    return Err(mlua::Error::runtime(
                        "harmony.respond answers HTTP requests; in DICOM hooks use harmony.reject or return a status",
                    ));
                }
                if !(100..=999).contains(&status) || (100..200).contains(&status) {
                    return Err(mlua::Error::runtime(format!("harmony.respond: invalid status {status}")));
                }
                let mut h = Headers::new();
                if let Some(t) = headers {
                    for pair in t.pairs::<String, mlua::LuaString>() {
                        let (name, value) = pair?;
                        let value = value.as_bytes().to_vec();
                        if !is_valid_field_name(&name) || !is_valid_field_value(&value) {
                            return Err(mlua::Error::runtime(format!("harmony.respond: invalid header '{name}'")));
                        }
                        if matches!(
                            name.to_ascii_lowercase().as_str(),
                            "content-length" | "transfer-encoding" | "connection"
                        ) {
                            continue; // framing is ours
                        }
                        h.append(&name, &value);
                    }
                }
                let body = body.map(|b| b.as_bytes().to_vec()).unwrap_or_default();
                *slot.borrow_mut() = Some(LocalResponse { status: status as u16, headers: h, body });
                Ok(())
            })?;
        let set_reject = super::dicom::reject_function(lua, mode, reject_slot)?;
        let traceback: Function = lua.named_registry_value("harmony.traceback")?;
        let pieces: Table =
            lua.load(include_str!("prelude.lua")).set_name("=harmony.prelude").set_mode(ChunkMode::Text).call((
                traceback,
                set_response,
                json.get::<Function>("encode")?,
                json.get::<Function>("decode")?,
                lua.named_registry_value::<Function>("harmony.raw_xpcall")?,
                set_reject,
            ))?;
        harmony.set("respond", pieces.get::<Function>("respond")?)?;
        harmony.set("reject", pieces.get::<Function>("reject")?)?;
        lua.globals().set("harmony", harmony)?;
        lua.set_named_registry_value("harmony.wrap", pieces.get::<Function>("wrap")?)?;
        lua.set_named_registry_value("harmony.body_of", pieces.get::<Function>("body_of")?)?;
        lua.set_named_registry_value("harmony.wrap_dimse", pieces.get::<Function>("wrap_dimse")?)?;
        lua.set_named_registry_value("harmony.readonly", pieces.get::<Function>("readonly")?)?;
        let xpcall: Function = lua.named_registry_value("harmony.raw_xpcall")?;
        Ok(Prelude {
            xpcall_anchor: Anchor::new(lua, &xpcall)?,
            xpcall,
            handler: Anchor::new(lua, pieces.get::<Function>("handler")?)?,
            need_body: Anchor::new(lua, pieces.get::<Value>("NEED_BODY")?)?,
            respond: pieces.get("RESPOND")?,
            reject: pieces.get("REJECT")?,
        })
    }

    fn stage(&self, mw: usize) -> Option<&Stage> {
        self.stages.get(mw)?.as_ref()
    }

    /// Does middleware `mw` define `hook`?
    pub fn has(&self, mw: usize, hook: Hook) -> bool {
        self.stage(mw).is_some_and(|s| s.hooks[hook as usize].is_some())
    }

    /// A fresh `ctx` for one request (no Lua allocation until a script uses it).
    pub fn new_ctx(&self, gateway: &str, pipeline: &str, endpoint: &str, request_id: &str) -> mlua::Result<LuaCtx> {
        let mut names = self.names.borrow_mut();
        let mut name = |n: &str| -> Rc<str> {
            if let Some(s) = names.iter().find(|s| &***s == n) {
                return s.clone();
            }
            let s: Rc<str> = n.into();
            names.push(s.clone());
            s
        };
        Ok(LuaCtx::new(name(gateway), name(pipeline), name(endpoint), request_id.to_string()))
    }

    fn object(&self, hook: Hook) -> &MsgObject {
        match hook {
            Hook::Response => &self.res,
            _ => &self.req,
        }
    }

    /// Run `hook` of middleware `mw` on `msg`.
    pub fn call(&self, mw: usize, hook: Hook, msg: &Message, ctx: &LuaCtx, request_id: &str) -> Outcome {
        let obj = self.object(hook);
        *obj.slot.borrow_mut() = Some(msg.clone());
        *self.response_slot.borrow_mut() = None;
        let can_wait = matches!(msg.borrow().body, Body::Pending);
        let ended = self.run_hook(mw, hook, Mode::Http, ctx, request_id, Arg::Anchored(obj.proxy), can_wait);
        *obj.slot.borrow_mut() = None;
        match ended {
            Some(ended) => self.settle(mw, request_id, hook, msg.clone(), ended),
            None => Outcome::Continue,
        }
    }

    /// Continue a call that waited for a body.
    pub fn resume(&self, mut p: Pending) -> Outcome {
        let obj = self.object(p.hook);
        *obj.slot.borrow_mut() = Some(p.msg.clone());
        // what this call (not another request's) had set with harmony.respond
        *self.response_slot.borrow_mut() = p.response.take();
        let (mw, request_id) = (p.call.mw, p.call.request_id.clone());
        let ended = self.continue_call(p.call, Mode::Http);
        *obj.slot.borrow_mut() = None;
        self.settle(mw, &request_id, p.hook, p.msg, ended)
    }

    /// Start `hook` of `mw` as a coroutine with `(arg, ctx)`; None when the
    /// middleware has no such hook. The caller points its objects at the
    /// message before and clears them after. `can_wait`: the hook may have
    /// to wait (for a body); one that cannot runs as a plain protected call.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn run_hook(
        &self,
        mw: usize,
        hook: Hook,
        mode: Mode,
        ctx: &LuaCtx,
        request_id: &str,
        arg: Arg,
        can_wait: bool,
    ) -> Option<Ended> {
        let f = self.stage(mw)?.hooks[hook as usize]?;
        let thread = match self.thread() {
            Ok(t) => t,
            Err(e) => return Some(Ended::Broken(e.to_string())),
        };
        *self.ctx_slot.borrow_mut() = Some(ctx.clone());
        self.budget.reset();
        self.mode.set(mode);
        let p = &self.prelude;
        let r = if can_wait {
            coro::start(&self.lua, &thread, [p.xpcall_anchor, f, p.handler], arg, self.ctx_ud, p.need_body)
        } else {
            coro::call(&self.lua, &thread, f, p.handler, arg, self.ctx_ud)
        };
        self.mode.set(Mode::Idle);
        *self.ctx_slot.borrow_mut() = None;
        // the `Call` (and its copy of the request id) is only made for a call that waits
        Some(self.finish(thread, r, |thread| Call { thread, mw, ctx: ctx.clone(), request_id: request_id.to_string() }))
    }

    /// Resume a call that waited, with a fresh budget.
    pub(super) fn continue_call(&self, call: Call, mode: Mode) -> Ended {
        *self.ctx_slot.borrow_mut() = Some(call.ctx.clone());
        self.budget.reset();
        self.mode.set(mode);
        let r = coro::resume(&self.lua, &call.thread, self.prelude.need_body);
        self.mode.set(Mode::Idle);
        *self.ctx_slot.borrow_mut() = None;
        let Call { thread, mw, ctx, request_id } = call;
        self.finish(thread, r, move |thread| Call { thread, mw, ctx, request_id })
    }

    /// An idle coroutine (empty stack).
    fn thread(&self) -> mlua::Result<Thread> {
        if let Some(t) = self.idle_threads.borrow_mut().pop() {
            return Ok(t);
        }
        coro::new_thread(&self.lua, &self.prelude.xpcall)
    }

    /// Keep a coroutine that finished (coro.rs left its stack empty).
    fn recycle(&self, t: Thread) {
        let mut idle = self.idle_threads.borrow_mut();
        if idle.len() < 16 {
            idle.push(t);
        }
    }

    /// Sort out how a resume ended; `call` makes the `Call` of a hook that waits.
    fn finish(&self, thread: Thread, r: Resumed, call: impl FnOnce(Thread) -> Call) -> Ended {
        match r {
            Resumed::Yielded { need_body: true } => Ended::Waiting(call(thread)),
            // a script yielded on its own: not supported at the top level
            Resumed::Yielded { need_body: false } => {
                Ended::Broken("coroutine.yield() outside a coroutine of the script's own".into())
            }
            Resumed::Failed(m) => Ended::Broken(m),
            Resumed::Finished { ok, value } => {
                self.recycle(thread);
                if ok {
                    Ended::Returned(value)
                } else {
                    Ended::Raised(value)
                }
            }
        }
    }

    fn settle(&self, mw: usize, request_id: &str, hook: Hook, msg: Message, ended: Ended) -> Outcome {
        // the slot belongs to this call only: whatever happens, it leaves empty
        let response = self.response_slot.borrow_mut().take();
        let fail = |m: &str| match self.failed(mw, request_id, m) {
            Some(error_id) => Outcome::Failed { error_id },
            None => Outcome::Continue,
        };
        match ended {
            Ended::Waiting(call) => Outcome::NeedBody(Pending { call, hook, msg, response }),
            // `return harmony.respond(...)` inside pcall still counts
            Ended::Returned(_) => response.map_or(Outcome::Continue, Outcome::Respond),
            Ended::Raised(err) => {
                if err.equals(&self.prelude.respond).unwrap_or(false) {
                    if let Some(r) = response {
                        return Outcome::Respond(r);
                    }
                }
                fail(&error_text(&err))
            }
            Ended::Broken(m) => fail(&m),
        }
    }

    /// Log a failed hook call; the error id when the stage fails closed,
    /// None when it continues on error.
    pub(super) fn failed(&self, mw: usize, request_id: &str, msg: &str) -> Option<String> {
        self.errors.set(self.errors.get() + 1);
        let id = error_id();
        let (name, script, cont) = match self.stage(mw) {
            Some(s) => (s.spec.name.as_str(), s.spec.script.display().to_string(), s.spec.continue_on_error),
            None => ("?", String::new(), false),
        };
        let how = if cont { "continuing (on_error = \"continue\")" } else { "failing closed" };
        log::error!(target: "lua", "error_id={id} rid={request_id} middleware '{name}' ({script}) failed, {how}: {msg}");
        if cont {
            None
        } else {
            Some(id)
        }
    }

    pub(super) fn lua(&self) -> &Lua {
        &self.lua
    }

    /// Hook failures so far.
    pub fn error_count(&self) -> u64 {
        self.errors.get()
    }

    /// Calls stopped by the instruction budget so far.
    pub fn budget_kills(&self) -> u64 {
        self.budget.kills()
    }

    /// (hook failures, budget kills) since the last call, for metrics.
    pub fn take_counts(&self) -> (u64, u64) {
        let kills = self.budget.kills();
        let errors = self.errors.get();
        (errors - self.errors_reported.replace(errors), kills - self.kills_reported.replace(kills))
    }

    /// Bytes the state currently holds.
    pub fn used_memory(&self) -> usize {
        self.lua.used_memory()
    }
}

/// The message of a raised error value (a traceback string as a rule).
pub(super) fn error_text(err: &Value) -> String {
    err.to_string().unwrap_or_else(|_| "error object is not a string".into())
}

fn clean(e: &mlua::Error) -> String {
    // mlua nests the useful message; keep the first line of each cause
    e.to_string().lines().next().unwrap_or_default().to_string()
}

/// Lua cuts chunk names to 60 bytes: name scripts relative to scripts_path
/// so errors keep the whole `file:line`.
pub(crate) fn chunk_name(path: &Path, scripts_path: &Path) -> String {
    let rel = path.strip_prefix(scripts_path).unwrap_or(path);
    format!("@{}", rel.display())
}

fn load_stage(lua: &Lua, spec: &StageSpec, scripts_path: &Path) -> mlua::Result<Stage> {
    let chunk_name = chunk_name(&spec.script, scripts_path);
    let module: Value = lua.load(&spec.source[..]).set_name(chunk_name).set_mode(ChunkMode::Text).call(())?;
    let Value::Table(module) = module else {
        return Err(mlua::Error::runtime(
            "the script must return a table of hooks (init, on_request, on_response, ...)",
        ));
    };
    let get = |name: &str| -> mlua::Result<Option<Function>> {
        match module.get::<Value>(name)? {
            Value::Nil => Ok(None),
            Value::Function(f) => Ok(Some(f)),
            other => Err(mlua::Error::runtime(format!("'{name}' must be a function, not a {}", other.type_name()))),
        }
    };
    let anchor = |name: &str| -> mlua::Result<Option<Anchor>> { get(name)?.map(|f| Anchor::new(lua, f)).transpose() };
    let hooks = [
        anchor(Hook::Request.name())?,
        anchor(Hook::Response.name())?,
        anchor(Hook::Associate.name())?,
        anchor(Hook::Dimse.name())?,
    ];
    if let Some(init) = get("init")? {
        let opts = lua.to_value(&spec.options)?;
        init.call::<()>(opts)?;
    }
    Ok(Stage { spec: spec.clone(), hooks })
}
