//! Request bodies: `{"rows": [{...raw attributes...}]}`, named by the bundle's input
//! schema, parsed strictly. A body the model cannot score as meant is refused with the
//! field at fault (`rows[3].month`), never guessed at: unknown fields (a typo would
//! otherwise silently price without that attribute), wrong types, out-of-range values.

use serde::Deserialize;
use sgml_models::MAX_TITLE_CHARS;
pub use sgml_models::ann::Markets;
use sgml_models::pricing::PriceInput;

/// A refused body: where (`rows[3].month`, or `rows`, or `` for the whole body) and why.
#[derive(Debug, Clone, PartialEq)]
pub struct BadBody {
    pub field: String,
    pub why: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Request<R> {
    rows: Vec<R>,
}

/// One row of a pricing request: the fields of `sgml_models::pricing::input_schema`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PriceRow {
    #[serde(default)]
    product_id: Option<String>,
    #[serde(default)]
    category: Option<String>,
    #[serde(default)]
    brand: Option<String>,
    #[serde(default)]
    condition: Option<String>,
    market: String,
    #[serde(default)]
    seller_country: Option<String>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    month: Option<i64>,
    #[serde(default)]
    quantity: Option<f64>,
    #[serde(default)]
    guest: Option<bool>,
}

fn parse<R: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<Vec<R>, BadBody> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    let request: Request<R> = serde_path_to_error::deserialize(de).map_err(|e| BadBody {
        field: brief(e.path().to_string().trim_start_matches('.')),
        why: brief(&e.inner().to_string()),
    })?;
    if request.rows.is_empty() {
        return Err(BadBody {
            field: "rows".into(),
            why: "must hold at least one row".into(),
        });
    }
    Ok(request.rows)
}

/// The most characters of a request a response quotes back.
pub const MAX_QUOTE_CHARS: usize = 200;

/// `s`, cut after [`MAX_QUOTE_CHARS`] characters: a field name or a value a parser
/// error quotes comes from the request, which may be a megabyte long. (sgml-features
/// has the ingest twin; the server does not link it.)
pub fn brief(s: &str) -> String {
    match s.char_indices().nth(MAX_QUOTE_CHARS) {
        None => s.to_string(),
        Some((end, _)) => format!("{}…", &s[..end]),
    }
}

/// A refused field of row `i`.
fn bad_row(i: usize, field: &str, why: &str) -> BadBody {
    BadBody {
        field: format!("rows[{i}].{field}"),
        why: why.to_string(),
    }
}

/// One row of a categorize request.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TitleRow {
    title: String,
    /// How many categories to return (default 3).
    #[serde(default)]
    top: Option<usize>,
}

/// Parses and checks a categorize request: (title, top k) per row.
pub fn titles(body: &[u8]) -> Result<Vec<(String, usize)>, BadBody> {
    parse::<TitleRow>(body)?
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let bad = |field: &str, why: &str| bad_row(i, field, why);
            // Titles past the contract's limit are refused, as at ingest.
            if r.title.chars().count() > MAX_TITLE_CHARS {
                return Err(bad(
                    "title",
                    &format!("must be at most {MAX_TITLE_CHARS} characters"),
                ));
            }
            match r.top {
                None => Ok((r.title, 3)),
                Some(k @ 1..=100) => Ok((r.title, k)),
                Some(_) => Err(bad("top", "must be 1..=100")),
            }
        })
        .collect()
}

/// One row of an image-classifier request: a photo file's bytes, base64-encoded, or
/// where the server reads it (`image_uri`: a path in its images directory, or
/// `s3://bucket/key`) — one of the two.
#[cfg(feature = "images")]
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PhotoRow {
    #[serde(default)]
    image_base64: Option<String>,
    #[serde(default)]
    image_uri: Option<String>,
    /// How many categories to return (default 3).
    #[serde(default)]
    top: Option<usize>,
}

/// A request's photo: its bytes, or where to read them.
#[cfg(feature = "images")]
#[derive(Debug, PartialEq)]
pub enum Photo {
    Bytes(Vec<u8>),
    Uri(String),
}

/// Parses and checks an image-classifier request: (photo, top k) per row. The body
/// limit bounds the photos together; `max_photo_bytes` each one.
#[cfg(feature = "images")]
pub fn photos(body: &[u8], max_photo_bytes: usize) -> Result<Vec<(Photo, usize)>, BadBody> {
    use base64::Engine;
    parse::<PhotoRow>(body)?
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let bad = |field: &str, why: &str| bad_row(i, field, why);
            let photo = match (r.image_base64, r.image_uri) {
                (Some(encoded), None) => {
                    // Base64 is 4 characters per 3 bytes: refuse before decoding a
                    // photo too large.
                    if encoded.len() / 4 * 3 > max_photo_bytes + 3 {
                        return Err(bad(
                            "image_base64",
                            &format!("the photo is larger than {max_photo_bytes} bytes"),
                        ));
                    }
                    Photo::Bytes(
                        base64::engine::general_purpose::STANDARD
                            .decode(encoded.trim())
                            .map_err(|e| {
                                bad("image_base64", &brief(&format!("not base64: {e}")))
                            })?,
                    )
                }
                (None, Some(uri)) => Photo::Uri(uri),
                (Some(_), Some(_)) => {
                    return Err(bad("image_uri", "give image_base64 or image_uri, not both"));
                }
                (None, None) => {
                    return Err(bad("image_base64", "give image_base64 or image_uri"));
                }
            };
            match r.top {
                None => Ok((photo, 3)),
                Some(k @ 1..=100) => Ok((photo, k)),
                Some(_) => Err(bad("top", "must be 1..=100")),
            }
        })
        .collect()
}

