//! Model bundle versions in the store, for every model: naming a new version, writing
//! it (create-only, manifest last), listing versions and loading one verified.
//!
//! Layout: `models/<name>/<version>/` with `manifest.json` and the files it lists.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use chrono::Utc;
use sgml_models::bundle::{Bundle, Field, Gate, Manifest, version_id};

use crate::run::{CODE_VERSION, RunContext};
use crate::store::{Condition, Store};

/// What a training step says about the bundle it writes, besides its files.
pub struct BundleSpec {
    pub name: &'static str,
    pub kind: &'static str,
    pub parameters: serde_json::Value,
    pub seed: u64,
    pub input_schema: Vec<Field>,
    pub output_schema: Vec<Field>,
    pub gate: Gate,
}

/// A field of an input or output schema.
pub fn field(name: &str, dtype: &str, nullable: bool) -> Field {
    Field {
        name: name.into(),
        dtype: dtype.into(),
        nullable,
    }
}

/// A new version: the manifest (with a fresh version id) over the files.
pub fn build(
    spec: BundleSpec,
    files: BTreeMap<String, Vec<u8>>,
    metrics: BTreeMap<String, f64>,
    training_data: serde_json::Value,
    baseline: serde_json::Value,
) -> anyhow::Result<Bundle> {
    let now = Utc::now();
    // The hash covers the files and the exact creation time: two trainings in the same
    // second (identical content, say) still get distinct versions.
    let content: Vec<u8> = files
        .values()
        .flatten()
        .copied()
        .chain(now.to_rfc3339().into_bytes())
        .collect();
    let manifest = Manifest {
        name: spec.name.into(),
        version: version_id(&now.format("%Y%m%dT%H%M%SZ").to_string(), &content),
        kind: spec.kind.into(),
        created_at: now.to_rfc3339(),
        code_version: CODE_VERSION.into(),
        parameters: spec.parameters,
        seed: spec.seed,
        training_data,
        input_schema: spec.input_schema,
        output_schema: spec.output_schema,
        metrics,
        baseline,
        gate: spec.gate,
        files: Vec::new(),
    };
    Ok(Bundle::new(manifest, files)?)
}

/// Versions are immutable: every file is written create-only, the manifest last, so
/// a version is visible (has a manifest) only once it is whole.
pub fn write(ctx: &mut RunContext, bundle: &Bundle) -> anyhow::Result<()> {
    let m = bundle.manifest();
    let prefix = format!("models/{}/{}/", m.name, m.version);
    for (path, bytes) in bundle.to_files() {
        let key = format!("{prefix}{path}");
        ctx.store.put(&key, &bytes, Condition::IfAbsent)?;
        ctx.record_output(&key, &bytes, 0);
    }
    ctx.note(format!("wrote {prefix}"));
    Ok(())
}

/// The version in a bundle manifest's URI (`…/models/<model>/<version>/manifest.json`).
pub fn version_of(uri: &str, model: &str) -> Option<String> {
    let rest = uri.rsplit_once(&format!("models/{model}/"))?.1;
    rest.strip_suffix("/manifest.json").map(str::to_string)
}

/// Every version of a model in the store, oldest first (versions sort by time).
pub fn versions(store: &dyn Store, model: &str) -> anyhow::Result<Vec<String>> {
    let prefix = format!("models/{model}/");
    let mut versions: Vec<String> = store
        .list(&prefix)?
        .into_iter()
        .filter_map(|k| {
            k[prefix.len()..]
                .strip_suffix("/manifest.json")
                .map(str::to_string)
        })
        .filter(|v| !v.contains('/'))
        .collect();
    versions.sort();
    Ok(versions)
}

/// The newest version of a model in the store.
pub fn latest_version(store: &dyn Store, model: &str) -> anyhow::Result<Option<String>> {
    Ok(versions(store, model)?.pop())
}

/// Loads and verifies one version from the store.
pub fn load_version(store: &dyn Store, model: &str, version: &str) -> anyhow::Result<Bundle> {
    let prefix = format!("models/{model}/{version}/");
    let mut objects = BTreeMap::new();
    for key in store.list(&prefix)? {
        let object = store
            .get(&key)?
            .with_context(|| format!("{key} vanished"))?;
        objects.insert(key[prefix.len()..].to_string(), object.bytes);
    }
    if objects.is_empty() {
        bail!("no version {version} of model {model}");
    }
    Bundle::from_files(objects).with_context(|| format!("model {model} version {version}"))
}

/// The version to score with when none is named: the champion, else the newest
/// (noted on the run).
pub fn default_version(ctx: &mut RunContext, model: &str) -> anyhow::Result<String> {
    if let Some((alias, _)) = crate::publish::read_alias(ctx.store, model, "champion")? {
        return Ok(alias.version);
    }
    let v = latest_version(ctx.store, model)?
        .with_context(|| format!("no {model} model: run `sgml train {model}` first"))?;
    ctx.note(format!(
        "no champion published: using the newest version {v}"
    ));
    Ok(v)
}

/// One hash over the keys and checksums of every input read: two trainings on the
/// same data have the same fingerprint, whatever their run ids.
pub fn fingerprint(inputs: &[crate::sources::InputRecord]) -> String {
    let mut lines: Vec<String> = inputs
        .iter()
        .map(|i| format!("{} {}\n", i.uri, i.sha256))
        .collect();
    lines.sort();
    crate::store::sha256_hex(lines.concat().as_bytes())
}

/// The champion's gate metric on a new version's holdout, so challenger and champion
/// are compared on the same rows: `score` gets the champion's verified bundle. None
/// when there is no champion, or when it cannot score (a note in the run says why;
/// the gate then has nothing to compare with).
pub fn champion_score(
    ctx: &mut RunContext,
    model: &str,
    score: impl FnOnce(&Bundle) -> anyhow::Result<f64>,
) -> Option<(String, f64)> {
    let outcome = (|| -> anyhow::Result<Option<(String, f64)>> {
        let Some(bundle) = crate::publish::load_alias(ctx.store, model, "champion")? else {
            return Ok(None);
        };
        Ok(Some((bundle.manifest().version.clone(), score(&bundle)?)))
    })();
    outcome.unwrap_or_else(|e| {
        ctx.note(format!(
            "the champion could not score this holdout, so the gate cannot compare: {e:#}"
        ));
        None
    })
}
