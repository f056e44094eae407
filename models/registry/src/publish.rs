//! Publishing: aliases (`champion`, ...) that point at immutable bundle versions, moved
//! only by compare-and-swap, with an append-only promotion history.
//!
//! The protocol (DESIGN.md, Publishing): a version's files and manifest are written
//! create-only by training; `promote` verifies every file of the version, applies the
//! gate, flips `models/<name>/aliases/<alias>.json` with a conditional put (If-Match on
//! the ETag read, or If-None-Match for the first promotion), appends a record to
//! `models/<name>/history/<seq>.json` (create-only, so two writers never share a
//! sequence number), then announces the move (`model.published`) when an announcer is
//! configured. A reader resolves the alias and loads the version it names; since a
//! version is whole before any alias can name it, a crash anywhere leaves readers on
//! the old champion or the new one.

use chrono::Utc;
use serde::{Deserialize, Serialize};
use sgml_models::Bundle;

use crate::announce::Announcer;
use crate::error::{NameOf, RegistryError, check_names};
use crate::events::event_for;
use crate::gate::{self, GateFailure};
use crate::layout;
use crate::store::{Condition, Store, StoreError};
use crate::versions::load_version;

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

/// How an alias moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Promote,
    Rollback,
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Action::Promote => "promote",
            Action::Rollback => "rollback",
        })
    }
}

/// One line of the promotion history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Promotion {
    pub seq: u64,
    pub alias: String,
    pub action: Action,
    pub from: Option<String>,
    pub to: String,
    pub manifest_sha256: String,
    pub at: String,
    pub by: String,
    pub reason: String,
    pub forced: bool,
}

/// The alias and its ETag (for the compare-and-swap), if it exists.
pub fn read_alias(
    store: &dyn Store,
    name: &str,
    alias: &str,
) -> Result<Option<(Alias, String)>, RegistryError> {
    check_names(&[(NameOf::Model, name), (NameOf::Alias, alias)])?;
    let key = layout::alias_key(name, alias);
    match store.get(&key)? {
        None => Ok(None),
        Some(o) => {
            let a = serde_json::from_slice(&o.bytes).map_err(|source| RegistryError::Corrupt {
                key: store.uri(&key),
                source,
            })?;
            Ok(Some((a, o.etag)))
        }
    }
}

/// Loads the version an alias names, verified; `None` when the alias does not exist.
pub fn load_alias(
    store: &dyn Store,
    name: &str,
    alias: &str,
) -> Result<Option<Bundle>, RegistryError> {
    let Some((a, _)) = read_alias(store, name, alias)? else {
        return Ok(None);
    };
    load_aliased(store, name, alias, &a).map(Some)
}

/// Loads the version an alias object names, verified: every file against the
/// manifest, and the manifest against the digest the alias was published with.
pub fn load_aliased(
    store: &dyn Store,
    name: &str,
    alias_name: &str,
    alias: &Alias,
) -> Result<Bundle, RegistryError> {
    let bundle = load_version(store, name, &alias.version)?;
    if bundle.manifest_sha256() != alias.manifest_sha256 {
        return Err(RegistryError::NotAsPublished {
            name: name.into(),
            version: alias.version.clone(),
            alias: alias_name.into(),
        });
    }
    Ok(bundle)
}

/// The bundle to score with, verified, for batch prediction and services alike: the
/// named version; else the champion, checked against the manifest digest its alias was
/// published with (as the server checks it); else the newest version. `None` when the
/// model has no version at all.
pub fn scoring_bundle(
    store: &dyn Store,
    name: &str,
    version: Option<&str>,
) -> Result<Option<(Bundle, Chosen)>, RegistryError> {
    if let Some(v) = version {
        return Ok(Some((load_version(store, name, v)?, Chosen::Named)));
    }
    if let Some(bundle) = load_alias(store, name, layout::CHAMPION)? {
        return Ok(Some((bundle, Chosen::Champion)));
    }
    match crate::versions::latest(store, name)? {
        Some(v) => Ok(Some((load_version(store, name, &v)?, Chosen::Newest))),
        None => Ok(None),
    }
}