/// A similar-products query: `{"product_id": "P1", "k": 10, "other_sellers": true,
/// "markets": "other"}`, or by a title not (yet) in the index: `{"title": "blue mug",
/// "seller_id": "S1", "market": "DE", "other_sellers": true, "markets": "other"}`.
#[derive(Debug, Clone, PartialEq)]
pub struct SimilarQuery {
    pub by: QueryBy,
    pub k: usize,
    pub other_sellers: bool,
    pub markets: Markets,
}

/// What the neighbours are of.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryBy {
    /// An indexed product: its stored vector, seller and market.
    Product(String),
    /// A title, embedded by the server; the seller and market the filters are
    /// relative to come with it.
    Title {
        title: String,
        seller_id: Option<String>,
        market: Option<String>,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryBody {
    #[serde(default)]
    product_id: Option<String>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    seller_id: Option<String>,
    #[serde(default)]
    market: Option<String>,
    #[serde(default)]
    k: Option<usize>,
    #[serde(default)]
    other_sellers: bool,
    #[serde(default)]
    markets: Markets,
}

/// Parses and checks a similar-products query.
pub fn similar_query(body: &[u8]) -> Result<SimilarQuery, BadBody> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    let q: QueryBody = serde_path_to_error::deserialize(de).map_err(|e| BadBody {
        field: brief(e.path().to_string().trim_start_matches('.')),
        why: brief(&e.inner().to_string()),
    })?;
    let bad = |field: &str, why: &str| BadBody {
        field: field.into(),
        why: why.into(),
    };
    let k = match q.k {
        None => 10,
        Some(k @ 1..=100) => k,
        Some(_) => return Err(bad("k", "must be 1..=100")),
    };
    let short = |v: &Option<String>| {
        v.as_ref()
            .is_none_or(|s| !s.trim().is_empty() && s.chars().count() <= 256)
    };
    let by = match (q.product_id, q.title) {
        (Some(_), Some(_)) => return Err(bad("", "give product_id or title, not both")),
        (None, None) => return Err(bad("product_id", "missing (or give a title)")),
        (Some(id), None) => {
            if q.seller_id.is_some() || q.market.is_some() {
                let field = if q.seller_id.is_some() {
                    "seller_id"
                } else {
                    "market"
                };
                return Err(bad(
                    field,
                    "a product query uses the product's own seller and market",
                ));
            }
            if !short(&Some(id.clone())) {
                return Err(bad("product_id", "must be 1 to 256 characters"));
            }
            QueryBy::Product(id)
        }
        (None, Some(title)) => {
            if title.trim().is_empty() || title.chars().count() > MAX_TITLE_CHARS {
                return Err(bad(
                    "title",
                    &format!("must be 1 to {MAX_TITLE_CHARS} characters"),
                ));
            }
            for (field, v) in [("seller_id", &q.seller_id), ("market", &q.market)] {
                if !short(v) {
                    return Err(bad(field, "must be 1 to 256 characters"));
                }
            }
            if q.other_sellers && q.seller_id.is_none() {
                return Err(bad(
                    "seller_id",
                    "other_sellers needs the seller the title is from",
                ));
            }
            if q.markets != Markets::Any && q.market.is_none() {
                return Err(bad(
                    "market",
                    "markets same/other needs the market the title is from",
                ));
            }
            QueryBy::Title {
                title,
                seller_id: q.seller_id,
                market: q.market,
            }
        }
    };
    Ok(SimilarQuery {
        by,
        k,
        other_sellers: q.other_sellers,
        markets: q.markets,
    })
}

