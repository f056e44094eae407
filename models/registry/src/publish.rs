//! Publishing: aliases (`champion`, ...) that point at immutable bundle versions, moved
//! only by compare-and-swap, with an append-only promotion history.
//!
//! The protocol (DESIGN.md, Publishing): a version's files and manifest are written
//! create-only by training; `promote` verifies every file of the version, applies the
//! gate, appends the move to the event log `models/<name>/history/<seq>.json`
//! (create-only, so two writers never share a sequence number) *before* the alias
//! moves, then flips `models/<name>/aliases/<alias>.json` with a conditional put
//! (If-Match on the ETag read, or If-None-Match for the first promotion), then announces
//! the move (`model.published`) when an announcer is configured.
//!
//! The alias is a projection of the log: it names the event it applies (`seq`), and
//! each event names the one the alias applied when it was prepared (`based_on`). The
//! events reachable from the alias along `based_on` are exactly the moves that
//! happened; any other event was logged by a publisher that crashed before its flip or
//! lost the race, and [`log`] says so. A reader resolves the alias and loads the version it names; since a
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
    /// The history event this state of the alias applies (absent on aliases written
    /// before the log came first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
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
    /// The event the alias applied when this move was prepared (`None`: no alias yet,
    /// or one from before the log came first).
    #[serde(default)]
    pub based_on: Option<u64>,
    /// Written before the alias moved (every event since the log comes first); older
    /// events were written after a successful flip, so they all happened.
    #[serde(default)]
    pub logged_first: bool,
}

/// One event of the log, and whether the alias move it records happened.
#[derive(Debug, Clone, PartialEq)]
pub struct Logged {
    pub promotion: Promotion,
    /// False for a move logged by a publisher that crashed before its flip or lost the
    /// compare-and-swap.
    pub applied: bool,
}

