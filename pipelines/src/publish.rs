//! Publishing: aliases (`champion`, ...) that point at immutable bundle versions, moved
//! only by compare-and-swap, with an append-only promotion history.
//!
//! The protocol (DESIGN.md, Publishing): a version's files and manifest are written
//! create-only by training; `promote` verifies every file of the version, applies the
//! gate, flips `models/<name>/aliases/<alias>.json` with a conditional put (If-Match on
//! the ETag read, or If-None-Match for the first promotion), then appends a record to
//! `models/<name>/history/<seq>.json` (create-only, so two writers never share a
//! sequence number). A reader resolves the alias and loads the version it names; since
//! a version is whole before any alias can name it, a crash anywhere leaves readers on
//! the old champion or the new one.

use chrono::Utc;
use serde::{Deserialize, Serialize};
use sgml_models::Bundle;

use crate::bundles::load_version;
use crate::store::{Condition, Store, StoreError};

/// What an alias object holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alias {
    pub version: String,
    pub manifest_sha256: String,
    /// The version the alias named before this promotion (what rollback returns to).
    pub previous: Option<String>,
    pub promoted_at: String,
    pub by: String,
    pub reason: String,
}

/// One line of the promotion history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Promotion {
    pub seq: u64,
    pub alias: String,
    /// `promote` or `rollback`.
    pub action: String,
    pub from: Option<String>,
    pub to: String,
    pub manifest_sha256: String,
    pub at: String,
    pub by: String,
    pub reason: String,
    pub forced: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("model {name} version {version}: {why}")]
    Unverified {
        name: String,
        version: String,
        why: String,
    },
    #[error(
        "alias {alias} of {name} moved while publishing: it now points at version {winner}; nothing was changed (re-run to promote over it)"
    )]
    LostRace {
        name: String,
        alias: String,
        winner: String,
    },
    #[error("gate: {0} (use --force to publish anyway; the history records it)")]
    Gate(String),
    #[error("alias {alias} of {name} does not exist")]
    NoAlias { name: String, alias: String },
    #[error("alias {alias} of {name} has no earlier version to roll back to")]
    NothingToRollBack { name: String, alias: String },
    #[error("{key} is not valid JSON: {why}")]
    Corrupt { key: String, why: String },
}

pub fn alias_key(name: &str, alias: &str) -> String {
    format!("models/{name}/aliases/{alias}.json")
}

fn history_prefix(name: &str) -> String {
    format!("models/{name}/history/")
}

/// The alias and its ETag (for the compare-and-swap), if it exists.
pub fn read_alias(
    store: &dyn Store,
    name: &str,
    alias: &str,
) -> Result<Option<(Alias, String)>, PublishError> {
    let key = alias_key(name, alias);
    match store.get(&key)? {
        None => Ok(None),
        Some(o) => {
            let a = serde_json::from_slice(&o.bytes).map_err(|e| PublishError::Corrupt {
                key: store.uri(&key),
                why: e.to_string(),
            })?;
            Ok(Some((a, o.etag)))
        }
    }
}

/// Loads the version an alias names, verified.
pub fn load_alias(
    store: &dyn Store,
    name: &str,
    alias: &str,
) -> Result<Option<Bundle>, PublishError> {
    let Some((a, _)) = read_alias(store, name, alias)? else {
        return Ok(None);
    };
    load_aliased(store, name, &a).map(Some)
}

/// Loads the version an alias object names, verified: every file against the
/// manifest, and the manifest against the digest the alias was published with.
pub fn load_aliased(store: &dyn Store, name: &str, alias: &Alias) -> Result<Bundle, PublishError> {
    let bundle = verified(store, name, &alias.version)?;
    if bundle.manifest_sha256() != alias.manifest_sha256 {
        return Err(PublishError::Unverified {
            name: name.into(),
            version: alias.version.clone(),
            why: "its manifest is not the one the alias was published with".into(),
        });
    }
    Ok(bundle)
}

fn verified(store: &dyn Store, name: &str, version: &str) -> Result<Bundle, PublishError> {
    load_version(store, name, version).map_err(|e| {
        // `load_version` already names the model and version in its outermost
        // context; `Unverified` names them itself, so keep only the causes.
        let skip = usize::from(e.to_string() == format!("model {name} version {version}"));
        let causes: Vec<String> = e.chain().skip(skip).map(|c| c.to_string()).collect();
        PublishError::Unverified {
            name: name.into(),
            version: version.into(),
            why: causes.join(": "),
        }
    })
}

