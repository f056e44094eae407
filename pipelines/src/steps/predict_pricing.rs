//! `sgml predict pricing`: a suggested price, with its interval, for every active
//! product in each of its markets, from a verified bundle version, written to
//! `predictions/pricing/<version>/dt=D/`.
//!
//! Active: ordered in the 90 days before the run date, or listed (created) in them.
//! Markets: the buyer countries it sold to in that window, plus its seller's home
//! market. Prices are in the base currency and in the market's currency (the currency
//! most of that market's orders in the window used, converted at the latest rate);
//! a market with no orders in the window gets base-currency prices only (local null).
//! A suggestion is the price of one unit to a buyer with a customer account.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context;
use chrono::{Datelike, Duration, NaiveDate};
use polars::prelude::*;
use sgml_features::Table;
use sgml_features::values::days_since_epoch;
use sgml_models::pricing::{PriceInput, PriceModel};

use crate::bundles;
use crate::io;
use crate::partition::{self, Split};
use crate::run::{Fanout, RunContext, Step, StepSpec};
use crate::steps::train_pricing::MODEL;

pub const ACTIVE_DAYS: i64 = 90;

pub struct PredictPricing {
    pub version: Option<String>,
    /// All products, one part of them, or the merge of the parts.
    pub split: Split,
}

pub const SPEC: StepSpec = StepSpec {
    name: "predict-pricing",
    command: &["predict", "pricing"],
    heavy: false,
    fanout: Fanout::Parts,
    reads: &[
        "models/pricing/<version>/",
        "features/order_lines/dt=<run_date>/",
        "raw/products/dt=*",
        "raw/fx_rates/dt=*",
    ],
    writes: &["predictions/pricing/<version>/dt=<run_date>/"],
    about: "suggested prices with intervals for every active product and market",
    trains: None,
};

impl Step for PredictPricing {
    fn spec(&self) -> StepSpec {
        SPEC
    }

    fn parameters(&self) -> serde_json::Value {
        serde_json::json!({
            "version": self.version, "active_days": ACTIVE_DAYS, "split": self.split.parameters(),
        })
    }

    fn run(&self, ctx: &mut RunContext) -> anyhow::Result<()> {
        let run_date = ctx.run_date.context("predict pricing needs --run-date")?;
        let model = PriceModel::from_bundle(&bundles::scoring_bundle(
            ctx,
            MODEL,
            self.version.as_deref(),
        )?)?;
        let target = format!("predictions/{MODEL}/{}/dt={run_date}/", model.version);
        if let Split::Merge(count) = self.split {
            return partition::merge(ctx, &target, count, "product_id");
        }
        ctx.progress("finding active products and markets");
        let (rows, keys, currencies) = active_rows(ctx, run_date)?;
        // A part prices only its products; what they are priced from (the markets'
        // currencies, each product's markets) is worked out from all of them.
        let (rows, keys): (Vec<PriceInput>, Keys) = rows
            .into_iter()
            .zip(keys)
            .filter(|(_, (product, _))| match self.split {
                Split::Part(p) => p.owns(product),
                _ => true,
            })
            .unzip();
        ctx.progress(format!("pricing {} product × market rows", rows.len()));
        let priced = model.price(&rows)?;

        let local = |(_, market): &(String, String), base: f64| -> (Option<String>, Option<f64>) {
            match currencies.get(market) {
                Some((cur, rate)) => (Some(cur.clone()), Some(base / rate)),
                None => (None, None),
            }
        };
        let mut product = Vec::new();
        let mut market = Vec::new();
        let (mut base, mut low, mut high) = (Vec::new(), Vec::new(), Vec::new());
        let (mut currency, mut price_local) = (Vec::new(), Vec::new());
        for (key, p) in keys.iter().zip(&priced) {
            let b = p.log_price.exp();
            let (cur, loc) = local(key, b);
            product.push(key.0.clone());
            market.push(key.1.clone());
            base.push(b);
            low.push(p.low.exp());
            high.push(p.high.exp());
            currency.push(cur);
            price_local.push(loc);
        }
        let n = product.len();
        let mut df = DataFrame::new(
            n,
            vec![
                Column::new("product_id".into(), product),
                Column::new("market".into(), market),
                Column::new("price_base".into(), base),
                Column::new("price_base_low".into(), low),
                Column::new("price_base_high".into(), high),
                Column::new("currency".into(), currency),
                Column::new("price_local".into(), price_local),
                Column::new("model_version".into(), vec![model.version.clone(); n]),
            ],
        )?;
        partition::write(ctx, self.split, &target, &mut df)?;
        ctx.note(format!(
            "priced {n} product × market rows with version {}",
            model.version
        ));
        Ok(())
    }
}

