//! The data contracts: every table the pipelines store, its columns, types and rules.
//!
//! This is the one place the contracts are defined. Each rule has a stable name,
//! `<table>.<column>.<rule>` (or `<table>.key.duplicate` for key uniqueness), which
//! is what lands in quarantine and what the README documents.

use std::fmt;

/// The tables of the contract, as stored after ingest. Serialized by
/// [`Table::name`] (a test holds the two together).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Table {
    Orders,
    Products,
    CrawledOffers,
    FxRates,
    DeletionRequests,
    /// The labelled cut of the duplicate-listings task: listings a reviewer grouped,
    /// each with its group's id (a lone listing is its own group).
    DuplicateGroups,
}

impl Table {
    pub const ALL: [Table; 6] = [
        Table::Orders,
        Table::Products,
        Table::CrawledOffers,
        Table::FxRates,
        Table::DeletionRequests,
        Table::DuplicateGroups,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Table::Orders => "orders",
            Table::Products => "products",
            Table::CrawledOffers => "crawled_offers",
            Table::FxRates => "fx_rates",
            Table::DeletionRequests => "deletion_requests",
            Table::DuplicateGroups => "duplicate_groups",
        }
    }

    pub fn from_name(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The stored columns, in order.
    pub fn columns(self) -> &'static [Column] {
        match self {
            Table::Orders => ORDERS,
            Table::Products => PRODUCTS,
            Table::CrawledOffers => CRAWLED_OFFERS,
            Table::FxRates => FX_RATES,
            Table::DeletionRequests => DELETION_REQUESTS,
            Table::DuplicateGroups => DUPLICATE_GROUPS,
        }
    }

    /// Columns whose combination identifies a row; a repeat is quarantined.
    pub fn key(self) -> &'static [&'static str] {
        match self {
            Table::Orders => &["order_id", "line_no"],
            Table::Products => &["product_id"],
            Table::CrawledOffers => &["offer_id"],
            Table::FxRates => &["date", "currency"],
            Table::DeletionRequests => &["customer_key"],
            Table::DuplicateGroups => &["product_id"],
        }
    }

    /// Whether the raw export carries `customer_id` (turned into `customer_key` at ingest).
    pub fn has_customer(self) -> bool {
        matches!(self, Table::Orders | Table::DeletionRequests)
    }

    pub fn column(self, name: &str) -> Option<&'static Column> {
        self.columns().iter().find(|c| c.name == name)
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The stored type of a column. Raw inputs arrive as text and are parsed to these.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Type {
    /// UTF-8 text, trimmed, at most `max_chars` characters.
    Text {
        max_chars: usize,
    },
    Int,
    Float,
    /// UTC instant, microseconds.
    Timestamp,
    Date,
}

/// The value rule of a column beyond its type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Check {
    None,
    /// Inclusive numeric bounds.
    Range {
        min: f64,
        max: f64,
    },
    /// Strictly positive and at most `max`.
    Positive {
        max: f64,
    },
    OneOf(&'static [&'static str]),
    /// ISO 4217 alphabetic code.
    Currency,
    /// ISO 3166-1 alpha-2 code, or `ZZ` (unknown region, as CLDR uses it).
    Country,
    /// A key (order, product, seller, offer id): no control characters.
    Identifier,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Column {
    pub name: &'static str,
    pub ty: Type,
    pub required: bool,
    pub check: Check,
}

const fn col(name: &'static str, ty: Type, required: bool, check: Check) -> Column {
    Column {
        name,
        ty,
        required,
        check,
    }
}

const ID: Type = Type::Text { max_chars: 64 };
const CODE: Type = Type::Text { max_chars: 8 };
/// The longest title the contract accepts (products and crawled offers). Serving
/// refuses longer ones with `sgml_models::MAX_TITLE_CHARS`; the two are one number
/// kept in two crates so that this one does not wait for sgml-models to compile, and
/// a test in sgml-pipelines (which sees both) holds them equal.
pub const MAX_TITLE_CHARS: usize = 1_000;
const TITLE: Type = Type::Text {
    max_chars: MAX_TITLE_CHARS,
};
const LONG_TEXT: Type = Type::Text { max_chars: 20_000 };
const NAME: Type = Type::Text { max_chars: 200 };
const URI: Type = Type::Text { max_chars: 2_000 };

/// Prices above this, in any currency, are data errors (a typo, a test row, a
/// price in cents). The most expensive currency unit in use (KRW, IDR, VND) keeps
/// real goods below it.
pub const MAX_PRICE: f64 = 100_000_000.0;
pub const MAX_QUANTITY: f64 = 1_000_000.0;

pub const CHANNELS: &[&str] = &["web", "app", "marketplace", "store", "phone"];
pub const STATUSES: &[&str] = &[
    "placed",
    "paid",
    "shipped",
    "delivered",
    "completed",
    "cancelled",
    "returned",
];
/// Statuses whose lines may carry a negative quantity (the reversal of a sale).
pub const REVERSAL_STATUSES: &[&str] = &["cancelled", "returned"];
pub const CONDITIONS: &[&str] = &["new", "used", "refurbished"];

