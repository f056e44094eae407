//! `sgml features`: the feature tables of `sgml_features::builders` from the raw
//! tables as of the run date, written to `features/<name>/dt=D/`.
//!
//! The work is a map and a reduce, run in one process by default and fanned out over
//! workers with `--partition k/n` (map), `--reduce k/n` and `--merge n`:
//!
//! - **map** `k`: the order lines of the orders in part `k` (by the xxh3 hash of the
//!   order id) priced in the base currency and joined with their products, one
//!   chunk of lines at a time (memory: one chunk and the products, however many
//!   orders there are). Written to `parts/features/priced_lines/dt=D/of=n/part-k`.
//! - **reduce** `k`: reads every map part; computes the group medians the relative
//!   prices need (small tables, identical in every reduce); writes `order_lines` for
//!   map part `k`'s lines and each aggregate table for the keys in bucket `k` (the
//!   xxh3 hash of that table's key: product, seller, customer, market). A table's
//!   row for a key depends only on that key's lines, so each bucket is computed
//!   exactly as a whole run computes it, with a quarter of the lines at n = 4.
//! - **merge**: each table's n parts become its partition (aggregates sorted by key),
//!   committed only when every part is there and all were computed from the same map
//!   parts; the map and reduce parts are then removed.
//!
//! The whole run is the same map and reduce over everything, so both paths share
//! every line of feature code (`builders`).

use std::path::PathBuf;

use anyhow::{Context, bail};
use chrono::NaiveDate;
use polars::prelude::*;
use sgml_features::builders::{self, Aggregate};
use sgml_features::{Table, fx, validate};

use crate::io;
use crate::partition::{self, Chunks, Consume, Partition};
use crate::run::{Fanout, RunContext, Step, StepSpec};

/// How much of the features work one run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Stage {
    /// Map and reduce over everything, written straight to the partitions.
    #[default]
    Whole,
    /// The map over one part of the orders.
    Map(Partition),
    /// The reduce of one bucket of keys, over every map part.
    Reduce(Partition),
    /// The merge of the n reduce parts into the partitions.
    Merge(u32),
}

impl Stage {
    fn parameters(&self) -> serde_json::Value {
        match self {
            Stage::Whole => serde_json::Value::Null,
            Stage::Map(p) => serde_json::json!({ "partition": p.to_string() }),
            Stage::Reduce(p) => serde_json::json!({ "reduce": p.to_string() }),
            Stage::Merge(n) => serde_json::json!({ "merge": n }),
        }
    }
}

pub struct Features {
    pub base_currency: String,
    pub stage: Stage,
}

pub const SPEC: StepSpec = StepSpec {
    name: "features",
    command: &["features"],
    heavy: false,
    fanout: Fanout::MapReduce,
    reads: &["raw/orders/dt=*", "raw/products/dt=*", "raw/fx_rates/dt=*"],
    writes: &["features/<name>/dt=<run_date>/"],
    about: "build the feature tables (order lines, products, sellers, customers, markets)",
    trains: None,
};

/// Where the map parts wait for the reduce: priced lines are not a feature table.
fn priced_target(run_date: NaiveDate) -> String {
    io::partition("features", "priced_lines", run_date)
}

impl Step for Features {
    fn spec(&self) -> StepSpec {
        SPEC
    }

    fn parameters(&self) -> serde_json::Value {
        serde_json::json!({
            "base_currency": self.base_currency,
            "tables": builders::TABLES,
            "split": self.stage.parameters(),
        })
    }

