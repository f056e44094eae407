//! `sgml train duplicates`: the duplicate-listings decision (kind `duplicates`),
//! fitted on the labelled cut (`raw/duplicate_groups`: listings a reviewer grouped).
//!
//! The labelled groups are split in two (groups with duplicates alternately, in a
//! seeded order; lone listings by a seeded hash): one half
//! calibrates (the logistic combination of the signals and the threshold with the
//! best pair F1), the other is the holdout the metrics come from — per-listing F1,
//! pair precision and recall, the share of true pairs the candidates reach, and the
//! same on spelling alone (TF-IDF character trigrams with a calibrated threshold),
//! the one-signal baseline. The gate re-scores the champion on this holdout.

use std::collections::{BTreeMap, HashMap};

use anyhow::Context;
use chrono::NaiveDate;
use polars::prelude::col;
use sgml_features::Table;
use sgml_models::bundle::{Direction, Gate};
use sgml_models::duplicates::{self, DuplicateMetrics, DuplicateModel, KIND, Signals};

use crate::bundles::{self, BundleSpec, field};
use crate::run::{Fanout, RunContext, Skip, Step, StepSpec};
use crate::steps::duplicate_pairs::{self, Catalogue, MAX_CODE_LISTINGS, NEIGHBOURS};

pub const MODEL: &str = "duplicates";

pub struct TrainDuplicates {
    pub seed: u64,
}

pub const SPEC: StepSpec = StepSpec {
    name: "train-duplicates",
    command: &["train", "duplicates"],
    heavy: true,
    fanout: Fanout::One,
    reads: &[
        "features/embeddings/dt=<run_date>/",
        "features/images/dt=<run_date>/",
        "raw/products/dt=*",
        "raw/duplicate_groups/dt=*",
    ],
    writes: &["models/duplicates/<version>/"],
    about: "fit the duplicate-listings decision (meaning, spelling, model code, category, photo) on the labelled groups",
    trains: Some(MODEL),
};

/// The labelled listings of the catalogue: catalogue row → group number, split in
/// halves by group.
struct Labelled {
    group: HashMap<usize, u32>,
    calibration: Vec<usize>,
    holdout: Vec<usize>,
    unknown: usize,
}

/// One half of the labelled cut, as indexes local to it.
struct Half<'a> {
    rows: &'a [usize],
    local: HashMap<usize, usize>,
}

impl<'a> Half<'a> {
    fn new(rows: &'a [usize]) -> Half<'a> {
        Half {
            rows,
            local: rows.iter().enumerate().map(|(l, r)| (*r, l)).collect(),
        }
    }

    /// The candidate pairs with both ends in this half.
    fn pairs(&self, candidates: &[(usize, usize)]) -> Vec<usize> {
        (0..candidates.len())
            .filter(|&p| {
                self.local.contains_key(&candidates[p].0)
                    && self.local.contains_key(&candidates[p].1)
            })
            .collect()
    }

    fn evaluate(
        &self,
        c: &Catalogue,
        l: &Labelled,
        predicted: impl Iterator<Item = (usize, usize)>,
    ) -> DuplicateMetrics {
        let mut seller_ids: HashMap<&str, u32> = HashMap::new();
        let sellers: Vec<u32> = self
            .rows
            .iter()
            .map(|r| {
                let next = seller_ids.len() as u32;
                *seller_ids.entry(c.sellers[*r].as_str()).or_insert(next)
            })
            .collect();
        let groups: Vec<u32> = self.rows.iter().map(|r| l.group[r]).collect();
        let pairs: Vec<(usize, usize)> = predicted
            .map(|(a, b)| (self.local[&a], self.local[&b]))
            .collect();
        duplicates::evaluate(&groups, &sellers, &pairs)
    }
}

impl Step for TrainDuplicates {
    fn spec(&self) -> StepSpec {
        SPEC
    }

    fn parameters(&self) -> serde_json::Value {
        serde_json::json!({
            "seed": self.seed, "neighbours": NEIGHBOURS, "max_code_listings": MAX_CODE_LISTINGS,
            "signals": duplicates::Signal::ALL, "split": "group hash, half calibration, half holdout",
        })
    }

