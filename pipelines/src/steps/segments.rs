//! What the segments models cluster, shared by `train segments` and `predict
//! segments`: the raw feature rows of products (title embedding + price and sales)
//! or of sellers (the `sellers` feature table), and the profile of each segment the
//! report shows.

use std::collections::{HashMap, HashSet};

use anyhow::Context;
use chrono::NaiveDate;
use polars::prelude::*;
use sgml_models::kmeans::report::Profile;
use sgml_models::kmeans::{Assignment, Block, Scaling};

use crate::io;
use crate::run::RunContext;
use crate::steps::embed;

/// What is segmented. Each is its own model (`product-segments`, `seller-segments`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Subject {
    Products,
    Sellers,
}

impl Subject {
    pub fn model(self) -> &'static str {
        match self {
            Subject::Products => "product-segments",
            Subject::Sellers => "seller-segments",
        }
    }

    pub fn key(self) -> &'static str {
        match self {
            Subject::Products => "product_id",
            Subject::Sellers => "seller_id",
        }
    }

    pub fn noun(self) -> &'static str {
        match self {
            Subject::Products => "products",
            Subject::Sellers => "sellers",
        }
    }
}

/// The seller columns clustered, each log-scaled (counts, money) or not (rates).
const SELLER_COLUMNS: [(&str, bool); 10] = [
    ("lines", true),
    ("orders", true),
    ("units", true),
    ("revenue_base", true),
    ("products", true),
    ("markets", true),
    ("price_level", false),
    ("return_rate", false),
    ("cancel_rate", false),
    ("cross_border_share", false),
];