type Keys = Vec<(String, String)>;
/// Market → (its main currency, base units per unit at the market's latest order).
type Currencies = BTreeMap<String, (String, f64)>;

/// Active (product, market) pairs with their attributes, and each market's currency.
fn active_rows(
    ctx: &mut RunContext,
    run_date: NaiveDate,
) -> anyhow::Result<(Vec<PriceInput>, Keys, Currencies)> {
    let from = days_since_epoch(run_date - Duration::days(ACTIVE_DAYS));
    let key = format!(
        "{}{}",
        io::partition("features", "order_lines", run_date),
        io::PART
    );
    let (lines, record) = io::scan(ctx.store, &key)?;
    ctx.input(record);
    let recent = lines.filter(col("order_date").cast(DataType::Int32).gt_eq(lit(from)));
    let sold = recent
        .clone()
        .select([col("product_id"), col("buyer_country")])
        .unique(None, UniqueKeepStrategy::Any)
        .collect()?;
    // The rate each line was converted at is in order_lines (1 for the base currency),
    // so the latest one per currency is the conversion back, with no fx table needed.
    let market_currency = recent
        .sort(["order_ts"], SortMultipleOptions::default())
        .group_by([col("buyer_country"), col("currency")])
        .agg([
            len().alias("n"),
            col("fx_rate").drop_nulls().last().alias("rate"),
        ])
        .sort(
            ["n"],
            SortMultipleOptions::default().with_order_descending(true),
        )
        .collect()?;
    let mut currencies = Currencies::new();
    let (m_col, c_col, r_col) = (
        market_currency.column("buyer_country")?.str()?,
        market_currency.column("currency")?.str()?,
        market_currency.column("rate")?.f64()?,
    );
    for i in 0..market_currency.height() {
        if let (Some(m), Some(c), Some(r)) = (m_col.get(i), c_col.get(i), r_col.get(i)) {
            currencies
                .entry(m.to_string())
                .or_insert_with(|| (c.to_string(), r));
        }
    }

    // By product id (then market, below): the order a merge of parts restores.
    let products = super::read_raw(ctx, Table::Products, run_date)?
        .context("no products ingested")?
        .sort(["product_id"], SortMultipleOptions::default())
        .collect()?;
    let text = |c: &str| super::texts(&products, c);
    let ids = text("product_id")?;
    let created: Vec<Option<i32>> = products
        .column("created_ts")?
        .cast(&DataType::Date)?
        .cast(&DataType::Int32)?
        .i32()?
        .iter()
        .collect();
    let (category, brand, condition, seller, title) = (
        text("category")?,
        text("brand")?,
        text("condition")?,
        text("seller_country")?,
        text("title")?,
    );

    let mut markets: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let (sold_p, sold_m) = (
        sold.column("product_id")?.str()?,
        sold.column("buyer_country")?.str()?,
    );
    for (p, m) in sold_p.iter().zip(sold_m.iter()) {
        if let (Some(p), Some(m)) = (p, m) {
            markets
                .entry(p.to_string())
                .or_default()
                .insert(m.to_string());
        }
    }
    let month = run_date.month();
    let (mut rows, mut keys) = (Vec::new(), Vec::new());
    for i in 0..products.height() {
        let Some(id) = &ids[i] else { continue };
        let listed = created[i].is_some_and(|d| d >= from);
        let mut set = markets.remove(id).unwrap_or_default();
        if set.is_empty() && !listed {
            continue;
        }
        if let Some(home) = &seller[i] {
            set.insert(home.clone());
        }
        for m in set {
            rows.push(PriceInput {
                product_id: Some(id.clone()),
                // Suggestions are the price of one unit to a buyer with an account.
                quantity: None,
                guest: Some(false),
                category: category[i].clone(),
                brand: brand[i].clone(),
                condition: condition[i].clone(),
                market: m.clone(),
                seller_country: seller[i].clone(),
                title: title[i].clone(),
                month,
            });
            keys.push((id.clone(), m));
        }
    }
    Ok((rows, keys, currencies))
}
