//! Splitting one step's work across workers (`--partition k/n`) and merging what
//! they wrote (`--merge n`), so a step scales out on an existing engine (Airflow's
//! mapped tasks on Celery or Kubernetes workers) with the same code as on one machine.
//!
//! A row belongs to part `k` of `n` when the xxh3-64 hash of its key (the product id)
//! modulo `n` is `k - 1`. xxh3 is a specified, frozen algorithm, so the split is the
//! same on every machine and every version of sgml — unlike polars' `hash()`, whose
//! values change between releases.
//!
//! Part `k` of an output partition (`features/embeddings/dt=D/`, say) is committed,
//! like any output, to `parts/features/embeddings/dt=D/of=n/part-k.parquet`, with
//! `part-k.json` beside it naming the inputs it was computed from. The merge reads every part (verified), refuses when
//! one is missing or was computed from other inputs than the rest (the raw data
//! changed between parts, or the champion moved: rows would come from two different
//! inputs), writes the partition as one file sorted by key (stably, so it is the file
//! one whole run writes when that is sorted by key too), and removes the parts. A
//! failed part is re-run alone: it replaces only its own file.

use std::fmt;
use std::str::FromStr;

use anyhow::Context;
use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::io;
use crate::run::RunContext;

/// The most parts one step may be split into: more would only make tiny files.
pub const MAX_PARTS: u32 = 1024;

/// Part `index` (1-based) of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    index: u32,
    count: u32,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PartitionError {
    #[error("a partition is written k/n (part k of n, 1 ≤ k ≤ n), e.g. 3/7")]
    Syntax,
    #[error("part {index} of {count} does not exist: k must be between 1 and n")]
    OutOfRange { index: u32, count: u32 },
    #[error("at most {MAX_PARTS} parts")]
    TooMany,
}

impl Partition {
    pub fn new(index: u32, count: u32) -> Result<Partition, PartitionError> {
        if count > MAX_PARTS {
            return Err(PartitionError::TooMany);
        }
        if index == 0 || index > count {
            return Err(PartitionError::OutOfRange { index, count });
        }
        Ok(Partition { index, count })
    }

    pub fn index(&self) -> u32 {
        self.index
    }

    pub fn count(&self) -> u32 {
        self.count
    }

    /// Whether the row with this key is this part's.
    pub fn owns(&self, key: &str) -> bool {
        bucket(key, self.count) == self.index - 1
    }

    /// Whether the row with this key, or without one, is this part's: rows without
    /// a key go to part 1, so none is lost.
    pub fn owns_row(&self, key: Option<&str>) -> bool {
        key.map_or(self.index == 1, |k| self.owns(k))
    }

    /// Keeps the rows of `df` whose `key` column this part owns.
    pub fn filter(&self, df: &DataFrame, key: &str) -> anyhow::Result<DataFrame> {
        let keys = df.column(key)?.str()?;
        let mask: BooleanChunked = keys.iter().map(|k| Some(self.owns_row(k))).collect();
        Ok(df.filter(&mask)?)
    }

    /// The same choice as [`Partition::filter`] as an expression on the string
    /// column `key`, for lazy plans: element-wise, so it streams and is pushed down
    /// to the scan.
    pub fn owns_expr(&self, key: &str) -> Expr {
        // One chunk: a row has a chunk exactly when this part owns it.
        Chunks::split(Some(*self), 0, 1)
            .index_expr(key)
            .is_not_null()
    }
}

impl FromStr for Partition {
    type Err = PartitionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (k, n) = s.split_once('/').ok_or(PartitionError::Syntax)?;
        let parse = |v: &str| v.trim().parse::<u32>().map_err(|_| PartitionError::Syntax);
        Partition::new(parse(k)?, parse(n)?)
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// A part's rows (all rows, without a part) split again by the same hash into chunks
/// small enough to hold in memory: all rows of a key land in one chunk, so a dedupe by
/// key within a chunk is exact, and a pass that holds one chunk at a time bounds its
/// memory whatever the input's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunks {
    part: Option<Partition>,
    count: u32,
}

