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

/// A left join of the line table with a small table (products, rates, medians): the
/// hash table is built on the small right side, so the lines stream through. Left
/// to itself the streaming engine may build on the lines and hold them all.
fn small_right_join() -> JoinArgs {
    let mut args = JoinArgs::new(JoinType::Left);
    args.build_side = Some(JoinBuildSide::ForceRight);
    args
}

/// The groups whose median sale price each line is compared with: (group column,
/// feature name).
pub const RELATIVE_PRICES: [(&str, &str); 3] = [
    ("category", "price_rel_category"),
    ("brand", "price_rel_brand"),
    ("buyer_country", "price_rel_market"),
];

/// The median sale price per value of `group` over [`priced_lines`]: a small table,
/// computed in its own pass so that the line table itself can stream.
pub fn group_medians(priced: LazyFrame, group: &str) -> LazyFrame {
    priced
        .filter(col("is_sale"))
        .group_by([col(group)])
        .agg([col("unit_price_base").median().alias("_median")])
}

/// Adds `name` = price / the group's median (a join rather than a window, so the
/// plan streams; null is a group of its own, as in a window).
fn with_relative_price(lines: LazyFrame, medians: LazyFrame, group: &str, name: &str) -> LazyFrame {
    let mut args = small_right_join();
    args.nulls_equal = true;
    lines
        .join(medians, [col(group)], [col(group)], args)
        .with_column((col("unit_price_base") / col("_median")).alias(name))
        .drop(cols(["_median"]))
}

/// The line table in one plan (inputs that fit in memory).
pub fn order_lines(inputs: &Inputs) -> PolarsResult<LazyFrame> {
    let priced = priced_lines(inputs)?;
    let medians = RELATIVE_PRICES.map(|(group, _)| group_medians(priced.clone(), group));
    Ok(order_lines_from(priced, medians.to_vec()))
}

/// Order lines with prices in the base currency and everything that needs only the
/// line and its product: one streaming pass over the inputs.
pub fn priced_lines(inputs: &Inputs) -> PolarsResult<LazyFrame> {
    let products = line_products(inputs.products.clone());
    priced_lines_with(
        inputs.orders.clone(),
        products,
        inputs.rates.clone(),
        inputs.run_date,
    )
}

/// What an order line takes from its product: a small table, one row per product,
/// which a pass over the lines in chunks computes once ([`priced_lines_with`]).
pub fn line_products(products: LazyFrame) -> LazyFrame {
    products.select([
        col("product_id"),
        col("seller_country"),
        col("category"),
        col("brand"),
        col("condition"),
        // Title features per product (not per line): the regex runs once per listing.
        col("title").str().len_chars().alias("title_chars"),
        col("title")
            .str()
            .count_matches(lit(r"\S+"), false)
            .alias("title_tokens"),
        col("list_price"),
        col("currency").alias("list_currency"),
    ])
}

/// [`priced_lines`] of `orders` with the products already turned into
/// [`line_products`] (and `rates` as in [`Inputs`]).
pub fn priced_lines_with(
    orders: LazyFrame,
    products: LazyFrame,
    rates: LazyFrame,
    run_date: NaiveDate,
) -> PolarsResult<LazyFrame> {
    let run_days = days_since_epoch(run_date);
    let list_rates = rates.clone().select([
        col("currency").alias("list_currency"),
        col("date"),
        col("rate").alias("list_rate"),
    ]);
    let region_of = |name: &str| regions().select([col("country"), col("region").alias(name)]);
    let left = small_right_join;

    let lines = as_of(orders, run_date)
        .with_column(col("order_ts").dt().date().alias("order_date"))
        .join(
            rates,
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
        ]);
    Ok(lines)
}

/// The line table from [`priced_lines`] and the [`group_medians`] of each of
/// [`RELATIVE_PRICES`], in that order.
pub fn order_lines_from(priced: LazyFrame, medians: Vec<LazyFrame>) -> LazyFrame {
    assert_eq!(
        medians.len(),
        RELATIVE_PRICES.len(),
        "one median table per relative price"
    );
    RELATIVE_PRICES
        .into_iter()
        .zip(medians)
        .fold(priced, |lf, ((group, name), m)| {
            with_relative_price(lf, m, group, name)
        })
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
        ])
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
    // A market's distinct orders are its distinct (market, order) pairs, its baskets:
    // one group-by gives both, where a distinct count of order ids would hash every
    // line's id a second time.
    let baskets = lines
        .clone()
        .group_by([col("buyer_country"), col("order_id")])
        .agg([col("quantity").sum().alias("basket_units")])
        .group_by([col("buyer_country")])
        .agg([
            len().alias("orders"),
            col("basket_units").mean().alias("mean_basket_units"),
        ]);
    lines
        .group_by([col("buyer_country")])
        .agg([
            revenue().sum().alias("revenue_base"),
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
        .select([
            col("buyer_country"),
            col("revenue_base"),
            col("orders"),
            col("lines"),
            col("cross_border_share"),
            col("mean_basket_units"),
        ])
}

/// The tables aggregated from order lines (all of [`TABLES`] but `order_lines`).
/// A table's row for a key depends only on the lines with that key, so a table can
/// be built for any subset of its keys at a time: the features step's reduce builds
/// one bucket of keys per worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    Products,
    Sellers,
    Customers,
    Markets,
}

