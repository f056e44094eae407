//! The pipeline steps. Each declares what it reads and writes ([`StepSpec`]) and
//! implements one `run`; [`crate::run::execute`] does the rest. [`GRAPH`] lists them
//! with how `sgml run all` builds each; [`crate::plan`] orders it.

pub mod duplicate_pairs;
pub mod embed;
pub mod features;
pub mod images;
pub mod ingest;
pub mod predict_categorize;
pub mod predict_duplicates;
pub mod predict_images;
pub mod predict_pricing;
pub mod predict_segments;
pub mod predict_similar;
pub mod retention;
pub mod segments;
pub mod train_categorize;
pub mod train_duplicates;
pub mod train_images;
pub mod train_pricing;
pub mod train_segments;
pub mod train_similar;

use std::collections::HashSet;

use polars::prelude::*;

use crate::io;
use crate::plan::{Node, Settings};
use crate::run::{RunContext, Step, StepSpec};
use segments::Subject;

/// The step graph: every step `sgml run all` runs, with what it reads and writes.
/// The order to run them in is derived from those declarations (crate::plan); this
/// list's order only breaks ties. Adding a step here is all `run all` needs to run it.
pub const GRAPH: &[Node] = &[
    Node {
        spec: ingest::SPEC,
        build: |s| Ok(Box::new(s.ingest.clone())),
    },
    Node {
        spec: retention::SPEC,
        build: |_| Ok(Box::new(retention::Retention)),
    },
    Node {
        spec: features::SPEC,
        build: |s| {
            Ok(Box::new(features::Features {
                base_currency: s.base_currency.clone(),
                stage: Default::default(),
            }))
        },
    },
    Node {
        spec: train_pricing::SPEC,
        build: |_| Ok(Box::new(train_pricing::TrainPricing::default())),
    },
    Node {
        spec: predict_pricing::SPEC,
        // No version: the champion as of when it runs (just promoted, or kept by the
        // gate), else the newest.
        build: |_| {
            Ok(Box::new(predict_pricing::PredictPricing {
                version: None,
                split: Default::default(),
            }))
        },
    },
    Node {
        spec: embed::SPEC,
        build: build_embed,
    },
    Node {
        spec: images::SPEC,
        build: |s| {
            Ok(Box::new(images::Images {
                images_dir: s.images_dir.clone(),
                s3: s.s3.clone(),
                limits: s.photo_limits,
                policy: Default::default(),
                image_model_dir: s.image_model_dir.clone(),
                threads: 0,
                split: Default::default(),
            }))
        },
    },
    Node {
        spec: train_images::SPEC,
        build: |_| Ok(Box::new(train_images::TrainImages::default())),
    },
    Node {
        spec: predict_images::SPEC,
        build: |_| {
            Ok(Box::new(predict_images::PredictImages {
                version: None,
                split: Default::default(),
            }))
        },
    },
    Node {
        spec: train_categorize::SPEC,
        build: |_| Ok(Box::new(train_categorize::TrainCategorize::default())),
    },
    Node {
        spec: predict_categorize::SPEC,
        build: |_| {
            Ok(Box::new(predict_categorize::PredictCategorize {
                version: None,
                split: Default::default(),
            }))
        },
    },
    Node {
        spec: train_similar::SPEC,
        build: |_| Ok(Box::new(train_similar::TrainSimilar::default())),
    },
    Node {
        spec: predict_similar::SPEC,
        build: |_| Ok(Box::new(predict_similar::PredictSimilar::default())),
    },
    Node {
        spec: train_duplicates::SPEC,
        build: |_| Ok(Box::new(train_duplicates::TrainDuplicates { seed: 42 })),
    },
    Node {
        spec: predict_duplicates::SPEC,
        build: |_| {
            Ok(Box::new(predict_duplicates::PredictDuplicates {
                version: None,
            }))
        },
    },
    Node {
        spec: train_segments::PRODUCTS_SPEC,
        build: |_| {
            Ok(Box::new(train_segments::TrainSegments::new(
                Subject::Products,
            )))
        },
    },
    Node {
        spec: predict_segments::PRODUCTS_SPEC,
        build: |_| {
            Ok(Box::new(predict_segments::PredictSegments {
                subject: Subject::Products,
                version: None,
            }))
        },
    },
    Node {
        spec: train_segments::SELLERS_SPEC,
        build: |_| {
            Ok(Box::new(train_segments::TrainSegments::new(
                Subject::Sellers,
            )))
        },
    },
    Node {
        spec: predict_segments::SELLERS_SPEC,
        build: |_| {
            Ok(Box::new(predict_segments::PredictSegments {
                subject: Subject::Sellers,
                version: None,
            }))
        },
    },
];