static ORDERS: &[Column] = &[
    col("order_id", ID, true, Check::Identifier),
    col(
        "line_no",
        Type::Int,
        true,
        Check::Range {
            min: 1.0,
            max: 100_000.0,
        },
    ),
    col("order_ts", Type::Timestamp, true, Check::None),
    col(
        "customer_key",
        Type::Text { max_chars: 64 },
        false,
        Check::None,
    ),
    col("product_id", ID, true, Check::Identifier),
    col("seller_id", ID, true, Check::Identifier),
    col(
        "quantity",
        Type::Int,
        true,
        Check::Range {
            min: -MAX_QUANTITY,
            max: MAX_QUANTITY,
        },
    ),
    col(
        "unit_price",
        Type::Float,
        true,
        Check::Range {
            min: 0.0,
            max: MAX_PRICE,
        },
    ),
    col("currency", CODE, true, Check::Currency),
    col("buyer_country", CODE, true, Check::Country),
    col("ship_country", CODE, true, Check::Country),
    col("channel", NAME, false, Check::OneOf(CHANNELS)),
    col("status", NAME, true, Check::OneOf(STATUSES)),
];

static PRODUCTS: &[Column] = &[
    col("product_id", ID, true, Check::Identifier),
    col("seller_id", ID, true, Check::Identifier),
    // The seller's home market (ship-from country); not in DESIGN.md's first draft,
    // added because cross-border features and pricing markets need it.
    col("seller_country", CODE, false, Check::Country),
    col("title", TITLE, true, Check::None),
    col("description", LONG_TEXT, false, Check::None),
    col("category", NAME, false, Check::None),
    col("brand", NAME, false, Check::None),
    col("condition", NAME, false, Check::OneOf(CONDITIONS)),
    col("image_uri", URI, false, Check::None),
    col(
        "list_price",
        Type::Float,
        false,
        Check::Positive { max: MAX_PRICE },
    ),
    col("currency", CODE, true, Check::Currency),
    col("language", CODE, false, Check::None),
    col("created_ts", Type::Timestamp, false, Check::None),
];

static CRAWLED_OFFERS: &[Column] = &[
    col("offer_id", ID, true, Check::Identifier),
    col("source", NAME, true, Check::None),
    col("product_ref", ID, false, Check::Identifier),
    col("title", TITLE, true, Check::None),
    col(
        "price",
        Type::Float,
        true,
        Check::Positive { max: MAX_PRICE },
    ),
    col("currency", CODE, true, Check::Currency),
    col("country", CODE, true, Check::Country),
    col("crawled_ts", Type::Timestamp, true, Check::None),
];

static FX_RATES: &[Column] = &[
    col("date", Type::Date, true, Check::None),
    col("currency", CODE, true, Check::Currency),
    // Base-currency units per one unit of `currency`: price_base = price * rate.
    col("rate", Type::Float, true, Check::Positive { max: 1.0e6 }),
];

static DELETION_REQUESTS: &[Column] = &[
    col(
        "customer_key",
        Type::Text { max_chars: 64 },
        true,
        Check::None,
    ),
    col("requested_ts", Type::Timestamp, true, Check::None),
];

static DUPLICATE_GROUPS: &[Column] = &[
    col("product_id", ID, true, Check::Identifier),
    col("group_id", ID, true, Check::Identifier),
    col("labelled_ts", Type::Timestamp, true, Check::None),
];

/// Columns of raw exports that identify a person directly. They never get past ingest.
pub const PII_COLUMNS: &[&str] = &[
    "customer_name",
    "customer_email",
    "customer_phone",
    "shipping_address",
];

/// The platform's customer id in raw exports; replaced by `customer_key` at ingest.
pub const CUSTOMER_ID: &str = "customer_id";

/// Free-text columns that may hold PII typed by a person and are scrubbed at ingest.
pub const FREE_TEXT_COLUMNS: &[&str] = &["title", "description"];

/// Every rule name a table can produce, for documentation and tests.
pub fn rule_names(table: Table) -> Vec<String> {
    let t = table.name();
    let mut rules = Vec::new();
    for c in table.columns() {
        let n = c.name;
        if c.required {
            rules.push(format!("{t}.{n}.required"));
        }
        match c.ty {
            Type::Text { .. } => {
                rules.push(format!("{t}.{n}.utf8"));
                rules.push(format!("{t}.{n}.length"));
            }
            _ => rules.push(format!("{t}.{n}.type")),
        }
        match c.check {
            Check::None => {}
            Check::Range { .. } | Check::Positive { .. } => rules.push(format!("{t}.{n}.range")),
            Check::OneOf(_) => rules.push(format!("{t}.{n}.enum")),
            Check::Currency => rules.push(format!("{t}.{n}.currency")),
            Check::Country => rules.push(format!("{t}.{n}.country")),
            Check::Identifier => rules.push(format!("{t}.{n}.control")),
        }
    }
    if table == Table::Orders {
        rules.push("orders.quantity.sign".into());
    }
    rules.push(format!("{t}.key.duplicate"));
    rules
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_serialize_by_name() {
        for t in Table::ALL {
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(json, format!("\"{}\"", t.name()));
            assert_eq!(serde_json::from_str::<Table>(&json).unwrap(), t);
        }
    }

    #[test]
    fn every_key_column_is_a_required_column() {
        for t in Table::ALL {
            for k in t.key() {
                let c = t
                    .column(k)
                    .unwrap_or_else(|| panic!("{t}: key {k} not a column"));
                assert!(c.required, "{t}.{k} is a key but nullable");
            }
        }
    }

    #[test]
    fn rule_names_are_unique_and_dotted() {
        for t in Table::ALL {
            let rules = rule_names(t);
            let mut sorted = rules.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), rules.len(), "{t}: duplicate rule names");
            assert!(
                rules
                    .iter()
                    .all(|r| r.starts_with(t.name()) && r.matches('.').count() == 2)
            );
        }
    }
}