    fn run(&self, ctx: &mut RunContext) -> anyhow::Result<()> {
        let run_date = ctx.run_date.context("features needs --run-date")?;
        match self.stage {
            Stage::Whole => {
                let products = products_table(ctx, run_date)?;
                let priced = self.map(ctx, run_date, products.clone(), None)?;
                let tables = reduce(
                    ctx,
                    std::slice::from_ref(&priced),
                    &priced,
                    products,
                    None,
                    run_date,
                )?;
                for (name, file) in tables {
                    let part = io::partition("features", name, run_date);
                    let rows = io::parquet_rows(&file)?;
                    ctx.stage_file(&format!("{part}{}", io::PART), &file, rows)?;
                    ctx.replace_partition(&part);
                }
            }
            Stage::Map(p) => {
                let products = products_table(ctx, run_date)?;
                let priced = self.map(ctx, run_date, products, Some(p))?;
                partition::write_part_file(ctx, &priced_target(run_date), p, &priced)?;
            }
            Stage::Reduce(p) => {
                let parts = partition::part_files(
                    ctx,
                    &priced_target(run_date),
                    p.count(),
                    Consume::Keep,
                    "--partition",
                )?;
                let own = parts.files[p.index() as usize - 1].clone();
                // The products aggregate joins the raw products table: it must be the
                // one the maps priced the lines with.
                let from = ctx.inputs().len();
                let products = products_table(ctx, run_date)?;
                parts.check_current(ctx, from)?;
                for (name, file) in reduce(ctx, &parts.files, &own, products, Some(p), run_date)? {
                    let target = io::partition("features", name, run_date);
                    partition::write_part_file(ctx, &target, p, &file)?;
                }
            }
            Stage::Merge(n) => merge(ctx, run_date, n)?,
        }
        Ok(())
    }
}

impl Features {
    /// The map: priced order lines of the orders `part` owns (all of them for a whole
    /// run), written chunk by chunk into a scratch file.
    fn map(
        &self,
        ctx: &mut RunContext,
        run_date: NaiveDate,
        products: LazyFrame,
        part: Option<Partition>,
    ) -> anyhow::Result<PathBuf> {
        let raw = super::raw_files(ctx, Table::Orders, run_date)?;
        if raw.files.is_empty() {
            bail!("no orders ingested on or before {run_date}: run `sgml ingest` first");
        }
        let fx_rates = super::read_raw(ctx, Table::FxRates, run_date)?
            .map(|lf| lf.collect())
            .transpose()?;

        // The raw orders are read one file at a time and this part's lines are spread
        // over chunk files by the hash of their order id (partition::Chunks: every
        // version of a line in one chunk, so the dedupe of re-ingested lines is exact
        // within it); each chunk is then priced in memory. Memory stays at one raw
        // file and one chunk whatever the input's size. Every file's rates are
        // collected, not only this part's lines': which currency is the base depends
        // on the currencies of the whole input, and every part must convert alike.
        let n = part.map_or(1, |p| p.count() as usize);
        let chunks = Chunks::split(part, raw.rows / n, io::CHUNK_ROWS);
        let scratch = ctx.scratch_dir()?;
        let chunk_file = |c: u32| scratch.join(format!("orders-{c}.parquet"));
        let mut writers: Vec<io::ParquetChunks> = (0..chunks.count())
            .map(|c| io::ParquetChunks::intermediate(&chunk_file(c)))
            .collect();
        // What the rates need of the products, read once rather than per file.
        let currencies = products
            .clone()
            .select([col("product_id"), col("currency")])
            .collect()?;
        let mut needed = Vec::new();
        for (i, file) in raw.files.iter().enumerate() {
            ctx.progress(format!(
                "splitting raw orders ({}/{})",
                i + 1,
                raw.files.len()
            ));
            let df = io::scan_files(vec![file.clone()])?.collect()?;
            let rates =
                builders::needed_rates(df.clone().lazy(), currencies.clone().lazy(), run_date);
            needed.push(rates.collect()?);
            let df = df
                .lazy()
                .with_column(chunks.index_expr("order_id").alias(CHUNK))
                .filter(col(CHUNK).is_not_null())
                .collect()?;
            // One pass splits the file; a chunk with no line here still gets an
            // empty frame, so every chunk file exists with the schema.
            let empty = df.clear().drop(CHUNK)?;
            let mut split: Vec<Option<DataFrame>> = vec![None; writers.len()];
            for group in df.partition_by([CHUNK], true)? {
                let c = group.column(CHUNK)?.u32()?.get(0).expect("a chunk index");
                split[c as usize] = Some(group.drop(CHUNK)?);
            }
            for (out, mine) in writers.iter_mut().zip(split) {
                out.write(mine.as_ref().unwrap_or(&empty))?;
            }
        }
        for out in writers {
            out.finish()?;
        }
        let needed = concat(
            needed.into_iter().map(|df| df.lazy()).collect::<Vec<_>>(),
            UnionArgs::default(),
        )?
        .unique(None, UniqueKeepStrategy::Any)
        .collect()?;
        let rates = fx::resolve(&needed, fx_rates.as_ref(), &self.base_currency)?;
        ctx.note(format!("base currency {}", rates.base));

        let line_products = builders::line_products(products.clone()).collect()?.lazy();
        let file = scratch.join("priced_lines.parquet");
        let mut out = io::ParquetChunks::intermediate(&file);
        for c in 0..chunks.count() {
            ctx.progress(format!(
                "pricing order lines ({}/{})",
                c + 1,
                chunks.count()
            ));
            let mut orders = io::scan_files(vec![chunk_file(c)])?;
            if raw.dates > 1 {
                // The latest partition's version of a line wins (files were read
                // oldest first), as io::read_table does.
                let key = Table::Orders.key().iter().map(|k| col(*k)).collect();
                orders = orders.unique_stable_generic(Some(key), UniqueKeepStrategy::Last);
            }
            let priced = builders::priced_lines_with(
                orders,
                line_products.clone(),
                rates.table.clone().lazy(),
                run_date,
            )?;
            out.write(&priced.collect()?)?;
            std::fs::remove_file(chunk_file(c))?;
        }
        out.finish()?;
        Ok(file)
    }
}