impl Chunks {
    /// Chunks of at most about `per_chunk` rows for a part of about `rows` rows: at
    /// least one.
    pub fn split(part: Option<Partition>, rows: usize, per_chunk: usize) -> Chunks {
        let count = rows.div_ceil(per_chunk.max(1)).clamp(1, u32::MAX as usize) as u32;
        Chunks { part, count }
    }

    pub fn count(&self) -> u32 {
        self.count
    }

    /// The chunk (0-based) a row with this key falls in; `None` when the row is
    /// another part's. Rows without a key are part 1's, in its first chunk.
    fn of(&self, key: Option<&str>) -> Option<u32> {
        let Some(key) = key else {
            return self.part.is_none_or(|p| p.index == 1).then_some(0);
        };
        let hash = xxhash_rust::xxh3::xxh3_64(key.as_bytes());
        let parts = u64::from(self.part.map_or(1, |p| p.count));
        if self
            .part
            .is_some_and(|p| hash % parts != u64::from(p.index - 1))
        {
            return None;
        }
        Some(((hash / parts) % u64::from(self.count)) as u32)
    }

    /// [`Chunks::of`] the string column `key`, as an element-wise UInt32 expression.
    pub fn index_expr(&self, key: &str) -> Expr {
        let chunks = *self;
        col(key).map(
            move |c| {
                let index: UInt32Chunked = c.str()?.iter().map(|k| chunks.of(k)).collect();
                Ok(index.with_name(c.name().clone()).into_column())
            },
            |_, field| Ok(Field::new(field.name().clone(), DataType::UInt32)),
        )
    }
}

/// The part (0-based) of `count` a key falls in.
pub fn bucket(key: &str, count: u32) -> u32 {
    (xxhash_rust::xxh3::xxh3_64(key.as_bytes()) % u64::from(count)) as u32
}

/// How much of a step's work one run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Split {
    /// All of it, written straight to the table's partition.
    #[default]
    Whole,
    /// One part, written to the parts area for a later merge.
    Part(Partition),
    /// No work: the merge of the `n` parts already written.
    Merge(u32),
}

impl Split {
    /// The run manifest's record of it.
    pub fn parameters(&self) -> serde_json::Value {
        match self {
            Split::Whole => serde_json::Value::Null,
            Split::Part(p) => serde_json::json!({ "partition": p.to_string() }),
            Split::Merge(n) => serde_json::json!({ "merge": n }),
        }
    }
}

/// Where the parts of the output partition `target` split `count` ways wait.
pub fn parts_prefix(target: &str, count: u32) -> String {
    format!("parts/{}/of={count}/", target.trim_end_matches('/'))
}

fn part_key(target: &str, p: Partition) -> String {
    format!("{}part-{}.parquet", parts_prefix(target, p.count), p.index)
}

fn inputs_key(target: &str, p: Partition) -> String {
    format!("{}part-{}.json", parts_prefix(target, p.count), p.index)
}

impl Split {
    /// The rows of `df` this run works on (by the `key` column).
    pub fn rows(&self, df: DataFrame, key: &str) -> anyhow::Result<DataFrame> {
        match self {
            Split::Part(p) => p.filter(&df, key),
            _ => Ok(df),
        }
    }
}

/// Writes a run's result: the output partition `target` itself, or this run's part
/// of it.
pub fn write(
    ctx: &mut RunContext,
    split: Split,
    target: &str,
    df: &mut DataFrame,
) -> anyhow::Result<()> {
    match split {
        Split::Part(p) => write_part(ctx, target, p, df),
        Split::Whole | Split::Merge(_) => ctx.write_partition(target, df),
    }
}

/// A merge run: the `count` parts of `target`, sorted by `key`, become `target`.
pub fn merge(ctx: &mut RunContext, target: &str, count: u32, key: &str) -> anyhow::Result<()> {
    merge_parts(ctx, target, count, key, "--partition")
}

