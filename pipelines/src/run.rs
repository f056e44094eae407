//! The runner around every step: run id, lineage manifest, staged outputs that are
//! committed only when the step succeeds, progress and logs.
//!
//! A step writes each output with [`RunContext::stage`]; nothing is visible at its
//! final key until the whole step has succeeded, and then each partition is
//! replaced by its new files. A failed step leaves every earlier output as it was,
//! and still records a manifest saying what failed.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{NaiveDate, Utc};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use sgml_features::validate::Counts;

use crate::sources::InputRecord;
use crate::store::{Condition, Store};

pub const CODE_VERSION: &str = match option_env!("SGML_GIT_SHA") {
    Some(sha) => sha,
    None => "unknown",
};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutputRecord {
    pub uri: String,
    pub rows: usize,
    pub sha256: String,
}

/// Where a run stands; `running` is only ever seen on a manifest that a crashed
/// process left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    /// The step's inputs could not support it ([`Skip`]): nothing written, not a
    /// failure.
    Skipped,
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Skipped => "skipped",
        })
    }
}

/// What a step returns (as its error) when the data cannot support it — no photos to
/// learn categories from, say. The run is recorded as skipped with the reason, writes
/// nothing, and is not a failure: `run all` goes on, and a later step reading what it
/// would have written finds the last version written before.
#[derive(Debug, thiserror::Error)]
#[error("skipped: {reason}")]
pub struct Skip {
    pub reason: String,
}

/// `runs/<run_id>/manifest.json`: the lineage of one step run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunManifest {
    pub step: String,
    pub run_id: String,
    pub run_date: Option<NaiveDate>,
    pub status: RunStatus,
    pub error: Option<String>,
    /// Why a skipped run did nothing ([`Skip`]'s reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    pub code_version: String,
    pub parameters: serde_json::Value,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub inputs: Vec<InputRecord>,
    pub outputs: Vec<OutputRecord>,
    pub counts: BTreeMap<String, Counts>,
    pub notes: Vec<String>,
    /// The process's peak resident memory during the run, in MiB (crate::memory;
    /// Linux only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_rss_mib: Option<u64>,
}

/// What a step declares it reads and writes, so the step graph is data: the plan
/// orders `sgml run all` from it (crate::plan) and `sgml steps --json` prints it for
/// Airflow.
///
/// Patterns are store keys split on `/`; a segment with `*` or `<…>` stands for any
/// value (`raw/<table>/dt=<run_date>/` covers `raw/orders/dt=*`). A pattern that
/// starts with `<` names something outside the store (`<input>`, `<model dir>/…`) and
/// orders nothing.
#[derive(Debug, Clone, Serialize)]
pub struct StepSpec {
    pub name: &'static str,
    pub reads: &'static [&'static str],
    pub writes: &'static [&'static str],
    pub about: &'static str,
    /// The model whose new version this step writes: `run all` and `sgml train`
    /// promote it to champion when it passes the gate.
    pub trains: Option<&'static str>,
    /// The `sgml` arguments that run this step by itself (before `--run-date`): what
    /// each task of the Airflow DAG calls.
    pub command: &'static [&'static str],
    /// Runs a neural network or trains a model (minutes of every core, gigabytes of
    /// memory): the DAG runs such steps in one pool so they do not pile up on a worker.
    pub heavy: bool,
    /// Whether and how the DAG can fan the step out over workers.
    pub fanout: Fanout,
}

/// How a step's work splits over workers ([`crate::partition`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fanout {
    /// One run does all of it (a training run; a query of one index).
    One,
    /// `--partition k/n` for each part, then `--merge n`.
    Parts,
    /// `--partition k/n` (map) for each part, `--reduce k/n` for each bucket of keys,
    /// then `--merge n`.
    MapReduce,
}

/// Where a run's manifest is stored.
pub fn manifest_key(run_id: &str) -> String {
    format!("runs/{run_id}/manifest.json")
}

impl RunManifest {
    /// The version of `model` the run wrote (its bundle manifest is among the
    /// outputs).
    pub fn written_version(&self, model: &str) -> Option<String> {
        self.outputs
            .iter()
            .find_map(|o| sgml_registry::layout::version_of_manifest(&o.uri, model))
    }
}

