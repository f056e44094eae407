//! `sgml retention`: crawled data older than 60 days moves to `archive/crawled/`
//! (moved, never deleted), and customers with a deletion request are unlinked in
//! raw and feature tables.

use std::collections::HashMap;

use chrono::{Duration, NaiveDate};
use polars::prelude::*;
use sgml_features::anonymize;
use sgml_features::values::days_since_epoch;

use crate::io;
use crate::run::{Fanout, RunContext, Step, StepSpec};

/// Crawled rows stay this many days; older ones are archived.
pub const CRAWLED_DAYS: i64 = 60;

/// Tables holding `customer_key`, by area.
const CUSTOMER_TABLES: &[(&str, &str)] = &[
    ("raw", "orders"),
    ("features", "order_lines"),
    ("features", "customers"),
];

pub struct Retention;

pub const SPEC: StepSpec = StepSpec {
    name: "retention",
    command: &["retention"],
    heavy: false,
    fanout: Fanout::One,
    reads: &[
        "raw/crawled_offers/dt=*",
        "raw/deletion_requests/dt=*",
        "raw/orders/dt=*",
        "features/*/dt=*",
    ],
    writes: &[
        "archive/crawled/dt=*",
        "raw/crawled_offers/dt=*",
        "raw/orders/dt=*",
        "features/*/dt=*",
    ],
    about: "archive crawled data older than 60 days; unlink customers who asked for deletion",
    trains: None,
};

/// The last crawl date kept: rows crawled before it are archived.
pub fn cutoff(run_date: NaiveDate) -> NaiveDate {
    run_date - Duration::days(CRAWLED_DAYS)
}

impl Step for Retention {
    fn spec(&self) -> StepSpec {
        SPEC
    }

    fn parameters(&self) -> serde_json::Value {
        serde_json::json!({ "crawled_days": CRAWLED_DAYS })
    }

    fn run(&self, ctx: &mut RunContext) -> anyhow::Result<()> {
        let run_date = ctx
            .run_date
            .ok_or_else(|| anyhow::anyhow!("retention needs --run-date"))?;
        archive_crawled(ctx, run_date)?;
        unlink_deleted(ctx)?;
        Ok(())
    }
}

fn archive_crawled(ctx: &mut RunContext, run_date: NaiveDate) -> anyhow::Result<()> {
    let keep_from = days_since_epoch(cutoff(run_date));
    let old = col("crawled_ts")
        .dt()
        .date()
        .cast(DataType::Int32)
        .lt(lit(keep_from));
    let (mut seen, mut moved) = (0usize, 0usize);
    for (dt, key) in io::partitions(ctx.store, "raw", "crawled_offers")? {
        let (lf, record) = io::scan(ctx.store, &key)?;
        let df = lf.collect()?;
        ctx.input(record);
        seen += df.height();
        let archive = df.clone().lazy().filter(old.clone()).collect()?;
        if archive.height() == 0 {
            continue;
        }
        let keep = df.lazy().filter(old.clone().not()).collect()?;
        moved += archive.height();
        ctx.progress(format!(
            "archiving {} crawled rows of {dt}",
            archive.height()
        ));

        // Merge with what an earlier run archived for this partition; a run that died
        // between its archive write and its raw rewrite archived these rows already.
        let archive_key = format!("{}{}", io::partition("archive", "crawled", dt), io::PART);
        let mut merged = match io::get_verified(ctx.store, &archive_key)? {
            Some((existing, _)) => concat(
                [io::from_parquet(existing)?.lazy(), archive.lazy()],
                UnionArgs::default(),
            )?
            .unique_stable_generic(Some(vec![col("offer_id")]), UniqueKeepStrategy::First)
            .collect()?,
            None => archive,
        };
        let bytes = io::to_parquet(&mut merged)?;
        ctx.stage(&archive_key, &bytes, merged.height())?;
        if keep.height() == 0 {
            ctx.delete_on_commit(&key);
        } else {
            let mut keep = keep;
            let bytes = io::to_parquet(&mut keep)?;
            ctx.stage(&key, &bytes, keep.height())?;
        }
    }
    ctx.note(format!(
        "crawled_offers: {moved} of {seen} row(s) crawled before {} moved to archive/crawled/",
        cutoff(run_date)
    ));
    Ok(())
}

/// Replaces each deleted customer's key with one random key, the same in every
/// table so their orders stay consistent as anonymous data; the link between old
/// and new key lives only in this process's memory.
fn unlink_deleted(ctx: &mut RunContext) -> anyhow::Result<()> {
    let deleted = super::deleted_customers(ctx)?;
    if deleted.is_empty() {
        ctx.note("no deletion requests");
        return Ok(());
    }
    let mut replacement: HashMap<String, String> = HashMap::new();
    let mut rows_unlinked = 0usize;
    for (area, table) in CUSTOMER_TABLES {
        for (_, key) in io::partitions(ctx.store, area, table)? {
            let df = io::scan(ctx.store, &key)?.0.collect()?;
            let keys = df.column("customer_key")?.str()?;
            let hits = keys
                .iter()
                .filter(|k| k.is_some_and(|k| deleted.contains(k)))
                .count();
            if hits == 0 {
                continue;
            }
            rows_unlinked += hits;
            let new_keys: StringChunked = keys
                .iter()
                .map(|k| {
                    k.map(|k| match deleted.contains(k) {
                        true => replacement
                            .entry(k.to_string())
                            .or_insert_with(anonymize::random_key)
                            .clone(),
                        false => k.to_string(),
                    })
                })
                .collect();
            let mut df = df;
            df.with_column(new_keys.with_name("customer_key".into()).into_column())?;
            let bytes = io::to_parquet(&mut df)?;
            ctx.stage(&key, &bytes, df.height())?;
        }
    }
    ctx.note(format!(
        "deletion requests: {} customer(s); {} still linked in stored tables, now unlinked in {rows_unlinked} row(s) (ingest unlinks the rows it reads after a request)",
        deleted.len(),
        replacement.len()
    ));
    Ok(())
}
