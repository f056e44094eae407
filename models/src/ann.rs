//! Approximate nearest neighbours over unit-length embeddings (cosine), as a bundle of
//! kind [`KIND`]: usearch's HNSW graph in its own serialization (`index.usearch`) and
//! the table that maps each graph key to a product and its seller and market
//! (`rows.json`).
//!
//! usearch (C++ core, SIMD kernels chosen at run time, f32/f16/i8 storage, filtered
//! search, save/load from memory) over hnsw_rs: filters are what "other sellers only"
//! and "same market" need, quantized storage is what keeps a million products in
//! memory, and a buffer round trip is what a verified bundle needs (hnsw_rs dumps to
//! files only). The README's "Similarity" section has the measurements.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

use crate::bundle::Bundle;

pub const KIND: &str = "ann-index";
pub const INDEX_FILE: &str = "index.usearch";
pub const ROWS_FILE: &str = "rows.json";

/// The usearch release built in, recorded in every index's parameters.
pub fn library_version() -> &'static str {
    usearch::version()
}

/// How vectors are stored in the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Quantization {
    F32,
    F16,
    I8,
}

impl Quantization {
    fn scalar(self) -> ScalarKind {
        match self {
            Quantization::F32 => ScalarKind::F32,
            Quantization::F16 => ScalarKind::F16,
            Quantization::I8 => ScalarKind::I8,
        }
    }
}

/// The distance the graph is built on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// 1 − cosine similarity: embeddings.
    #[default]
    Cos,
    /// Squared Euclidean distance (the ANN benchmarks' datasets).
    L2,
}

/// HNSW parameters (hnswlib's names in brackets).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnnParams {
    /// Graph degree [M].
    pub connectivity: usize,
    /// Candidates kept while inserting [ef_construction].
    pub expansion_add: usize,
    /// Candidates kept while searching [ef]; trades speed for recall.
    pub expansion_search: usize,
    pub quantization: Quantization,
    #[serde(default)]
    pub metric: Metric,
}

impl Default for AnnParams {
    fn default() -> AnnParams {
        AnnParams {
            metric: Metric::Cos,
            connectivity: 16,
            expansion_add: 128,
            expansion_search: 64,
            quantization: Quantization::F16,
        }
    }
}

impl AnnParams {
    /// Checks the parameters once, before any work.
    pub fn check(&self) -> Result<(), AnnError> {
        let bad = |name: &'static str, why: &str| {
            Err(AnnError::InvalidParam {
                name,
                why: why.to_string(),
            })
        };
        if !(2..=256).contains(&self.connectivity) {
            return bad("connectivity", "must be between 2 and 256");
        }
        if !(1..=10_000).contains(&self.expansion_add) {
            return bad("expansion_add", "must be between 1 and 10000");
        }
        if !(1..=10_000).contains(&self.expansion_search) {
            return bad("expansion_search", "must be between 1 and 10000");
        }
        Ok(())
    }
}

/// Who listed each indexed product: the filters of a similarity query.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Rows {
    pub product_id: Vec<String>,
    pub seller_id: Vec<String>,
    /// The seller's market (ship-from country), when known.
    pub market: Vec<Option<String>>,
}