/// The history with each event marked applied or not (see the module docs), oldest
/// first.
pub fn log(store: &dyn Store, name: &str) -> Result<Vec<Logged>, RegistryError> {
    let events = history(store, name)?;
    let mut applied = std::collections::HashSet::new();
    let aliases: std::collections::BTreeSet<&str> =
        events.iter().map(|p| p.alias.as_str()).collect();
    for alias in aliases {
        let Some((a, _)) = read_alias(store, name, alias)? else {
            continue;
        };
        let mut next = a.seq;
        while let Some(seq) = next {
            let Some(event) = events.iter().find(|p| p.seq == seq && p.alias == alias) else {
                break;
            };
            if !applied.insert(seq) {
                break; // a loop cannot happen in a log written by this code; stop anyway
            }
            next = event.based_on;
        }
    }
    Ok(events
        .into_iter()
        .map(|p| Logged {
            applied: !p.logged_first || applied.contains(&p.seq),
            promotion: p,
        })
        .collect())
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
    // promoted, so repeated rollbacks walk back through the history (moves that
    // happened only).
    let previous = match f.action {
        Action::Rollback => log(store, f.name)?
            .into_iter()
            .rev()
            .filter(|l| l.applied)
            .map(|l| l.promotion)
            .find(|p| p.alias == f.alias && p.to == f.version && p.action == Action::Promote)
            .and_then(|p| p.from),
        Action::Promote => from.clone(),
    };
    // The event first: a crash after it leaves a logged move that never happened
    // (and `log` says so), never a move that the log does not know.
    let manifest_sha256 = f.bundle.manifest_sha256();
    let event = append_history(
        store,
        f.name,
        Promotion {
            seq: 0,
            alias: f.alias.into(),
            action: f.action,
            from,
            to: f.version.into(),
            manifest_sha256: manifest_sha256.clone(),
            at: at.clone(),
            by: by.clone(),
            reason: f.reason.into(),
            forced: f.forced,
            based_on: f.current.as_ref().and_then(|(a, _)| a.seq),
            logged_first: true,
        },
    )?;
    crash_point("after-history");
    let record = Alias {
        version: f.version.into(),
        manifest_sha256,
        previous,
        promoted_at: at,
        by,
        reason: f.reason.into(),
        seq: Some(event.seq),
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
    Ok(event)
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
            Ok(_) => return Ok(p),
            Err(StoreError::PreconditionFailed { .. }) => seq += 1,
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LocalStore;

    fn put(store: &LocalStore, key: &str, value: serde_json::Value) {
        store
            .put(key, &serde_json::to_vec(&value).unwrap(), Condition::Always)
            .unwrap();
    }

    fn event(seq: u64, to: &str, based_on: Option<u64>) -> serde_json::Value {
        serde_json::json!({
            "seq": seq, "alias": "champion", "action": "promote", "from": null, "to": to,
            "manifest_sha256": "ab", "at": "2026-12-01T00:00:00Z", "by": "t", "reason": "",
            "forced": false, "based_on": based_on, "logged_first": true,
        })
    }

    /// Fuzzing aliases and the event log on stable Rust (bounded by
    /// `PROPTEST_CASES`, default 256): whatever bytes an alias or an event holds,
    /// reading them refuses by type naming the key, or yields a value; never a panic.
    mod fuzz {
        use proptest::prelude::*;

        use super::*;

        const TOKENS: &[&str] = &[
            "{",
            "}",
            "[",
            "]",
            ":",
            ",",
            "\"version\"",
            "\"../../etc\"",
            "\"v1\"",
            "\"seq\"",
            "18446744073709551615",
            "-1",
            "null",
            "\"manifest_sha256\"",
            "\"previous\"",
            "\"action\"",
            "\"promote\"",
            "\"based_on\"",
            "\"\\u0000\"",
            "\"\"",
            "1e999",
        ];

        fn json_like() -> impl Strategy<Value = Vec<u8>> {
            prop_oneof![
                prop::collection::vec(prop::sample::select(TOKENS), 0..40)
                    .prop_map(|t| t.concat().into_bytes()),
                prop::collection::vec(any::<u8>(), 0..200),
            ]
        }

        proptest! {

            #[test]
            fn fuzz_aliases_and_events(alias in json_like(), event in json_like()) {
                let dir = tempfile::tempdir().unwrap();
                let store = LocalStore::new(dir.path()).unwrap();
                let alias_key = layout::alias_key("pricing", "champion");
                store.put(&alias_key, &alias, Condition::Always).unwrap();
                store
                    .put(&layout::history_key("pricing", 1), &event, Condition::Always)
                    .unwrap();
                match read_alias(&store, "pricing", "champion") {
                    Ok(_) => {}
                    Err(RegistryError::Corrupt { key, .. }) => prop_assert!(key.contains("champion")),
                    Err(other) => prop_assert!(false, "unexpected {other}"),
                }
                // Loading what the alias names never panics, whatever it names.
                let _ = load_alias(&store, "pricing", "champion");
                match history(&store, "pricing") {
                    Ok(_) => {}
                    Err(RegistryError::Corrupt { key, .. }) => prop_assert!(key.contains("history")),
                    Err(other) => prop_assert!(false, "unexpected {other}"),
                }
            }
        }
    }

    /// The moves that happened are the events reachable from the alias; an event
    /// from before the log came first (no `logged_first`) happened by construction.
    #[test]
    fn the_log_marks_moves_that_never_happened() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path()).unwrap();
        let mut legacy = event(1, "v1", None);
        let legacy_map = legacy.as_object_mut().unwrap();
        legacy_map.remove("based_on");
        legacy_map.remove("logged_first");
        put(&store, &layout::history_key("pricing", 1), legacy);
        put(
            &store,
            &layout::history_key("pricing", 2),
            event(2, "v2", None),
        );
        put(
            &store,
            &layout::history_key("pricing", 3),
            event(3, "v3", Some(2)),
        );
        // Prepared against the same alias state as 3, but lost the swap.
        put(
            &store,
            &layout::history_key("pricing", 4),
            event(4, "v4", Some(2)),
        );
        // Logged, then the publisher died before the flip.
        put(
            &store,
            &layout::history_key("pricing", 5),
            event(5, "v5", Some(3)),
        );
        put(
            &store,
            &layout::alias_key("pricing", "champion"),
            serde_json::json!({
                "version": "v3", "manifest_sha256": "ab", "previous": "v2",
                "promoted_at": "2026-12-01T00:00:00Z", "by": "t", "reason": "", "seq": 3,
            }),
        );
        let applied: Vec<(u64, bool)> = log(&store, "pricing")
            .unwrap()
            .into_iter()
            .map(|l| (l.promotion.seq, l.applied))
            .collect();
        assert_eq!(
            applied,
            [(1, true), (2, true), (3, true), (4, false), (5, false)]
        );
    }
}
