//! Feature tables, built as polars lazy queries over the contract tables.
//!
//! Pure transforms: frames in, frames out; the pipeline step reads and writes them.
//! `order_lines` is the per-line table (the pricing training table); the others
//! aggregate it, so every table shares one plan and one scan of the inputs when
//! collected together.

use chrono::NaiveDate;
use polars::prelude::*;

use crate::geo;
use crate::values::days_since_epoch;

/// The tables this module builds, in the order [`build`] returns them.
pub const TABLES: [&str; 5] = ["order_lines", "products", "sellers", "customers", "markets"];

pub struct Inputs {
    pub orders: LazyFrame,
    pub products: LazyFrame,
    /// `currency, date, rate`, from [`crate::fx::resolve`].
    pub rates: LazyFrame,
    pub run_date: NaiveDate,
}

/// `(currency, date)` pairs the features convert: order prices at the order date and
/// list prices at the dates their products sold. Feed to [`crate::fx::resolve`].
pub fn needed_rates(orders: LazyFrame, products: LazyFrame, run_date: NaiveDate) -> LazyFrame {
    let lines = as_of(orders, run_date).with_column(col("order_ts").dt().date().alias("date"));
    let order_pairs = lines.clone().select([col("currency"), col("date")]);
    let list_pairs = lines
        .select([col("product_id"), col("date")])
        .join(
            products.select([col("product_id"), col("currency")]),
            [col("product_id")],
            [col("product_id")],
            JoinArgs::new(JoinType::Inner),
        )
        .select([col("currency"), col("date")]);
    concat([order_pairs, list_pairs], UnionArgs::default())
        .expect("same schema")
        .unique(None, UniqueKeepStrategy::Any)
}

/// Orders up to and including the run date: features never see the future.
fn as_of(orders: LazyFrame, run_date: NaiveDate) -> LazyFrame {
    let end = days_since_epoch(run_date) + 1;
    orders.filter(
        col("order_ts")
            .dt()
            .date()
            .cast(DataType::Int32)
            .lt(lit(end)),
    )
}

fn is_sale() -> Expr {
    col("quantity")
        .gt(lit(0))
        .and(col("unit_price").gt(lit(0.0)))
        .and(is_reversal().not())
}

fn is_reversal() -> Expr {
    col("status")
        .eq(lit("cancelled"))
        .or(col("status").eq(lit("returned")))
}

fn regions() -> LazyFrame {
    let (countries, regions): (Vec<&str>, Vec<&str>) = geo::REGIONS
        .iter()
        .flat_map(|(r, members)| members.iter().map(move |c| (*c, *r)))
        .unzip();
    df! { "country" => countries, "region" => regions }
        .expect("equal lengths")
        .lazy()
}

/// The median of the sale prices within each group, as a window.
fn relative_to_median(group: &str) -> PolarsResult<Expr> {
    Ok(col("unit_price_base")
        / col("unit_price_base")
            .filter(is_sale())
            .median()
            .over([col(group)])?)
}