impl Rows {
    pub fn len(&self) -> usize {
        self.product_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.product_id.is_empty()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AnnError {
    #[error("invalid parameter `{name}`: {why}")]
    InvalidParam { name: &'static str, why: String },
    #[error("{0} vectors for {1} rows")]
    Shape(usize, usize),
    #[error("vector {row} has {found} dimensions, expected {expected}")]
    Dimensions {
        row: usize,
        expected: usize,
        found: usize,
    },
    #[error("vector {row} is not finite")]
    NotFinite { row: usize },
    #[error("fewer than 2 products to index: nothing is similar to anything")]
    TooFew,
    #[error("the ANN library failed: {0}")]
    Library(String),
    #[error("bundle file `{file}`: {why}")]
    File { file: &'static str, why: String },
}

fn library(e: cxx::Exception) -> AnnError {
    AnnError::Library(e.what().to_string())
}

/// Which markets a query's results may come from (a market may be unknown: None).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MarketFilter<'a> {
    #[default]
    Any,
    /// Only products whose market is this one.
    Same(Option<&'a str>),
    /// Only products whose market is not this one (cross-border).
    Other(Option<&'a str>),
}

/// Which markets a product's similar products may come from, relative to its own
/// (the option `predict similar` and the server's queries take).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Markets {
    #[default]
    Any,
    /// The product's own market only.
    Same,
    /// Other markets only (cross-border recommendations).
    Other,
}

/// Which indexed products a query may return.
#[derive(Debug, Clone, Default)]
pub struct Filter<'a> {
    /// Leave out this seller's products (cross-seller recommendations).
    pub not_seller: Option<&'a str>,
    pub market: MarketFilter<'a>,
    /// Leave out this row (the query product itself).
    pub not_row: Option<usize>,
}

impl Filter<'_> {
    fn admits(&self, rows: &Rows, row: usize) -> bool {
        if self.not_row == Some(row) {
            return false;
        }
        if let Some(s) = self.not_seller
            && rows.seller_id[row] == s
        {
            return false;
        }
        let market = rows.market[row].as_deref();
        match self.market {
            MarketFilter::Any => true,
            MarketFilter::Same(m) => market == m,
            MarketFilter::Other(m) => market != m,
        }
    }

    fn is_open(&self) -> bool {
        self.not_seller.is_none() && self.market == MarketFilter::Any && self.not_row.is_none()
    }
}

/// One neighbour: its row in [`Rows`] and 1 − its distance to the query (the cosine
/// similarity under [`Metric::Cos`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Neighbour {
    pub row: usize,
    pub similarity: f32,
}

/// A built or loaded index with its rows.
pub struct AnnIndex {
    index: Index,
    rows: Rows,
    dim: usize,
    /// Product id → row, for queries by product.
    row_of: HashMap<String, usize>,
}

fn row_of(rows: &Rows) -> HashMap<String, usize> {
    rows.product_id
        .iter()
        .enumerate()
        .map(|(i, id)| (id.clone(), i))
        .collect()
}

impl AnnIndex {
    /// Builds the graph over `vectors` (row-major, `dim` floats each, unit length),
    /// inserting on the current rayon pool's threads.
    pub fn build(
        vectors: &[f32],
        dim: usize,
        rows: Rows,
        params: &AnnParams,
    ) -> Result<AnnIndex, AnnError> {
        params.check()?;
        if dim == 0 || vectors.len() != rows.len() * dim {
            return Err(AnnError::Shape(
                vectors.len().checked_div(dim).unwrap_or(0),
                rows.len(),
            ));
        }
        if rows.len() < 2 {
            return Err(AnnError::TooFew);
        }
        if let Some(row) = vectors
            .chunks_exact(dim)
            .position(|v| v.iter().any(|x| !x.is_finite()))
        {
            return Err(AnnError::NotFinite { row });
        }
        let index = Index::new(&IndexOptions {
            dimensions: dim,
            metric: match params.metric {
                Metric::Cos => MetricKind::Cos,
                Metric::L2 => MetricKind::L2sq,
            },
            quantization: params.quantization.scalar(),
            connectivity: params.connectivity,
            expansion_add: params.expansion_add,
            expansion_search: params.expansion_search,
            multi: false,
        })
        .map_err(library)?;
        let threads = rayon::current_num_threads();
        index
            .reserve_capacity_and_threads(rows.len(), threads)
            .map_err(library)?;
        use rayon::prelude::*;
        vectors
            .par_chunks_exact(dim)
            .enumerate()
            .try_for_each(|(row, v)| index.add(row as u64, v))
            .map_err(library)?;
        Ok(AnnIndex {
            index,
            row_of: row_of(&rows),
            rows,
            dim,
        })
    }