pub trait Step {
    fn spec(&self) -> StepSpec;
    fn parameters(&self) -> serde_json::Value;
    fn run(&self, ctx: &mut RunContext) -> anyhow::Result<()>;
}

/// An output waiting for the commit.
struct Staged {
    /// Where it becomes visible.
    key: String,
    /// Where it waits: the run's staging area, or another run's committed object.
    from: String,
    /// Of the bytes the step wrote (or the other run recorded), checked at commit.
    sha256: String,
    /// Copied from another run's object rather than moved from staging, and never
    /// removed by this run.
    adopted: bool,
}

pub struct RunContext<'a> {
    pub store: &'a dyn Store,
    pub run_id: String,
    pub run_date: Option<NaiveDate>,
    manifest: RunManifest,
    staged: Vec<Staged>,
    /// Partitions (key prefixes) the step replaces wholesale.
    partitions: Vec<String>,
    /// Keys to delete on commit.
    deletes: Vec<String>,
    bar: ProgressBar,
}

impl<'a> RunContext<'a> {
    pub fn input(&mut self, record: InputRecord) {
        self.manifest.inputs.push(record);
    }

    /// The inputs recorded so far (their keys and checksums are a step's lineage).
    pub fn inputs(&self) -> &[InputRecord] {
        &self.manifest.inputs
    }

    pub fn count(&mut self, table: &str, counts: Counts) {
        self.manifest.counts.insert(table.to_string(), counts);
    }

    pub fn note(&mut self, note: impl Into<String>) {
        let note = note.into();
        tracing::info!(step = %self.manifest.step, "{note}");
        self.manifest.notes.push(note);
    }

    pub fn progress(&self, message: impl Into<String>) {
        let message = message.into();
        tracing::debug!("{message}");
        self.bar.set_message(message);
    }

    /// Writes an output to a staging key; it becomes visible at `key` on commit.
    pub fn stage(&mut self, key: &str, bytes: &[u8], rows: usize) -> anyhow::Result<()> {
        let staging = format!("_staging/{}/{key}", self.run_id);
        self.store.put(&staging, bytes, Condition::Always)?;
        self.record_staged(key, staging, crate::store::sha256_hex(bytes), rows, false)
    }

    /// Records an object waiting at `from` as an output the commit will move (or,
    /// `adopted`, copy) to `key`, with the checksum file that goes beside it.
    fn record_staged(
        &mut self,
        key: &str,
        from: String,
        sha256: String,
        rows: usize,
        adopted: bool,
    ) -> anyhow::Result<()> {
        self.manifest.outputs.push(OutputRecord {
            uri: self.store.uri(key),
            rows,
            sha256: sha256.clone(),
        });
        self.staged.push(Staged {
            key: key.to_string(),
            from,
            sha256: sha256.clone(),
            adopted,
        });
        self.stage_checksum(key, &sha256)
    }

    /// Stages the checksum file beside a part (crate::io::checksum_key), committed
    /// right after it, which readers verify the part against.
    fn stage_checksum(&mut self, key: &str, sha256: &str) -> anyhow::Result<()> {
        if !key.ends_with(".parquet") {
            return Ok(());
        }
        let line = crate::io::checksum_line(key, sha256);
        let key = crate::io::checksum_key(key);
        let staging = format!("_staging/{}/{key}", self.run_id);
        self.store
            .put(&staging, line.as_bytes(), Condition::Always)?;
        let digest = crate::store::sha256_hex(line.as_bytes());
        self.staged.push(Staged {
            key,
            from: staging,
            sha256: digest,
            adopted: false,
        });
        Ok(())
    }

    /// Records an object the step wrote itself (immutable objects written
    /// create-only, which need no staging), by its checksum.
    pub fn record_written(&mut self, key: &str, sha256: String) {
        self.manifest.outputs.push(OutputRecord {
            uri: self.store.uri(key),
            rows: 0,
            sha256,
        });
    }