/// The promotion history, oldest first.
pub fn history(store: &dyn Store, name: &str) -> Result<Vec<Promotion>, PublishError> {
    let mut out = Vec::new();
    for key in store.list(&history_prefix(name))? {
        let Some(o) = store.get(&key)? else { continue };
        out.push(
            serde_json::from_slice(&o.bytes).map_err(|e| PublishError::Corrupt {
                key: store.uri(&key),
                why: e.to_string(),
            })?,
        );
    }
    out.sort_by_key(|p: &Promotion| p.seq);
    Ok(out)
}

/// Who is publishing, for the history: `SGML_USER`, else the login name.
pub fn whoami() -> String {
    std::env::var("SGML_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown".into())
}

/// The gate of a challenger against the champion it replaces: the challenger's
/// manifest carries the champion's score on the challenger's own holdout
/// (`champion_<metric>`, measured at training time against `champion_version`).
pub fn gate(challenger: &Bundle, current: Option<&Alias>) -> Result<String, String> {
    let m = challenger.manifest();
    let Some(current) = current else {
        return Ok("no champion yet".into());
    };
    let g = &m.gate;
    let Some(&new) = m.metrics.get(&g.metric) else {
        return Err(format!("version {} has no {} metric", m.version, g.metric));
    };
    let measured_against = m
        .training_data
        .get("champion_version")
        .and_then(|v| v.as_str());
    let Some(&old) = m.metrics.get(&format!("champion_{}", g.metric)) else {
        return Err(format!(
            "version {} was not compared with a champion at training time",
            m.version
        ));
    };
    if measured_against != Some(current.version.as_str()) {
        return Err(format!(
            "version {} was compared with {} at training time, but the champion is now {}",
            m.version,
            measured_against.unwrap_or("none"),
            current.version
        ));
    }
    let (passes, bound) = match g.direction.as_str() {
        "higher" => (new >= old * (1.0 - g.tolerance), old * (1.0 - g.tolerance)),
        _ => (new <= old * (1.0 + g.tolerance), old * (1.0 + g.tolerance)),
    };
    let verdict = format!(
        "{} {new:.4} vs champion {} {old:.4} on the same holdout (limit {bound:.4})",
        g.metric, current.version
    );
    if passes { Ok(verdict) } else { Err(verdict) }
}

/// Points `alias` at `version` (see the module docs). Returns the history record.
pub fn promote(
    store: &dyn Store,
    name: &str,
    version: &str,
    alias: &str,
    force: bool,
    reason: &str,
) -> Result<Promotion, PublishError> {
    commit(store, prepare(store, name, version, alias, force, reason)?)
}

/// A promotion checked and ready to flip: the verified version, the alias as read
/// (with the ETag the flip is conditional on) and the gate's verdict.
pub struct Prepared {
    name: String,
    alias: String,
    version: String,
    bundle: Bundle,
    current: Option<(Alias, String)>,
    reason: String,
    forced: bool,
}

/// Verifies the version, reads the alias and applies the gate; changes nothing.
pub fn prepare(
    store: &dyn Store,
    name: &str,
    version: &str,
    alias: &str,
    force: bool,
    reason: &str,
) -> Result<Prepared, PublishError> {
    let bundle = verified(store, name, version)?;
    crash_point("after-verify");
    let current = read_alias(store, name, alias)?;
    let (verdict, forced) = match gate(&bundle, current.as_ref().map(|(a, _)| a)) {
        Ok(v) => (v, false),
        Err(why) if force => {
            tracing::warn!("publishing {name} {version} despite the gate (--force): {why}");
            (format!("forced past the gate: {why}"), true)
        }
        Err(why) => return Err(PublishError::Gate(why)),
    };
    Ok(Prepared {
        name: name.into(),
        alias: alias.into(),
        version: version.into(),
        bundle,
        current,
        reason: if reason.is_empty() {
            verdict
        } else {
            format!("{reason}; {verdict}")
        },
        forced,
    })
}

/// Flips the alias by compare-and-swap against the ETag [`prepare`] read, and records
/// the promotion. If the alias moved since, nothing changes and the error names the
/// version that won.
pub fn commit(store: &dyn Store, p: Prepared) -> Result<Promotion, PublishError> {
    flip(
        store, &p.name, &p.alias, &p.version, &p.bundle, p.current, "promote", &p.reason, p.forced,
    )
}