/// A run date's one-part feature table written by a step of its own
/// (`features/<table>/dt=D/part-0.parquet`: embeddings, images), verified against its
/// checksum and recorded as the run's input; None when that step has not run.
pub fn read_feature_part(
    ctx: &mut RunContext,
    table: &str,
    run_date: chrono::NaiveDate,
) -> anyhow::Result<Option<DataFrame>> {
    let key = format!("{}{}", io::partition("features", table, run_date), io::PART);
    let Some((bytes, sha256)) = io::get_verified(ctx.store, &key)? else {
        return Ok(None);
    };
    ctx.input(crate::sources::InputRecord {
        uri: ctx.store.uri(&key),
        sha256,
        rows: 0,
    });
    Ok(Some(io::from_parquet(bytes)?))
}

/// Ranked answers (the title categorizer's, the image classifier's) as columns: each
/// row's top `k` categories and probabilities as `category, probability, category_2,
/// probability_2, …`. With fewer categories than `k`, the missing ranks repeat the
/// last one with probability 0.
pub(crate) struct TopColumns {
    cats: Vec<Vec<String>>,
    probs: Vec<Vec<f32>>,
}

impl TopColumns {
    pub fn new(k: usize, rows: usize) -> TopColumns {
        TopColumns {
            cats: (0..k).map(|_| Vec::with_capacity(rows)).collect(),
            probs: (0..k).map(|_| Vec::with_capacity(rows)).collect(),
        }
    }

    /// One row's answer, best first (at least one category).
    pub fn push(&mut self, top: &[(String, f32)]) {
        let last = &top[top.len() - 1].0;
        for (k, (cats, probs)) in self.cats.iter_mut().zip(&mut self.probs).enumerate() {
            let (name, p) = top.get(k).cloned().unwrap_or_else(|| (last.clone(), 0.0));
            cats.push(name);
            probs.push(p);
        }
    }

    pub fn into_columns(self) -> Vec<Column> {
        let mut columns = Vec::with_capacity(2 * self.cats.len());
        for (k, (cats, probs)) in self.cats.into_iter().zip(self.probs).enumerate() {
            let suffix = if k == 0 {
                String::new()
            } else {
                format!("_{}", k + 1)
            };
            columns.push(Column::new(format!("category{suffix}").into(), cats));
            columns.push(Column::new(format!("probability{suffix}").into(), probs));
        }
        columns
    }
}

fn build_embed(s: &Settings) -> anyhow::Result<Box<dyn Step>> {
    Ok(Box::new(embed::Embed {
        model_dir: s.model_dir.clone(),
        batch: sgml_models::embed::DEFAULT_BATCH,
        threads: 0,
        split: Default::default(),
    }))
}

/// The spec of every step in the graph, by name.
pub fn spec(name: &str) -> Option<&'static StepSpec> {
    GRAPH.iter().map(|n| &n.spec).find(|s| s.name == name)
}