/// [`merge`] of parts written by the option `made_by` (a reduce's `--reduce`, say).
pub fn merge_parts(
    ctx: &mut RunContext,
    target: &str,
    count: u32,
    key: &str,
    made_by: &'static str,
) -> anyhow::Result<()> {
    let mut df = read_parts(ctx, target, count, key, made_by)?;
    ctx.write_partition(target, &mut df)?;
    ctx.note(format!("merged {count} parts: {} rows", df.height()));
    Ok(())
}

/// What a part was computed from: its run's inputs other than the parts area.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct PartInputs {
    run_id: String,
    inputs: Vec<(String, String)>,
}

impl PartInputs {
    /// The inputs `ctx` recorded so far.
    pub(crate) fn of(ctx: &RunContext) -> PartInputs {
        PartInputs {
            run_id: ctx.run_id.clone(),
            inputs: ctx
                .inputs()
                .iter()
                .map(|r| (r.uri.clone(), r.sha256.clone()))
                .collect(),
        }
    }
}

/// Stages `df` as part `p` of the output partition `target`, with the inputs the
/// run recorded so far.
fn write_part(
    ctx: &mut RunContext,
    target: &str,
    p: Partition,
    df: &mut DataFrame,
) -> anyhow::Result<()> {
    let bytes = io::to_parquet(df)?;
    ctx.stage(&part_key(target, p), &bytes, df.height())?;
    stage_part_inputs(ctx, target, p, df.height())
}

/// [`write_part`] for a part a plan was sunk into (a file in the run's scratch
/// directory), so it never has to fit in memory.
pub fn write_part_file(
    ctx: &mut RunContext,
    target: &str,
    p: Partition,
    file: &std::path::Path,
) -> anyhow::Result<()> {
    let rows = io::parquet_rows(file)?;
    ctx.stage_file(&part_key(target, p), file, rows)?;
    stage_part_inputs(ctx, target, p, rows)
}

fn stage_part_inputs(
    ctx: &mut RunContext,
    target: &str,
    p: Partition,
    rows: usize,
) -> anyhow::Result<()> {
    let inputs = PartInputs::of(ctx);
    ctx.stage(
        &inputs_key(target, p),
        &serde_json::to_vec_pretty(&inputs)?,
        0,
    )?;
    // Re-running a part replaces it whole.
    ctx.note(format!("part {p} of {target}: {rows} rows"));
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error(
        "part(s) {missing:?} of {count} missing under {prefix}: run them ({made_by} k/{count}) first"
    )]
    Missing {
        count: u32,
        missing: Vec<u32>,
        prefix: String,
        /// The option that writes such a part (`--partition`, `--reduce`).
        made_by: &'static str,
    },
    #[error(
        "{uri} changed after the parts under {prefix} were computed from it: run every part again"
    )]
    Stale { prefix: String, uri: String },
    #[error(
        "part {index} of {count} under {prefix} was computed from other inputs than part 1 ({uri} differs): the data or the model changed between the parts; run every part again"
    )]
    Inconsistent {
        index: u32,
        count: u32,
        prefix: String,
        uri: String,
    },
}

/// Reads the `count` parts of `target` (each verified and recorded as an input),
/// concatenated and stably sorted by `key`, and marks the parts for removal when the
/// merge commits.
fn read_parts(
    ctx: &mut RunContext,
    target: &str,
    count: u32,
    key: &str,
    made_by: &'static str,
) -> anyhow::Result<DataFrame> {
    let parts = part_files(ctx, target, count, Consume::OnCommit, made_by)?;
    Ok(io::scan_files(parts.files)?
        .sort(
            [key],
            SortMultipleOptions::default().with_maintain_order(true),
        )
        .collect()?)
}

/// Whether a run that reads parts removes them when it commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consume {
    /// The merge: the parts become the partition.
    OnCommit,
    /// A reduce: other reduce parts read them too; the merge removes them.
    Keep,
}

/// Parts read by a run: their local files, in part order, and what they were
/// computed from.
pub struct Parts {
    pub files: Vec<std::path::PathBuf>,
    prefix: String,
    inputs: PartInputs,
}

