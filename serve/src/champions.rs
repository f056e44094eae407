//! The models being served, and the one thread that changes them.
//!
//! Request handlers only ever clone an `Arc` out of a slot, so a swap never waits for
//! requests and a request never sees half a model: it scores with the version it
//! picked up, the next request with the new one. Every change goes through
//! [`Reloader`], one thread that owns the store: it resolves the `champion` alias,
//! loads that version through the verified loader (every file's checksum, the
//! manifest's digest against the alias), and swaps only when all of that passed. A
//! version that fails verification is never served; the old one stays.

use std::collections::BTreeMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use sgml_models::Bundle;
use sgml_models::ann::{self, AnnIndex};
use sgml_models::categorize::{self, TitleCategorizer};
use sgml_models::pricing::{KIND_GBDT, KIND_LINEAR, PriceModel};

use super::metrics::{Metrics, ReloadLabels, VersionLabels};
use sgml_registry::Store;
use sgml_registry::publish;

/// The alias a server follows.
pub const ALIAS: &str = sgml_registry::CHAMPION;

/// A model ready to score, of whichever kind its bundle is.
pub enum Scorer {
    Pricing(PriceModel),
    Categorize(TitleCategorizer),
    /// Answers `/query`, not `/predict`.
    Similar(AnnIndex),
    /// Category from photo (the `images` feature).
    #[cfg(feature = "images")]
    Images(sgml_models::vision::classifier::ImageClassifier),
}

impl Scorer {
    fn from_bundle(bundle: &Bundle) -> Result<Scorer, String> {
        match bundle.manifest().kind.as_str() {
            KIND_GBDT | KIND_LINEAR => PriceModel::from_bundle(bundle)
                .map(Scorer::Pricing)
                .map_err(|e| e.to_string()),
            categorize::KIND => TitleCategorizer::from_bundle(bundle)
                .map(Scorer::Categorize)
                .map_err(|e| e.to_string()),
            ann::KIND => AnnIndex::from_bundle(bundle)
                .map(Scorer::Similar)
                .map_err(|e| e.to_string()),
            #[cfg(feature = "images")]
            sgml_models::vision::classifier::KIND => {
                sgml_models::vision::classifier::ImageClassifier::from_bundle(
                    bundle,
                    sgml_models::vision::WEIGHTS_SHA256,
                )
                .map(Scorer::Images)
                .map_err(|e| e.to_string())
            }
            other => Err(format!("bundle kind `{other}` cannot be served")),
        }
    }
}

pub struct Served {
    pub version: String,
    pub manifest_sha256: String,
    pub scorer: Scorer,
}

#[derive(Default)]
struct Slot {
    current: Option<Arc<Served>>,
    /// Why the last check failed, until one succeeds.
    last_error: Option<String>,
}

/// One slot per model named at start-up.
pub struct Models {
    slots: BTreeMap<String, RwLock<Slot>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelStatus {
    pub name: String,
    pub version: Option<String>,
    pub error: Option<String>,
}

impl Models {
    pub fn new(names: &[String]) -> Models {
        Models {
            slots: names
                .iter()
                .map(|n| (n.clone(), RwLock::default()))
                .collect(),
        }
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.slots.keys().map(String::as_str)
    }

    pub fn knows(&self, name: &str) -> bool {
        self.slots.contains_key(name)
    }

    /// The model to score a request with; `None` if it is not (yet) loaded.
    pub fn get(&self, name: &str) -> Option<Arc<Served>> {
        self.slots.get(name)?.read().ok()?.current.clone()
    }

    pub fn status(&self) -> Vec<ModelStatus> {
        self.slots
            .iter()
            .map(|(name, slot)| {
                let slot = slot.read().expect("a slot lock is never poisoned");
                ModelStatus {
                    name: name.clone(),
                    version: slot.current.as_ref().map(|s| s.version.clone()),
                    error: slot.last_error.clone(),
                }
            })
            .collect()
    }

    fn swap(&self, name: &str, served: Served) -> Option<String> {
        let mut slot = self.slots[name].write().expect("never poisoned");
        slot.last_error = None;
        slot.current
            .replace(Arc::new(served))
            .map(|old| old.version.clone())
    }

    fn fail(&self, name: &str, why: String) {
        self.slots[name].write().expect("never poisoned").last_error = Some(why);
    }
}

/// What one check of a model's champion did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Swapped {
        from: Option<String>,
        to: String,
    },
    Unchanged {
        version: String,
    },
    /// The champion could not be loaded or verified; `serving` is what stays.
    Failed {
        why: String,
        serving: Option<String>,
    },
    /// The model has no champion yet.
    Missing,
}

