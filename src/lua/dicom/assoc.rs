//! The `assoc` object `on_associate` sees (a read-only table built once per
//! association) and the reasons `harmony.reject` accepts.

use dimse::negotiate::RejectReason;
use dimse::Identity;
use mlua::{Lua, Table, Value};

/// One presentation context the requestor proposed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProposedContext {
    pub id: u8,
    pub abstract_syntax: String,
    pub transfer_syntaxes: Vec<String>,
}

/// What on_associate sees.
#[derive(Debug, Clone)]
pub struct AssocInfo {
    pub calling_ae: String,
    pub called_ae: String,
    pub peer: std::net::SocketAddr,
    pub contexts: Vec<ProposedContext>,
    pub identity: Option<Identity>,
    pub max_pdu: u32,
    pub implementation_class_uid: String,
    pub implementation_version: Option<String>,
}

/// `harmony.reject` reason names.
pub(crate) fn reject_reason(name: &str) -> Option<RejectReason> {
    Some(match name {
        "no-reason" => RejectReason::NoReason,
        "application-context-name-not-supported" => RejectReason::ApplicationContextNotSupported,
        "calling-ae-not-recognized" | "calling-ae-not-recognised" => RejectReason::CallingAeNotRecognized,
        "called-ae-not-recognized" | "called-ae-not-recognised" => RejectReason::CalledAeNotRecognized,
        "protocol-version-not-supported" => RejectReason::ProtocolVersionNotSupported,
        "temporary-congestion" => RejectReason::TemporaryCongestion,
        "local-limit-exceeded" => RejectReason::LocalLimitExceeded,
        _ => return None,
    })
}

pub(crate) const REJECT_REASONS: &str = "no-reason, application-context-name-not-supported, \
     calling-ae-not-recognized, called-ae-not-recognized, protocol-version-not-supported, \
     temporary-congestion, local-limit-exceeded";

fn identity_table(lua: &Lua, id: &Identity) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    match id {
        Identity::Username(u) => {
            t.set("type", "username")?;
            t.set("username", lua.create_string(u)?)?;
        }
        Identity::UsernamePassword { username, password } => {
            t.set("type", "username_password")?;
            t.set("username", lua.create_string(username)?)?;
            t.set("password", lua.create_string(password)?)?;
        }
        Identity::Kerberos(b) => {
            t.set("type", "kerberos")?;
            t.set("token", lua.create_string(b)?)?;
        }
        Identity::Saml(b) => {
            t.set("type", "saml")?;
            t.set("token", lua.create_string(b)?)?;
        }
        Identity::Jwt(s) => {
            t.set("type", "jwt")?;
            t.set("token", lua.create_string(s)?)?;
        }
    }
    Ok(t)
}

/// The `assoc` table: plain data behind a read-only proxy.
pub(crate) fn assoc_table(lua: &Lua, info: &AssocInfo) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("calling_ae", lua.create_string(info.calling_ae.trim())?)?;
    t.set("called_ae", lua.create_string(info.called_ae.trim())?)?;
    t.set("peer", info.peer.to_string())?;
    let contexts = lua.create_table_with_capacity(info.contexts.len(), 0)?;
    for c in &info.contexts {
        let ct = lua.create_table()?;
        ct.set("id", c.id)?;
        ct.set("abstract_syntax", lua.create_string(&c.abstract_syntax)?)?;
        let ts = lua.create_table_with_capacity(c.transfer_syntaxes.len(), 0)?;
        for s in &c.transfer_syntaxes {
            ts.raw_push(lua.create_string(s)?)?;
        }
        ct.set("transfer_syntaxes", ts)?;
        contexts.raw_push(ct)?;
    }
    t.set("contexts", contexts)?;
    t.set(
        "identity",
        match &info.identity {
            Some(id) => Value::Table(identity_table(lua, id)?),
            None => Value::Nil,
        },
    )?;
    t.set("max_pdu", info.max_pdu)?;
    t.set("implementation_class_uid", lua.create_string(&info.implementation_class_uid)?)?;
    t.set(
        "implementation_version",
        match &info.implementation_version {
            Some(v) => Value::String(lua.create_string(v)?),
            None => Value::Nil,
        },
    )?;
    let readonly: mlua::Function = lua.named_registry_value("harmony.readonly")?;
    readonly.call(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reject_reason_has_a_name() {
        for name in REJECT_REASONS.split(", ") {
            assert!(reject_reason(name).is_some(), "{name}");
        }
        assert_eq!(reject_reason("calling-ae-not-recognised"), Some(RejectReason::CallingAeNotRecognized));
        assert_eq!(reject_reason("called-ae-not-recognised"), Some(RejectReason::CalledAeNotRecognized));
        assert_eq!(reject_reason("nope"), None);
    }
}
