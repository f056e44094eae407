//! What `train duplicates` and `predict duplicates` share: the catalogue (every
//! embedded listing with its seller, title, category and listing time), the
//! candidate pairs worth judging, and their signals.
//!
//! Candidates come from three places, because none finds every duplicate: each
//! listing's nearest titles by embedding among other sellers' listings (edited
//! titles), listings sharing a rare model code (translated titles, whose embeddings
//! can drift apart), and listings whose photos' perceptual hashes differ in few bits
//! (the same picture edited, whatever the title says). Photos come from `sgml
//! images` (`features/images/dt=D/`) when it has run.

use std::collections::{BTreeSet, HashMap};

use anyhow::Context;
use chrono::NaiveDate;
use polars::prelude::*;
use rayon::prelude::*;
use sgml_features::Table;
use sgml_models::ann::{AnnIndex, AnnParams, Markets, Rows};
use sgml_models::duplicates::{Side, Signals, TitleFeatures, TitleIndex, codes};

use crate::run::RunContext;
use crate::steps::embed;

/// Nearest other-seller titles examined per listing.
pub const NEIGHBOURS: usize = 10;
/// A code carried by more listings than this is a size or a year, not a model.
pub const MAX_CODE_LISTINGS: usize = 12;
/// Photos whose hashes differ in at most this many of 64 bits are candidates. Eight
/// blocks of 8 bits: two hashes this close agree on a whole block (pigeonhole), so
/// looking up each block finds every such pair without comparing all pairs.
pub const PHOTO_CANDIDATE_BITS: u32 = 7;
/// A hash block shared by more photos than this is a blank background, not a clue.
const MAX_PHOTO_BLOCK_LISTINGS: usize = 64;

/// Every embedded listing of the run date.
pub struct Catalogue {
    pub ids: Vec<String>,
    pub sellers: Vec<String>,
    pub markets: Vec<Option<String>>,
    pub titles: Vec<String>,
    pub categories: Vec<Option<String>>,
    /// Listing time, microseconds (older listings are what newer ones duplicate).
    pub created: Vec<Option<i64>>,
    pub embeddings: Vec<f32>,
    pub dim: usize,
    /// The perceptual hash of each listing's photo, when `sgml images` read one.
    pub photos: Vec<Option<u64>>,
    /// Listed products left out for want of an embedding (or embeddings of no
    /// listed product).
    pub unembedded: usize,
    pub unlisted: usize,
}

impl Catalogue {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    fn vector(&self, i: usize) -> &[f32] {
        &self.embeddings[i * self.dim..(i + 1) * self.dim]
    }
}

pub fn read(ctx: &mut RunContext, run_date: NaiveDate) -> anyhow::Result<Catalogue> {
    let e = embed::read(ctx, run_date)?.with_context(|| {
        format!("no title embeddings for {run_date}: run `sgml embed --run-date {run_date}` first")
    })?;
    let products = super::read_raw(ctx, Table::Products, run_date)?
        .context("no products ingested: run `sgml ingest` first")?
        .select([
            col("product_id"),
            col("seller_id"),
            col("seller_country"),
            col("title"),
            col("category"),
            col("created_ts").cast(DataType::Int64).alias("created"),
        ])
        .collect()?;
    let ids = super::texts(&products, "product_id")?;
    let sellers = super::texts(&products, "seller_id")?;
    let markets = super::texts(&products, "seller_country")?;
    let titles = super::texts(&products, "title")?;
    let categories = super::texts(&products, "category")?;
    let created: Vec<Option<i64>> = products.column("created")?.i64()?.iter().collect();
    let row_of: HashMap<&str, usize> = ids
        .iter()
        .enumerate()
        .filter_map(|(i, id)| Some((id.as_deref()?, i)))
        .collect();
    let mut c = Catalogue {
        ids: Vec::new(),
        sellers: Vec::new(),
        markets: Vec::new(),
        titles: Vec::new(),
        categories: Vec::new(),
        created: Vec::new(),
        embeddings: Vec::with_capacity(e.vectors.len()),
        dim: e.dim,
        photos: Vec::new(),
        unembedded: 0,
        unlisted: 0,
    };
    let photo_of = photo_hashes(ctx, run_date)?;
    for (k, id) in e.product_id.iter().enumerate() {
        let Some(&r) = row_of.get(id.as_str()) else {
            c.unlisted += 1;
            continue;
        };
        c.ids.push(id.clone());
        c.sellers.push(sellers[r].clone().unwrap_or_default());
        c.markets.push(markets[r].clone());
        c.titles.push(titles[r].clone().unwrap_or_default());
        c.categories.push(categories[r].clone());
        c.created.push(created[r]);
        c.embeddings.extend_from_slice(e.vector(k));
        c.photos.push(photo_of.get(id.as_str()).copied());
    }
    c.unembedded = row_of.len().saturating_sub(c.len());
    Ok(c)
}

