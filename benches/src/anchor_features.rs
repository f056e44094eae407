//! The reference feature set of `../shared/NOTES.md` (Peer numbers) on the raw UCI
//! CSV, computed with this project's polars stack. `benches/anchors/features.py`
//! runs it beside pandas and polars-Python on the same file and machine.
//!
//! One lazy plan: the CSV is scanned once (cached) and the four aggregate tables are
//! collected together by the streaming engine, so the scan, the timestamp parsing and
//! the revenue column are shared.
//!
//! Usage: anchor-features FILE.csv  → prints JSON {seconds, rows per table}

use std::time::Instant;

use polars::prelude::*;

fn plans(path: &str) -> PolarsResult<Vec<(&'static str, LazyFrame)>> {
    let schema = Schema::from_iter([
        Field::new("InvoiceNo".into(), DataType::String),
        Field::new("StockCode".into(), DataType::String),
        Field::new("CustomerID".into(), DataType::Float64),
        Field::new("InvoiceDate".into(), DataType::String),
    ]);
    // Timestamps are parsed with their known format through polars' cache of unique
    // values: an export repeats each invoice's timestamp on every line, so this
    // parses ~25k strings instead of 541k (the CSV reader's date inference parses all).
    let parse_ts = StrptimeOptions {
        format: Some("%Y-%m-%d %H:%M:%S".into()),
        strict: true,
        exact: true,
        cache: true,
    };
    let lines = LazyCsvReader::new(PlRefPath::new(path))
        .with_dtype_overwrite(Some(Arc::new(schema)))
        .finish()?
        .with_columns([
            (col("Quantity").cast(DataType::Float64) * col("UnitPrice")).alias("revenue"),
            col("InvoiceDate").str().to_datetime(
                Some(TimeUnit::Microseconds),
                None,
                parse_ts,
                lit("raise"),
            ),
        ])
        .cache();

    let products = lines.clone().group_by([col("StockCode")]).agg([
        len().alias("lines"),
        col("Quantity").sum().alias("quantity"),
        col("UnitPrice").median().alias("median_price"),
        col("UnitPrice").mean().alias("mean_price"),
        col("UnitPrice").std(1).alias("std_price"),
        col("Country").n_unique().alias("countries"),
        col("CustomerID").drop_nulls().n_unique().alias("customers"),
    ]);
    let file_last = lines
        .clone()
        .select([col("InvoiceDate").max().alias("file_last")]);
    let customers = lines
        .clone()
        .filter(col("CustomerID").is_not_null())
        .group_by([col("CustomerID")])
        .agg([
            col("InvoiceDate").max().alias("last"),
            col("InvoiceNo").n_unique().alias("frequency"),
            col("revenue").sum().alias("monetary"),
        ])
        .cross_join(file_last, None)
        .select([
            col("CustomerID"),
            (col("file_last") - col("last"))
                .dt()
                .total_days(false)
                .alias("recency"),
            col("frequency"),
            col("monetary"),
        ]);
    let baskets = lines
        .clone()
        .group_by([col("Country"), col("InvoiceNo")])
        .agg([col("Quantity").sum().alias("basket")])
        .group_by([col("Country")])
        .agg([col("basket").mean().alias("mean_basket")]);
    let countries = lines
        .clone()
        .group_by([col("Country")])
        .agg([
            col("revenue").sum().alias("revenue"),
            col("InvoiceNo").n_unique().alias("invoices"),
        ])
        .join(
            baskets,
            [col("Country")],
            [col("Country")],
            JoinArgs::new(JoinType::Left),
        );
    let country_month = lines
        .group_by([
            col("Country"),
            col("InvoiceDate").dt().month().alias("month"),
        ])
        .agg([col("revenue").sum().alias("revenue")]);
    Ok(vec![
        ("products", products),
        ("customers", customers),
        ("countries", countries),
        ("country_month", country_month),
    ])
}

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: anchor-features FILE.csv"))?;
    let start = Instant::now();
    let plans = plans(&path)?;
    let names: Vec<&str> = plans.iter().map(|(n, _)| *n).collect();
    let frames = LazyFrame::collect_all_with_engine(
        plans.into_iter().map(|(_, lf)| lf.logical_plan).collect(),
        // The streaming engine runs the shared scan and the four aggregations as one
        // pipelined plan: faster than in-memory on 2 cores, and bounded memory.
        Engine::Streaming,
        OptFlags::default(),
    )?;
    let seconds = start.elapsed().as_secs_f64();
    let rows: serde_json::Map<String, serde_json::Value> = names
        .iter()
        .zip(&frames)
        .map(|(n, df)| (n.to_string(), df.height().into()))
        .collect();
    println!(
        "{}",
        serde_json::json!({ "seconds": seconds, "rows": rows })
    );
    Ok(())
}
