//! What training steps need to write a bundle version: the manifest built from a
//! step's spec and its run, written through the registry, and the champion's score on
//! a new version's holdout for the gate. Versions, aliases and promotion themselves
//! live in sgml-registry.

use std::collections::BTreeMap;

use chrono::Utc;
use sgml_models::bundle::{Bundle, Field, Gate, Manifest, TrainingData, version_id};
use sgml_registry::{CHAMPION, publish, versions};

use crate::run::{CODE_VERSION, RunContext};
use crate::sources::InputRecord;

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
    training_data: TrainingData,
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

/// The training-data record of a run: its id, date, inputs and their fingerprint.
pub fn training_data(
    ctx: &RunContext,
    rows: BTreeMap<String, usize>,
    champion_version: Option<String>,
) -> TrainingData {
    TrainingData {
        run_id: ctx.run_id.clone(),
        run_date: ctx.run_date.map(|d| d.to_string()),
        fingerprint: fingerprint(ctx.inputs()),
        inputs: ctx.inputs().to_vec(),
        rows,
        split: None,
        champion_version,
    }
}

/// Writes the version (create-only, manifest last) and records its files as the
/// run's outputs.
pub fn write(ctx: &mut RunContext, bundle: &Bundle) -> anyhow::Result<()> {
    let store = ctx.store;
    versions::write_version(store, bundle, |key, bytes| {
        ctx.record_written(key, crate::store::sha256_hex(bytes));
    })?;
    let m = bundle.manifest();
    ctx.note(format!(
        "wrote {}",
        sgml_registry::layout::version_prefix(&m.name, &m.version)
    ));
    Ok(())
}

/// The verified bundle to score with (see `publish::scoring_bundle`): the named
/// version, else the champion, else the newest (noted on the run).
pub fn scoring_bundle(
    ctx: &mut RunContext,
    model: &str,
    version: Option<&str>,
) -> anyhow::Result<Bundle> {
    match publish::scoring_bundle(ctx.store, model, version)? {
        Some((bundle, publish::Chosen::Newest)) => {
            ctx.note(format!(
                "no champion published: using the newest version {}",
                bundle.manifest().version
            ));
            Ok(bundle)
        }
        Some((bundle, _)) => Ok(bundle),
        None => anyhow::bail!("no {model} model: run `sgml train {model}` first"),
    }
}

/// One hash over the keys and checksums of every input read: two trainings on the
/// same data have the same fingerprint, whatever their run ids.
pub fn fingerprint(inputs: &[InputRecord]) -> String {
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
        let Some(bundle) = publish::load_alias(ctx.store, model, CHAMPION)? else {
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