    /// A local directory for files a step writes before staging them (a plan sunk
    /// by the streaming engine): inside the store's staging area when the store is
    /// local (so staging is a rename), else in the system's temporary directory.
    pub fn scratch_dir(&self) -> anyhow::Result<std::path::PathBuf> {
        let dir = match self
            .store
            .local_path(&format!("_staging/{}/_scratch", self.run_id))
        {
            Some(dir) => dir,
            None => std::env::temp_dir().join(format!("sgml-{}", self.run_id)),
        };
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    /// Stages a file written in [`RunContext::scratch_dir`] under `key`.
    pub fn stage_file(
        &mut self,
        key: &str,
        file: &std::path::Path,
        rows: usize,
    ) -> anyhow::Result<()> {
        let staging = format!("_staging/{}/{key}", self.run_id);
        let sha256 = crate::store::sha256_file(file)?;
        match self.store.local_path(&staging) {
            Some(path) => {
                std::fs::create_dir_all(path.parent().expect("staging keys have a parent"))?;
                std::fs::rename(file, &path)?;
            }
            None => {
                let bytes = std::fs::read(file)?;
                self.store.put(&staging, &bytes, Condition::Always)?;
                std::fs::remove_file(file)?;
            }
        }
        self.record_staged(key, staging, sha256, rows, false)
    }

    /// Stages an object another run committed (a part of a fanned-out step, with
    /// the checksum that run recorded for it) to be copied to `key` on commit: the
    /// merge of parts that are already final files moves no bytes through this
    /// process. The object stays where it is until the commit, and a failed run
    /// leaves it there, so the merge can be run again.
    pub fn adopt(
        &mut self,
        from: &str,
        key: &str,
        sha256: String,
        rows: usize,
    ) -> anyhow::Result<()> {
        self.record_staged(key, from.to_string(), sha256, rows, true)
    }

    /// Stages `df` as the one part file of the partition `prefix` and declares the
    /// partition this run's: a re-run replaces it whole.
    pub fn write_partition(
        &mut self,
        prefix: &str,
        df: &mut polars::prelude::DataFrame,
    ) -> anyhow::Result<()> {
        let bytes = crate::io::to_parquet(df)?;
        let prefix = prefix.trim_end_matches('/').to_string() + "/";
        self.stage(&format!("{prefix}{}", crate::io::PART), &bytes, df.height())?;
        self.replace_partition(&prefix);
        Ok(())
    }

    /// Declares that every key under `prefix` belongs to this run's output: keys
    /// there that this run did not stage are removed on commit.
    pub fn replace_partition(&mut self, prefix: &str) {
        self.partitions
            .push(prefix.trim_end_matches('/').to_string() + "/");
    }

    /// Replaces `placeholder` in the final keys staged so far (a step that learns its
    /// partition only after writing, like ingest's default run date).
    pub fn rekey(&mut self, placeholder: &str, value: &str) {
        for s in &mut self.staged {
            s.key = s.key.replace(placeholder, value);
        }
        for output in &mut self.manifest.outputs {
            output.uri = output.uri.replace(placeholder, value);
        }
    }

    pub fn delete_on_commit(&mut self, key: &str) {
        self.deletes.push(key.to_string());
        if key.ends_with(".parquet") {
            self.deletes.push(crate::io::checksum_key(key));
        }
    }

    fn commit(&mut self) -> anyhow::Result<()> {
        let staged_keys: std::collections::HashSet<&str> =
            self.staged.iter().map(|s| s.key.as_str()).collect();
        let mut stale = Vec::new();
        for prefix in &self.partitions {
            for key in self.store.list(prefix)? {
                if !staged_keys.contains(key.as_str()) {
                    stale.push(key);
                }
            }
        }
        // Every staged object is read back and checked against the digest of the bytes
        // the step wrote before any becomes visible: a truncated or corrupted upload
        // fails the run here, and readers never see it.
        for Staged {
            key,
            from: staging,
            sha256,
            ..
        } in &self.staged
        {
            // A local file is hashed as it is read: a large table never has to fit
            // in memory to be verified.
            let found = match self.store.local_path(staging) {
                Some(path) => crate::store::sha256_file(&path)
                    .with_context(|| format!("staged output for {key} vanished"))?,
                None => {
                    let stored = self
                        .store
                        .get(staging)?
                        .with_context(|| format!("staged output for {key} vanished"))?;
                    crate::store::sha256_hex(&stored.bytes)
                }
            };
            if &found != sha256 {
                bail!(
                    "staged output for {} does not verify (sha256 {found}, wrote {sha256}); nothing was published",
                    self.store.uri(key)
                );
            }
        }
        // New files first, then removals: a crash in between leaves extra files of
        // the new run (re-running repairs it), never a partition with data missing.
        for s in &self.staged {
            match s.adopted {
                true => self.store.copy(&s.from, &s.key)?,
                false => self.store.rename(&s.from, &s.key)?,
            }
        }
        for key in stale.iter().chain(&self.deletes) {
            self.store.delete(key)?;
        }
        Ok(())
    }

    fn discard(&self) {
        for s in self.staged.iter().filter(|s| !s.adopted) {
            let _ = self.store.delete(&s.from);
        }
    }

    /// Removes the scratch directory, whatever the outcome.
    fn clean_scratch(&self) {
        if let Some(dir) = self.store.local_path(&format!("_staging/{}", self.run_id)) {
            let _ = std::fs::remove_dir_all(dir);
        }
        let _ = std::fs::remove_dir_all(std::env::temp_dir().join(format!("sgml-{}", self.run_id)));
    }
}

/// A run that started this long ago and left staged files is taken for dead (killed
/// before it could discard them): no step of a daily pipeline runs for a day.
pub const STALE_AFTER: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// A store's temporary file this old belongs to no live write.
const STALE_TEMPORARY: Duration = Duration::from_secs(3600);

/// Removes what killed runs left behind: the staging area of every run that has
/// finished (its manifest exists) or started more than [`STALE_AFTER`] before `now`,
/// and the store's old temporary files. Returns one note per thing removed.
pub fn sweep_dead_runs(
    store: &dyn Store,
    now: chrono::DateTime<Utc>,
) -> anyhow::Result<Vec<String>> {
    let mut by_run: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for key in store.list("_staging/")? {
        if let Some(run_id) = key
            .strip_prefix("_staging/")
            .and_then(|k| k.split('/').next())
        {
            by_run.entry(run_id.to_string()).or_default().push(key);
        }
    }
    let mut notes = Vec::new();
    for (run_id, keys) in by_run {
        let finished = store.get(&manifest_key(&run_id))?.is_some();
        let started = run_started(&run_id);
        let expired = started.is_none_or(|t| now - t > STALE_AFTER);
        if !(finished || expired) {
            continue;
        }
        for key in &keys {
            store.delete(key)?;
        }
        if let Some(dir) = store.local_path(&format!("_staging/{run_id}")) {
            let _ = std::fs::remove_dir_all(dir);
        }
        notes.push(format!(
            "removed {} staged file(s) of run {run_id}, which {}",
            keys.len(),
            if finished {
                "finished without removing them"
            } else {
                "was killed before it finished"
            }
        ));
    }
    let temporary = store.sweep_temporary(STALE_TEMPORARY)?;
    if temporary > 0 {
        notes.push(format!(
            "removed {temporary} temporary file(s) of writes killed before they completed"
        ));
    }
    Ok(notes)
}

/// The start time a run id begins with (see [`new_run_id`]).
fn run_started(run_id: &str) -> Option<chrono::DateTime<Utc>> {
    let stamp = run_id.get(..16)?;
    chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%SZ")
        .ok()
        .map(|t| t.and_utc())
}

pub fn new_run_id(step: &str) -> String {
    format!(
        "{}-{step}-{:04x}",
        Utc::now().format("%Y%m%dT%H%M%SZ"),
        rand::random::<u16>()
    )
}

fn progress_bar(step: &str) -> ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner().with_prefix(step.to_string());
    bar.set_style(
        ProgressStyle::with_template("{spinner} {prefix:.bold} {elapsed:>4} {wide_msg}")
            .expect("valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// Runs one step: stages, commits on success, writes the run manifest either way.
pub fn execute(
    store: &dyn Store,
    step: &dyn Step,
    run_date: Option<NaiveDate>,
) -> anyhow::Result<RunManifest> {
    let spec = step.spec();
    let run_id = new_run_id(spec.name);
    let started = Utc::now();
    crate::memory::reset_peak();
    tracing::info!(step = spec.name, run_id = %run_id, "started");
    let mut ctx = RunContext {
        store,
        run_id: run_id.clone(),
        run_date,
        manifest: RunManifest {
            step: spec.name.to_string(),
            run_id: run_id.clone(),
            run_date,
            status: RunStatus::Running,
            error: None,
            skipped: None,
            code_version: CODE_VERSION.to_string(),
            parameters: step.parameters(),
            started_at: started.to_rfc3339(),
            finished_at: None,
            inputs: Vec::new(),
            outputs: Vec::new(),
            counts: BTreeMap::new(),
            notes: Vec::new(),
            peak_rss_mib: None,
        },
        staged: Vec::new(),
        partitions: Vec::new(),
        deletes: Vec::new(),
        bar: progress_bar(spec.name),
    };
    // Housekeeping never fails a run: a store that cannot be swept now is swept next time.
    match sweep_dead_runs(store, started) {
        Ok(notes) => notes.into_iter().for_each(|n| ctx.note(n)),
        Err(e) => tracing::warn!("could not clean up after earlier runs: {e:#}"),
    }
    let result = step.run(&mut ctx).and_then(|_| ctx.commit());
    ctx.bar.finish_and_clear();
    ctx.clean_scratch();
    let mut manifest = ctx.manifest.clone();
    manifest.run_date = ctx.run_date;
    manifest.finished_at = Some(Utc::now().to_rfc3339());
    manifest.peak_rss_mib = crate::memory::peak_mib();
    let result = match result {
        Err(e) if e.downcast_ref::<Skip>().is_some() => {
            ctx.discard();
            manifest.status = RunStatus::Skipped;
            manifest.skipped = e.downcast_ref::<Skip>().map(|s| s.reason.clone());
            manifest.notes.push(format!("{e}"));
            manifest.outputs.clear();
            tracing::warn!(step = spec.name, run_id = %run_id, "{e}");
            Ok(())
        }
        other => {
            if other.is_ok() {
                manifest.status = RunStatus::Succeeded;
            }
            other
        }
    };
    match &result {
        Ok(()) => {}
        Err(e) => {
            ctx.discard();
            manifest.status = RunStatus::Failed;
            manifest.error = Some(format!("{e:#}"));
            manifest.outputs.clear();
        }
    }
    let key = manifest_key(&run_id);
    let recorded = store.put(
        &key,
        &serde_json::to_vec_pretty(&manifest)?,
        Condition::IfAbsent,
    );
    match (&result, recorded) {
        (_, Ok(_)) => {}
        (Ok(()), Err(e)) => return Err(e.into()),
        // The step's own error says what went wrong (often the same outage); the
        // missing manifest is logged, not put in its place.
        (Err(_), Err(e)) => {
            tracing::error!(run_id = %run_id, "could not record the failed run's manifest: {e}")
        }
    }
    let secs = (Utc::now() - started).num_milliseconds() as f64 / 1000.0;
    match result {
        Ok(()) => {
            tracing::info!(step = spec.name, run_id = %run_id, seconds = secs, status = %manifest.status, "finished");
            Ok(manifest)
        }
        Err(e) => {
            tracing::error!(step = spec.name, run_id = %run_id, "failed: {e:#}");
            Err(e.context(format!(
                "step {} failed (run {run_id}; earlier outputs untouched)",
                spec.name
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{LocalStore, Object, StoreError};

    /// A store whose staged objects come back with one byte flipped: the corrupted
    /// upload that a real store cannot be made to produce on demand (a mock, for that
    /// fault only).
    struct CorruptingStore(LocalStore);

    impl Store for CorruptingStore {
        fn uri(&self, key: &str) -> String {
            self.0.uri(key)
        }
        fn get(&self, key: &str) -> Result<Option<Object>, StoreError> {
            let mut o = self.0.get(key)?;
            if key.starts_with("_staging/")
                && let Some(o) = &mut o
            {
                o.bytes[0] ^= 1;
            }
            Ok(o)
        }
        fn get_bounded(
            &self,
            key: &str,
            max: u64,
        ) -> Result<Option<crate::store::Bounded>, StoreError> {
            self.0.get_bounded(key, max)
        }
        fn put(&self, key: &str, bytes: &[u8], c: Condition) -> Result<String, StoreError> {
            self.0.put(key, bytes, c)
        }
        fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
            self.0.list(prefix)
        }
        fn delete(&self, key: &str) -> Result<(), StoreError> {
            self.0.delete(key)
        }
        fn rename(&self, from: &str, to: &str) -> Result<(), StoreError> {
            self.0.rename(from, to)
        }
        fn copy(&self, from: &str, to: &str) -> Result<(), StoreError> {
            self.0.copy(from, to)
        }
    }

    struct WritePart(&'static [u8]);

    impl Step for WritePart {
        fn spec(&self) -> StepSpec {
            StepSpec {
                name: "write-part",
                reads: &[],
                writes: &["out/dt=<run_date>/"],
                about: "test step",
                trains: None,
                command: &[],
                heavy: false,
                fanout: Fanout::One,
            }
        }
        fn parameters(&self) -> serde_json::Value {
            serde_json::Value::Null
        }
        fn run(&self, ctx: &mut RunContext) -> anyhow::Result<()> {
            ctx.stage("out/dt=1/part-0.bin", self.0, 1)?;
            ctx.replace_partition("out/dt=1/");
            Ok(())
        }
    }

    /// What a SIGKILL leaves (staging of a run that never finished, a temporary file
    /// between write and rename) is removed by a later run, which says so; a live
    /// run's staging and a fresh temporary file are left alone.
    #[test]
    fn later_runs_clean_what_killed_runs_left() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path()).unwrap();
        let killed = "20200101T000000Z-ingest-0001";
        let finished = new_run_id("features");
        let live = new_run_id("ingest");
        for run in [killed, &finished, &live] {
            store
                .put(
                    &format!("_staging/{run}/raw/orders/dt=1/part-00000.parquet"),
                    b"x",
                    Condition::Always,
                )
                .unwrap();
        }
        store
            .put(
                &format!("runs/{finished}/manifest.json"),
                b"{}",
                Condition::IfAbsent,
            )
            .unwrap();
        let tmp_dir = dir.path().join("raw/orders/dt=1");
        std::fs::create_dir_all(&tmp_dir).unwrap();
        let old_tmp = tmp_dir.join(".tmp-1-part-00000.parquet");
        let fresh_tmp = tmp_dir.join(".tmp-2-part-00000.parquet");
        for f in [&old_tmp, &fresh_tmp] {
            std::fs::write(f, b"partial").unwrap();
        }
        std::fs::File::options()
            .write(true)
            .open(&old_tmp)
            .unwrap()
            .set_modified(std::time::SystemTime::now() - Duration::from_secs(7200))
            .unwrap();

        let manifest = execute(&store, &WritePart(b"data"), None).unwrap();
        let notes = manifest.notes.join("\n");
        assert!(
            notes.contains(killed) && notes.contains("killed"),
            "{notes}"
        );
        assert!(notes.contains(&finished), "{notes}");
        assert!(notes.contains("1 temporary file"), "{notes}");
        let staged = store.list("_staging/").unwrap();
        assert_eq!(
            staged,
            vec![format!(
                "_staging/{live}/raw/orders/dt=1/part-00000.parquet"
            )]
        );
        assert!(!old_tmp.exists() && fresh_tmp.exists());
    }

    #[test]
    fn outputs_that_do_not_verify_are_never_published() {
        let dir = tempfile::tempdir().unwrap();
        let good = LocalStore::new(dir.path()).unwrap();
        execute(&good, &WritePart(b"old partition"), None).unwrap();

        let corrupting = CorruptingStore(LocalStore::new(dir.path()).unwrap());
        let err = execute(&corrupting, &WritePart(b"new partition"), None).unwrap_err();
        assert!(format!("{err:#}").contains("does not verify"), "{err:#}");
        let kept = good.get("out/dt=1/part-0.bin").unwrap().unwrap();
        assert_eq!(kept.bytes, b"old partition", "the old partition stays");
        assert!(
            good.list("_staging/").unwrap().is_empty(),
            "staging cleaned up"
        );

        execute(&good, &WritePart(b"new partition"), None).unwrap();
        let now = good.get("out/dt=1/part-0.bin").unwrap().unwrap();
        assert_eq!(now.bytes, b"new partition");
    }
}