impl Parts {
    /// Refuses an input of this run (recorded from `from` on) that the parts were not
    /// computed from: a raw table re-ingested between the parts and this run.
    pub fn check_current(&self, ctx: &RunContext, from: usize) -> Result<(), MergeError> {
        let read: std::collections::HashSet<&str> = self
            .inputs
            .inputs
            .iter()
            .map(|(_, sha)| sha.as_str())
            .collect();
        match ctx.inputs()[from..]
            .iter()
            .find(|r| !read.contains(r.sha256.as_str()))
        {
            Some(r) => Err(MergeError::Stale {
                prefix: self.prefix.clone(),
                uri: r.uri.clone(),
            }),
            None => Ok(()),
        }
    }
}

/// The `count` parts of `target` (written with the option `made_by`), each verified
/// against its checksum and recorded as an input. Refused while a part is missing
/// or when the parts were computed from different inputs. Parts in a local store are
/// scanned in place; remote ones are copied to the run's scratch directory one at a
/// time, so no more than one part's bytes are ever in memory.
pub fn part_files(
    ctx: &mut RunContext,
    target: &str,
    count: u32,
    consume: Consume,
    made_by: &'static str,
) -> anyhow::Result<Parts> {
    let prefix = ctx.store.uri(&parts_prefix(target, count));
    let mut missing = Vec::new();
    let mut first: Option<PartInputs> = None;
    let mut keys = Vec::with_capacity(count as usize);
    let listed: std::collections::HashSet<String> = ctx
        .store
        .list(&parts_prefix(target, count))?
        .into_iter()
        .collect();
    for index in 1..=count {
        let p = Partition::new(index, count)?;
        let (part, inputs) = (part_key(target, p), inputs_key(target, p));
        let recorded = match listed.contains(&part) {
            true => ctx.store.get(&inputs)?,
            false => None,
        };
        let Some(recorded) = recorded else {
            missing.push(index);
            continue;
        };
        let recorded: PartInputs = serde_json::from_slice(&recorded.bytes)
            .with_context(|| format!("reading {}", ctx.store.uri(&inputs)))?;
        match &first {
            None => first = Some(recorded),
            Some(first) => {
                if let Some(uri) = differing_input(first, &recorded) {
                    return Err(MergeError::Inconsistent {
                        index,
                        count,
                        prefix,
                        uri,
                    }
                    .into());
                }
            }
        }
        keys.push((part, inputs));
    }
    if !missing.is_empty() {
        return Err(MergeError::Missing {
            count,
            missing,
            prefix,
            made_by,
        }
        .into());
    }
    let inputs = first.expect("count ≥ 1 and none missing");
    let scratch = ctx.scratch_dir()?;
    let mut paths = Vec::with_capacity(keys.len());
    for (part, inputs) in keys {
        let (path, record) = io::local_copy(ctx.store, &part, &scratch)?;
        ctx.input(record);
        if consume == Consume::OnCommit {
            ctx.delete_on_commit(&part);
            ctx.delete_on_commit(&inputs);
        }
        paths.push(path);
    }
    Ok(Parts {
        files: paths,
        prefix,
        inputs,
    })
}

