//! The deployment's record of live plugin versions, in Redis: every gateway and worker reads it
//! now and then and brings its own copy (`plugins::Catalog`) in line, so that an activation or
//! a rollback made through any gateway's admin API, or a file dropped into any node's plugin
//! directory, reaches every process. The components themselves are stored beside the record,
//! so a node whose directory lacks a version fetches it.
//!
//! One hash, `{prefix}:plugins`: `active:KIND:NAME` → version, `default:KIND` → name,
//! `previous:KIND:NAME` → JSON list of versions it replaced (newest last). Admin operations are
//! rare and made by people, so read-modify-write without a transaction is enough.

use std::collections::HashMap;

use redis::AsyncCommands;
use redis::aio::ConnectionLike;

use super::{ChannelError, Keys};

/// Versions kept on a name's rollback stack.
const KEEP_PREVIOUS: usize = 8;

/// The record as read: `(kind, name) → version` and `kind → default name`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Record {
    pub active: HashMap<(String, String), String>,
    pub defaults: HashMap<String, String>,
}

impl Record {
    pub fn active_version(&self, kind: &str, name: &str) -> Option<&str> {
        self.active.get(&(kind.to_string(), name.to_string())).map(String::as_str)
    }
}

pub async fn read<C: ConnectionLike + Send + Sync>(conn: &mut C, keys: &Keys) -> Result<Record, ChannelError> {
    let all: HashMap<String, String> = conn.hgetall(keys.plugins()).await?;
    let mut record = Record::default();
    for (field, value) in all {
        let mut parts = field.splitn(3, ':');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("active"), Some(kind), Some(name)) => {
                record.active.insert((kind.to_string(), name.to_string()), value);
            }
            (Some("default"), Some(kind), None) => {
                record.defaults.insert(kind.to_string(), value);
            }
            _ => {}
        }
    }
    Ok(record)
}

/// Records `name@version` as live, pushing the version it replaces onto the rollback stack.
pub async fn activate<C: ConnectionLike + Send + Sync>(
    conn: &mut C,
    keys: &Keys,
    kind: &str,
    name: &str,
    version: &str,
    replacing: Option<&str>,
) -> Result<(), ChannelError> {
    let active = format!("active:{kind}:{name}");
    let recorded: Option<String> = conn.hget(keys.plugins(), &active).await?;
    let old = recorded.or_else(|| replacing.map(str::to_string));
    if let Some(old) = old.filter(|o| o != version) {
        let mut stack = previous(conn, keys, kind, name).await?;
        stack.retain(|v| *v != old && v != version);
        stack.push(old);
        if stack.len() > KEEP_PREVIOUS {
            stack.remove(0);
        }
        set_previous(conn, keys, kind, name, &stack).await?;
    }
    let _: () = conn.hset(keys.plugins(), active, version).await?;
    Ok(())
}

/// Pops the rollback stack of `name` and records that version as live; `None` when empty.
/// Records `version` as the live version of `name` unless a version is recorded already: an
/// upload pins what runs now, so that the uploaded (newer) file does not go live at the next
/// restart without being activated.
pub async fn pin_if_unset<C: ConnectionLike + Send + Sync>(
    conn: &mut C,
    keys: &Keys,
    kind: &str,
    name: &str,
    version: &str,
) -> Result<(), ChannelError> {
    let _: bool = conn.hset_nx(keys.plugins(), format!("active:{kind}:{name}"), version).await?;
    Ok(())
}

pub async fn rollback<C: ConnectionLike + Send + Sync>(
    conn: &mut C,
    keys: &Keys,
    kind: &str,
    name: &str,
) -> Result<Option<String>, ChannelError> {
    let mut stack = previous(conn, keys, kind, name).await?;
    let Some(back) = stack.pop() else { return Ok(None) };
    set_previous(conn, keys, kind, name, &stack).await?;
    let _: () = conn.hset(keys.plugins(), format!("active:{kind}:{name}"), &back).await?;
    Ok(Some(back))
}

pub async fn set_default<C: ConnectionLike + Send + Sync>(
    conn: &mut C,
    keys: &Keys,
    kind: &str,
    name: &str,
) -> Result<(), ChannelError> {
    let _: () = conn.hset(keys.plugins(), format!("default:{kind}"), name).await?;
    Ok(())
}

/// Stores a component (and its manifest) for nodes whose plugin directory lacks it.
pub async fn put_file<C: ConnectionLike + Send + Sync>(
    conn: &mut C,
    keys: &Keys,
    label: &str,
    wasm: &[u8],
    manifest: Option<&str>,
) -> Result<(), ChannelError> {
    let _: () = conn.set(keys.plugin_file(label, "wasm"), wasm).await?;
    if let Some(m) = manifest {
        let _: () = conn.set(keys.plugin_file(label, "toml"), m).await?;
    }
    Ok(())
}

/// Whether a component is stored.
pub async fn has_file<C: ConnectionLike + Send + Sync>(
    conn: &mut C,
    keys: &Keys,
    label: &str,
) -> Result<bool, ChannelError> {
    Ok(conn.exists(keys.plugin_file(label, "wasm")).await?)
}

/// A stored component and its manifest, if any node stored them.
pub async fn get_file<C: ConnectionLike + Send + Sync>(
    conn: &mut C,
    keys: &Keys,
    label: &str,
) -> Result<Option<(Vec<u8>, Option<String>)>, ChannelError> {
    let wasm: Option<Vec<u8>> = conn.get(keys.plugin_file(label, "wasm")).await?;
    let Some(wasm) = wasm else { return Ok(None) };
    let manifest: Option<String> = conn.get(keys.plugin_file(label, "toml")).await?;
    Ok(Some((wasm, manifest)))
}

/// The versions `name` replaced, newest last (what rollback goes back to).
pub async fn previous<C: ConnectionLike + Send + Sync>(
    conn: &mut C,
    keys: &Keys,
    kind: &str,
    name: &str,
) -> Result<Vec<String>, ChannelError> {
    let raw: Option<String> = conn.hget(keys.plugins(), format!("previous:{kind}:{name}")).await?;
    match raw {
        Some(r) => serde_json::from_str(&r)
            .map_err(|e| ChannelError::Malformed { what: "plugin rollback stack", reason: e.to_string() }),
        None => Ok(Vec::new()),
    }
}

async fn set_previous<C: ConnectionLike + Send + Sync>(
    conn: &mut C,
    keys: &Keys,
    kind: &str,
    name: &str,
    stack: &[String],
) -> Result<(), ChannelError> {
    let json = serde_json::to_string(stack).unwrap_or_else(|_| "[]".into());
    let _: () = conn.hset(keys.plugins(), format!("previous:{kind}:{name}"), json).await?;
    Ok(())
}
