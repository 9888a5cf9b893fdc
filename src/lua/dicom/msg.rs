//! The `msg` object `on_dimse` sees: the command set's fields, a few of them
//! settable, and the data set (which may make the hook wait until the proxy
//! has buffered it).

use super::dataset::DatasetState;
use super::dataset_lua::DsUd;
use dimse::{Command, CommandField};
use mlua::{LuaString, UserData, UserDataMethods, Value};
use std::borrow::Cow;
use std::cell::RefCell;
use std::rc::Rc;

/// One DIMSE message as on_dimse sees and changes it.
#[derive(Debug)]
pub struct DimseState {
    /// Unique per message (`next_message_id`): how a data set object knows
    /// whether it still belongs to the message being processed.
    pub id: u64,
    /// Scripts read any field and change a few (see `docs/lua.md`).
    pub command: Command,
    /// A script changed the command set.
    pub command_changed: bool,
    pub dataset: DatasetState,
    pub is_request: bool,
    /// The presentation context the message came on.
    pub context_id: u8,
    pub abstract_syntax: String,
    pub transfer_syntax: String,
}

pub type DimseMsg = Rc<RefCell<DimseState>>;

/// A fresh `DimseState::id`.
pub fn next_message_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Which message the state's `msg` object stands for right now.
pub(crate) type DimseSlot = Rc<RefCell<Option<DimseMsg>>>;

/// The userdata behind `msg`.
pub(crate) struct DimseUd(pub DimseSlot);

fn bad(msg: impl Into<String>) -> mlua::Error {
    mlua::Error::runtime(msg.into())
}

fn current(slot: &DimseSlot) -> mlua::Result<DimseMsg> {
    slot.try_borrow()
        .ok()
        .and_then(|s| s.clone())
        .ok_or_else(|| bad("msg is only valid during the hook call it was passed to"))
}

/// "C-STORE-RQ", "N-ACTION-RSP", or the code in hex for anything else.
pub(crate) fn command_name(f: CommandField) -> Cow<'static, str> {
    match f.name() {
        "UNKNOWN" => Cow::Owned(format!("0x{:04X}", f.code())),
        name => Cow::Borrowed(name),
    }
}

fn opt_str(lua: &mlua::Lua, v: &Option<String>) -> mlua::Result<Value> {
    match v {
        Some(s) => Ok(Value::String(lua.create_string(s)?)),
        None => Ok(Value::Nil),
    }
}

fn opt_int(v: Option<u16>) -> Value {
    v.map_or(Value::Nil, |n| Value::Integer(i64::from(n)))
}

fn is_uid(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.split('.')
            .all(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()) && (c == "0" || !c.starts_with('0')))
}

impl UserData for DimseUd {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_method("get", |lua, this, key: LuaString| {
            let msg = current(&this.0)?;
            let s = msg.try_borrow().map_err(|_| bad("msg is in use"))?;
            let c = &s.command;
            Ok(match &*key.to_str()? {
                "command" => Value::String(lua.create_string(&*command_name(c.field))?),
                "command_field" => Value::Integer(i64::from(c.field.code())),
                "is_request" => Value::Boolean(s.is_request),
                "message_id" => opt_int(c.message_id),
                "message_id_responded_to" => opt_int(c.message_id_being_responded_to),
                "status" => opt_int(c.status),
                "error_comment" => opt_str(lua, &c.error_comment)?,
                "affected_sop_class_uid" => opt_str(lua, &c.affected_sop_class_uid)?,
                "affected_sop_instance_uid" => opt_str(lua, &c.affected_sop_instance_uid)?,
                "requested_sop_class_uid" => opt_str(lua, &c.requested_sop_class_uid)?,
                "requested_sop_instance_uid" => opt_str(lua, &c.requested_sop_instance_uid)?,
                "move_destination" => opt_str(lua, &c.move_destination)?,
                "move_originator_ae_title" => opt_str(lua, &c.move_originator_ae_title)?,
                "move_originator_message_id" => opt_int(c.move_originator_message_id),
                "priority" => opt_int(c.priority),
                "context_id" => Value::Integer(i64::from(s.context_id)),
                "abstract_syntax" => Value::String(lua.create_string(&s.abstract_syntax)?),
                "transfer_syntax" => Value::String(lua.create_string(&s.transfer_syntax)?),
                "has_dataset" => Value::Boolean(!matches!(s.dataset, DatasetState::Absent)),
                _ => Value::Nil,
            })
        });
        m.add_method("set", |_, this, (key, value): (LuaString, Value)| {
            let msg = current(&this.0)?;
            let mut s = msg.try_borrow_mut().map_err(|_| bad("msg is in use"))?;
            let key = key.to_str()?;
            match (&*key, value) {
                ("move_destination", Value::String(v)) => {
                    let v = v.to_str()?.trim().to_string();
                    if v.is_empty() || v.len() > 16 || !v.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'\\') {
                        return Err(bad(format!("invalid AE title '{v}' (1 to 16 printable characters)")));
                    }
                    s.command.move_destination = Some(v);
                }
                ("affected_sop_instance_uid", Value::String(v)) => {
                    let v = v.to_str()?.to_string();
                    if !is_uid(&v) {
                        return Err(bad(format!("invalid UID '{v}'")));
                    }
                    s.command.affected_sop_instance_uid = Some(v);
                }
                ("priority", Value::Integer(n)) if (0..=2).contains(&n) => s.command.priority = Some(n as u16),
                ("status", Value::Integer(n)) if (0..=0xFFFF).contains(&n) && !s.is_request => {
                    s.command.status = Some(n as u16)
                }
                (k, v) => {
                    return Err(bad(match k {
                        "priority" => "msg.priority is 0 (medium), 1 (high) or 2 (low)".to_string(),
                        "status" if s.is_request => "msg.status can only be set on responses".to_string(),
                        "status" => "msg.status is an integer 0..0xFFFF".to_string(),
                        _ => format!("cannot set msg.{k} to a {}", v.type_name()),
                    }))
                }
            }
            s.command_changed = true;
            Ok(())
        });
        // nil: no data set; false: not buffered yet (the prelude waits for it)
        m.add_method("dataset", |lua, this, ()| {
            let msg = current(&this.0)?;
            let s = msg.try_borrow().map_err(|_| bad("msg is in use"))?;
            Ok(match s.dataset {
                DatasetState::Absent => Value::Nil,
                DatasetState::Pending => Value::Boolean(false),
                DatasetState::Loaded(_) => {
                    let id = s.id;
                    drop(s);
                    Value::UserData(lua.create_userdata(DsUd::root(this.0.clone(), id))?)
                }
            })
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_uids() {
        assert_eq!(command_name(CommandField::CStoreRq), "C-STORE-RQ");
        assert_eq!(command_name(CommandField::CFindRsp), "C-FIND-RSP");
        assert_eq!(command_name(CommandField::CCancelRq), "C-CANCEL-RQ");
        assert_eq!(command_name(CommandField::Other(0x8130)), "N-ACTION-RSP");
        assert_eq!(command_name(CommandField::Other(0x4242)), "0x4242");
        assert_eq!(command_name(CommandField::Other(0x8FFF)), "0x8FFF");
        assert!(is_uid("1.2.840.10008.1.1") && is_uid("2.25.0"));
        assert!(!is_uid("1..2") && !is_uid("1.02") && !is_uid("a.b") && !is_uid(&"1".repeat(65)));
    }
}