/// Every customer key with a stored deletion request (all partitions), recorded as
/// the run's input.
pub(crate) fn deleted_customers(ctx: &mut RunContext) -> anyhow::Result<HashSet<String>> {
    let mut lineage = Vec::new();
    let requests = io::read_table(
        ctx.store,
        "raw",
        "deletion_requests",
        &["customer_key"],
        None,
        &mut lineage,
    )?;
    lineage.into_iter().for_each(|r| ctx.input(r));
    match requests {
        Some(lf) => Ok(
            strings(&lf.select([col("customer_key")]).collect()?, "customer_key")?
                .into_iter()
                .collect(),
        ),
        None => Ok(HashSet::new()),
    }
}

/// The non-null values of a text column.
pub(crate) fn strings(df: &DataFrame, column: &str) -> PolarsResult<Vec<String>> {
    Ok(df
        .column(column)?
        .str()?
        .iter()
        .flatten()
        .map(str::to_string)
        .collect())
}

/// Every raw partition of a table up to the run date, recorded as the run's input.
pub(crate) fn read_raw(
    ctx: &mut RunContext,
    table: sgml_features::Table,
    up_to: chrono::NaiveDate,
) -> anyhow::Result<Option<LazyFrame>> {
    let mut lineage = Vec::new();
    let lf = io::read_table(
        ctx.store,
        "raw",
        table.name(),
        table.key(),
        Some(up_to),
        &mut lineage,
    )?;
    lineage.into_iter().for_each(|r| ctx.input(r));
    Ok(lf)
}

/// Every raw partition's files of a table up to the run date, oldest partition
/// first, as local files (a remote store's copied to the run's scratch directory,
/// verified), recorded as the run's input.
pub(crate) struct RawFiles {
    pub files: Vec<std::path::PathBuf>,
    /// Rows in all of them (from their metadata).
    pub rows: usize,
    /// How many partitions (dates) they come from: with more than one, a key may
    /// repeat, and the latest partition's row wins.
    pub dates: usize,
}

pub(crate) fn raw_files(
    ctx: &mut RunContext,
    table: sgml_features::Table,
    up_to: chrono::NaiveDate,
) -> anyhow::Result<RawFiles> {
    let parts: Vec<(chrono::NaiveDate, String)> = io::partitions(ctx.store, "raw", table.name())?
        .into_iter()
        .filter(|(d, _)| *d <= up_to)
        .collect();
    let dates = parts.iter().map(|(d, _)| *d).collect::<HashSet<_>>().len();
    let scratch = ctx.scratch_dir()?;
    let (mut files, mut rows) = (Vec::with_capacity(parts.len()), 0);
    for (_, key) in &parts {
        let (path, record) = io::local_copy(ctx.store, key, &scratch)?;
        rows += record.rows;
        ctx.input(record);
        files.push(path);
    }
    Ok(RawFiles { files, rows, dates })
}

/// A text column as owned optional strings.
pub(crate) fn texts(df: &DataFrame, column: &str) -> PolarsResult<Vec<Option<String>>> {
    Ok(df
        .column(column)?
        .str()?
        .iter()
        .map(|v| v.map(str::to_string))
        .collect())
}

#[cfg(test)]
mod top_columns_tests {
    use super::*;

    #[test]
    fn fewer_answers_than_ranks_repeat_the_last_with_probability_zero() {
        let mut top = TopColumns::new(3, 2);
        top.push(&[("a".into(), 0.7), ("b".into(), 0.2), ("c".into(), 0.1)]);
        top.push(&[("x".into(), 0.9), ("y".into(), 0.1)]);
        let columns = top.into_columns();
        let names: Vec<&str> = columns.iter().map(|c| c.name().as_str()).collect();
        assert_eq!(
            names,
            [
                "category",
                "probability",
                "category_2",
                "probability_2",
                "category_3",
                "probability_3"
            ]
        );
        let third: Vec<Option<&str>> = columns[4].str().unwrap().iter().collect();
        assert_eq!(third, [Some("c"), Some("y")]);
        let p3: Vec<Option<f32>> = columns[5].f32().unwrap().iter().collect();
        assert_eq!(p3, [Some(0.1), Some(0.0)]);
    }
}