/// The scratch column holding each raw row's chunk.
const CHUNK: &str = "_chunk";

/// The raw products as of the run date (an empty table when none were ingested).
fn products_table(ctx: &mut RunContext, run_date: NaiveDate) -> anyhow::Result<LazyFrame> {
    Ok(match super::read_raw(ctx, Table::Products, run_date)? {
        Some(p) => p,
        None => validate::empty(Table::Products).lazy(),
    })
}

/// The reduce: from every map part's priced lines (`all`), `order_lines` for the
/// lines of `own` and each aggregate for the keys in `bucket` (all keys when none),
/// each in a scratch file, in the order of `builders::TABLES`.
///
/// Separate passes: the group medians (small), then order_lines a slice at a time,
/// then each aggregate over the columns it needs. The aggregates run in memory (the
/// peak of the step): for their high-cardinality distinct counts polars 0.55's
/// streaming engine peaked higher (3.5 GB vs 2.5 GB at 10M lines).
fn reduce(
    ctx: &mut RunContext,
    all: &[PathBuf],
    own: &std::path::Path,
    products: LazyFrame,
    bucket: Option<Partition>,
    run_date: NaiveDate,
) -> anyhow::Result<Vec<(&'static str, PathBuf)>> {
    let priced = io::scan_files(all.to_vec())?;
    let rows = io::files_rows(all)?;
    let mut medians = Vec::new();
    for (group, _) in builders::RELATIVE_PRICES {
        ctx.progress(format!("median prices by {group}"));
        medians.push(group_medians(&priced, rows, group, io::CHUNK_ROWS)?.lazy());
    }
    let scratch = ctx.scratch_dir()?;
    let mut files = Vec::new();

    ctx.progress("building order_lines");
    let lines_file = scratch.join("order_lines.parquet");
    // A reduce's part is read back by the merge only.
    let out = match bucket {
        Some(_) => io::ParquetChunks::intermediate(&lines_file),
        None => io::ParquetChunks::create(&lines_file),
    };
    io::sink_chunked(
        io::scan_files(vec![own.to_path_buf()])?,
        io::parquet_rows(own)?,
        |chunk| builders::order_lines_from(chunk, medians.clone()),
        out,
    )?;
    files.push(("order_lines", lines_file));

    // Each aggregate in passes over its bucket's keys, split again by the same hash
    // (`Chunks`): a key's lines are all in one pass, so each pass computes its keys
    // exactly, and only one pass's group-by is in memory; the passes' rows, sorted
    // by key, are the table.
    let bucket_rows = rows / bucket.map_or(1, |p| p.count() as usize);
    let passes = Chunks::split(bucket, bucket_rows, AGGREGATE_LINES);
    for table in Aggregate::ALL {
        ctx.progress(format!(
            "building {} ({} pass(es))",
            table.name(),
            passes.count()
        ));
        let df = aggregate(table, &priced, &medians, &products, passes, run_date)?;
        let file = scratch.join(format!("{}.parquet", table.name()));
        let mut out = io::ParquetChunks::create(&file);
        out.write(&df)?;
        out.finish()?;
        files.push((table.name(), file));
    }
    Ok(files)
}

