//! Mapping files: an export with its own column names, formats and constants onto
//! one or more contract tables, written in TOML so a data scientist can ingest a new
//! export without code. Built-in mappings are files of the same form.
//!
//! ```toml
//! [tables.orders.columns]
//! order_id = { from = "InvoiceNo" }                      # copy a column
//! line_no  = { position_in = "InvoiceNo" }               # 1, 2, ... within each invoice
//! order_ts = { from = "InvoiceDate", format = ["%m/%d/%Y %H:%M"] }   # reformat timestamps
//! currency = { value = "GBP" }                           # a constant
//! buyer_country = { from = "Country", lookup = "countries" }         # a value table
//! status = { from = "InvoiceNo", prefixes = { C = "cancelled" }, otherwise = "completed" }
//! [tables.products]
//! distinct_on = "product_id"                             # one row per product
//! [lookups.countries]
//! unmatched = "ZZ"                                       # for names not listed
//! values = { "United Kingdom" = "GB" }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use chrono::NaiveDateTime;
use serde::Deserialize;
use sgml_features::Table;
use sgml_features::validate::{NotUtf8, RawTable};

const BUILT_IN: &[(&str, &str)] = &[(
    "online-retail",
    include_str!("../mappings/online-retail.toml"),
)];

#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    #[error("mapping {name}: {message}")]
    Invalid { name: String, message: String },
    #[error("mapping `{0}` is neither a built-in ({1}) nor a readable file: {2}")]
    NotFound(String, String, std::io::Error),
    #[error("mapping {name}: the export has no column `{column}` (it has: {found})")]
    MissingColumn {
        name: String,
        column: String,
        found: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    pub name: String,
    /// Where the mapping came from (a built-in's name or the file's path), for errors.
    #[serde(skip)]
    pub origin: String,
    #[serde(default)]
    pub description: String,
    pub tables: BTreeMap<String, TableMapping>,
    #[serde(default)]
    pub lookups: BTreeMap<String, Lookup>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableMapping {
    /// Keep one row per value of this (target) column, each column taking its first
    /// non-empty value in file order.
    pub distinct_on: Option<String>,
    pub columns: BTreeMap<String, ColumnRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnRule {
    pub from: Option<String>,
    pub value: Option<String>,
    pub position_in: Option<String>,
    #[serde(default)]
    pub format: Vec<String>,
    pub lookup: Option<String>,
    #[serde(default)]
    pub prefixes: BTreeMap<String, String>,
    pub otherwise: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lookup {
    /// The value for inputs not listed; without it they pass through unchanged.
    pub unmatched: Option<String>,
    pub values: BTreeMap<String, String>,
}

impl Mapping {
    /// A built-in name or a path to a mapping file.
    pub fn load(name_or_path: &str) -> Result<Mapping, MappingError> {
        let text = match BUILT_IN.iter().find(|(n, _)| *n == name_or_path) {
            Some((_, text)) => text.to_string(),
            None => std::fs::read_to_string(Path::new(name_or_path)).map_err(|e| {
                let names: Vec<&str> = BUILT_IN.iter().map(|(n, _)| *n).collect();
                MappingError::NotFound(name_or_path.into(), names.join(", "), e)
            })?,
        };
        Mapping::parse(name_or_path, &text)
    }

    pub fn parse(origin: &str, text: &str) -> Result<Mapping, MappingError> {
        let mut mapping: Mapping = toml::from_str(text).map_err(|e| MappingError::Invalid {
            name: origin.into(),
            message: sgml_features::quote::brief(&e.to_string()),
        })?;
        mapping.origin = origin.to_string();
        mapping.check()?;
        Ok(mapping)
    }

    fn invalid(&self, message: String) -> MappingError {
        MappingError::Invalid {
            name: self.origin.clone(),
            message,
        }
    }

    /// Checked once at load, so applying a mapping cannot fail half way.
    fn check(&self) -> Result<(), MappingError> {
        for (table_name, tm) in &self.tables {
            let table = Table::from_name(table_name).ok_or_else(|| {
                self.invalid(format!("[tables.{table_name}] is not a contract table"))
            })?;
            for (target, rule) in &tm.columns {
                let known = table.column(target).is_some()
                    || (table.has_customer() && target == sgml_features::contract::CUSTOMER_ID);
                if !known {
                    return Err(self.invalid(format!(
                        "{table_name}.{target} is not a column of the contract"
                    )));
                }
                let sources = [
                    rule.from.is_some(),
                    rule.value.is_some(),
                    rule.position_in.is_some(),
                ];
                if sources.iter().filter(|s| **s).count() != 1 {
                    return Err(self.invalid(format!(
                        "{table_name}.{target}: give exactly one of `from`, `value`, `position_in`"
                    )));
                }
                if let Some(l) = &rule.lookup
                    && !self.lookups.contains_key(l)
                {
                    return Err(self.invalid(format!("{table_name}.{target}: no [lookups.{l}]")));
                }
                for f in &rule.format {
                    if !reads_date_and_time(f) {
                        return Err(self.invalid(format!(
                            "{table_name}.{target}: format `{}` cannot read a date and time \
                             (chrono strftime, such as \"%m/%d/%Y %H:%M\")",
                            sgml_features::quote::brief(f)
                        )));
                    }
                }
            }
            if let Some(d) = &tm.distinct_on
                && !tm.columns.contains_key(d)
            {
                return Err(self.invalid(format!(
                    "{table_name}: distinct_on `{d}` is not a mapped column"
                )));
            }
        }
        Ok(())
    }

    /// Turns the export into contract tables (still text; validation comes next).
    pub fn apply(&self, export: &RawTable) -> Result<Vec<(Table, RawTable)>, MappingError> {
        let mut out = Vec::new();
        for (table_name, tm) in &self.tables {
            let table = Table::from_name(table_name).expect("checked at load");
            let mut columns = Vec::new();
            let mut cells = Vec::new();
            for (target, rule) in &tm.columns {
                columns.push(target.clone());
                cells.push(self.column(export, rule)?);
            }
            // A cell that was not UTF-8 taints the contract columns made from it.
            let not_utf8 = tm
                .columns
                .iter()
                .flat_map(|(target, rule)| {
                    let from = rule.from.as_deref().or(rule.position_in.as_deref());
                    export
                        .not_utf8
                        .iter()
                        .filter(move |bad| Some(bad.column.as_str()) == from)
                        .map(|bad| NotUtf8 {
                            source_row: bad.source_row,
                            column: target.clone(),
                        })
                })
                .collect();
            let mut raw = RawTable {
                source: format!("{} (mapping {})", export.source, self.name),
                columns,
                cells,
                source_rows: export.source_rows.clone(),
                malformed: export.malformed.clone(),
                not_utf8,
            };
            if let Some(key) = &tm.distinct_on {
                raw = distinct(raw, key);
            }
            out.push((table, raw));
        }
        Ok(out)
    }

    fn input<'a>(
        &self,
        export: &'a RawTable,
        column: &str,
    ) -> Result<&'a [Option<String>], MappingError> {
        export
            .columns
            .iter()
            .position(|c| c == column)
            .map(|i| export.cells[i].as_slice())
            .ok_or_else(|| MappingError::MissingColumn {
                name: self.name.clone(),
                column: column.into(),
                found: sgml_features::quote::list(&export.columns, ", "),
            })
    }

    fn column(
        &self,
        export: &RawTable,
        rule: &ColumnRule,
    ) -> Result<Vec<Option<String>>, MappingError> {
        let n = export.height();
        if let Some(v) = &rule.value {
            return Ok(vec![Some(v.clone()); n]);
        }
        if let Some(group) = &rule.position_in {
            let keys = self.input(export, group)?;
            let mut seen: HashMap<&str, u64> = HashMap::new();
            return Ok(keys
                .iter()
                .map(|k| {
                    let pos = seen.entry(k.as_deref().unwrap_or("")).or_insert(0);
                    *pos += 1;
                    Some(pos.to_string())
                })
                .collect());
        }
        let from = rule.from.as_deref().expect("checked at load: one source");
        let lookup = rule.lookup.as_ref().map(|l| &self.lookups[l]);
        Ok(self
            .input(export, from)?
            .iter()
            .map(|cell| {
                let v = cell.as_deref()?.trim();
                if let Some(l) = lookup {
                    return Some(match (l.values.get(v), &l.unmatched) {
                        (Some(mapped), _) => mapped.clone(),
                        (None, Some(unmatched)) => unmatched.clone(),
                        (None, None) => v.to_string(),
                    });
                }
                if !rule.prefixes.is_empty() || rule.otherwise.is_some() {
                    let hit = rule
                        .prefixes
                        .iter()
                        .find(|(p, _)| v.starts_with(p.as_str()));
                    return hit
                        .map(|(_, to)| to.clone())
                        .or_else(|| rule.otherwise.clone());
                }
                if !rule.format.is_empty() {
                    // Reformat to ISO; a value no format fits passes unchanged and the
                    // validator quarantines it under the column's type rule.
                    return Some(
                        rule.format
                            .iter()
                            .find_map(|f| NaiveDateTime::parse_from_str(v, f).ok())
                            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                            .unwrap_or_else(|| v.to_string()),
                    );
                }
                Some(v.to_string())
            })
            .collect())
    }
}

/// Whether `format` is valid strftime that reads a whole date and time: every value
/// it meets would otherwise pass unchanged and be quarantined, row by row.
fn reads_date_and_time(format: &str) -> bool {
    use chrono::format::{Item, StrftimeItems};
    if StrftimeItems::new(format).any(|i| matches!(i, Item::Error)) {
        return false;
    }
    let probe = chrono::NaiveDate::from_ymd_opt(2024, 3, 1)
        .and_then(|d| d.and_hms_opt(10, 20, 0))
        .expect("a valid date");
    // Writing can fail (a time zone a naive time lacks): `write!`, not `to_string`,
    // which would panic.
    let mut written = String::new();
    if std::fmt::Write::write_fmt(&mut written, format_args!("{}", probe.format(format))).is_err() {
        return false;
    }
    NaiveDateTime::parse_from_str(&written, format).is_ok_and(|t| t.date() == probe.date())
}

/// One row per key, in order of first appearance; each column takes its first
/// non-empty value among the key's rows.
fn distinct(raw: RawTable, key: &str) -> RawTable {
    let k = raw
        .columns
        .iter()
        .position(|c| c == key)
        .expect("checked at load");
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut rows: Vec<usize> = Vec::new();
    let mut out_cells: Vec<Vec<Option<String>>> = vec![Vec::new(); raw.columns.len()];
    for i in 0..raw.height() {
        let key_value = raw.cells[k][i].clone().unwrap_or_default();
        match index.get(&key_value) {
            Some(&j) => {
                for (c, out) in out_cells.iter_mut().enumerate() {
                    if out[j].is_none() {
                        out[j] = raw.cells[c][i].clone();
                    }
                }
            }
            None => {
                index.insert(key_value, rows.len());
                rows.push(i);
                for (c, out) in out_cells.iter_mut().enumerate() {
                    out.push(raw.cells[c][i].clone());
                }
            }
        }
    }
    let source_rows: Vec<u64> = rows.iter().map(|&i| raw.source_rows[i]).collect();
    let kept: std::collections::HashSet<u64> = source_rows.iter().copied().collect();
    RawTable {
        source: raw.source,
        columns: raw.columns,
        cells: out_cells,
        // Unsplittable lines are counted once, with the line-level table.
        malformed: Vec::new(),
        not_utf8: raw
            .not_utf8
            .into_iter()
            .filter(|bad| kept.contains(&bad.source_row))
            .collect(),
        source_rows,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn export() -> RawTable {
        let mut t = RawTable::new(
            "retail.csv",
            [
                "InvoiceNo",
                "StockCode",
                "Description",
                "Quantity",
                "InvoiceDate",
                "UnitPrice",
                "CustomerID",
                "Country",
            ]
            .map(String::from)
            .to_vec(),
        );
        let rows = [
            [
                "536365",
                "A",
                "",
                "6",
                "12/1/2010 8:26",
                "2.55",
                "17850.0",
                "United Kingdom",
            ],
            [
                "536365",
                "B",
                "Mug",
                "1",
                "12/1/2010 8:26",
                "3.39",
                "17850.0",
                "EIRE",
            ],
            [
                "C536366",
                "A",
                "Lamp",
                "-1",
                "2010-12-01 09:00:00",
                "2.55",
                "",
                "Atlantis",
            ],
        ];
        for (i, r) in rows.iter().enumerate() {
            t.push_row(
                i as u64 + 1,
                r.iter().map(|s| (!s.is_empty()).then(|| s.to_string())),
            );
        }
        t
    }

    #[test]
    fn built_in_online_retail_maps_the_uci_columns() {
        let m = Mapping::load("online-retail").unwrap();
        let tables = m.apply(&export()).unwrap();
        let (t, orders) = &tables[0];
        assert_eq!(*t, Table::Orders);
        let col = |name: &str| {
            orders.cells[orders.columns.iter().position(|c| c == name).unwrap()].clone()
        };
        assert_eq!(
            col("line_no"),
            vec![Some("1".into()), Some("2".into()), Some("1".into())]
        );
        assert_eq!(col("status")[2].as_deref(), Some("cancelled"));
        assert_eq!(
            col("buyer_country"),
            vec![Some("GB".into()), Some("IE".into()), Some("ZZ".into())]
        );
        assert_eq!(col("order_ts")[0].as_deref(), Some("2010-12-01 08:26:00"));
        let (_, products) = &tables[1];
        assert_eq!(products.height(), 2, "distinct stock codes");
        let title = products.columns.iter().position(|c| c == "title").unwrap();
        assert_eq!(
            products.cells[title][0].as_deref(),
            Some("Lamp"),
            "first non-empty description"
        );
    }

    #[test]
    fn bad_mappings_are_refused_at_load() {
        for (toml, want) in [
            ("name='x'\n[tables.order.columns]\n", "not a contract table"),
            (
                "name='x'\n[tables.orders.columns]\nprice={from='P'}\n",
                "not a column",
            ),
            (
                "name='x'\n[tables.orders.columns]\norder_id={from='A', value='b'}\n",
                "exactly one",
            ),
            (
                "name='x'\n[tables.orders.columns]\nbuyer_country={from='C', lookup='nope'}\n",
                "no [lookups.nope]",
            ),
            (
                "name='x'\n[tables.orders.columns]\norder_id={form='A'}\n",
                "unknown field",
            ),
            // Invalid strftime, a format without a time, one chrono cannot write.
            (
                "name='x'\n[tables.orders.columns]\norder_ts={from='T', format=['%Q/%d']}\n",
                "format `%Q/%d` cannot read",
            ),
            (
                "name='x'\n[tables.orders.columns]\norder_ts={from='T', format=['%d/%m/%Y']}\n",
                "cannot read a date and time",
            ),
            (
                "name='x'\n[tables.orders.columns]\norder_ts={from='T', format=['%d/%m/%Y %H:%M %Z']}\n",
                "cannot read a date and time",
            ),
        ] {
            let err = Mapping::parse("test.toml", toml).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
    }

    #[test]
    fn missing_export_column_is_named() {
        let m = Mapping::parse(
            "t",
            "name='t'\n[tables.orders.columns]\norder_id={from='Nope'}\n",
        )
        .unwrap();
        let err = m.apply(&export()).unwrap_err().to_string();
        assert!(err.contains("`Nope`") && err.contains("InvoiceNo"), "{err}");
    }
}