/// Points `alias` back at the version it named before its last promotion.
pub fn rollback(
    store: &dyn Store,
    name: &str,
    alias: &str,
    reason: &str,
) -> Result<Promotion, PublishError> {
    let current = read_alias(store, name, alias)?.ok_or_else(|| PublishError::NoAlias {
        name: name.into(),
        alias: alias.into(),
    })?;
    let target = current
        .0
        .previous
        .clone()
        .ok_or_else(|| PublishError::NothingToRollBack {
            name: name.into(),
            alias: alias.into(),
        })?;
    let bundle = verified(store, name, &target)?;
    let reason = if reason.is_empty() {
        format!("rollback from {}", current.0.version)
    } else {
        reason.to_string()
    };
    flip(
        store,
        name,
        alias,
        &target,
        &bundle,
        Some(current),
        "rollback",
        &reason,
        false,
    )
}

#[allow(clippy::too_many_arguments)]
fn flip(
    store: &dyn Store,
    name: &str,
    alias: &str,
    version: &str,
    bundle: &Bundle,
    current: Option<(Alias, String)>,
    action: &str,
    reason: &str,
    forced: bool,
) -> Result<Promotion, PublishError> {
    let at = Utc::now().to_rfc3339();
    let by = whoami();
    let from = current.as_ref().map(|(a, _)| a.version.clone());
    // A rollback's "previous" is what the restored version replaced when it was
    // promoted, so repeated rollbacks walk back through the history.
    let previous = if action == "rollback" {
        history(store, name)?
            .into_iter()
            .rev()
            .find(|p| p.alias == alias && p.to == version && p.action == "promote")
            .and_then(|p| p.from)
    } else {
        from.clone()
    };
    let record = Alias {
        version: version.into(),
        manifest_sha256: bundle.manifest_sha256(),
        previous,
        promoted_at: at.clone(),
        by: by.clone(),
        reason: reason.into(),
    };
    let bytes = serde_json::to_vec_pretty(&record).expect("alias serializes");
    let condition = match &current {
        Some((_, etag)) => Condition::IfMatch(etag.clone()),
        None => Condition::IfAbsent,
    };
    let key = alias_key(name, alias);
    crash_point("before-alias");
    match store.put(&key, &bytes, condition) {
        Ok(_) => {}
        Err(StoreError::PreconditionFailed { .. }) => {
            let winner = read_alias(store, name, alias)?
                .map(|(a, _)| a.version)
                .unwrap_or_else(|| "(deleted)".into());
            return Err(PublishError::LostRace {
                name: name.into(),
                alias: alias.into(),
                winner,
            });
        }
        Err(e) => return Err(e.into()),
    }
    crash_point("after-alias");
    append_history(
        store,
        name,
        Promotion {
            seq: 0,
            alias: alias.into(),
            action: action.into(),
            from,
            to: version.into(),
            manifest_sha256: record.manifest_sha256,
            at,
            by,
            reason: reason.into(),
            forced,
        },
    )
}

/// Crash-safety tests kill the publisher between the protocol's steps: with
/// `SGML_CRASH_AT=<point>` the process aborts there (SIGABRT: no unwinding, no
/// cleanup, as a SIGKILL would leave it). A kill cannot be timed from outside between
/// two requests, so this seam is how the tests cause that fault for real.
fn crash_point(point: &str) {
    if std::env::var("SGML_CRASH_AT").is_ok_and(|p| p == point) {
        eprintln!("SGML_CRASH_AT={point}: aborting");
        std::process::abort();
    }
}

/// Appends with a create-only put at the next sequence number; a writer that loses
/// a number to another takes the next one.
fn append_history(
    store: &dyn Store,
    name: &str,
    mut p: Promotion,
) -> Result<Promotion, PublishError> {
    let prefix = history_prefix(name);
    let mut seq = store.list(&prefix)?.len() as u64 + 1;
    loop {
        p.seq = seq;
        let bytes = serde_json::to_vec_pretty(&p).expect("history serializes");
        match store.put(
            &format!("{prefix}{seq:010}.json"),
            &bytes,
            Condition::IfAbsent,
        ) {
            Ok(_) => {
                crash_point("after-history");
                return Ok(p);
            }
            Err(StoreError::PreconditionFailed { .. }) => seq += 1,
            Err(e) => return Err(e.into()),
        }
    }
}
