//! Currency conversion to the base currency.
//!
//! Rates come from the `fx_rates` table (base units per currency unit, by date).
//! Markets publish no rate on weekends and holidays, so a day without a rate uses
//! the latest earlier one; a currency and date with no earlier rate at all is an
//! error that names them. A single-currency dataset with no rate table needs no
//! conversion: its currency is the base.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;
use polars::prelude::*;

use crate::values::{Days, date_from_days};

pub const DEFAULT_BASE: &str = "USD";

#[derive(Debug, thiserror::Error)]
pub enum FxError {
    #[error(
        "no fx rate for {}; the data has several currencies ({currencies}), so every one needs rates in fx_rates on or before the dates it is used",
        .missing.iter().map(|m| m.to_string()).collect::<Vec<_>>().join("; ")
    )]
    MissingRates {
        currencies: String,
        missing: Vec<MissingRate>,
    },
    #[error(transparent)]
    Polars(#[from] PolarsError),
}

#[derive(Debug, Clone, PartialEq)]
pub struct MissingRate {
    pub currency: String,
    pub first: NaiveDate,
    pub last: NaiveDate,
    pub days: usize,
}

impl std::fmt::Display for MissingRate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} on {} day(s) from {} to {}",
            self.currency, self.days, self.first, self.last
        )
    }
}

/// The rates the features need, one per (currency, date) asked for.
#[derive(Debug)]
pub struct Rates {
    pub base: String,
    /// `currency, date, rate`.
    pub table: DataFrame,
}

/// Resolves a rate for every `(currency, date)` in `needed`.
///
/// `needed` has columns `currency` (str) and `date` (date); `fx` is the contract's
/// fx_rates table, or `None` when the input had none.
pub fn resolve(needed: &DataFrame, fx: Option<&DataFrame>, base: &str) -> Result<Rates, FxError> {
    let needed = pairs(needed, "currency", "date", None)?;
    let currencies: BTreeSet<&str> = needed.iter().map(|(c, _, _)| c.as_str()).collect();
    let fx_rows = match fx {
        Some(fx) if fx.height() > 0 => pairs(fx, "currency", "date", Some("rate"))?,
        _ => Vec::new(),
    };
    let base = if fx_rows.is_empty() && currencies.len() <= 1 {
        currencies
            .iter()
            .next()
            .copied()
            .unwrap_or(base)
            .to_string()
    } else {
        base.to_string()
    };
    let mut by_currency: BTreeMap<&str, BTreeMap<Days, f64>> = BTreeMap::new();
    for (c, d, r) in &fx_rows {
        by_currency
            .entry(c.as_str())
            .or_default()
            .insert(*d, r.expect("rate column"));
    }
    let mut missing: BTreeMap<&str, Vec<Days>> = BTreeMap::new();
    let (mut cur, mut date, mut rate) = (Vec::new(), Vec::new(), Vec::new());
    for (c, d, _) in &needed {
        let r = if *c == base {
            Some(1.0)
        } else {
            by_currency
                .get(c.as_str())
                .and_then(|series| series.range(..=*d).next_back().map(|(_, r)| *r))
        };
        match r {
            Some(r) => {
                cur.push(c.clone());
                date.push(*d);
                rate.push(r);
            }
            None => missing.entry(c.as_str()).or_default().push(*d),
        }
    }
    if !missing.is_empty() {
        return Err(FxError::MissingRates {
            currencies: currencies.iter().copied().collect::<Vec<_>>().join(", "),
            missing: missing
                .into_iter()
                .map(|(c, days)| MissingRate {
                    currency: c.to_string(),
                    first: date_from_days(*days.iter().min().expect("non-empty")),
                    last: date_from_days(*days.iter().max().expect("non-empty")),
                    days: days.len(),
                })
                .collect(),
        });
    }
    let table = DataFrame::new(
        cur.len(),
        vec![
            Column::new("currency".into(), cur),
            Column::new("date".into(), date).cast(&DataType::Date)?,
            Column::new("rate".into(), rate),
        ],
    )?;
    Ok(Rates { base, table })
}

type Pair = (String, Days, Option<f64>);

/// Distinct, non-null `(currency, date[, rate])` rows of a frame.
fn pairs(df: &DataFrame, c: &str, d: &str, r: Option<&str>) -> PolarsResult<Vec<Pair>> {
    let cur = df.column(c)?.str()?.clone();
    let days = df.column(d)?.cast(&DataType::Int32)?;
    let days = days.i32()?;
    let rates = match r {
        Some(r) => Some(df.column(r)?.f64()?.clone()),
        None => None,
    };
    let mut out: Vec<Pair> = Vec::with_capacity(df.height());
    let mut seen = BTreeSet::new();
    for i in 0..df.height() {
        let (Some(c), Some(d)) = (cur.get(i), days.get(i)) else {
            continue;
        };
        let rate = rates.as_ref().and_then(|r| r.get(i));
        if r.is_some() && rate.is_none() {
            continue;
        }
        if seen.insert((c.to_string(), d)) {
            out.push((c.to_string(), d, rate));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::values::days_since_epoch;

    fn frame(rows: &[(&str, &str, Option<f64>)]) -> DataFrame {
        let days: Vec<i32> = rows
            .iter()
            .map(|(_, d, _)| days_since_epoch(NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap()))
            .collect();
        let mut cols = vec![
            Column::new(
                "currency".into(),
                rows.iter().map(|r| r.0).collect::<Vec<_>>(),
            ),
            Column::new("date".into(), days)
                .cast(&DataType::Date)
                .unwrap(),
        ];
        if rows.iter().all(|r| r.2.is_some()) {
            cols.push(Column::new(
                "rate".into(),
                rows.iter().map(|r| r.2.unwrap()).collect::<Vec<_>>(),
            ));
        }
        DataFrame::new(rows.len(), cols).unwrap()
    }

    #[test]
    fn single_currency_without_rates_is_its_own_base() {
        let r = resolve(&frame(&[("GBP", "2011-01-01", None)]), None, "USD").unwrap();
        assert_eq!(r.base, "GBP");
        assert_eq!(
            r.table.column("rate").unwrap().f64().unwrap().get(0),
            Some(1.0)
        );
    }

    #[test]
    fn weekend_uses_the_friday_rate() {
        let fx = frame(&[
            ("EUR", "2024-03-01", Some(1.08)),
            ("EUR", "2024-03-04", Some(1.09)),
        ]);
        let needed = frame(&[("EUR", "2024-03-03", None), ("USD", "2024-03-03", None)]);
        let r = resolve(&needed, Some(&fx), "USD").unwrap();
        let rates: Vec<_> = r
            .table
            .column("rate")
            .unwrap()
            .f64()
            .unwrap()
            .into_no_null_iter()
            .collect();
        assert_eq!(rates, vec![1.08, 1.0]);
    }

    #[test]
    fn missing_rates_name_currency_and_dates() {
        let needed = frame(&[("EUR", "2024-03-03", None), ("JPY", "2024-03-05", None)]);
        let err = resolve(&needed, None, "USD").unwrap_err().to_string();
        assert!(err.contains("EUR on 1 day(s) from 2024-03-03"), "{err}");
        assert!(err.contains("JPY"), "{err}");
    }
}