pub fn order_lines(inputs: &Inputs) -> PolarsResult<LazyFrame> {
    let run_days = days_since_epoch(inputs.run_date);
    let products = inputs.products.clone().select([
        col("product_id"),
        col("seller_country"),
        col("category"),
        col("brand"),
        col("condition"),
        col("title"),
        col("list_price"),
        col("currency").alias("list_currency"),
    ]);
    let list_rates = inputs.rates.clone().select([
        col("currency").alias("list_currency"),
        col("date"),
        col("rate").alias("list_rate"),
    ]);
    let region_of = |name: &str| regions().select([col("country"), col("region").alias(name)]);
    let left = || JoinArgs::new(JoinType::Left);

    let lines = as_of(inputs.orders.clone(), inputs.run_date)
        .with_column(col("order_ts").dt().date().alias("order_date"))
        .join(
            inputs.rates.clone(),
            [col("currency"), col("order_date")],
            [col("currency"), col("date")],
            left(),
        )
        .join(products, [col("product_id")], [col("product_id")], left())
        .join(
            list_rates,
            [col("list_currency"), col("order_date")],
            [col("list_currency"), col("date")],
            left(),
        )
        .join(
            region_of("ship_region"),
            [col("ship_country")],
            [col("country")],
            left(),
        )
        .join(
            region_of("seller_region"),
            [col("seller_country")],
            [col("country")],
            left(),
        )
        .with_columns([
            (col("unit_price") * col("rate")).alias("unit_price_base"),
            (col("list_price") * col("list_rate")).alias("list_price_base"),
            col("title").str().len_chars().alias("title_chars"),
            col("title")
                .str()
                .count_matches(lit(r"\S+"), false)
                .alias("title_tokens"),
            col("order_ts").dt().month().alias("month"),
            col("order_ts").dt().weekday().alias("weekday"),
            col("order_ts").dt().hour().alias("hour"),
            col("order_ts")
                .dt()
                .weekday()
                .gt_eq(lit(6))
                .alias("is_weekend"),
            (lit(run_days) - col("order_date").cast(DataType::Int32)).alias("days_before_run"),
            col("ship_country")
                .neq(col("seller_country"))
                .alias("cross_border"),
            col("ship_region")
                .fill_null(lit("other"))
                .eq(col("seller_region").fill_null(lit("other")))
                .and(col("seller_country").is_not_null())
                .alias("same_region"),
            concat_str([col("seller_country"), col("ship_country")], ">", false)
                .alias("country_pair"),
            is_sale().alias("is_sale"),
        ])
        .with_columns([
            when(col("unit_price_base").gt(lit(0.0)))
                .then(col("unit_price_base").log(lit(std::f64::consts::E)))
                .otherwise(lit(NULL))
                .alias("log_price_base"),
            (lit(1.0) - col("unit_price_base") / col("list_price_base")).alias("discount_vs_list"),
            relative_to_median("category")?.alias("price_rel_category"),
            relative_to_median("brand")?.alias("price_rel_brand"),
            relative_to_median("buyer_country")?.alias("price_rel_market"),
        ])
        .select([
            col("order_id"),
            col("line_no"),
            col("order_ts"),
            col("order_date"),
            col("customer_key"),
            col("product_id"),
            col("seller_id"),
            col("seller_country"),
            col("category"),
            col("brand"),
            col("condition"),
            col("title_chars"),
            col("title_tokens"),
            col("channel"),
            col("status"),
            col("is_sale"),
            col("quantity"),
            col("unit_price"),
            col("currency"),
            col("rate").alias("fx_rate"),
            col("unit_price_base"),
            col("log_price_base"),
            col("list_price_base"),
            col("discount_vs_list"),
            col("price_rel_category"),
            col("price_rel_brand"),
            col("price_rel_market"),
            col("buyer_country"),
            col("ship_country"),
            col("cross_border"),
            col("same_region"),
            col("country_pair"),
            col("month"),
            col("weekday"),
            col("hour"),
            col("is_weekend"),
            col("days_before_run"),
        ]);
    Ok(lines)
}

fn revenue() -> Expr {
    col("quantity").cast(DataType::Float64) * col("unit_price_base")
}

pub fn products(lines: LazyFrame, products: LazyFrame) -> LazyFrame {
    let sales = lines
        .filter(col("is_sale"))
        .group_by([col("product_id")])
        .agg([
            len().alias("lines"),
            col("quantity").sum().alias("units"),
            col("unit_price_base").median().alias("median_price_base"),
            col("unit_price_base").mean().alias("mean_price_base"),
            col("unit_price_base").std(1).alias("std_price_base"),
            col("buyer_country").n_unique().alias("markets"),
            col("customer_key")
                .drop_nulls()
                .n_unique()
                .alias("customers"),
            col("order_date").min().alias("first_sold"),
            col("order_date").max().alias("last_sold"),
        ]);
    products
        .select([
            col("product_id"),
            col("seller_id"),
            col("seller_country"),
            col("category"),
            col("brand"),
            col("condition"),
            col("language"),
            col("title").str().len_chars().alias("title_chars"),
            col("title")
                .str()
                .count_matches(lit(r"\S+"), false)
                .alias("title_tokens"),
            col("list_price"),
            col("currency"),
        ])
        .join(
            sales,
            [col("product_id")],
            [col("product_id")],
            JoinArgs::new(JoinType::Left),
        )
        .with_columns([
            col("lines").fill_null(lit(0u32)),
            col("units").fill_null(lit(0i64)),
        ])
}