/// Raw feature rows with what the profiles need.
pub struct Data {
    pub keys: Vec<String>,
    pub features: Vec<String>,
    /// keys × features, row-major; missing values `NaN`.
    pub raw: Vec<f32>,
    /// Why rows were left out, with counts (reported on the run).
    pub skipped: Vec<(usize, &'static str)>,
    /// Per row: its title (products) or nothing.
    pub titles: Vec<Option<String>>,
    /// Per row: its market (a product's seller's, a seller's home).
    pub markets: Vec<Option<String>>,
    /// Per row: a product's listed category.
    pub categories: Vec<Option<String>>,
}

impl Data {
    pub fn rows(&self) -> usize {
        self.keys.len()
    }
}

fn feature_table(
    ctx: &mut RunContext,
    table: &str,
    run_date: NaiveDate,
) -> anyhow::Result<LazyFrame> {
    let key = format!("{}{}", io::partition("features", table, run_date), io::PART);
    let (lf, record) = io::scan(ctx.store, &key).with_context(|| {
        format!("reading features/{table} for {run_date} (run `sgml features --run-date {run_date}` first)")
    })?;
    ctx.input(record);
    Ok(lf)
}

fn floats(df: &DataFrame, column: &str) -> PolarsResult<Vec<Option<f64>>> {
    Ok(df
        .column(column)?
        .cast(&DataType::Float64)?
        .f64()?
        .iter()
        .collect())
}

/// How training scales `subject`'s columns as `read` lays them out: for products the
/// title embedding as one block and price and sales, weighted by `price_weight`
/// against it, as another; for sellers each activity column on its own. Prediction
/// takes the scaling from the bundle instead.
pub fn blocks(subject: Subject, data: &Data, price_weight: f64) -> Vec<Block> {
    match subject {
        Subject::Products => vec![
            Block {
                name: "title embedding".into(),
                columns: data.features.len() - PRODUCT_EXTRA_COLUMNS,
                scaling: Scaling::Joint,
                weight: 1.0,
            },
            Block {
                name: "price and sales".into(),
                columns: PRODUCT_EXTRA_COLUMNS,
                scaling: Scaling::PerColumn,
                weight: price_weight,
            },
        ],
        Subject::Sellers => vec![Block {
            name: "seller activity".into(),
            columns: data.features.len(),
            scaling: Scaling::PerColumn,
            weight: 1.0,
        }],
    }
}

/// The columns after a product's embedding: log price and log1p units.
const PRODUCT_EXTRA_COLUMNS: usize = 2;

/// The run date's rows of `subject`.
pub fn read(ctx: &mut RunContext, subject: Subject, run_date: NaiveDate) -> anyhow::Result<Data> {
    let products = feature_table(ctx, "products", run_date)?
        .select([
            col("product_id"),
            col("seller_id"),
            col("seller_country"),
            col("category"),
            col("median_price_base"),
            col("units"),
        ])
        .collect()?;
    match subject {
        Subject::Products => read_products(ctx, run_date, &products),
        Subject::Sellers => read_sellers(ctx, run_date, &products),
    }
}

fn read_products(
    ctx: &mut RunContext,
    run_date: NaiveDate,
    products: &DataFrame,
) -> anyhow::Result<Data> {
    let embeddings = embed::read(ctx, run_date)?.with_context(|| {
        format!("no title embeddings for {run_date}: run `sgml embed --run-date {run_date}` first")
    })?;
    let titles = super::read_raw(ctx, sgml_features::Table::Products, run_date)?
        .context("no products ingested")?
        .select([col("product_id"), col("title")])
        .collect()?;
    let title_of: HashMap<String, String> = super::texts(&titles, "product_id")?
        .into_iter()
        .zip(super::texts(&titles, "title")?)
        .filter_map(|(id, t)| Some((id?, t?)))
        .collect();
    let ids = super::texts(products, "product_id")?;
    let markets = super::texts(products, "seller_country")?;
    let categories = super::texts(products, "category")?;
    let prices = floats(products, "median_price_base")?;
    let units = floats(products, "units")?;
    let row_of: HashMap<&str, usize> = ids
        .iter()
        .enumerate()
        .filter_map(|(i, id)| Some((id.as_deref()?, i)))
        .collect();
    let dim = embeddings.dim;
    let mut features: Vec<String> = (0..dim).map(|j| format!("embedding_{j}")).collect();
    features.extend(["log_price_base".to_string(), "log1p_units".to_string()]);
    let mut data = Data {
        keys: Vec::with_capacity(embeddings.len()),
        features,
        raw: Vec::with_capacity(embeddings.len() * (dim + PRODUCT_EXTRA_COLUMNS)),
        skipped: Vec::new(),
        titles: Vec::new(),
        markets: Vec::new(),
        categories: Vec::new(),
    };
    let mut embedded = HashSet::new();
    for (e, id) in embeddings.product_id.iter().enumerate() {
        let row = row_of.get(id.as_str()).copied();
        let price = row.and_then(|r| prices[r]).filter(|p| *p > 0.0);
        let sold = row.and_then(|r| units[r]).unwrap_or(0.0).max(0.0);
        data.raw.extend_from_slice(embeddings.vector(e));
        data.raw.push(price.map_or(f32::NAN, |p| p.ln() as f32));
        data.raw.push(sold.ln_1p() as f32);
        data.titles.push(title_of.get(id).cloned());
        data.markets.push(row.and_then(|r| markets[r].clone()));
        data.categories
            .push(row.and_then(|r| categories[r].clone()));
        data.keys.push(id.clone());
        embedded.insert(id.as_str());
    }
    let unembedded = row_of.keys().filter(|id| !embedded.contains(*id)).count();
    if unembedded > 0 {
        data.skipped.push((
            unembedded,
            "listed product(s) without a title embedding (listed after `sgml embed` ran)",
        ));
    }
    if embeddings.skipped > 0 {
        data.skipped.push((
            embeddings.skipped,
            "embedding row(s) without a product id or vector",
        ));
    }
    Ok(data)
}

fn read_sellers(
    ctx: &mut RunContext,
    run_date: NaiveDate,
    products: &DataFrame,
) -> anyhow::Result<Data> {
    let sellers = feature_table(ctx, "sellers", run_date)?.collect()?;
    let ids = super::texts(&sellers, "seller_id")?;
    let columns: Vec<Vec<Option<f64>>> = SELLER_COLUMNS
        .iter()
        .map(|(c, _)| floats(&sellers, c))
        .collect::<PolarsResult<_>>()?;
    let home: HashMap<String, String> = super::texts(products, "seller_id")?
        .into_iter()
        .zip(super::texts(products, "seller_country")?)
        .filter_map(|(s, m)| Some((s?, m?)))
        .collect();
    let mut data = Data {
        keys: Vec::with_capacity(ids.len()),
        features: SELLER_COLUMNS
            .iter()
            .map(|(c, log)| {
                if *log {
                    format!("log1p_{c}")
                } else {
                    c.to_string()
                }
            })
            .collect(),
        raw: Vec::with_capacity(ids.len() * SELLER_COLUMNS.len()),
        skipped: Vec::new(),
        titles: Vec::new(),
        markets: Vec::new(),
        categories: Vec::new(),
    };
    let mut nameless = 0;
    for (i, id) in ids.into_iter().enumerate() {
        let Some(id) = id else {
            nameless += 1;
            continue;
        };
        for ((_, log), values) in SELLER_COLUMNS.iter().zip(&columns) {
            data.raw.push(match values[i] {
                Some(v) if *log => v.max(0.0).ln_1p() as f32,
                Some(v) if v.is_finite() => v as f32,
                _ => f32::NAN,
            });
        }
        data.markets.push(home.get(&id).cloned());
        data.titles.push(None);
        data.categories.push(None);
        data.keys.push(id);
    }
    if nameless > 0 {
        data.skipped
            .push((nameless, "seller row(s) without a seller id"));
    }
    Ok(data)
}

/// "DE 41%, FR 22%, US 9%": the commonest values and their shares.
fn shares<'a>(values: impl Iterator<Item = Option<&'a str>>, top: usize) -> String {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    let mut n = 0;
    for v in values.flatten() {
        *counts.entry(v).or_default() += 1;
        n += 1;
    }
    let mut counts: Vec<(&str, usize)> = counts.into_iter().collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    counts
        .iter()
        .take(top)
        .map(|(v, c)| format!("{v} {:.0}%", 100.0 * *c as f64 / n.max(1) as f64))
        .collect::<Vec<_>>()
        .join(", ")
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Lower-cased words of a title (letters and digits), each once.
fn words(title: &str) -> HashSet<String> {
    title
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= 2)
        .map(str::to_lowercase)
        .collect()
}