impl Aggregate {
    pub const ALL: [Aggregate; 4] = [
        Aggregate::Products,
        Aggregate::Sellers,
        Aggregate::Customers,
        Aggregate::Markets,
    ];

    /// The table's name (as in [`TABLES`]).
    pub fn name(self) -> &'static str {
        match self {
            Aggregate::Products => "products",
            Aggregate::Sellers => "sellers",
            Aggregate::Customers => "customers",
            Aggregate::Markets => "markets",
        }
    }

    /// The order-line column the table groups by (and is sorted by).
    pub fn key(self) -> &'static str {
        match self {
            Aggregate::Products => "product_id",
            Aggregate::Sellers => "seller_id",
            Aggregate::Customers => "customer_key",
            Aggregate::Markets => "buyer_country",
        }
    }

    /// What the table reads from [`priced_lines`] and the [`group_medians`] of
    /// [`RELATIVE_PRICES`] (in that order): the priced lines themselves, with the
    /// price relative to the category for sellers (their price level). Cheaper than
    /// the whole `order_lines` plan, whose three joins an in-memory aggregate would
    /// run over every line.
    pub fn lines(self, priced: LazyFrame, medians: &[LazyFrame]) -> LazyFrame {
        match self {
            Aggregate::Sellers => {
                let (group, name) = RELATIVE_PRICES[0];
                with_relative_price(priced, medians[0].clone(), group, name)
            }
            _ => priced,
        }
    }

    /// The table over `lines` (and the `products` table, for products), sorted by its
    /// key so the same inputs always give the same bytes.
    pub fn plan(
        self,
        lines: LazyFrame,
        products_table: LazyFrame,
        run_date: NaiveDate,
    ) -> LazyFrame {
        let table = match self {
            Aggregate::Products => products(lines, products_table),
            Aggregate::Sellers => sellers(lines),
            Aggregate::Customers => customers(lines, run_date),
            Aggregate::Markets => markets(lines),
        };
        table.sort([self.key()], SortMultipleOptions::default())
    }
}

/// Every [`Aggregate`] over the same lines, with its name.
pub fn aggregates(
    lines: LazyFrame,
    products_table: LazyFrame,
    run_date: NaiveDate,
) -> Vec<(&'static str, LazyFrame)> {
    Aggregate::ALL
        .iter()
        .map(|a| {
            let plan = a.plan(lines.clone(), products_table.clone(), run_date);
            (a.name(), plan)
        })
        .collect()
}

/// Every feature table, named as in [`TABLES`], as lazy plans sharing `order_lines`
/// (for inputs that fit in memory; the features step streams large ones).
pub fn build(inputs: &Inputs) -> PolarsResult<Vec<(&'static str, LazyFrame)>> {
    // Cached so that the aggregates reuse one computation of the line table.
    let lines = order_lines(inputs)?.cache();
    let sorted = lines
        .clone()
        .sort(["order_id", "line_no"], SortMultipleOptions::default());
    let mut tables = vec![("order_lines", sorted)];
    tables.extend(aggregates(lines, inputs.products.clone(), inputs.run_date));
    Ok(tables)
}

/// Collects several plans in one go, so shared subplans run once.
pub fn collect_all(plans: Vec<LazyFrame>) -> PolarsResult<Vec<DataFrame>> {
    collect_all_with(plans, Engine::Auto)
}

