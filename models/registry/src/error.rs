//! The registry's one error type. Every variant carries what a caller needs to act on
//! it, so no caller ever has to read a message to tell one failure from another.

use sgml_models::BundleError;

use crate::announce::AnnounceError;
use crate::gate::GateFailure;
use crate::publish::Promotion;
use crate::store::StoreError;

/// What an invalid name was meant to name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameOf {
    Model,
    Version,
    Alias,
}

impl std::fmt::Display for NameOf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NameOf::Model => "model name",
            NameOf::Version => "version",
            NameOf::Alias => "alias name",
        })
    }
}

/// At most 100 characters of a name, for messages (names can come from anyone).
fn brief(name: &str) -> String {
    match name.char_indices().nth(100) {
        Some((end, _)) => format!("{}…", &name[..end]),
        None => name.to_string(),
    }
}

/// Refuses the first invalid name.
pub(crate) fn check_names(names: &[(NameOf, &str)]) -> Result<(), RegistryError> {
    match names.iter().find(|(_, n)| !crate::layout::valid_name(n)) {
        Some((what, name)) => Err(RegistryError::InvalidName {
            what: *what,
            name: (*name).to_string(),
        }),
        None => Ok(()),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "invalid {what} `{}`: names take letters, digits, `.`, `_` and `-` (at most 128), never `..`",
        brief(name)
    )]
    InvalidName { what: NameOf, name: String },
    #[error("no version {version} of model {name}")]
    NoVersion { name: String, version: String },
    #[error("model {name} version {version}: {source}")]
    Unverified {
        name: String,
        version: String,
        #[source]
        source: BundleError,
    },
    #[error(
        "model {name} version {version}: its manifest is not the one alias {alias} was published with"
    )]
    NotAsPublished {
        name: String,
        version: String,
        alias: String,
    },
    #[error("{key} vanished while it was being read")]
    Vanished { key: String },
    #[error(
        "alias {alias} of {name} moved while publishing: it now points at version {winner}; nothing was changed (re-run to promote over it)"
    )]
    LostRace {
        name: String,
        alias: String,
        winner: String,
    },
    #[error("gate: {0} (use --force to publish anyway; the history records it)")]
    Gate(GateFailure),
    /// Publishing the version the alias already names changes nothing (and must not:
    /// the alias's `previous` would then name the version itself).
    #[error("alias {alias} of {name} already names version {version}; nothing changed")]
    AlreadyNamed {
        name: String,
        alias: String,
        version: String,
    },
    #[error("alias {alias} of {name} does not exist")]
    NoAlias { name: String, alias: String },
    #[error("alias {alias} of {name} has no earlier version to roll back to")]
    NothingToRollBack { name: String, alias: String },
    #[error("{key} is not valid JSON: {source}")]
    Corrupt {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    /// The alias moved and the history records it, but the event did not go out.
    #[error(
        "{name} {} now points at {}, but the model.published event was not delivered (services still find it by polling; publishing the version again re-sends): {source}",
        promotion.alias, promotion.to
    )]
    NotAnnounced {
        name: String,
        promotion: Box<Promotion>,
        #[source]
        source: Box<AnnounceError>,
    },
}