/// Which rule [`scoring_bundle`] applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chosen {
    /// The caller named the version.
    Named,
    Champion,
    /// No champion is published.
    Newest,
}

/// The promotion history, oldest first.
pub fn history(store: &dyn Store, name: &str) -> Result<Vec<Promotion>, RegistryError> {
    check_names(&[(NameOf::Model, name)])?;
    let mut out = Vec::new();
    for key in store.list(&layout::history_prefix(name))? {
        let Some(o) = store.get(&key)? else { continue };
        out.push(
            serde_json::from_slice(&o.bytes).map_err(|source| RegistryError::Corrupt {
                key: store.uri(&key),
                source,
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

/// Points `alias` at `version` (see the module docs) and announces it. Returns the
/// history record.
pub fn promote(
    store: &dyn Store,
    announcer: &Announcer,
    name: &str,
    version: &str,
    alias: &str,
    force: bool,
    reason: &str,
) -> Result<Promotion, RegistryError> {
    commit(
        store,
        announcer,
        prepare(store, name, version, alias, force, reason)?,
    )
}

/// What happened to a version a training run just wrote.
#[derive(Debug)]
pub enum Trained {
    Promoted(Promotion),
    /// It stays, unpublished: the gate said why.
    Kept(GateFailure),
}

/// Promotes a freshly trained version to `champion` when it passes the gate; a failed
/// gate is an outcome, not an error (training did its job; the version stays).
pub fn promote_trained(
    store: &dyn Store,
    announcer: &Announcer,
    name: &str,
    version: &str,
) -> Result<Trained, RegistryError> {
    match promote(
        store,
        announcer,
        name,
        version,
        layout::CHAMPION,
        false,
        "trained",
    ) {
        Ok(p) => Ok(Trained::Promoted(p)),
        Err(RegistryError::Gate(why)) => Ok(Trained::Kept(why)),
        Err(e) => Err(e),
    }
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
) -> Result<Prepared, RegistryError> {
    check_names(&[
        (NameOf::Model, name),
        (NameOf::Version, version),
        (NameOf::Alias, alias),
    ])?;
    let bundle = load_version(store, name, version)?;
    crash_point("after-verify");
    let current = read_alias(store, name, alias)?;
    if current.as_ref().is_some_and(|(a, _)| a.version == version) {
        return Err(RegistryError::AlreadyNamed {
            name: name.into(),
            alias: alias.into(),
            version: version.into(),
        });
    }
    let (verdict, forced) =
        match gate::check(&bundle, current.as_ref().map(|(a, _)| a.version.as_str())) {
            Ok(v) => (v, false),
            Err(why) if force => {
                tracing::warn!("publishing {name} {version} despite the gate (--force): {why}");
                (format!("forced past the gate: {why}"), true)
            }
            Err(why) => return Err(RegistryError::Gate(why)),
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

/// Flips the alias by compare-and-swap against the ETag [`prepare`] read, records the
/// promotion and announces it. If the alias moved since, nothing changes and the error
/// names the version that won.
pub fn commit(
    store: &dyn Store,
    announcer: &Announcer,
    p: Prepared,
) -> Result<Promotion, RegistryError> {
    let promotion = flip(
        store,
        Flip {
            name: &p.name,
            alias: &p.alias,
            version: &p.version,
            bundle: &p.bundle,
            current: p.current,
            action: Action::Promote,
            reason: &p.reason,
            forced: p.forced,
        },
    )?;
    announce(announcer, &p.name, promotion)
}

/// Points `alias` back at the version it named before its last promotion, and
/// announces it.
pub fn rollback(
    store: &dyn Store,
    announcer: &Announcer,
    name: &str,
    alias: &str,
    reason: &str,
) -> Result<Promotion, RegistryError> {
    let current = read_alias(store, name, alias)?.ok_or_else(|| RegistryError::NoAlias {
        name: name.into(),
        alias: alias.into(),
    })?;
    let target = current
        .0
        .previous
        .clone()
        .ok_or_else(|| RegistryError::NothingToRollBack {
            name: name.into(),
            alias: alias.into(),
        })?;
    let bundle = load_version(store, name, &target)?;
    let reason = if reason.is_empty() {
        format!("rollback from {}", current.0.version)
    } else {
        reason.to_string()
    };
    let promotion = flip(
        store,
        Flip {
            name,
            alias,
            version: &target,
            bundle: &bundle,
            current: Some(current),
            action: Action::Rollback,
            reason: &reason,
            forced: false,
        },
    )?;
    announce(announcer, name, promotion)
}

fn announce(
    announcer: &Announcer,
    name: &str,
    promotion: Promotion,
) -> Result<Promotion, RegistryError> {
    match announcer.announce(&event_for(name, &promotion)) {
        Ok(()) => Ok(promotion),
        Err(source) => Err(RegistryError::NotAnnounced {
            name: name.into(),
            promotion: Box::new(promotion),
            source: Box::new(source),
        }),
    }
}

/// One alias move, as [`flip`] performs it.
struct Flip<'a> {
    name: &'a str,
    alias: &'a str,
    version: &'a str,
    bundle: &'a Bundle,
    /// The alias as read, with the ETag the swap is conditional on.
    current: Option<(Alias, String)>,
    action: Action,
    reason: &'a str,
    forced: bool,
}

fn flip(store: &dyn Store, f: Flip) -> Result<Promotion, RegistryError> {
    let at = Utc::now().to_rfc3339();
    let by = whoami();
    let from = f.current.as_ref().map(|(a, _)| a.version.clone());
    // A rollback's "previous" is what the restored version replaced when it was
    // promoted, so repeated rollbacks walk back through the history.
    let previous = match f.action {
        Action::Rollback => history(store, f.name)?
            .into_iter()
            .rev()
            .find(|p| p.alias == f.alias && p.to == f.version && p.action == Action::Promote)
            .and_then(|p| p.from),
        Action::Promote => from.clone(),
    };
    let record = Alias {
        version: f.version.into(),
        manifest_sha256: f.bundle.manifest_sha256(),
        previous,
        promoted_at: at.clone(),
        by: by.clone(),
        reason: f.reason.into(),
    };
    let bytes = serde_json::to_vec_pretty(&record).expect("alias serializes");
    let condition = match &f.current {
        Some((_, etag)) => Condition::IfMatch(etag.clone()),
        None => Condition::IfAbsent,
    };
    let key = layout::alias_key(f.name, f.alias);
    crash_point("before-alias");
    match store.put(&key, &bytes, condition) {
        Ok(_) => {}
        Err(StoreError::PreconditionFailed { .. }) => {
            let winner = read_alias(store, f.name, f.alias)?
                .map(|(a, _)| a.version)
                .unwrap_or_else(|| "(deleted)".into());
            return Err(RegistryError::LostRace {
                name: f.name.into(),
                alias: f.alias.into(),
                winner,
            });
        }
        Err(e) => return Err(e.into()),
    }
    crash_point("after-alias");
    append_history(
        store,
        f.name,
        Promotion {
            seq: 0,
            alias: f.alias.into(),
            action: f.action,
            from,
            to: f.version.into(),
            manifest_sha256: record.manifest_sha256,
            at,
            by,
            reason: f.reason.into(),
            forced: f.forced,
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
) -> Result<Promotion, RegistryError> {
    let mut seq = store.list(&layout::history_prefix(name))?.len() as u64 + 1;
    loop {
        p.seq = seq;
        let bytes = serde_json::to_vec_pretty(&p).expect("history serializes");
        match store.put(&layout::history_key(name, seq), &bytes, Condition::IfAbsent) {
            Ok(_) => {
                crash_point("after-history");
                return Ok(p);
            }
            Err(StoreError::PreconditionFailed { .. }) => seq += 1,
            Err(e) => return Err(e.into()),
        }
    }
}