impl Outcome {
    fn label(&self) -> &'static str {
        match self {
            Outcome::Swapped { .. } => "swapped",
            Outcome::Unchanged { .. } => "unchanged",
            Outcome::Failed { .. } => "failed",
            Outcome::Missing => "missing",
        }
    }
}

/// Why the reloader should look at the store.
pub enum Trigger {
    /// A `model.published` event for this model.
    Event(String),
    /// `POST /v1/admin/reload`: check every model and report.
    Admin(tokio::sync::oneshot::Sender<Vec<(String, Outcome)>>),
}

pub struct Reloader {
    pub store: Box<dyn Store>,
    pub models: Arc<Models>,
    pub metrics: Arc<Metrics>,
}

impl Reloader {
    /// Resolves the model's champion and swaps it in if it changed and verifies.
    pub fn check(&self, name: &str) -> Outcome {
        let outcome = self.try_check(name);
        match &outcome {
            Outcome::Swapped { from, to } => {
                tracing::info!(model = name, from = ?from, to = %to, "serving a new champion");
            }
            Outcome::Failed { why, serving } => {
                tracing::error!(model = name, serving = ?serving, "champion refused: {why}");
                self.models.fail(name, why.clone());
            }
            Outcome::Missing => tracing::warn!(model = name, "no champion published yet"),
            Outcome::Unchanged { .. } => {}
        }
        self.metrics
            .reloads
            .get_or_create(&ReloadLabels {
                model: name.to_string(),
                outcome: outcome.label(),
            })
            .inc();
        outcome
    }

    fn try_check(&self, name: &str) -> Outcome {
        let current = self.models.get(name);
        let failed = |why: String| Outcome::Failed {
            why,
            serving: current.as_ref().map(|s| s.version.clone()),
        };
        let alias = match publish::read_alias(self.store.as_ref(), name, ALIAS) {
            Ok(Some((alias, _))) => alias,
            Ok(None) => return Outcome::Missing,
            Err(e) => return failed(e.to_string()),
        };
        if let Some(c) = &current
            && c.version == alias.version
            && c.manifest_sha256 == alias.manifest_sha256
        {
            return Outcome::Unchanged {
                version: c.version.clone(),
            };
        }
        let bundle = match publish::load_aliased(self.store.as_ref(), name, ALIAS, &alias) {
            Ok(b) => b,
            Err(e) => return failed(e.to_string()),
        };
        let scorer = match Scorer::from_bundle(&bundle) {
            Ok(s) => s,
            Err(why) => return failed(format!("version {}: {why}", alias.version)),
        };
        let from = self.models.swap(
            name,
            Served {
                version: alias.version.clone(),
                manifest_sha256: alias.manifest_sha256.clone(),
                scorer,
            },
        );
        if let Some(old) = &from {
            self.metrics.serving.remove(&VersionLabels {
                model: name.to_string(),
                version: old.clone(),
            });
        }
        self.metrics
            .serving
            .get_or_create(&VersionLabels {
                model: name.to_string(),
                version: alias.version.clone(),
            })
            .set(1);
        Outcome::Swapped {
            from,
            to: alias.version,
        }
    }

    pub fn check_all(&self) -> Vec<(String, Outcome)> {
        let names: Vec<String> = self.models.names().map(str::to_string).collect();
        names
            .into_iter()
            .map(|n| {
                let o = self.check(&n);
                (n, o)
            })
            .collect()
    }

    /// Runs until every trigger sender is gone: checks all models every `poll`, and
    /// at once on an event or an admin request.
    pub fn run(self, triggers: Receiver<Trigger>, poll: Duration) {
        let mut next_poll = Instant::now() + poll;
        loop {
            match triggers.recv_timeout(next_poll.saturating_duration_since(Instant::now())) {
                Ok(Trigger::Event(name)) if self.models.knows(&name) => {
                    self.check(&name);
                }
                Ok(Trigger::Event(_)) => {}
                Ok(Trigger::Admin(reply)) => {
                    let _ = reply.send(self.check_all());
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.check_all();
                    next_poll = Instant::now() + poll;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }
}

/// Starts the reloader thread; it stops when the returned sender and its clones are
/// dropped.
pub fn spawn(reloader: Reloader, poll: Duration) -> std::io::Result<Sender<Trigger>> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("sgml-reloader".into())
        .spawn(move || reloader.run(rx, poll))?;
    Ok(tx)
}
