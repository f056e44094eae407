//! `sgml features`: the feature tables of `sgml_features::builders` from the raw
//! tables as of the run date, written to `features/<name>/dt=D/`.

use anyhow::{Context, bail};
use polars::prelude::*;
use sgml_features::builders::{self, Inputs};
use sgml_features::{Table, fx, validate};

use crate::io;
use crate::run::{RunContext, Step, StepSpec};

pub struct Features {
    pub base_currency: String,
}

pub const SPEC: StepSpec = StepSpec {
    name: "features",
    reads: &["raw/orders/dt=*", "raw/products/dt=*", "raw/fx_rates/dt=*"],
    writes: &["features/<name>/dt=<run_date>/"],
    about: "build the feature tables (order lines, products, sellers, customers, markets)",
};

impl Step for Features {
    fn spec(&self) -> StepSpec {
        SPEC
    }

    fn parameters(&self) -> serde_json::Value {
        serde_json::json!({ "base_currency": self.base_currency, "tables": builders::TABLES })
    }

    fn run(&self, ctx: &mut RunContext) -> anyhow::Result<()> {
        let run_date = ctx.run_date.context("features needs --run-date")?;
        let mut lineage = Vec::new();
        let mut read = |table: Table| {
            io::read_table(
                ctx.store,
                "raw",
                table.name(),
                table.key(),
                Some(run_date),
                &mut lineage,
            )
        };
        let Some(orders) = read(Table::Orders)? else {
            bail!("no orders ingested on or before {run_date}: run `sgml ingest` first");
        };
        let products = match read(Table::Products)? {
            Some(p) => p,
            None => validate::empty(Table::Products).lazy(),
        };
        let fx_rates = read(Table::FxRates)?.map(|lf| lf.collect()).transpose()?;
        lineage.into_iter().for_each(|r| ctx.input(r));

        ctx.progress("resolving fx rates");
        let needed =
            builders::needed_rates(orders.clone(), products.clone(), run_date).collect()?;
        let rates = fx::resolve(&needed, fx_rates.as_ref(), &self.base_currency)?;
        ctx.note(format!("base currency {}", rates.base));

        // order_lines streams from the raw scans into a file; the aggregates then
        // stream over that file. Neither is ever whole in memory.
        ctx.progress("building order_lines");
        let inputs = Inputs {
            orders,
            products: products.clone(),
            rates: rates.table.lazy(),
            run_date,
        };
        let lines_file = ctx.scratch_dir()?.join("order_lines.parquet");
        io::sink_parquet(builders::order_lines(&inputs)?, &lines_file)?;
        let rows = io::parquet_rows(&lines_file)?;
        let lines = io::scan_local(&lines_file)?;

        ctx.progress("building aggregates");
        let plans = builders::aggregates(lines, products, run_date);
        let names: Vec<&str> = plans.iter().map(|(n, _)| *n).collect();
        let frames = builders::collect_all_with(
            plans.into_iter().map(|(_, lf)| lf).collect(),
            Engine::Streaming,
        )?;

        let part = io::partition("features", "order_lines", run_date);
        ctx.stage_file(&format!("{part}{}", io::PART), &lines_file, rows)?;
        ctx.replace_partition(&part);
        for (name, mut df) in names.into_iter().zip(frames) {
            ctx.progress(format!("writing {name}"));
            let part = io::partition("features", name, run_date);
            let bytes = io::to_parquet(&mut df)?;
            ctx.stage(&format!("{part}{}", io::PART), &bytes, df.height())?;
            ctx.replace_partition(&part);
        }
        Ok(())
    }
}
