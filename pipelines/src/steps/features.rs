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
    command: &["features"],
    heavy: false,
    splits: false,
    reads: &["raw/orders/dt=*", "raw/products/dt=*", "raw/fx_rates/dt=*"],
    writes: &["features/<name>/dt=<run_date>/"],
    about: "build the feature tables (order lines, products, sellers, customers, markets)",
    trains: None,
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
        let Some(orders) = super::read_raw(ctx, Table::Orders, run_date)? else {
            bail!("no orders ingested on or before {run_date}: run `sgml ingest` first");
        };
        let products = match super::read_raw(ctx, Table::Products, run_date)? {
            Some(p) => p,
            None => validate::empty(Table::Products).lazy(),
        };
        let fx_rates = super::read_raw(ctx, Table::FxRates, run_date)?
            .map(|lf| lf.collect())
            .transpose()?;

        ctx.progress("resolving fx rates");
        let needed = io::collect_streaming(builders::needed_rates(
            orders.clone(),
            products.clone(),
            run_date,
        ))?;
        let rates = fx::resolve(&needed, fx_rates.as_ref(), &self.base_currency)?;
        ctx.note(format!("base currency {}", rates.base));

        // Separate passes, so no plan feeds one scan into two consumers (the engine
        // would buffer the whole scan): the group medians (small), then order_lines
        // streamed into a file, then each aggregate over the columns of that file it
        // needs. The aggregates run in memory: for their high-cardinality distinct
        // counts polars 0.55's streaming engine peaked higher (3.5 GB vs 2.5 GB at
        // 10M lines).
        let inputs = Inputs {
            orders,
            products: products.clone(),
            rates: rates.table.lazy(),
            run_date,
        };
        let priced = builders::priced_lines(&inputs)?;
        let mut medians = Vec::new();
        for (group, _) in builders::RELATIVE_PRICES {
            ctx.progress(format!("median prices by {group}"));
            let m = io::collect_streaming(builders::group_medians(priced.clone(), group))?;
            medians.push(m.lazy());
        }
        ctx.progress("building order_lines");
        let lines_file = ctx.scratch_dir()?.join("order_lines.parquet");
        io::sink_parquet(builders::order_lines_from(priced, medians), &lines_file)?;
        let rows = io::parquet_rows(&lines_file)?;

        let mut names = Vec::new();
        let mut frames = Vec::new();
        for (name, plan) in builders::aggregates(io::scan_local(&lines_file)?, products, run_date) {
            ctx.progress(format!("building {name}"));
            names.push(name);
            frames.push(plan.collect()?);
        }

        let part = io::partition("features", "order_lines", run_date);
        ctx.stage_file(&format!("{part}{}", io::PART), &lines_file, rows)?;
        ctx.replace_partition(&part);
        for (name, mut df) in names.into_iter().zip(frames) {
            ctx.progress(format!("writing {name}"));
            let part = io::partition("features", name, run_date);
            ctx.write_partition(&part, &mut df)?;
        }
        Ok(())
    }
}