/// The aggregate `table` over the keys `passes` covers, one pass at a time.
fn aggregate(
    table: Aggregate,
    priced: &LazyFrame,
    medians: &[LazyFrame],
    products: &LazyFrame,
    passes: Chunks,
    run_date: NaiveDate,
) -> PolarsResult<DataFrame> {
    let mut frames = Vec::new();
    for pass in 0..passes.count() {
        let mine = |key: &str| passes.index_expr(key).eq(lit(pass));
        let lines = table.lines(priced.clone().filter(mine(table.key())), medians);
        let products = products.clone().filter(mine("product_id"));
        frames.push(table.plan(lines, products, run_date).collect()?);
    }
    match frames.len() {
        1 => Ok(frames.pop().expect("one pass")),
        _ => concat(
            frames.into_iter().map(|f| f.lazy()).collect::<Vec<_>>(),
            UnionArgs::default(),
        )?
        .sort([table.key()], SortMultipleOptions::default())
        .collect(),
    }
}

/// Order lines per pass of an aggregate: the group-by of 2.5M lines peaked near
/// 0.9 GB (5M orders on 4 reduces, 2026-12-01).
const AGGREGATE_LINES: usize = 2_500_000;

/// `builders::group_medians` over `priced` (of `rows` rows), reading `per_slice`
/// rows at a time: the group's values are replaced by integer codes first, so holding
/// every sale price takes 12 bytes a line rather than a copy of the group's text.
fn group_medians(
    priced: &LazyFrame,
    rows: usize,
    group: &str,
    per_slice: usize,
) -> PolarsResult<DataFrame> {
    let sales = |offset: usize| {
        priced
            .clone()
            .slice(offset as i64, per_slice as IdxSize)
            .filter(col("is_sale"))
    };
    let offsets = || (0..rows.max(1)).step_by(per_slice.max(1));
    let mut values = Vec::new();
    for offset in offsets() {
        let slice = sales(offset).select([col(group)]);
        values.push(
            slice
                .unique(None, UniqueKeepStrategy::Any)
                .collect()?
                .lazy(),
        );
    }
    let codes = concat(values, UnionArgs::default())?
        .unique(None, UniqueKeepStrategy::Any)
        .with_row_index("_code", None)
        .collect()?;
    let mut by_name = JoinArgs::new(JoinType::Inner);
    by_name.nulls_equal = true; // null is a group of its own
    let mut coded = Vec::new();
    for offset in offsets() {
        let slice = sales(offset)
            .select([col(group), col("unit_price_base")])
            .join(
                codes.clone().lazy(),
                [col(group)],
                [col(group)],
                by_name.clone(),
            )
            .select([col("_code"), col("unit_price_base")]);
        coded.push(slice.collect()?.lazy());
    }
    concat(coded, UnionArgs::default())?
        .group_by([col("_code")])
        .agg([col("unit_price_base").median().alias("_median")])
        .join(
            codes.lazy(),
            [col("_code")],
            [col("_code")],
            JoinArgs::new(JoinType::Inner),
        )
        .select([col(group), col("_median")])
        .collect()
}

