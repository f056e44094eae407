//! The pipeline steps. Each declares what it reads and writes ([`StepSpec`]) and
//! implements one `run`; [`crate::run::execute`] does the rest.

pub mod embed;
pub mod features;
pub mod ingest;
pub mod predict_categorize;
pub mod predict_pricing;
pub mod retention;
pub mod train_categorize;
pub mod train_pricing;

use std::collections::HashSet;

use polars::prelude::*;

use crate::io;
use crate::run::{RunContext, StepSpec};

/// The steps of `sgml run all`, in order: the step graph as data.
pub const GRAPH: &[StepSpec] = &[
    ingest::SPEC,
    retention::SPEC,
    features::SPEC,
    train_pricing::SPEC,
    predict_pricing::SPEC,
    embed::SPEC,
    train_categorize::SPEC,
    predict_categorize::SPEC,
];

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

/// A text column as owned optional strings.
pub(crate) fn texts(df: &DataFrame, column: &str) -> PolarsResult<Vec<Option<String>>> {
    Ok(df
        .column(column)?
        .str()?
        .iter()
        .map(|v| v.map(str::to_string))
        .collect())
}