    pub fn rows(&self) -> &Rows {
        &self.rows
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The row of a product, if it is indexed.
    pub fn row(&self, product_id: &str) -> Option<usize> {
        self.row_of.get(product_id).copied()
    }

    /// A row's vector as the index stores it (rounded to its quantization).
    pub fn vector(&self, row: usize) -> Result<Vec<f32>, AnnError> {
        let mut v = vec![0f32; self.dim];
        let found = self.index.get(row as u64, &mut v).map_err(library)?;
        if found == 0 {
            return Err(AnnError::Library(format!("row {row} is not in the index")));
        }
        Ok(v)
    }

    /// The SIMD kernels the distance runs on, as usearch picked them at run time
    /// (recorded with benchmarks: machines of this kind differ in AVX-512).
    pub fn acceleration(&self) -> String {
        self.index.hardware_acceleration()
    }

    /// The filter for the similar products of indexed `row`: never itself, other
    /// sellers' only when asked, and the markets asked relative to its own.
    pub fn neighbours_filter(
        &self,
        row: usize,
        other_sellers: bool,
        markets: Markets,
    ) -> Filter<'_> {
        let own = self.rows.market[row].as_deref();
        Filter {
            not_row: Some(row),
            not_seller: other_sellers.then(|| self.rows.seller_id[row].as_str()),
            market: match markets {
                Markets::Any => MarketFilter::Any,
                Markets::Same => MarketFilter::Same(own),
                Markets::Other => MarketFilter::Other(own),
            },
        }
    }

    /// Sets how many candidates a search keeps (recall against speed).
    pub fn set_expansion_search(&self, n: usize) {
        self.index.change_expansion_search(n);
    }

    /// The `k` most similar indexed products that `filter` admits, best first.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        filter: &Filter,
    ) -> Result<Vec<Neighbour>, AnnError> {
        if query.len() != self.dim {
            return Err(AnnError::Dimensions {
                row: 0,
                expected: self.dim,
                found: query.len(),
            });
        }
        let matches = if filter.is_open() {
            self.index.search(query, k)
        } else {
            self.index
                .filtered_search(query, k, |key| filter.admits(&self.rows, key as usize))
        }
        .map_err(library)?;
        Ok(matches
            .keys
            .iter()
            .zip(&matches.distances)
            .map(|(key, d)| Neighbour {
                row: *key as usize,
                similarity: 1.0 - d,
            })
            .collect())
    }

    /// The bundle files: the graph in usearch's format and the rows as JSON.
    pub fn to_files(&self) -> Result<BTreeMap<String, Vec<u8>>, AnnError> {
        let mut graph = vec![0u8; self.index.serialized_length()];
        self.index.save_to_buffer(&mut graph).map_err(library)?;
        let rows = serde_json::to_vec(&self.rows).map_err(|e| AnnError::File {
            file: ROWS_FILE,
            why: e.to_string(),
        })?;
        Ok(BTreeMap::from([
            (INDEX_FILE.to_string(), graph),
            (ROWS_FILE.to_string(), rows),
        ]))
    }

    /// Loads a verified bundle's index (the bundle checked every file's checksum,
    /// so the graph bytes are the ones training wrote).
    pub fn from_bundle(bundle: &Bundle) -> Result<AnnIndex, AnnError> {
        let file = |name: &'static str| {
            bundle.file(name).ok_or(AnnError::File {
                file: name,
                why: "missing".into(),
            })
        };
        let rows: Rows = serde_json::from_slice(file(ROWS_FILE)?).map_err(|e| AnnError::File {
            file: ROWS_FILE,
            why: e.to_string(),
        })?;
        if rows.seller_id.len() != rows.len() || rows.market.len() != rows.len() {
            return Err(AnnError::File {
                file: ROWS_FILE,
                why: "columns of different lengths".into(),
            });
        }
        let index = Index::restore_from_buffer(file(INDEX_FILE)?).map_err(library)?;
        if index.size() != rows.len() {
            return Err(AnnError::File {
                file: INDEX_FILE,
                why: format!("{} vectors for {} rows", index.size(), rows.len()),
            });
        }
        let dim = index.dimensions();
        Ok(AnnIndex {
            index,
            row_of: row_of(&rows),
            rows,
            dim,
        })
    }
}

