//! Choosing k: a fit for every k of a range, each scored by its inertia (for the
//! elbow) and its silhouette on a fixed sample of rows (exact silhouette is n²).
//! The silhouette chooses; the elbow is reported beside it, since a data scientist
//! reads both before naming segments.

use std::ops::RangeInclusive;

use serde::{Deserialize, Serialize};

use super::{Fitted, KMeans, KMeansError, KMeansParams, Points, distances_by_block, norms};

/// One k of a sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KScore {
    pub k: usize,
    pub inertia: f64,
    /// On the sample; absent when the sample fell in fewer than two clusters.
    pub silhouette: Option<f64>,
    pub iterations: usize,
}

/// The mean silhouette of `x`'s rows under `labels` (k clusters): for each row, how
/// much nearer it is to its own cluster than to the nearest other one, from −1 to 1
/// (scikit-learn's definition: a row alone in its cluster scores 0). None when fewer
/// than two clusters have rows.
pub fn silhouette(x: Points, labels: &[u32], k: usize) -> Option<f64> {
    let n = x.rows();
    assert_eq!(labels.len(), n, "one label per row");
    let mut sizes = vec![0usize; k];
    for &l in labels {
        sizes[l as usize] += 1;
    }
    if sizes.iter().filter(|&&s| s > 0).count() < 2 {
        return None;
    }
    let x_norms = norms(x.values(), x.dim());
    let scores = distances_by_block(x, &x_norms, x.values(), |first, d| {
        d.chunks(n)
            .enumerate()
            .map(|(i, row)| {
                let mut sums = vec![0.0f64; k];
                for (j, &sq) in row.iter().enumerate() {
                    sums[labels[j] as usize] += f64::from(sq.sqrt());
                }
                let own = labels[first + i] as usize;
                if sizes[own] == 1 {
                    return 0.0;
                }
                // The row's distance to itself (0, up to rounding) is in its own sum.
                let a = sums[own] / (sizes[own] - 1) as f64;
                let b = (0..k)
                    .filter(|&c| c != own && sizes[c] > 0)
                    .map(|c| sums[c] / sizes[c] as f64)
                    .fold(f64::INFINITY, f64::min);
                if a.max(b) > 0.0 {
                    (b - a) / a.max(b)
                } else {
                    0.0
                }
            })
            .collect::<Vec<f64>>()
    });
    Some(scores.iter().flatten().sum::<f64>() / n as f64)
}

/// A fit for every k in `ks` (rows ≥ k), scored on the `sample` rows' silhouette.
pub fn sweep(
    x: Points,
    ks: RangeInclusive<usize>,
    params: &KMeansParams,
    sample: &[usize],
) -> Result<Vec<(KScore, Fitted)>, KMeansError> {
    let sampled: Vec<f32> = sample.iter().flat_map(|&i| x.row(i)).copied().collect();
    let sampled = Points::new(&sampled, x.dim())?;
    ks.filter(|&k| k <= x.rows())
        .map(|k| {
            let fit = KMeans::fit(
                x,
                &KMeansParams {
                    k,
                    ..params.clone()
                },
            )?;
            let labels: Vec<u32> = sample.iter().map(|&i| fit.assignment.labels[i]).collect();
            let score = KScore {
                k,
                inertia: fit.inertia,
                silhouette: silhouette(sampled, &labels, k),
                iterations: fit.iterations,
            };
            Ok((score, fit))
        })
        .collect()
}

/// The k with the best silhouette (the smaller k on a tie); None if no k has one.
pub fn best_silhouette(scores: &[KScore]) -> Option<usize> {
    scores
        .iter()
        .filter_map(|s| Some((s.k, s.silhouette?)))
        .fold(None, |best: Option<(usize, f64)>, (k, s)| match best {
            Some((_, b)) if b >= s => best,
            _ => Some((k, s)),
        })
        .map(|(k, _)| k)
}

/// The elbow of the inertia curve: the k farthest below the chord from the first
/// point to the last, both axes scaled to [0, 1] (the "kneedle" rule). None with
/// fewer than three ks.
pub fn elbow(scores: &[KScore]) -> Option<usize> {
    if scores.len() < 3 {
        return None;
    }
    let (first, last) = (&scores[0], &scores[scores.len() - 1]);
    let dk = (last.k - first.k) as f64;
    let di = first.inertia - last.inertia;
    if dk <= 0.0 || di <= 0.0 {
        return None;
    }
    scores
        .iter()
        .map(|s| {
            let x = (s.k - first.k) as f64 / dk;
            let y = (s.inertia - last.inertia) / di;
            // The chord runs from (0, 1) to (1, 0): y = 1 − x.
            (s.k, (1.0 - x) - y)
        })
        .fold(None, |best: Option<(usize, f64)>, (k, gap)| match best {
            Some((_, g)) if g >= gap => best,
            _ => Some((k, gap)),
        })
        .map(|(k, _)| k)
}

#[cfg(test)]
mod tests {
    use super::super::tests::blobs;
    use super::*;

    #[test]
    fn silhouette_by_hand() {
        // Two pairs on a line: {0, 1} and {10, 11}.
        let x = [0.0f32, 1.0, 10.0, 11.0];
        let p = Points::new(&x, 1).unwrap();
        let s = silhouette(p, &[0, 0, 1, 1], 2).unwrap();
        // Row 0: a = 1, b = (10 + 11) / 2 = 10.5, s = 9.5 / 10.5; by symmetry the
        // others: row 1: a = 1, b = 9.5 → 8.5 / 9.5.
        let want = (9.5 / 10.5 + 8.5 / 9.5) / 2.0;
        assert!((s - want).abs() < 1e-5, "{s} vs {want}");
        assert!(silhouette(p, &[0, 0, 0, 0], 2).is_none());
        // A row alone in its cluster scores 0.
        let s = silhouette(p, &[0, 1, 1, 1], 2).unwrap();
        assert!(s < 0.5);
    }

    #[test]
    fn the_sweep_finds_the_number_of_blobs() {
        let x = blobs(
            &[
                [0.0, 0.0],
                [20.0, 0.0],
                [0.0, 20.0],
                [20.0, 20.0],
                [10.0, 40.0],
            ],
            120,
            3.0,
            5,
        );
        let p = Points::new(&x, 2).unwrap();
        let sample: Vec<usize> = (0..p.rows()).step_by(3).collect();
        let fits = sweep(p, 2..=9, &KMeansParams::default(), &sample).unwrap();
        let scores: Vec<KScore> = fits.iter().map(|f| f.0.clone()).collect();
        assert_eq!(scores.len(), 8);
        assert!(
            scores
                .windows(2)
                .all(|w| w[1].inertia <= w[0].inertia * 1.001)
        );
        assert_eq!(best_silhouette(&scores), Some(5));
        assert_eq!(elbow(&scores), Some(5));
    }

    #[test]
    fn elbow_needs_a_curve() {
        let s = |k, inertia| KScore {
            k,
            inertia,
            silhouette: None,
            iterations: 1,
        };
        assert_eq!(elbow(&[s(2, 10.0), s(3, 5.0)]), None);
        assert_eq!(elbow(&[s(2, 10.0), s(3, 10.0), s(4, 10.0)]), None);
        assert_eq!(
            elbow(&[s(2, 100.0), s(3, 20.0), s(4, 15.0), s(5, 12.0)]),
            Some(3)
        );
        assert_eq!(best_silhouette(&[s(2, 1.0)]), None);
    }
}