/// The merge: each table's n reduce parts become its partition; the parts, and the
/// map parts they were reduced from, are removed when it commits.
fn merge(ctx: &mut RunContext, run_date: NaiveDate, count: u32) -> anyhow::Result<()> {
    let scratch = ctx.scratch_dir()?;
    // order_lines: the parts one after the other, streamed (no sort: row order is
    // not part of the table's contract, and sorting would hold the table in memory).
    let target = io::partition("features", "order_lines", run_date);
    let parts = partition::part_files(ctx, &target, count, Consume::OnCommit, "--reduce")?;
    let file = scratch.join("order_lines.parquet");
    let rows = io::files_rows(&parts.files)?;
    io::sink_chunked(
        io::scan_files(parts.files)?,
        rows,
        |chunk| chunk,
        io::ParquetChunks::create(&file),
    )?;
    ctx.stage_file(&format!("{target}{}", io::PART), &file, rows)?;
    ctx.replace_partition(&target);
    for table in Aggregate::ALL {
        ctx.progress(format!("merging {}", table.name()));
        let target = io::partition("features", table.name(), run_date);
        // Each key is in one part only, so the sorted concatenation is the table.
        partition::merge_parts(ctx, &target, count, table.key(), "--reduce")?;
    }
    for key in ctx
        .store
        .list(&partition::parts_prefix(&priced_target(run_date), count))?
    {
        ctx.delete_on_commit(&key);
    }
    ctx.note(format!("merged {count} parts of each feature table"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Priced lines of `n` generated order lines: customers with guest (null) keys,
    /// a few sellers, markets and categories, a product without a brand, EUR prices
    /// converted to USD; and the products table they were priced with.
    fn priced(n: usize) -> (LazyFrame, LazyFrame) {
        let run_date = NaiveDate::from_ymd_opt(2024, 3, 10).unwrap();
        let day0 = NaiveDate::from_ymd_opt(2024, 3, 1).unwrap();
        let micros = |d: usize| {
            (day0 + chrono::Duration::days((d % 5) as i64))
                .and_hms_opt(10, 0, 0)
                .unwrap()
                .and_utc()
                .timestamp_micros()
        };
        let i: Vec<usize> = (0..n).collect();
        let orders = DataFrame::new(
            n,
            vec![
                Column::new(
                    "order_id".into(),
                    i.iter().map(|i| format!("O{}", i / 2)).collect::<Vec<_>>(),
                ),
                Column::new(
                    "line_no".into(),
                    i.iter().map(|i| (i % 2 + 1) as i64).collect::<Vec<_>>(),
                ),
                Column::new(
                    "order_ts".into(),
                    i.iter().map(|i| micros(i / 2)).collect::<Vec<_>>(),
                ),
                Column::new(
                    "customer_key".into(),
                    i.iter()
                        .map(|i| (i % 11 != 0).then(|| format!("k{}", (i / 2) % 37)))
                        .collect::<Vec<_>>(),
                ),
                Column::new(
                    "product_id".into(),
                    i.iter().map(|i| format!("P{}", i % 23)).collect::<Vec<_>>(),
                ),
                Column::new(
                    "seller_id".into(),
                    i.iter()
                        .map(|i| format!("S{}", i % 23 % 5))
                        .collect::<Vec<_>>(),
                ),
                Column::new(
                    "quantity".into(),
                    i.iter().map(|i| (i % 3) as i64 + 1).collect::<Vec<_>>(),
                ),
                Column::new(
                    "unit_price".into(),
                    i.iter().map(|i| 5.0 + (i % 17) as f64).collect::<Vec<_>>(),
                ),
                Column::new("currency".into(), vec!["EUR"; n]),
                Column::new(
                    "buyer_country".into(),
                    i.iter()
                        .map(|i| ["DE", "US", "FR"][(i / 2) % 3])
                        .collect::<Vec<_>>(),
                ),
                Column::new("ship_country".into(), vec!["DE"; n]),
                Column::new("channel".into(), vec!["web"; n]),
                Column::new(
                    "status".into(),
                    i.iter()
                        .map(|i| if i % 13 == 0 { "returned" } else { "completed" })
                        .collect::<Vec<_>>(),
                ),
            ],
        )
        .unwrap()
        .lazy()
        .with_column(col("order_ts").cast(DataType::Datetime(TimeUnit::Microseconds, None)));
        let p: Vec<usize> = (0..23).collect();
        let products = DataFrame::new(
            23,
            vec![
                Column::new(
                    "product_id".into(),
                    p.iter().map(|p| format!("P{p}")).collect::<Vec<_>>(),
                ),
                Column::new(
                    "seller_id".into(),
                    p.iter().map(|p| format!("S{}", p % 5)).collect::<Vec<_>>(),
                ),
                Column::new("seller_country".into(), vec!["DE"; 23]),
                Column::new(
                    "category".into(),
                    p.iter()
                        .map(|p| ["Mugs", "Lamps", "Toys"][p % 3])
                        .collect::<Vec<_>>(),
                ),
                Column::new(
                    "brand".into(),
                    p.iter()
                        .map(|p| (p % 7 != 0).then(|| format!("B{}", p % 4)))
                        .collect::<Vec<_>>(),
                ),
                Column::new("condition".into(), vec!["new"; 23]),
                Column::new(
                    "title".into(),
                    p.iter().map(|p| format!("thing {p}")).collect::<Vec<_>>(),
                ),
                Column::new(
                    "list_price".into(),
                    p.iter().map(|p| 10.0 + *p as f64).collect::<Vec<_>>(),
                ),
                Column::new("currency".into(), vec!["EUR"; 23]),
                Column::new("language".into(), vec!["en"; 23]),
            ],
        )
        .unwrap()
        .lazy();
        let d: Vec<i32> = (0..10)
            .map(|d| sgml_features::values::days_since_epoch(day0 + chrono::Duration::days(d)))
            .collect();
        let rates = df! {
            "currency" => vec!["EUR"; 10],
            "date" => d,
            "rate" => vec![1.25; 10],
        }
        .unwrap()
        .lazy()
        .with_column(col("date").cast(DataType::Date));
        let lines = builders::priced_lines_with(
            orders,
            builders::line_products(products.clone()),
            rates,
            run_date,
        )
        .unwrap();
        (lines, products)
    }

    /// An aggregate computed in several passes over its keys equals the one-pass
    /// table, value for value: each key's lines are all in one pass, in their order.
    #[test]
    fn aggregates_in_passes_are_the_aggregates() {
        let (priced, products) = priced(400);
        let priced = priced.collect().unwrap().lazy();
        let medians: Vec<LazyFrame> = builders::RELATIVE_PRICES
            .iter()
            .map(|(group, _)| {
                builders::group_medians(priced.clone(), group)
                    .collect()
                    .unwrap()
                    .lazy()
            })
            .collect();
        let run_date = NaiveDate::from_ymd_opt(2024, 3, 10).unwrap();
        for table in Aggregate::ALL {
            let one = aggregate(
                table,
                &priced,
                &medians,
                &products,
                Chunks::split(None, 400, 1000),
                run_date,
            )
            .unwrap();
            assert!(one.height() > 1, "{}: {} rows", table.name(), one.height());
            let passes = Chunks::split(None, 400, 60);
            assert_eq!(passes.count(), 7);
            let many = aggregate(table, &priced, &medians, &products, passes, run_date).unwrap();
            assert_eq!(many, one, "{} in 7 passes", table.name());
            // Within a reduce's bucket too.
            let bucket = Partition::new(2, 3).unwrap();
            let whole_bucket = Chunks::split(Some(bucket), 133, 1000);
            let in_passes = Chunks::split(Some(bucket), 133, 40);
            assert_eq!(
                aggregate(table, &priced, &medians, &products, in_passes, run_date).unwrap(),
                aggregate(table, &priced, &medians, &products, whole_bucket, run_date).unwrap(),
                "{} in bucket 2/3",
                table.name()
            );
        }
    }

    /// Medians read a few rows at a time equal builders::group_medians over the whole
    /// table, null group included.
    #[test]
    fn chunked_medians_are_the_medians() {
        let priced = df! {
            "category" => [Some("a"), Some("b"), None, Some("a"), Some("a"), None, Some("b"), Some("c")],
            "unit_price_base" => [1.0, 10.0, 5.0, 3.0, 2.0, 7.0, 30.0, 4.0],
            "is_sale" => [true, true, true, true, false, true, true, false],
        }
        .unwrap()
        .lazy();
        let sorted = |df: DataFrame| {
            df.sort(
                ["category"],
                SortMultipleOptions::default().with_nulls_last(true),
            )
            .unwrap()
        };
        let whole = sorted(
            builders::group_medians(priced.clone(), "category")
                .collect()
                .unwrap(),
        );
        for per_slice in [1, 3, 8, 100] {
            let chunked = sorted(group_medians(&priced, 8, "category", per_slice).unwrap());
            assert_eq!(chunked, whole, "{per_slice} rows at a time");
        }
        // a: 1 and 3 (2 is not a sale); b: 10 and 30; null: 5 and 7; c: no sale.
        let medians: Vec<Option<f64>> = whole
            .column("_median")
            .unwrap()
            .f64()
            .unwrap()
            .iter()
            .collect();
        assert_eq!(medians, [Some(2.0), Some(20.0), Some(6.0)]);
    }
}