/// Recall@k of a cosine index against exact search: for each query row (self left out),
/// the share of its true `k` nearest rows (by dot product on the unit vectors) that
/// the index returns.
pub fn recall_at_k(
    index: &AnnIndex,
    vectors: &[f32],
    queries: &[usize],
    k: usize,
) -> Result<f64, AnnError> {
    let dim = index.dim();
    let n = vectors.len() / dim;
    if queries.is_empty() {
        return Ok(1.0);
    }
    use rayon::prelude::*;
    let found: Vec<usize> = queries
        .par_iter()
        .map(|&q| {
            let query = &vectors[q * dim..(q + 1) * dim];
            let mut exact: Vec<(f32, usize)> = (0..n)
                .filter(|&r| r != q)
                .map(|r| (dot(query, &vectors[r * dim..(r + 1) * dim]), r))
                .collect();
            let k = k.min(exact.len());
            exact.select_nth_unstable_by(k.saturating_sub(1), |a, b| b.0.total_cmp(&a.0));
            let truth: std::collections::HashSet<usize> =
                exact[..k].iter().map(|(_, r)| *r).collect();
            let filter = Filter {
                not_row: Some(q),
                ..Filter::default()
            };
            let got = index.search(query, k, &filter)?;
            Ok(got.iter().filter(|nb| truth.contains(&nb.row)).count())
        })
        .collect::<Result<_, AnnError>>()?;
    let asked = queries.len() * k.min(n - 1);
    Ok(found.iter().sum::<usize>() as f64 / asked as f64)
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Unit vectors in clusters: a realistic shape for title embeddings.
    fn clustered(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let centres: Vec<Vec<f32>> = (0..20)
            .map(|_| (0..dim).map(|_| rng.gen_range(-1.0..1.0)).collect())
            .collect();
        let mut out = Vec::with_capacity(n * dim);
        for i in 0..n {
            let c = &centres[i % centres.len()];
            let v: Vec<f32> = c.iter().map(|x| x + rng.gen_range(-0.5..0.5)).collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            out.extend(v.iter().map(|x| x / norm));
        }
        out
    }

    fn rows(n: usize) -> Rows {
        Rows {
            product_id: (0..n).map(|i| format!("P{i}")).collect(),
            seller_id: (0..n).map(|i| format!("S{}", i % 7)).collect(),
            market: (0..n)
                .map(|i| (i % 5 != 0).then(|| ["DE", "FR", "US"][i % 3].to_string()))
                .collect(),
        }
    }

    /// The index finds the true neighbours of held-in queries nearly always, and
    /// the same after a round trip through bundle files.
    #[test]
    fn recall_and_round_trip() {
        let (n, dim) = (2000, 32);
        let vectors = clustered(n, dim, 1);
        let index = AnnIndex::build(&vectors, dim, rows(n), &AnnParams::default()).unwrap();
        let queries: Vec<usize> = (0..n).step_by(20).collect();
        let recall = recall_at_k(&index, &vectors, &queries, 10).unwrap();
        assert!(recall > 0.95, "recall@10 {recall}");

        let gate = crate::bundle::Gate {
            metric: "recall_at_10".into(),
            direction: crate::bundle::Direction::Higher,
            tolerance: 0.005,
        };
        let manifest = crate::bundle::test_manifest("similar", KIND, gate);
        let bundle = Bundle::new(manifest, index.to_files().unwrap()).unwrap();
        let mut stored: BTreeMap<String, Vec<u8>> = bundle.to_files().into_iter().collect();
        let loaded = AnnIndex::from_bundle(&Bundle::from_files(stored.clone()).unwrap()).unwrap();
        assert_eq!(loaded.rows(), index.rows());
        let q = &vectors[..dim];
        let a = index.search(q, 5, &Filter::default()).unwrap();
        let b = loaded.search(q, 5, &Filter::default()).unwrap();
        assert_eq!(
            a.iter().map(|x| x.row).collect::<Vec<_>>(),
            b.iter().map(|x| x.row).collect::<Vec<_>>()
        );
        assert_eq!(a[0].row, 0, "a vector is its own nearest neighbour");
        assert_eq!(loaded.row("P7"), Some(7));
        assert_eq!(loaded.row("nope"), None);
        let kept = loaded.vector(7).unwrap();
        let cos: f32 = kept
            .iter()
            .zip(&vectors[7 * dim..8 * dim])
            .map(|(a, b)| a * b)
            .sum();
        assert!(
            cos > 0.999,
            "the stored vector is the one indexed (f16): {cos}"
        );
        assert!((a[0].similarity - 1.0).abs() < 1e-2);

        // A flipped byte in the graph is refused before usearch parses it.
        stored.get_mut(INDEX_FILE).unwrap()[100] ^= 1;
        assert!(matches!(
            Bundle::from_files(stored),
            Err(crate::bundle::BundleError::ChecksumMismatch { .. })
        ));
    }

    /// Filters hold for every result: other sellers, one market, other markets.
    #[test]
    fn filters_hold() {
        let (n, dim) = (500, 16);
        let vectors = clustered(n, dim, 2);
        let index = AnnIndex::build(&vectors, dim, rows(n), &AnnParams::default()).unwrap();
        let q = &vectors[3 * dim..4 * dim];
        let r = index.rows().clone();
        let other_sellers = Filter {
            not_seller: Some(&r.seller_id[3]),
            not_row: Some(3),
            ..Filter::default()
        };
        let got = index.search(q, 10, &other_sellers).unwrap();
        assert_eq!(got.len(), 10);
        assert!(got.iter().all(|nb| r.seller_id[nb.row] != r.seller_id[3]));
        let same = Filter {
            market: MarketFilter::Same(Some("FR")),
            ..Filter::default()
        };
        let got = index.search(q, 10, &same).unwrap();
        assert!(
            got.iter()
                .all(|nb| r.market[nb.row].as_deref() == Some("FR"))
        );
        let other = Filter {
            market: MarketFilter::Other(Some("FR")),
            ..Filter::default()
        };
        let got = index.search(q, 10, &other).unwrap();
        assert!(
            got.iter()
                .all(|nb| r.market[nb.row].as_deref() != Some("FR"))
        );
        let around = index.neighbours_filter(3, true, Markets::Other);
        let got = index.search(q, 10, &around).unwrap();
        assert!(!got.is_empty());
        assert!(got.iter().all(|nb| nb.row != 3
            && r.seller_id[nb.row] != r.seller_id[3]
            && r.market[nb.row] != r.market[3]));
        let unknown = Filter {
            market: MarketFilter::Same(None),
            ..Filter::default()
        };
        let got = index.search(q, 10, &unknown).unwrap();
        assert!(!got.is_empty());
        assert!(got.iter().all(|nb| r.market[nb.row].is_none()));
        assert!(
            got.windows(2).all(|w| w[0].similarity >= w[1].similarity),
            "best first"
        );
    }

    /// Bad input is refused with a typed error before the library sees it.
    #[test]
    fn bad_input_is_refused() {
        let p = AnnParams::default();
        assert!(matches!(
            AnnIndex::build(&[0.0; 4], 4, rows(1), &p),
            Err(AnnError::TooFew)
        ));
        assert!(matches!(
            AnnIndex::build(&[0.0; 7], 4, rows(2), &p),
            Err(AnnError::Shape(..))
        ));
        let mut v = clustered(3, 4, 3);
        v[5] = f32::NAN;
        assert!(matches!(
            AnnIndex::build(&v, 4, rows(3), &p),
            Err(AnnError::NotFinite { row: 1 })
        ));
        let bad = AnnParams {
            connectivity: 1,
            ..AnnParams::default()
        };
        assert!(matches!(
            bad.check(),
            Err(AnnError::InvalidParam {
                name: "connectivity",
                ..
            })
        ));
    }
}
