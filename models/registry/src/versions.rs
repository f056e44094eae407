//! Bundle versions in the store: writing one (create-only, manifest last), listing
//! them, and loading one verified.

use std::collections::BTreeMap;

use sgml_models::Bundle;

use crate::error::{NameOf, RegistryError, check_names};
use crate::layout;
use crate::publish::read_alias;
use crate::store::{Condition, Store};

/// Versions are immutable: every file is written create-only, the manifest last, so a
/// version is visible (has a manifest) only once it is whole. `written` sees each key
/// and its bytes as they land (a runner records them as outputs).
pub fn write_version(
    store: &dyn Store,
    bundle: &Bundle,
    mut written: impl FnMut(&str, &[u8]),
) -> Result<(), RegistryError> {
    let m = bundle.manifest();
    check_names(&[(NameOf::Model, &m.name), (NameOf::Version, &m.version)])?;
    let prefix = layout::version_prefix(&m.name, &m.version);
    // `to_files` yields the manifest last.
    for (path, bytes) in bundle.to_files() {
        let key = format!("{prefix}{path}");
        store.put(&key, &bytes, Condition::IfAbsent)?;
        written(&key, &bytes);
    }
    Ok(())
}

/// Every version of a model in the store, oldest first (versions sort by time).
pub fn versions(store: &dyn Store, name: &str) -> Result<Vec<String>, RegistryError> {
    check_names(&[(NameOf::Model, name)])?;
    let mut versions: Vec<String> = store
        .list(&layout::model_prefix(name))?
        .iter()
        .filter_map(|k| layout::version_of_manifest(k, name))
        .collect();
    versions.sort();
    Ok(versions)
}

/// The newest version of a model in the store.
pub fn latest(store: &dyn Store, name: &str) -> Result<Option<String>, RegistryError> {
    Ok(versions(store, name)?.pop())
}

/// Loads one version and verifies every file against its manifest.
pub fn load_version(store: &dyn Store, name: &str, version: &str) -> Result<Bundle, RegistryError> {
    check_names(&[(NameOf::Model, name), (NameOf::Version, version)])?;
    let prefix = layout::version_prefix(name, version);
    let mut objects = BTreeMap::new();
    for key in store.list(&prefix)? {
        let object = store.get(&key)?.ok_or_else(|| RegistryError::Vanished {
            key: store.uri(&key),
        })?;
        objects.insert(key[prefix.len()..].to_string(), object.bytes);
    }
    if objects.is_empty() {
        return Err(RegistryError::NoVersion {
            name: name.into(),
            version: version.into(),
        });
    }
    Bundle::from_files(objects).map_err(|source| RegistryError::Unverified {
        name: name.into(),
        version: version.into(),
        source,
    })
}

/// One line of `models list`.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionInfo {
    pub version: String,
    /// The bundle kind; `None` when the manifest does not parse.
    pub kind: Option<String>,
    /// The gate metric's name and value on the version's holdout.
    pub gate_metric: Option<(String, f64)>,
    /// The aliases that name this version.
    pub aliases: Vec<String>,
}

/// Every version, newest first, with its aliases. Reads each manifest without
/// verifying the files (a listing, not a load).
pub fn list(store: &dyn Store, name: &str) -> Result<Vec<VersionInfo>, RegistryError> {
    let mut aliases: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for key in store.list(&layout::aliases_prefix(name))? {
        let Some(alias) = layout::alias_of_key(&key, name) else {
            continue;
        };
        if let Some((a, _)) = read_alias(store, name, &alias)? {
            aliases.entry(a.version).or_default().push(alias);
        }
    }
    let mut out = Vec::new();
    for version in versions(store, name)?.into_iter().rev() {
        let manifest = store
            .get(&layout::manifest_key(name, &version))?
            .and_then(|o| serde_json::from_slice::<sgml_models::Manifest>(&o.bytes).ok());
        out.push(VersionInfo {
            kind: manifest.as_ref().map(|m| m.kind.clone()),
            gate_metric: manifest.as_ref().and_then(|m| {
                let v = *m.metrics.get(&m.gate.metric)?;
                Some((m.gate.metric.clone(), v))
            }),
            aliases: aliases.remove(&version).unwrap_or_default(),
            version,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::NameOf;

    #[test]
    fn versions_and_models_that_leave_their_folder_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::LocalStore::new(dir.path().join("store")).unwrap();
        let err = load_version(&store, "pricing", "../../../../etc").unwrap_err();
        assert!(
            matches!(
                &err,
                RegistryError::InvalidName {
                    what: NameOf::Version,
                    ..
                }
            ),
            "{err}"
        );
        assert!(matches!(
            versions(&store, "../x"),
            Err(RegistryError::InvalidName {
                what: NameOf::Model,
                ..
            })
        ));
        assert!(matches!(
            crate::publish::read_alias(&store, "pricing", "team/x"),
            Err(RegistryError::InvalidName {
                what: NameOf::Alias,
                ..
            })
        ));
        assert!(matches!(
            crate::publish::read_alias(&store, "pricing", ""),
            Err(RegistryError::InvalidName { .. })
        ));
    }
}
