//! k-means clustering: Lloyd's algorithm from greedy k-means++ seeds, the best of
//! `n_init` runs — the segments models (products, sellers).
//!
//! Why not linfa's KMeans: it measures distances one row and one centroid at a
//! time. Here the assignment step is one matrix product per block of rows
//! (‖x‖² − 2·x·cᵀ + ‖c‖², as scikit-learn does), run by gemm's SIMD kernels on every
//! core, and the centroid update sums each cluster's rows in row order, so a seed
//! gives the same centroids whatever the thread count.
//!
//! - [`scaler`]: imputation and per-block scaling of the raw features;
//! - [`select`]: silhouette, inertia and the elbow over a range of k;
//! - [`segmenter`]: scaler + centroids as bundle files (kind `kmeans`);
//! - [`report`]: the page a data scientist reads to name the segments.

#[cfg(feature = "report")]
pub mod report;
pub mod scaler;
pub mod segmenter;
pub mod select;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::matmul::matmul;

pub use scaler::{Block, Scaler, Scaling};
pub use segmenter::Segmenter;

/// The bundle kind of a segments model.
pub const KIND: &str = "kmeans";

/// Rows per block of the assignment step: a block's distances (rows × k) stay in cache.
const BLOCK: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum KMeansError {
    #[error("invalid parameter `{name}`: {why}")]
    InvalidParam { name: &'static str, why: String },
    #[error("{values} values do not fill rows of {dim} columns")]
    Shape { values: usize, dim: usize },
    #[error("{rows} row(s) cannot make {k} clusters")]
    TooFewRows { rows: usize, k: usize },
    #[error("the value at row {row}, column {column} is infinite")]
    Infinite { row: usize, column: usize },
    #[error("the model has {expected} features, the rows have {found}")]
    Features { expected: usize, found: usize },
    #[error(transparent)]
    Bundle(#[from] crate::BundleError),
    #[error("the bundle has no {0}")]
    MissingFile(&'static str),
    #[error("{file}: {why}")]
    Parse { file: &'static str, why: String },
}

/// Rows of `dim` floats, row-major.
#[derive(Debug, Clone, Copy)]
pub struct Points<'a> {
    values: &'a [f32],
    dim: usize,
}

impl<'a> Points<'a> {
    /// Refuses a ragged buffer; `NaN` is allowed here (the scaler imputes it) but
    /// nothing infinite.
    pub fn new(values: &'a [f32], dim: usize) -> Result<Points<'a>, KMeansError> {
        if dim == 0 || !values.len().is_multiple_of(dim) {
            return Err(KMeansError::Shape {
                values: values.len(),
                dim,
            });
        }
        if let Some(i) = values.iter().position(|v| v.is_infinite()) {
            return Err(KMeansError::Infinite {
                row: i / dim,
                column: i % dim,
            });
        }
        Ok(Points { values, dim })
    }

    pub fn rows(&self) -> usize {
        self.values.len() / self.dim
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn row(&self, i: usize) -> &'a [f32] {
        &self.values[i * self.dim..(i + 1) * self.dim]
    }

    pub fn values(&self) -> &'a [f32] {
        self.values
    }
}

/// Hyper-parameters (scikit-learn's names and defaults, but three runs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KMeansParams {
    pub k: usize,
    /// Independent seedings; the run with the least inertia wins.
    pub n_init: usize,
    pub max_iter: usize,
    /// Convergence: the centroids' total squared shift, relative to the data's mean
    /// per-feature variance.
    pub tol: f64,
    pub seed: u64,
}

impl Default for KMeansParams {
    fn default() -> KMeansParams {
        KMeansParams {
            k: 8,
            n_init: 3,
            max_iter: 300,
            tol: 1e-4,
            seed: 42,
        }
    }
}

impl KMeansParams {
    pub fn check(&self) -> Result<(), KMeansError> {
        let bad = |name, why: &str| {
            Err(KMeansError::InvalidParam {
                name,
                why: why.into(),
            })
        };
        if self.k < 1 {
            return bad("k", "at least 1 cluster");
        }
        if !(1..=100).contains(&self.n_init) {
            return bad("n_init", "between 1 and 100 runs");
        }
        if self.max_iter < 1 {
            return bad("max_iter", "at least 1 iteration");
        }
        if !(self.tol.is_finite() && self.tol >= 0.0) {
            return bad("tol", "a finite number ≥ 0");
        }
        Ok(())
    }
}

/// Fitted centroids.
#[derive(Debug, Clone, PartialEq)]
pub struct KMeans {
    pub dim: usize,
    /// k × dim, row-major.
    pub centroids: Vec<f32>,
}

/// Each row's cluster and squared distance to its centroid.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    pub labels: Vec<u32>,
    pub sq_distances: Vec<f32>,
}

impl Assignment {
    /// The sum of squared distances to the assigned centroids.
    pub fn inertia(&self) -> f64 {
        self.sq_distances.iter().map(|&d| f64::from(d)).sum()
    }
}

/// A fit: the model, its training rows' assignment, and how the winning run went.
#[derive(Debug, Clone)]
pub struct Fitted {
    pub model: KMeans,
    pub assignment: Assignment,
    pub inertia: f64,
    pub iterations: usize,
    pub converged: bool,
}

impl KMeans {
    pub fn k(&self) -> usize {
        self.centroids.len() / self.dim
    }

    pub fn centroid(&self, j: usize) -> &[f32] {
        &self.centroids[j * self.dim..(j + 1) * self.dim]
    }

    /// The nearest centroid of every row (rows must have no `NaN`: scale them first).
    pub fn assign(&self, x: Points) -> Result<Assignment, KMeansError> {
        if x.dim != self.dim {
            return Err(KMeansError::Features {
                expected: self.dim,
                found: x.dim,
            });
        }
        Ok(assign(x, &norms(x.values, x.dim), &self.centroids))
    }

    /// Fits k clusters to `x` (no `NaN`): the best of `n_init` seeded runs.
    pub fn fit(x: Points, params: &KMeansParams) -> Result<Fitted, KMeansError> {
        params.check()?;
        if x.rows() < params.k {
            return Err(KMeansError::TooFewRows {
                rows: x.rows(),
                k: params.k,
            });
        }
        let x_norms = norms(x.values, x.dim);
        let tol = params.tol * mean_variance(x);
        let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
        let mut best: Option<Fitted> = None;
        for _ in 0..params.n_init {
            let seeds = plus_plus(x, &x_norms, params.k, &mut rng);
            let run = lloyd(x, &x_norms, seeds, params.max_iter, tol);
            if best.as_ref().is_none_or(|b| run.inertia < b.inertia) {
                best = Some(run);
            }
        }
        Ok(best.expect("n_init ≥ 1"))
    }
}

fn norms(values: &[f32], dim: usize) -> Vec<f32> {
    values
        .par_chunks(dim)
        .map(|r| r.iter().map(|v| v * v).sum())
        .collect()
}

/// The mean over features of their variance (scikit-learn's scale for `tol`).
fn mean_variance(x: Points) -> f64 {
    let n = x.rows() as f64;
    let mut sum = vec![0.0f64; x.dim];
    let mut sq = vec![0.0f64; x.dim];
    for r in x.values.chunks(x.dim) {
        for (j, &v) in r.iter().enumerate() {
            sum[j] += f64::from(v);
            sq[j] += f64::from(v) * f64::from(v);
        }
    }
    let var: f64 = sum
        .iter()
        .zip(&sq)
        .map(|(s, q)| (q / n - (s / n).powi(2)).max(0.0))
        .sum();
    var / x.dim as f64
}

/// Squared distances of every row of `x` to every one of `centres` (c × dim), one
/// block of rows at a time on all cores: `visit(first_row, block)` gets a block's
/// distances (rows × c, row-major) and its results come back in row order.
pub(crate) fn distances_by_block<R: Send>(
    x: Points,
    x_norms: &[f32],
    centres: &[f32],
    visit: impl Fn(usize, &[f32]) -> R + Sync,
) -> Vec<R> {
    let dim = x.dim;
    let c = centres.len() / dim;
    let c_norms = norms(centres, dim);
    x.values
        .par_chunks(BLOCK * dim)
        .enumerate()
        .map(|(b, rows)| {
            let m = rows.len() / dim;
            let mut d = vec![0.0f32; m * c];
            // −2·x·cᵀ: c's rows are the product's columns (row stride 1, column stride dim).
            matmul(
                (m, c, dim),
                &mut d,
                c,
                false,
                rows,
                dim,
                centres,
                (1, dim),
                -2.0,
            );
            let first = b * BLOCK;
            for (i, out) in d.chunks_mut(c).enumerate() {
                let xn = x_norms[first + i];
                for (v, cn) in out.iter_mut().zip(&c_norms) {
                    // Rounding in the expansion can dip below zero for a row on its centre.
                    *v = (*v + xn + cn).max(0.0);
                }
            }
            visit(first, &d)
        })
        .collect()
}

fn assign(x: Points, x_norms: &[f32], centroids: &[f32]) -> Assignment {
    let blocks = distances_by_block(x, x_norms, centroids, |_, d| {
        let k = centroids.len() / x.dim;
        d.chunks(k)
            .map(|row| {
                let (j, v) =
                    row.iter()
                        .enumerate()
                        .fold(
                            (0, f32::INFINITY),
                            |(bj, bv), (j, &v)| {
                                if v < bv { (j, v) } else { (bj, bv) }
                            },
                        );
                (j as u32, v)
            })
            .collect::<Vec<_>>()
    });
    let (labels, sq_distances) = blocks.into_iter().flatten().unzip();
    Assignment {
        labels,
        sq_distances,
    }
}

/// Greedy k-means++ (Arthur & Vassilvitskii, with scikit-learn's 2 + ln k local
/// trials per centre): each centre is the best, by resulting potential, of a few rows
/// drawn with probability proportional to their squared distance to the centres so far.
fn plus_plus(x: Points, x_norms: &[f32], k: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    let n = x.rows();
    let trials = 2 + (k as f64).ln() as usize;
    let mut centres: Vec<f32> = x.row(rng.gen_range(0..n)).to_vec();
    let mut closest: Vec<f32> = distances_by_block(x, x_norms, &centres, |_, d| d.to_vec())
        .into_iter()
        .flatten()
        .collect();
    let mut cumulative = vec![0.0f64; n];
    for _ in 1..k {
        let mut total = 0.0f64;
        for (c, &d) in cumulative.iter_mut().zip(&closest) {
            total += f64::from(d);
            *c = total;
        }
        let picks: Vec<usize> = (0..trials)
            .map(|_| {
                if total > 0.0 {
                    let r = rng.r#gen::<f64>() * total;
                    cumulative.partition_point(|&c| c <= r).min(n - 1)
                } else {
                    // Every row sits on a centre: any row will do.
                    rng.gen_range(0..n)
                }
            })
            .collect();
        let candidates: Vec<f32> = picks.iter().flat_map(|&i| x.row(i)).copied().collect();
        let to_candidates: Vec<f32> =
            distances_by_block(x, x_norms, &candidates, |_, d| d.to_vec())
                .into_iter()
                .flatten()
                .collect();
        let potential = |t: usize| -> f64 {
            closest
                .iter()
                .enumerate()
                .map(|(i, &c)| f64::from(c.min(to_candidates[i * trials + t])))
                .sum()
        };
        let best = (0..trials)
            .map(|t| (t, potential(t)))
            .fold(
                (0, f64::INFINITY),
                |b, (t, p)| if p < b.1 { (t, p) } else { b },
            );
        for (i, c) in closest.iter_mut().enumerate() {
            *c = c.min(to_candidates[i * trials + best.0]);
        }
        centres.extend_from_slice(x.row(picks[best.0]));
    }
    centres
}

/// Lloyd's iterations from `centroids` until the labels stop changing, the centroids
/// move less than `tol` in all, or `max_iter`.
fn lloyd(x: Points, x_norms: &[f32], mut centroids: Vec<f32>, max_iter: usize, tol: f64) -> Fitted {
    let dim = x.dim;
    let k = centroids.len() / dim;
    let mut assignment = assign(x, x_norms, &centroids);
    let (mut iterations, mut converged) = (0, false);
    while iterations < max_iter {
        iterations += 1;
        let next = update(x, &assignment, k);
        let shift: f64 = centroids
            .iter()
            .zip(&next)
            .map(|(a, b)| f64::from(a - b).powi(2))
            .sum();
        centroids = next;
        let previous = std::mem::replace(&mut assignment, assign(x, x_norms, &centroids));
        if previous.labels == assignment.labels || shift <= tol {
            converged = true;
            break;
        }
    }
    let inertia = assignment.inertia();
    Fitted {
        model: KMeans { dim, centroids },
        assignment,
        inertia,
        iterations,
        converged,
    }
}

/// New centroids: each cluster's mean, its rows summed in row order (in f64) so the
/// result does not depend on threads. An empty cluster takes the row farthest from
/// its centroid that no other empty cluster took (scikit-learn's relocation).
fn update(x: Points, a: &Assignment, k: usize) -> Vec<f32> {
    let dim = x.dim;
    let mut members: Vec<Vec<u32>> = vec![Vec::new(); k];
    for (i, &l) in a.labels.iter().enumerate() {
        members[l as usize].push(i as u32);
    }
    let mut centroids: Vec<f32> = members
        .par_iter()
        .flat_map_iter(|rows| {
            let mut sum = vec![0.0f64; dim];
            for &r in rows {
                for (s, &v) in sum.iter_mut().zip(x.row(r as usize)) {
                    *s += f64::from(v);
                }
            }
            let n = rows.len().max(1) as f64;
            sum.into_iter().map(move |s| (s / n) as f32)
        })
        .collect();
    let empty: Vec<usize> = (0..k).filter(|&j| members[j].is_empty()).collect();
    if !empty.is_empty() {
        let mut far: Vec<usize> = (0..x.rows()).collect();
        far.sort_by(|&i, &j| {
            a.sq_distances[j]
                .total_cmp(&a.sq_distances[i])
                .then(i.cmp(&j))
        });
        for (j, &row) in empty.iter().zip(&far) {
            centroids[j * dim..(j + 1) * dim].copy_from_slice(x.row(row));
        }
    }
    centroids
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `per` points around each of `centres` (2-D), deterministic jitter.
    pub(crate) fn blobs(centres: &[[f32; 2]], per: usize, spread: f32, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        centres
            .iter()
            .flat_map(|c| {
                (0..per)
                    .flat_map(|_| {
                        [
                            c[0] + spread * (rng.r#gen::<f32>() - 0.5),
                            c[1] + spread * (rng.r#gen::<f32>() - 0.5),
                        ]
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn finds_separated_blobs() {
        let centres = [[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]];
        let x = blobs(&centres, 300, 2.0, 7);
        let p = Points::new(&x, 2).unwrap();
        let fit = KMeans::fit(
            p,
            &KMeansParams {
                k: 4,
                ..KMeansParams::default()
            },
        )
        .unwrap();
        assert!(fit.converged);
        // Every blob's points share one label, and the four labels differ.
        let mut labels: Vec<u32> = (0..4).map(|b| fit.assignment.labels[b * 300]).collect();
        for (blob, label) in fit.assignment.labels.chunks(300).zip(&labels) {
            assert!(blob.iter().all(|l| l == label));
        }
        labels.sort();
        labels.dedup();
        assert_eq!(labels.len(), 4);
        for c in centres {
            let nearest = (0..4)
                .map(|j| {
                    let m = fit.model.centroid(j);
                    (m[0] - c[0]).powi(2) + (m[1] - c[1]).powi(2)
                })
                .fold(f32::INFINITY, f32::min);
            assert!(nearest < 0.05, "centre {c:?}: {nearest}");
        }
    }

    #[test]
    fn inertia_and_assignment_agree_with_brute_force() {
        let x = blobs(&[[0.0, 0.0], [3.0, 1.0], [1.0, 4.0]], 700, 4.0, 3);
        let p = Points::new(&x, 2).unwrap();
        // tol 0: the fit stops only when the labels do, so centroids are their members' means.
        let params = KMeansParams {
            k: 5,
            n_init: 2,
            tol: 0.0,
            ..KMeansParams::default()
        };
        let fit = KMeans::fit(p, &params).unwrap();
        let mut inertia = 0.0f64;
        for i in 0..p.rows() {
            let r = p.row(i);
            let d: Vec<f64> = (0..5)
                .map(|j| {
                    let c = fit.model.centroid(j);
                    f64::from((r[0] - c[0]).powi(2) + (r[1] - c[1]).powi(2))
                })
                .collect();
            let best = d.iter().copied().fold(f64::INFINITY, f64::min);
            let l = fit.assignment.labels[i] as usize;
            assert!(
                d[l] <= best + 1e-4,
                "row {i} is not at its nearest centroid"
            );
            inertia += best;
        }
        assert!((fit.inertia - inertia).abs() / inertia < 1e-4);
        // Each centroid is its members' mean (the fit ended on a converged update).
        for j in 0..5 {
            let members: Vec<usize> = (0..p.rows())
                .filter(|&i| fit.assignment.labels[i] == j as u32)
                .collect();
            let mean_x =
                members.iter().map(|&i| p.row(i)[0] as f64).sum::<f64>() / members.len() as f64;
            assert!((mean_x - fit.model.centroid(j)[0] as f64).abs() < 1e-3);
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_centroids_and_more_runs_never_worse() {
        let x = blobs(&[[0.0, 0.0], [5.0, 5.0], [9.0, 1.0]], 400, 6.0, 11);
        let p = Points::new(&x, 2).unwrap();
        let params = KMeansParams {
            k: 6,
            n_init: 1,
            ..KMeansParams::default()
        };
        let a = KMeans::fit(p, &params).unwrap();
        let b = KMeans::fit(p, &params).unwrap();
        assert_eq!(a.model, b.model);
        let many = KMeans::fit(
            p,
            &KMeansParams {
                n_init: 5,
                ..params
            },
        )
        .unwrap();
        assert!(many.inertia <= a.inertia + 1e-6);
    }

    #[test]
    fn duplicates_and_empty_clusters_do_not_break_it() {
        // 10 identical rows and 2 others, 4 clusters: seeding draws the same row twice
        // at most once in potential; whatever happens, every label is valid.
        let mut x = [1.0f32, 1.0].repeat(10);
        x.extend([5.0, 5.0, 9.0, 9.0]);
        let p = Points::new(&x, 2).unwrap();
        let fit = KMeans::fit(
            p,
            &KMeansParams {
                k: 4,
                ..KMeansParams::default()
            },
        )
        .unwrap();
        assert!(fit.assignment.labels.iter().all(|&l| l < 4));
        assert!(
            fit.inertia < 1e-6,
            "three distinct rows, four clusters: {}",
            fit.inertia
        );
    }

    #[test]
    fn bad_input_is_a_typed_error() {
        assert!(matches!(
            Points::new(&[1.0, 2.0, 3.0], 2),
            Err(KMeansError::Shape { .. })
        ));
        assert!(matches!(
            Points::new(&[1.0, f32::INFINITY], 2),
            Err(KMeansError::Infinite { row: 0, column: 1 })
        ));
        let x = [1.0f32, 2.0, 3.0, 4.0];
        let p = Points::new(&x, 2).unwrap();
        assert!(matches!(
            KMeans::fit(
                p,
                &KMeansParams {
                    k: 3,
                    ..KMeansParams::default()
                }
            ),
            Err(KMeansError::TooFewRows { rows: 2, k: 3 })
        ));
        assert!(matches!(
            KMeans::fit(
                p,
                &KMeansParams {
                    n_init: 0,
                    ..KMeansParams::default()
                }
            ),
            Err(KMeansError::InvalidParam { name: "n_init", .. })
        ));
        let fit = KMeans::fit(
            p,
            &KMeansParams {
                k: 1,
                ..KMeansParams::default()
            },
        )
        .unwrap();
        let other = [1.0f32, 2.0, 3.0];
        assert!(matches!(
            fit.model.assign(Points::new(&other, 3).unwrap()),
            Err(KMeansError::Features {
                expected: 2,
                found: 3
            })
        ));
    }
}