/// Each segment's profile: members nearest the centroid, distinctive title words
/// (share in the segment × log of its lift over all rows), price level, markets and
/// categories (products) or median activity and home markets (sellers).
pub fn profiles(subject: Subject, data: &Data, a: &Assignment, k: usize) -> Vec<Profile> {
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); k];
    for (i, &l) in a.labels.iter().enumerate() {
        members[l as usize].push(i);
    }
    let title_words: Vec<HashSet<String>> = data
        .titles
        .iter()
        .map(|t| t.as_deref().map(words).unwrap_or_default())
        .collect();
    let mut overall: HashMap<&str, usize> = HashMap::new();
    for w in title_words.iter().flatten() {
        *overall.entry(w.as_str()).or_default() += 1;
    }
    let n = data.rows().max(1) as f64;
    let d = data.features.len();
    members
        .iter()
        .enumerate()
        .map(|(segment, rows)| {
            let mut nearest = rows.clone();
            nearest.sort_by(|&i, &j| {
                a.sq_distances[i]
                    .total_cmp(&a.sq_distances[j])
                    .then(i.cmp(&j))
            });
            let mut typical: Vec<String> = Vec::new();
            for &i in &nearest {
                let label = match subject {
                    Subject::Products => data.titles[i]
                        .clone()
                        .unwrap_or_else(|| data.keys[i].clone()),
                    Subject::Sellers => data.keys[i].clone(),
                };
                if !typical.contains(&label) {
                    typical.push(label);
                }
                if typical.len() == 5 {
                    break;
                }
            }
            let mut counts: HashMap<&str, usize> = HashMap::new();
            for &i in rows {
                for w in &title_words[i] {
                    *counts.entry(w.as_str()).or_default() += 1;
                }
            }
            let size = rows.len().max(1) as f64;
            let mut scored: Vec<(&str, f64)> = counts
                .into_iter()
                .filter(|(_, c)| *c as f64 / size >= 0.05)
                .map(|(w, c)| {
                    let share = c as f64 / size;
                    (w, share * (share / (overall[w] as f64 / n)).ln())
                })
                .filter(|(_, s)| *s > 0.0)
                .collect();
            scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
            let column = |j: usize| -> Vec<f64> {
                rows.iter()
                    .map(|&i| f64::from(data.raw[i * d + j]))
                    .filter(|v| v.is_finite())
                    .collect()
            };
            let markets = shares(rows.iter().map(|&i| data.markets[i].as_deref()), 3);
            let mut facts = Vec::new();
            match subject {
                Subject::Products => {
                    let price = median(column(d - 2))
                        .map_or("no sales".into(), |p| format!("{:.2}", p.exp()));
                    facts.push(("median price (base currency)".into(), price));
                    facts.push(("markets".into(), markets));
                    facts.push((
                        "listed categories".into(),
                        shares(rows.iter().map(|&i| data.categories[i].as_deref()), 3),
                    ));
                }
                Subject::Sellers => {
                    for (j, (name, log)) in SELLER_COLUMNS.iter().enumerate() {
                        let m = median(column(j)).map_or("–".into(), |v| {
                            if *log {
                                format!("{:.0}", v.exp_m1())
                            } else {
                                format!("{v:.3}")
                            }
                        });
                        facts.push((format!("median {name}"), m));
                    }
                    facts.push(("home markets".into(), markets));
                }
            }
            Profile {
                segment,
                size: rows.len(),
                typical,
                words: scored
                    .into_iter()
                    .take(6)
                    .map(|(w, _)| w.to_string())
                    .collect(),
                facts,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_and_words() {
        assert_eq!(
            shares([Some("DE"), Some("FR"), Some("DE"), None].into_iter(), 1),
            "DE 67%"
        );
        let w = words("Sonex Wireless-Headphones, 128GB a");
        assert!(w.contains("wireless") && w.contains("128gb") && !w.contains("a"));
        assert_eq!(median(vec![3.0, 1.0, 2.0, 10.0]), Some(2.5));
        assert_eq!(median(vec![]), None);
    }
}