/// An input of part `b` whose bytes part `a` did not read. Compared by checksum
/// only: workers may keep the model files at different paths.
pub(crate) fn differing_input(a: &PartInputs, b: &PartInputs) -> Option<String> {
    let seen: std::collections::HashSet<&str> =
        a.inputs.iter().map(|(_, sha)| sha.as_str()).collect();
    let theirs: std::collections::HashSet<&str> =
        b.inputs.iter().map(|(_, sha)| sha.as_str()).collect();
    if let Some((uri, _)) = b
        .inputs
        .iter()
        .find(|(_, sha)| !seen.contains(sha.as_str()))
    {
        return Some(uri.clone());
    }
    a.inputs
        .iter()
        .find(|(_, sha)| !theirs.contains(sha.as_str()))
        .map(|(uri, _)| uri.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_parse_and_refuse() {
        let p: Partition = "3/7".parse().unwrap();
        assert_eq!((p.index(), p.count()), (3, 7));
        assert_eq!(p.to_string(), "3/7");
        assert_eq!(
            "0/7".parse::<Partition>(),
            Err(PartitionError::OutOfRange { index: 0, count: 7 })
        );
        assert_eq!(
            "8/7".parse::<Partition>(),
            Err(PartitionError::OutOfRange { index: 8, count: 7 })
        );
        assert_eq!("3".parse::<Partition>(), Err(PartitionError::Syntax));
        assert_eq!("a/b".parse::<Partition>(), Err(PartitionError::Syntax));
        assert_eq!("1/5000".parse::<Partition>(), Err(PartitionError::TooMany));
    }

    /// The split is xxh3-64 of the key's UTF-8 bytes, modulo n: values pinned from
    /// the reference implementation (Python's xxhash 3), so a change of hash — which
    /// would move rows between the parts of a half-finished fan-out — fails here.
    #[test]
    fn the_split_is_stable() {
        let keys = ["P000001", "P000002", "P000003", "商品-7", ""];
        let hashes: Vec<u64> = keys
            .iter()
            .map(|k| xxhash_rust::xxh3::xxh3_64(k.as_bytes()))
            .collect();
        assert_eq!(
            hashes,
            [
                0x7cba_64b7_2d70_b195,
                0x3452_6083_cdc7_428f,
                0xf91c_089e_9986_b553,
                0xea41_ad62_75a1_4814,
                0x2d06_8005_38d3_94c2
            ]
        );
        let buckets: Vec<u32> = keys.iter().map(|k| bucket(k, 7)).collect();
        assert_eq!(buckets, [3, 0, 2, 1, 4]);
    }

    /// Every key lands in exactly one part, for any n, and the parts are near even.
    #[test]
    fn every_key_in_exactly_one_part() {
        let keys: Vec<String> = (0..10_000).map(|i| format!("P{i:06}")).collect();
        for n in [1u32, 2, 3, 7] {
            let parts: Vec<Partition> = (1..=n).map(|k| Partition::new(k, n).unwrap()).collect();
            let mut sizes = vec![0usize; n as usize];
            for k in &keys {
                let owners: Vec<&Partition> = parts.iter().filter(|p| p.owns(k)).collect();
                assert_eq!(owners.len(), 1, "{k} in {n} parts");
                sizes[owners[0].index() as usize - 1] += 1;
            }
            let even = keys.len() / n as usize;
            assert!(
                sizes.iter().all(|&s| s.abs_diff(even) < even / 10 + 10),
                "{n}: {sizes:?}"
            );
        }
    }

    /// Chunks split a part's keys again: every key of the part in exactly one chunk,
    /// none of another part's, and keys without a value in the first chunk of part 1.
    #[test]
    fn chunks_cover_their_part_exactly() {
        let keys: Vec<String> = (0..5_000).map(|i| format!("O{i:07}")).collect();
        for part in [None, Some(Partition::new(2, 3).unwrap())] {
            let chunks = Chunks::split(part, 1_000, 300);
            assert_eq!(chunks.count(), 4);
            let mut sizes = [0usize; 4];
            for k in &keys {
                let in_part = part.is_none_or(|p| p.owns(k));
                match chunks.of(Some(k)) {
                    Some(c) => {
                        assert!(in_part, "{k}");
                        sizes[c as usize] += 1;
                    }
                    None => assert!(!in_part, "{k}"),
                }
            }
            assert!(sizes.iter().all(|&s| s > 0), "{sizes:?}");
            assert_eq!(chunks.of(None), part.is_none().then_some(0));
        }
        assert_eq!(
            Chunks::split(None, 0, 300).count(),
            1,
            "an empty input is one chunk"
        );
    }

    #[test]
    fn rows_without_a_key_go_to_part_one() {
        let df = df!("product_id" => [Some("P1"), None, Some("P2")]).unwrap();
        let total: usize = (1..=3)
            .map(|k| {
                Partition::new(k, 3)
                    .unwrap()
                    .filter(&df, "product_id")
                    .unwrap()
                    .height()
            })
            .sum();
        assert_eq!(total, 3);
        let first = Partition::new(1, 3)
            .unwrap()
            .filter(&df, "product_id")
            .unwrap();
        assert_eq!(first.column("product_id").unwrap().null_count(), 1);
    }
}