    fn run(&self, ctx: &mut RunContext) -> anyhow::Result<()> {
        let run_date = ctx.run_date.context("train duplicates needs --run-date")?;
        let c = duplicate_pairs::read(ctx, run_date)?;
        note_left_out(ctx, &c);
        let labelled = self.labelled(ctx, run_date, &c)?;
        ctx.progress(format!(
            "finding candidate pairs among {} listings",
            c.len()
        ));
        let (index, features) = duplicate_pairs::title_features(&c);
        let candidates = duplicate_pairs::candidates(&c, &index)?;
        let signals = duplicate_pairs::signals(&c, &features, &candidates);
        let is_true = |(a, b): (usize, usize)| {
            c.sellers[a] != c.sellers[b]
                && labelled
                    .group
                    .get(&a)
                    .is_some_and(|g| labelled.group.get(&b) == Some(g))
        };

        let calibration = Half::new(&labelled.calibration);
        let cal_pairs = calibration.pairs(&candidates);
        let cal_signals: Vec<Signals> = cal_pairs.iter().map(|&p| signals[p]).collect();
        let cal_truth: Vec<bool> = cal_pairs.iter().map(|&p| is_true(candidates[p])).collect();
        let cal_total = calibration
            .evaluate(&c, &labelled, std::iter::empty())
            .true_pairs;
        let missed = cal_total - cal_truth.iter().filter(|t| **t).count();
        ctx.progress(format!(
            "calibrating on {} labelled candidate pairs",
            cal_pairs.len()
        ));
        let model = DuplicateModel::fit(&cal_signals, &cal_truth, missed)
            .context("calibrating the duplicate decision on the labelled groups")?;
        let spelling_threshold = duplicates::best_threshold(
            &cal_signals
                .iter()
                .map(|s| f64::from(s.spelling))
                .collect::<Vec<_>>(),
            &cal_truth,
            missed,
        );

        let holdout = Half::new(&labelled.holdout);
        let hold_pairs = holdout.pairs(&candidates);
        let predicted = |keep: &dyn Fn(&Signals) -> bool| {
            hold_pairs
                .iter()
                .filter(|&&p| keep(&signals[p]))
                .map(|&p| candidates[p])
                .collect::<Vec<_>>()
        };
        let m = holdout.evaluate(
            &c,
            &labelled,
            predicted(&|s| model.is_duplicate(s)).into_iter(),
        );
        let spelling = holdout.evaluate(
            &c,
            &labelled,
            predicted(&|s| f64::from(s.spelling) >= spelling_threshold).into_iter(),
        );
        let reachable = holdout.evaluate(&c, &labelled, predicted(&|_| true).into_iter());
        let mut metrics = BTreeMap::from([
            ("listing_f1".to_string(), m.listing_f1),
            ("pair_precision".to_string(), m.pair_precision),
            ("pair_recall".to_string(), m.pair_recall),
            ("pair_f1".to_string(), m.pair_f1),
            ("candidate_recall".to_string(), reachable.pair_recall),
            ("spelling_only_listing_f1".to_string(), spelling.listing_f1),
            ("spelling_only_pair_f1".to_string(), spelling.pair_f1),
            ("threshold".to_string(), model.threshold),
            ("holdout_true_pairs".to_string(), m.true_pairs as f64),
            (
                "holdout_listings_scored".to_string(),
                m.listings_scored as f64,
            ),
            ("candidate_pairs".to_string(), candidates.len() as f64),
        ]);
        let champion = bundles::champion_score(ctx, MODEL, |b| {
            let champion = DuplicateModel::from_bundle(b)?;
            let found = predicted(&|s| champion.is_duplicate(s));
            Ok(holdout
                .evaluate(&c, &labelled, found.into_iter())
                .listing_f1)
        });
        if let Some((version, f1)) = &champion {
            metrics.insert("champion_listing_f1".into(), *f1);
            ctx.note(format!(
                "champion {version}: per-listing F1 {f1:.4} on this holdout"
            ));
        }
        ctx.note(format!(
            "holdout: per-listing F1 {:.4} over {} listings, pair precision {:.4}, recall {:.4} ({} true pairs; candidates reach {:.4}); spelling alone: per-listing F1 {:.4}",
            m.listing_f1, m.listings_scored, m.pair_precision, m.pair_recall, m.true_pairs, reachable.pair_recall, spelling.listing_f1
        ));
        let training_data = bundles::training_data(
            ctx,
            BTreeMap::from([
                ("listings".to_string(), c.len()),
                (
                    "calibration_listings".to_string(),
                    labelled.calibration.len(),
                ),
                ("holdout_listings".to_string(), labelled.holdout.len()),
                ("calibration_pairs".to_string(), cal_pairs.len()),
            ]),
            champion.map(|(v, _)| v),
        );
        let spec = BundleSpec {
            name: MODEL,
            kind: KIND,
            parameters: self.parameters(),
            seed: self.seed,
            input_schema: vec![
                field("product_id", "str", false),
                field("title", "str", false),
            ],
            output_schema: vec![
                field("duplicate_of", "str", false),
                field("probability", "f64", false),
                field("reason", "str", false),
            ],
            gate: Gate {
                metric: "listing_f1".into(),
                direction: Direction::Higher,
                tolerance: 0.02,
            },
        };
        let baseline =
            serde_json::json!({ "listings": c.len(), "candidate_pairs": candidates.len() });
        let bundle = bundles::build(spec, model.to_files(), metrics, training_data, baseline)?;
        bundles::write(ctx, &bundle)
    }
}

pub(crate) fn note_left_out(ctx: &mut RunContext, c: &Catalogue) {
    if c.unembedded > 0 || c.unlisted > 0 {
        ctx.note(format!(
            "{} listed product(s) without a title embedding (listed after `sgml embed` ran) and {} embedding(s) of products no longer listed were left out",
            c.unembedded, c.unlisted
        ));
    }
}

impl TrainDuplicates {
    fn labelled(
        &self,
        ctx: &mut RunContext,
        run_date: NaiveDate,
        c: &Catalogue,
    ) -> anyhow::Result<Labelled> {
        // No labels (an export without reviewed duplicates): nothing to calibrate on, a
        // skip rather than a failure, so `run all` on such an export goes on.
        let Some(groups) = super::read_raw(ctx, Table::DuplicateGroups, run_date)? else {
            return Err(Skip {
                reason: "no labelled duplicate groups ingested: ingest a duplicate_groups table (product_id, group_id, labelled_ts) to calibrate on".into(),
            }
            .into());
        };
        let groups = groups
            .select([col("product_id"), col("group_id")])
            .collect()?;
        let ids = super::texts(&groups, "product_id")?;
        let group_ids = super::texts(&groups, "group_id")?;
        let row_of: HashMap<&str, usize> = c
            .ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.as_str(), i))
            .collect();
        let mut members: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        let mut l = Labelled {
            group: HashMap::new(),
            calibration: Vec::new(),
            holdout: Vec::new(),
            unknown: 0,
        };
        for (id, g) in ids.iter().zip(&group_ids) {
            let (Some(id), Some(g)) = (id, g) else {
                continue;
            };
            match row_of.get(id.as_str()) {
                Some(&row) => members.entry(g.as_str()).or_default().push(row),
                None => l.unknown += 1,
            }
        }
        // Groups with duplicates alternate between the halves in a seeded order, so
        // each half gets its share of them however few there are; lone listings
        // split by their hash.
        let mut order: Vec<(&str, &Vec<usize>)> = members.iter().map(|(g, m)| (*g, m)).collect();
        order.sort_by_key(|(g, _)| (hash(g, self.seed), *g));
        let mut multi = 0;
        for (number, (g, rows)) in order.into_iter().enumerate() {
            let calibrates = if rows.len() > 1 {
                multi += 1;
                multi % 2 == 1
            } else {
                hash(g, self.seed).is_multiple_of(2)
            };
            for &row in rows {
                l.group.insert(row, number as u32);
                if calibrates {
                    l.calibration.push(row);
                } else {
                    l.holdout.push(row);
                }
            }
        }
        if multi < 2 {
            return Err(Skip {
                reason: format!(
                    "{} labelled listing(s) in the catalogue, {multi} labelled group(s) with duplicates: at least 2 are needed (one to calibrate on, one to measure)",
                    l.group.len()
                ),
            }
            .into());
        }
        l.calibration.sort_unstable();
        l.holdout.sort_unstable();
        if l.unknown > 0 {
            ctx.note(format!(
                "{} labelled listing(s) are not in the embedded catalogue (quarantined, unlisted or not embedded): left out",
                l.unknown
            ));
        }
        Ok(l)
    }
}

/// A seeded FNV-1a hash of a group id: the split's order, the same on every rerun.
fn hash(group: &str, seed: u64) -> u64 {
    group.bytes().fold(0xcbf2_9ce4_8422_2325u64 ^ seed, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