/// Each photographed product's pHash, from the run date's `features/images` (empty
/// when `sgml images` has not run: the photo signal is then 0 for every pair).
fn photo_hashes(ctx: &mut RunContext, run_date: NaiveDate) -> anyhow::Result<HashMap<String, u64>> {
    let Some(df) = super::read_feature_part(ctx, super::images::TABLE, run_date)? else {
        return Ok(HashMap::new());
    };
    Ok(super::texts(&df, "product_id")?
        .into_iter()
        .zip(super::texts(&df, "phash")?)
        .filter_map(|(id, h)| Some((id?, u64::from_str_radix(&h?, 16).ok()?)))
        .collect())
}

/// The catalogue's candidate pairs `(i, j)`, `i < j`, of different sellers, each once.
pub fn candidates(c: &Catalogue, index: &TitleIndex) -> anyhow::Result<Vec<(usize, usize)>> {
    let mut pairs: BTreeSet<(usize, usize)> = BTreeSet::new();
    if c.len() >= 2 {
        let rows = Rows {
            product_id: c.ids.clone(),
            seller_id: c.sellers.clone(),
            market: c.markets.clone(),
        };
        let ann = AnnIndex::build(&c.embeddings, c.dim, rows, &AnnParams::default())?;
        let found: Vec<Vec<usize>> = (0..c.len())
            .into_par_iter()
            .map(|i| {
                let filter = ann.neighbours_filter(i, true, Markets::Any);
                Ok(ann
                    .search(c.vector(i), NEIGHBOURS, &filter)?
                    .into_iter()
                    .map(|n| n.row)
                    .collect())
            })
            .collect::<anyhow::Result<_>>()?;
        for (i, near) in found.into_iter().enumerate() {
            pairs.extend(near.into_iter().map(|j| (i.min(j), i.max(j))));
        }
    }
    let mut by_code: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, t) in c.titles.iter().enumerate() {
        for code in codes(t) {
            if index.code_frequency(&code) <= MAX_CODE_LISTINGS {
                by_code.entry(code).or_default().push(i);
            }
        }
    }
    for listings in by_code.values() {
        for (n, &a) in listings.iter().enumerate() {
            for &b in &listings[n + 1..] {
                if c.sellers[a] != c.sellers[b] {
                    pairs.insert((a.min(b), a.max(b)));
                }
            }
        }
    }
    pairs.extend(photo_pairs(&c.photos));
    Ok(pairs
        .into_iter()
        .filter(|(a, b)| a != b && c.sellers[*a] != c.sellers[*b])
        .collect())
}

/// Pairs of photos within [`PHOTO_CANDIDATE_BITS`] of each other, by multi-index
/// hashing: bucket every hash by each of its eight bytes, compare within buckets.
fn photo_pairs(photos: &[Option<u64>]) -> BTreeSet<(usize, usize)> {
    let mut buckets: HashMap<(usize, u8), Vec<usize>> = HashMap::new();
    for (i, h) in photos.iter().enumerate() {
        if let Some(h) = h {
            for block in 0..8 {
                buckets
                    .entry((block, (h >> (8 * block)) as u8))
                    .or_default()
                    .push(i);
            }
        }
    }
    let mut pairs = BTreeSet::new();
    for members in buckets
        .values()
        .filter(|m| m.len() <= MAX_PHOTO_BLOCK_LISTINGS)
    {
        for (n, &a) in members.iter().enumerate() {
            for &b in &members[n + 1..] {
                let (ha, hb) = (photos[a].expect("bucketed"), photos[b].expect("bucketed"));
                if (ha ^ hb).count_ones() <= PHOTO_CANDIDATE_BITS {
                    pairs.insert((a.min(b), a.max(b)));
                }
            }
        }
    }
    pairs
}

/// The title statistics and each listing's title features.
pub fn title_features(c: &Catalogue) -> (TitleIndex, Vec<TitleFeatures>) {
    let index = TitleIndex::new(c.titles.iter().map(String::as_str));
    let features = c.titles.par_iter().map(|t| index.features(t)).collect();
    (index, features)
}

pub fn signals(
    c: &Catalogue,
    features: &[TitleFeatures],
    pairs: &[(usize, usize)],
) -> Vec<Signals> {
    let side = |i: usize| Side {
        title: &features[i],
        embedding: c.vector(i),
        category: c.categories[i].as_deref(),
        photo: c.photos[i],
    };
    pairs
        .par_iter()
        .map(|&(a, b)| Signals::of(&side(a), &side(b)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn photo_pairs_are_the_close_hashes() {
        let base = 0x0123_4567_89AB_CDEFu64;
        let photos = [
            Some(base),
            Some(base ^ 0b111_1111),            // 7 bits off: a candidate
            Some(base ^ 0x0101_0101_0101_0101), // 8 bits, one per byte: not
            None,
            Some(!base),
            Some(base ^ (1 << 63)),
        ];
        let got: Vec<(usize, usize)> = photo_pairs(&photos).into_iter().collect();
        assert_eq!(got, [(0, 1), (0, 5)], "1 and 5 differ in 8 bits");
    }
}