pub fn sellers(lines: LazyFrame) -> LazyFrame {
    lines.group_by([col("seller_id")]).agg([
        len().alias("lines"),
        col("order_id").n_unique().alias("orders"),
        col("quantity").filter(col("is_sale")).sum().alias("units"),
        revenue().filter(col("is_sale")).sum().alias("revenue_base"),
        col("product_id").n_unique().alias("products"),
        col("price_rel_category")
            .filter(col("is_sale"))
            .median()
            .alias("price_level"),
        col("status")
            .eq(lit("returned"))
            .cast(DataType::Float64)
            .mean()
            .alias("return_rate"),
        col("status")
            .eq(lit("cancelled"))
            .cast(DataType::Float64)
            .mean()
            .alias("cancel_rate"),
        col("cross_border")
            .cast(DataType::Float64)
            .mean()
            .alias("cross_border_share"),
        col("buyer_country").n_unique().alias("markets"),
    ])
}

/// Recency, frequency, monetary per customer as of the run date. Monetary is net:
/// reversals (negative quantities) subtract.
pub fn customers(lines: LazyFrame, run_date: NaiveDate) -> LazyFrame {
    let run_days = days_since_epoch(run_date);
    lines
        .filter(col("customer_key").is_not_null())
        .group_by([col("customer_key")])
        .agg([
            (lit(run_days) - col("order_date").max().cast(DataType::Int32)).alias("recency_days"),
            col("order_id").n_unique().alias("frequency"),
            revenue().sum().alias("monetary_base"),
            col("order_date").min().alias("first_order"),
            col("buyer_country").n_unique().alias("countries"),
        ])
}

pub fn markets(lines: LazyFrame) -> LazyFrame {
    let baskets = lines
        .clone()
        .group_by([col("buyer_country"), col("order_id")])
        .agg([col("quantity").sum().alias("basket_units")])
        .group_by([col("buyer_country")])
        .agg([col("basket_units").mean().alias("mean_basket_units")]);
    lines
        .group_by([col("buyer_country")])
        .agg([
            revenue().sum().alias("revenue_base"),
            col("order_id").n_unique().alias("orders"),
            len().alias("lines"),
            col("cross_border")
                .cast(DataType::Float64)
                .mean()
                .alias("cross_border_share"),
        ])
        .join(
            baskets,
            [col("buyer_country")],
            [col("buyer_country")],
            JoinArgs::new(JoinType::Left),
        )
}

/// Every feature table, named as in [`TABLES`], as lazy plans sharing `order_lines`.
pub fn build(inputs: &Inputs) -> PolarsResult<Vec<(&'static str, LazyFrame)>> {
    // Cached so that the aggregates reuse one computation of the line table.
    let lines = order_lines(inputs)?.cache();
    // Sorted by key so the same inputs always give the same bytes.
    let by = |lf: LazyFrame, key: &str| lf.sort([key], SortMultipleOptions::default());
    Ok(vec![
        (
            "order_lines",
            lines
                .clone()
                .sort(["order_id", "line_no"], SortMultipleOptions::default()),
        ),
        (
            "products",
            by(
                products(lines.clone(), inputs.products.clone()),
                "product_id",
            ),
        ),
        ("sellers", by(sellers(lines.clone()), "seller_id")),
        (
            "customers",
            by(customers(lines.clone(), inputs.run_date), "customer_key"),
        ),
        ("markets", by(markets(lines), "buyer_country")),
    ])
}

/// Collects several plans in one go, so shared subplans run once.
pub fn collect_all(plans: Vec<LazyFrame>) -> PolarsResult<Vec<DataFrame>> {
    LazyFrame::collect_all_with_engine(
        plans.into_iter().map(|lf| lf.logical_plan).collect(),
        Engine::Auto,
        OptFlags::default(),
    )
}