/// Parses and checks a pricing request.
pub fn price_inputs(body: &[u8]) -> Result<Vec<PriceInput>, BadBody> {
    parse::<PriceRow>(body)?
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let bad = |field: &str, why: &str| bad_row(i, field, why);
            if r.market.trim().is_empty() {
                return Err(bad("market", "must be a country code, not empty"));
            }
            let month = match r.month {
                None => 0,
                Some(m @ 1..=12) => m as u32,
                Some(_) => return Err(bad("month", "must be 1..=12 or null")),
            };
            if let Some(q) = r.quantity
                && !(q.is_finite() && q > 0.0)
            {
                return Err(bad("quantity", "must be a positive number or null"));
            }
            Ok(PriceInput {
                product_id: r.product_id,
                category: r.category,
                brand: r.brand,
                condition: r.condition,
                market: r.market,
                seller_country: r.seller_country,
                title: r.title,
                month,
                quantity: r.quantity,
                guest: r.guest,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(body: &str) -> String {
        price_inputs(body.as_bytes()).unwrap_err().field
    }

    #[test]
    fn rows_parse_with_nulls_and_missing_fields() {
        let rows = price_inputs(
            br#"{"rows": [{"market": "DE", "category": "mugs", "month": null},
                          {"market": "FR", "quantity": 12, "guest": true, "month": 3}]}"#,
        )
        .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].month, 0);
        assert_eq!(rows[0].category.as_deref(), Some("mugs"));
        assert_eq!(rows[1].quantity, Some(12.0));
        assert_eq!(rows[1].guest, Some(true));
    }

    #[test]
    fn bad_bodies_name_the_field() {
        assert_eq!(
            field(r#"{"rows": [{"market": "DE"}, {"market": "DE", "month": "May"}]}"#),
            "rows[1].month"
        );
        assert_eq!(
            field(r#"{"rows": [{"market": "DE", "prize": 3}]}"#),
            "rows[0].prize"
        );
        assert_eq!(field(r#"{"rows": [{"category": "mugs"}]}"#), "rows[0]");
        assert_eq!(field(r#"{"rows": []}"#), "rows");
        assert_eq!(field(r#"{"rows": [{"market": " "}]}"#), "rows[0].market");
        assert_eq!(
            field(r#"{"rows": [{"market": "DE", "month": 13}]}"#),
            "rows[0].month"
        );
        assert_eq!(
            field(r#"{"rows": [{"market": "DE", "quantity": -1}]}"#),
            "rows[0].quantity"
        );
        let e = price_inputs(br#"{"rows": [{"market": "DE", "prize": 3}]}"#).unwrap_err();
        assert!(e.why.contains("prize"), "{}", e.why);
        assert!(price_inputs(b"not json").is_err());
        let title = |b: &str| titles(b.as_bytes()).unwrap_err().field;
        assert_eq!(
            title(r#"{"rows": [{"title": "a", "top": 0}]}"#),
            "rows[0].top"
        );
        assert_eq!(title(r#"{"rows": [{"titel": "a"}]}"#), "rows[0].titel");
        let long = format!(r#"{{"rows": [{{"title": "{}"}}]}}"#, "x".repeat(1001));
        assert_eq!(title(&long), "rows[0].title");
        assert_eq!(
            titles(br#"{"rows": [{"title": ""}, {"title": "mug", "top": 5}]}"#).unwrap(),
            [("".to_string(), 3), ("mug".to_string(), 5)]
        );
        assert!(price_inputs(b"{}").is_err());
    }

    #[test]
    fn similar_queries_parse_and_bad_ones_name_the_field() {
        let q = similar_query(
            br#"{"product_id": "P1", "k": 5, "other_sellers": true, "markets": "other"}"#,
        )
        .unwrap();
        assert_eq!(
            q,
            SimilarQuery {
                by: QueryBy::Product("P1".into()),
                k: 5,
                other_sellers: true,
                markets: Markets::Other,
            }
        );
        let q = similar_query(br#"{"product_id": "P1"}"#).unwrap();
        assert_eq!((q.k, q.other_sellers, q.markets), (10, false, Markets::Any));
        let field = |b: &str| similar_query(b.as_bytes()).unwrap_err().field;
        assert_eq!(field(r#"{"product_id": "P1", "k": 0}"#), "k");
        assert_eq!(field(r#"{"product_id": "P1", "k": 101}"#), "k");
        assert_eq!(
            field(r#"{"product_id": "P1", "markets": "mars"}"#),
            "markets"
        );
        assert_eq!(field(r#"{"product_id": "P1", "kk": 3}"#), "kk");
        assert_eq!(field(r#"{"product_id": " "}"#), "product_id");
        assert_eq!(field(r#"{}"#), "product_id");
        assert_eq!(field(r#"{"title": "a", "product_id": "P1"}"#), "");
        let q = similar_query(
            br#"{"title": "blue mug", "seller_id": "S1", "market": "DE", "other_sellers": true, "markets": "same"}"#,
        )
        .unwrap();
        assert_eq!(
            q.by,
            QueryBy::Title {
                title: "blue mug".into(),
                seller_id: Some("S1".into()),
                market: Some("DE".into()),
            }
        );
        assert_eq!(field(r#"{"title": " "}"#), "title");
        assert_eq!(
            field(r#"{"title": "mug", "other_sellers": true}"#),
            "seller_id"
        );
        assert_eq!(field(r#"{"title": "mug", "markets": "other"}"#), "market");
        assert_eq!(field(r#"{"product_id": "P1", "market": "DE"}"#), "market");
        let long = format!(r#"{{"title": "{}"}}"#, "x".repeat(1001));
        assert_eq!(field(&long), "title");
    }
}
