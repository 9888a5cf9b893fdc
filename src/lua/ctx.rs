//! `ctx`: one per request, shared by every stage. A state has a single `ctx`
//! object pointed at the current request's `CtxState` (like `req`/`res`), so
//! a request whose scripts never touch `ctx` costs no Lua allocation; `vars`
//! is created the first time it is used.

use mlua::{Lua, LuaString, MetaMethod, Table, UserData, UserDataMethods, Value};
use std::cell::RefCell;
use std::rc::Rc;

#[derive(Debug)]
pub struct CtxState {
    pub gateway: Rc<str>,
    pub pipeline: Rc<str>,
    pub endpoint: Rc<str>,
    pub request_id: String,
    /// Set by a script: the name of the pipeline backend to use.
    pub route: Option<String>,
    vars: Option<Table>,
}

/// A request's context, kept by the exchange across stages.
#[derive(Debug, Clone)]
pub struct LuaCtx(pub(crate) Rc<RefCell<CtxState>>);

impl LuaCtx {
    pub fn new(gateway: Rc<str>, pipeline: Rc<str>, endpoint: Rc<str>, request_id: String) -> Self {
        LuaCtx(Rc::new(RefCell::new(CtxState { gateway, pipeline, endpoint, request_id, route: None, vars: None })))
    }

    /// `ctx.route` as set by a script, if any.
    pub fn route(&self) -> Option<String> {
        self.0.borrow().route.clone()
    }

    /// `ctx.vars`, if a script created it.
    pub fn vars(&self) -> Option<Table> {
        self.0.borrow().vars.clone()
    }
}

pub(crate) type CtxSlot = Rc<RefCell<Option<LuaCtx>>>;

pub(crate) struct CtxUd(pub CtxSlot);

fn current(slot: &CtxSlot) -> mlua::Result<LuaCtx> {
    slot.borrow().clone().ok_or_else(|| mlua::Error::runtime("ctx is only valid during the hook call it was passed to"))
}

fn field(lua: &Lua, c: &LuaCtx, key: &str) -> mlua::Result<Value> {
    let mut s = c.0.borrow_mut();
    Ok(match key {
        "gateway" => Value::String(lua.create_string(&*s.gateway)?),
        "pipeline" => Value::String(lua.create_string(&*s.pipeline)?),
        "endpoint" => Value::String(lua.create_string(&*s.endpoint)?),
        "request_id" => Value::String(lua.create_string(&s.request_id)?),
        "route" => match &s.route {
            Some(r) => Value::String(lua.create_string(r)?),
            None => Value::Nil,
        },
        "vars" => {
            if s.vars.is_none() {
                s.vars = Some(lua.create_table()?);
            }
            Value::Table(s.vars.clone().expect("just set"))
        }
        _ => Value::Nil,
    })
}

const FIELDS: [&str; 6] = ["gateway", "pipeline", "endpoint", "request_id", "route", "vars"];

impl UserData for CtxUd {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_meta_method(MetaMethod::Index, |lua, this, key: LuaString| {
            let c = current(&this.0)?;
            field(lua, &c, &key.to_str()?)
        });
        m.add_meta_method(MetaMethod::NewIndex, |_, this, (key, value): (LuaString, Value)| {
            let c = current(&this.0)?;
            let key = key.to_str()?;
            let mut s = c.0.borrow_mut();
            match (&*key, value) {
                ("route", Value::Nil) => s.route = None,
                ("route", Value::String(r)) => s.route = Some(r.to_str()?.to_string()),
                ("vars", Value::Table(t)) => s.vars = Some(t),
                (k, _) if FIELDS.contains(&k) => {
                    return Err(mlua::Error::runtime(format!(
                        "ctx.{k} cannot be set to that (route: a backend name; vars: a table)"
                    )))
                }
                (k, _) => {
                    return Err(mlua::Error::runtime(format!(
                        "ctx.{k} is not a ctx field; keep your own values in ctx.vars"
                    )))
                }
            }
            Ok(())
        });
        m.add_meta_method(MetaMethod::Pairs, |lua, this, ()| {
            let c = current(&this.0)?;
            let t = lua.create_table()?;
            for k in FIELDS {
                let v = field(lua, &c, k)?;
                if !v.is_nil() {
                    t.set(k, v)?;
                }
            }
            let next: mlua::Function = lua.globals().get("next")?;
            Ok((next, t, Value::Nil))
        });
    }
}