pub fn collect_all_with(plans: Vec<LazyFrame>, engine: Engine) -> PolarsResult<Vec<DataFrame>> {
    LazyFrame::collect_all_with_engine(
        plans.into_iter().map(|lf| lf.logical_plan).collect(),
        engine,
        OptFlags::default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> Inputs {
        let ts = |s: &str| {
            chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
                .unwrap()
                .and_utc()
                .timestamp_micros()
        };
        let orders = df! {
            "order_id" => ["A", "A", "B", "C", "D"],
            "line_no" => [1i64, 2, 1, 1, 1],
            "order_ts" => [ts("2024-03-01 10:00:00"), ts("2024-03-01 10:00:00"), ts("2024-03-02 12:00:00"), ts("2024-03-09 08:00:00"), ts("2024-04-01 00:00:00")],
            "customer_key" => [Some("k1"), Some("k1"), Some("k2"), None, Some("k1")],
            "product_id" => ["P1", "P2", "P1", "P2", "P1"],
            "seller_id" => ["S1", "S1", "S1", "S1", "S1"],
            "quantity" => [1i64, 2, 1, -1, 1],
            "unit_price" => [10.0, 30.0, 20.0, 30.0, 99.0],
            "currency" => ["EUR", "EUR", "USD", "EUR", "USD"],
            "buyer_country" => ["DE", "DE", "US", "DE", "US"],
            "ship_country" => ["DE", "FR", "US", "DE", "US"],
            "channel" => ["web", "web", "app", "web", "web"],
            "status" => ["completed", "completed", "completed", "returned", "completed"],
        }
        .unwrap()
        .lazy()
        .with_column(col("order_ts").cast(DataType::Datetime(TimeUnit::Microseconds, None)));
        let products = df! {
            "product_id" => ["P1", "P2"],
            "seller_id" => ["S1", "S1"],
            "seller_country" => ["DE", "DE"],
            "category" => ["Mugs", "Lamps"],
            "brand" => ["Acme", "Acme"],
            "condition" => ["new", "new"],
            "title" => ["Blue mug", "Big desk lamp"],
            "list_price" => [25.0, 40.0],
            "currency" => ["USD", "EUR"],
            "language" => ["en", "en"],
        }
        .unwrap()
        .lazy();
        let day = |d: &str| days_since_epoch(NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap());
        let rates = df! {
            "currency" => ["EUR", "USD", "EUR", "USD", "USD", "EUR"],
            "date" => [day("2024-03-01"), day("2024-03-01"), day("2024-03-09"), day("2024-03-02"), day("2024-03-09"), day("2024-03-02")],
            "rate" => [2.0, 1.0, 2.0, 1.0, 1.0, 2.0],
        }
        .unwrap()
        .lazy()
        .with_column(col("date").cast(DataType::Date));
        Inputs {
            orders,
            products,
            rates,
            run_date: NaiveDate::from_ymd_opt(2024, 3, 10).unwrap(),
        }
    }

    fn f64s(df: &DataFrame, c: &str) -> Vec<Option<f64>> {
        df.column(c).unwrap().f64().unwrap().iter().collect()
    }

    #[test]
    fn order_lines_price_and_border_features() {
        let tables = build(&inputs()).unwrap();
        let frames = collect_all(tables.into_iter().map(|(_, lf)| lf).collect()).unwrap();
        let lines = &frames[0];
        // Order D is after the run date: never seen.
        assert_eq!(lines.height(), 4);
        // EUR at rate 2 → base; sorted by order_id, line_no: A1, A2, B1, C1.
        assert_eq!(
            f64s(lines, "unit_price_base"),
            [Some(20.0), Some(60.0), Some(20.0), Some(60.0)]
        );
        // Mugs sold at 20 and 20 (median 20); lamps: only A2 is a sale (C is a return).
        assert_eq!(
            f64s(lines, "price_rel_category"),
            [Some(1.0), Some(1.0), Some(1.0), Some(1.0)]
        );
        // list price of P1 is 25 USD: discount 1 - 20/25.
        assert!((f64s(lines, "discount_vs_list")[0].unwrap() - 0.2).abs() < 1e-12);
        let cross: Vec<Option<bool>> = lines
            .column("cross_border")
            .unwrap()
            .bool()
            .unwrap()
            .iter()
            .collect();
        assert_eq!(cross, [Some(false), Some(true), Some(true), Some(false)]);
        let same_region: Vec<Option<bool>> = lines
            .column("same_region")
            .unwrap()
            .bool()
            .unwrap()
            .iter()
            .collect();
        assert_eq!(
            same_region,
            [Some(true), Some(true), Some(false), Some(true)]
        );

        // RFM as of 2024-03-10: k1 last ordered 03-01 (9 days), one order, 20 + 2×60.
        let customers = &frames[3];
        assert_eq!(customers.height(), 2);
        let recency: Vec<Option<i32>> = customers
            .column("recency_days")
            .unwrap()
            .i32()
            .unwrap()
            .iter()
            .collect();
        assert_eq!(recency, [Some(9), Some(8)]);
        assert_eq!(f64s(customers, "monetary_base"), [Some(140.0), Some(20.0)]);

        // Seller: one return among four lines.
        let sellers = &frames[2];
        assert_eq!(f64s(sellers, "return_rate"), [Some(0.25)]);
    }
}
