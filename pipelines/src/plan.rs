//! The plan: the order `sgml run all` runs the step graph in, derived from what each
//! step declares it reads and writes, and the loop that runs it.
//!
//! Step B runs after step A when A writes something B reads — unless B writes it too:
//! a step that reads and writes the same data updates it in place (retention rewrites
//! the feature partitions that exist) and does not wait for other writers of it. Ties
//! keep the graph's listing order. A cycle is an error naming its steps.

use anyhow::Context;
use chrono::NaiveDate;
use serde::Serialize;
use sgml_registry::publish::{self, Trained};
use sgml_registry::{Announcer, Store};

use crate::run::{self, RunManifest, Step, StepSpec};
use crate::steps::ingest::Ingest;

/// One step of the graph: what it declares, and how `run all` builds it.
pub struct Node {
    pub spec: StepSpec,
    pub build: fn(&Settings) -> anyhow::Result<Box<dyn Step>>,
}

/// What `run all` builds its steps from.
pub struct Settings {
    /// The ingest step, with its source and anonymization.
    pub ingest: Ingest,
    /// Currency prices convert to.
    pub base_currency: String,
    /// The embedding model's directory (found before anything runs).
    pub model_dir: std::path::PathBuf,
    /// Where products' relative photo paths lie (the input directory), if anywhere.
    pub images_dir: Option<std::path::PathBuf>,
    /// How photos in buckets are read (the store's S3 settings).
    pub s3: crate::store::S3Options,
    /// What a photo may weigh and measure.
    pub photo_limits: sgml_models::photo::Limits,
    /// The image embedder's converted weights' directory (found before anything runs).
    pub image_model_dir: std::path::PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("the step graph has a cycle through {0:?}: no order runs every step after its inputs")]
    Cycle(Vec<&'static str>),
    #[error("two steps are named {0}")]
    Duplicate(&'static str),
}

/// The graph in run order, with each step's predecessors.
pub struct Plan<'g> {
    order: Vec<&'g Node>,
    after: Vec<Vec<&'static str>>,
}

/// Whether two key patterns can name the same object (see [`StepSpec`]).
pub fn overlaps(a: &str, b: &str) -> bool {
    let external = |p: &str| p.starts_with('<');
    if external(a) || external(b) {
        return false;
    }
    let wild = |s: &str| s.contains('*') || s.contains('<');
    a.trim_end_matches('/')
        .split('/')
        .zip(b.trim_end_matches('/').split('/'))
        .all(|(x, y)| x == y || wild(x) || wild(y))
}

/// Whether `b` must run after `a`.
fn depends(b: &StepSpec, a: &StepSpec) -> bool {
    b.reads.iter().any(|r| {
        a.writes.iter().any(|w| overlaps(w, r)) && !b.writes.iter().any(|w| overlaps(w, r))
    })
}

impl<'g> Plan<'g> {
    /// Orders the graph (Kahn's algorithm, taking the earliest-listed ready step).
    pub fn new(graph: &'g [Node]) -> Result<Plan<'g>, PlanError> {
        for (i, n) in graph.iter().enumerate() {
            if graph[..i].iter().any(|m| m.spec.name == n.spec.name) {
                return Err(PlanError::Duplicate(n.spec.name));
            }
        }
        let preds: Vec<Vec<usize>> = graph
            .iter()
            .enumerate()
            .map(|(b, nb)| {
                (0..graph.len())
                    .filter(|&a| a != b && depends(&nb.spec, &graph[a].spec))
                    .collect()
            })
            .collect();
        let mut done = vec![false; graph.len()];
        let mut order = Vec::with_capacity(graph.len());
        while order.len() < graph.len() {
            let Some(next) =
                (0..graph.len()).find(|&i| !done[i] && preds[i].iter().all(|&p| done[p]))
            else {
                let stuck = (0..graph.len())
                    .filter(|&i| !done[i])
                    .map(|i| graph[i].spec.name)
                    .collect();
                return Err(PlanError::Cycle(stuck));
            };
            done[next] = true;
            order.push(next);
        }
        Ok(Plan {
            after: order
                .iter()
                .map(|&i| preds[i].iter().map(|&p| graph[p].spec.name).collect())
                .collect(),
            order: order.into_iter().map(|i| &graph[i]).collect(),
        })
    }

    /// The steps in run order.
    pub fn nodes(&self) -> impl Iterator<Item = &'g Node> + '_ {
        self.order.iter().copied()
    }

    /// The steps in run order with what each waits for: what `sgml steps --json`
    /// prints for the Airflow DAG.
    pub fn describe(&self) -> Vec<PlannedStep<'g>> {
        self.order
            .iter()
            .zip(&self.after)
            .map(|(n, after)| PlannedStep {
                spec: &n.spec,
                after: after.clone(),
            })
            .collect()
    }
}

/// A step as `sgml steps --json` prints it.
#[derive(Debug, Serialize)]
pub struct PlannedStep<'g> {
    #[serde(flatten)]
    pub spec: &'g StepSpec,
    /// The steps whose outputs it reads.
    pub after: Vec<&'static str>,
}

/// One step run by [`run_all`]: its manifest, and what happened to the version it
/// trained, if it trains.
#[derive(Debug)]
pub struct Outcome {
    pub manifest: RunManifest,
    pub promotion: Option<Trained>,
}

/// Runs every step of `graph` in plan order on one run date (the first step's, when
/// none is given), promoting what training steps write. Every step is built before
/// any runs, so a missing model or setting fails the run before it changes anything.
/// `done` sees each step's outcome as it finishes.
pub fn run_all(
    store: &dyn Store,
    announcer: &Announcer,
    graph: &[Node],
    settings: &Settings,
    run_date: Option<NaiveDate>,
    mut done: impl FnMut(&Outcome),
) -> anyhow::Result<Vec<Outcome>> {
    let plan = Plan::new(graph)?;
    let steps = plan
        .nodes()
        .map(|n| (n.build)(settings).with_context(|| format!("preparing step {}", n.spec.name)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut run_date = run_date;
    let mut outcomes = Vec::with_capacity(steps.len());
    for (i, step) in steps.iter().enumerate() {
        if i > 0 && run_date.is_none() {
            anyhow::bail!("{} chose no run date", plan.order[0].spec.name);
        }
        let manifest = run::execute(store, step.as_ref(), run_date)?;
        run_date = run_date.or(manifest.run_date);
        let promotion = promote_trained(store, announcer, &step.spec(), &manifest)?;
        let outcome = Outcome {
            manifest,
            promotion,
        };
        done(&outcome);
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// After a training step: promotes the version it wrote to champion when it passes
/// the gate. `None` for steps that train nothing.
pub fn promote_trained(
    store: &dyn Store,
    announcer: &Announcer,
    spec: &StepSpec,
    manifest: &RunManifest,
) -> anyhow::Result<Option<Trained>> {
    let Some(model) = spec.trains else {
        return Ok(None);
    };
    if manifest.status == run::RunStatus::Skipped {
        return Ok(None);
    }
    let version = manifest
        .written_version(model)
        .with_context(|| format!("{} wrote no {model} bundle", spec.name))?;
    Ok(Some(publish::promote_trained(
        store, announcer, model, &version,
    )?))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::run::RunContext;
    use crate::steps::GRAPH;

    #[test]
    fn patterns_overlap_by_segment_with_wildcards() {
        assert!(overlaps("raw/<table>/dt=<run_date>/", "raw/orders/dt=*"));
        assert!(overlaps(
            "features/*/dt=*",
            "features/order_lines/dt=<run_date>/"
        ));
        assert!(overlaps(
            "models/pricing/<version>/",
            "models/pricing/<version>/"
        ));
        assert!(!overlaps("raw/orders/dt=*", "raw/products/dt=*"));
        assert!(!overlaps(
            "models/pricing/<version>/",
            "models/categorize/<version>/"
        ));
        assert!(!overlaps("<input>", "raw/orders/dt=*"), "outside the store");
    }

    /// The real graph: every step is planned once, each after every step whose output
    /// it reads, and the order is the one the README documents.
    #[test]
    fn the_graph_runs_every_step_after_its_inputs() {
        let plan = Plan::new(GRAPH).unwrap();
        let order: Vec<&str> = plan.nodes().map(|n| n.spec.name).collect();
        assert_eq!(order.len(), GRAPH.len());
        for n in GRAPH {
            assert!(
                order.contains(&n.spec.name),
                "{} is not planned",
                n.spec.name
            );
        }
        let pos = |name: &str| order.iter().position(|n| *n == name).unwrap();
        for b in GRAPH {
            for a in GRAPH {
                if a.spec.name != b.spec.name && depends(&b.spec, &a.spec) {
                    assert!(
                        pos(a.spec.name) < pos(b.spec.name),
                        "{} runs before {}, whose output it reads",
                        b.spec.name,
                        a.spec.name
                    );
                }
            }
        }
        assert_eq!(
            order,
            [
                "ingest",
                "retention",
                "features",
                "train-pricing",
                "predict-pricing",
                "embed",
                "images",
                "train-images",
                "predict-images",
                "train-categorize",
                "predict-categorize",
                "train-similar",
                "predict-similar",
                "train-duplicates",
                "predict-duplicates",
                "train-product-segments",
                "predict-product-segments",
                "train-seller-segments",
                "predict-seller-segments"
            ]
        );
        // Explicit edges the pipeline relies on.
        let described = plan.describe();
        let after = |name: &str| {
            &described
                .iter()
                .find(|s| s.spec.name == name)
                .unwrap()
                .after
        };
        assert!(after("features").contains(&"retention"));
        assert!(after("predict-pricing").contains(&"train-pricing"));
        assert!(after("train-categorize").contains(&"embed"));
        assert!(after("train-images").contains(&"images"));
        assert!(after("predict-images").contains(&"train-images"));
        assert!(
            !after("retention").contains(&"features"),
            "retention updates in place"
        );
    }

    /// Records the order steps ran in and checks each one's inputs exist.
    static RAN: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());

    struct Fake(StepSpec);

    impl Step for Fake {
        fn spec(&self) -> StepSpec {
            self.0.clone()
        }
        fn parameters(&self) -> serde_json::Value {
            serde_json::Value::Null
        }
        fn run(&self, ctx: &mut RunContext) -> anyhow::Result<()> {
            for r in self.0.reads {
                let key = format!("{}/part-0.txt", r.trim_end_matches('/'));
                anyhow::ensure!(
                    ctx.store.get(&key)?.is_some(),
                    "{} ran before {key} was written",
                    self.0.name
                );
            }
            for w in self.0.writes {
                ctx.stage(&format!("{}/part-0.txt", w.trim_end_matches('/')), b"x", 1)?;
            }
            RAN.lock().unwrap().push(self.0.name);
            Ok(())
        }
    }

    fn fake(
        name: &'static str,
        reads: &'static [&'static str],
        writes: &'static [&'static str],
    ) -> Node {
        Node {
            spec: StepSpec {
                name,
                reads,
                writes,
                about: "test",
                trains: None,
                command: &[],
                heavy: false,
                fanout: crate::run::Fanout::One,
            },
            build: |_| unreachable!("replaced below"),
        }
    }

    /// A graph listed out of order, with a step added at the end that others read:
    /// `run_all` runs every step, each after its inputs exist, with no other change.
    #[test]
    fn run_all_runs_a_new_step_where_its_inputs_put_it() {
        // Builders are plain fns: each returns a Fake of its own spec.
        let graph = [
            Node {
                build: |_| Ok(Box::new(Fake(fake("c", &["b/x", "a/x"], &["c/x"]).spec))),
                ..fake("c", &["b/x", "a/x"], &["c/x"])
            },
            Node {
                build: |_| Ok(Box::new(Fake(fake("b", &["a/x"], &["b/x"]).spec))),
                ..fake("b", &["a/x"], &["b/x"])
            },
            Node {
                build: |_| Ok(Box::new(Fake(fake("a", &[], &["a/x"]).spec))),
                ..fake("a", &[], &["a/x"])
            },
        ];
        let dir = tempfile::tempdir().unwrap();
        let store = sgml_registry::LocalStore::new(dir.path()).unwrap();
        let settings = Settings {
            ingest: Ingest {
                inputs: vec![],
                mapping: None,
                source: Default::default(),
                key: crate::steps::ingest::Anonymization::Missing,
                max_reject_share: crate::steps::ingest::MAX_REJECT_SHARE,
                split: Default::default(),
            },
            base_currency: "USD".into(),
            model_dir: dir.path().into(),
            images_dir: None,
            s3: Default::default(),
            photo_limits: Default::default(),
            image_model_dir: dir.path().into(),
        };
        let date = NaiveDate::from_ymd_opt(2026, 1, 1);
        let mut seen = Vec::new();
        let outcomes = run_all(&store, &Announcer::Off, &graph, &settings, date, |o| {
            seen.push(o.manifest.step.clone())
        })
        .unwrap();
        assert_eq!(outcomes.len(), 3);
        assert_eq!(seen, ["a", "b", "c"]);
        assert_eq!(*RAN.lock().unwrap(), ["a", "b", "c"]);

        let cyclic = [fake("x", &["y/1"], &["x/1"]), fake("y", &["x/1"], &["y/1"])];
        assert!(matches!(Plan::new(&cyclic), Err(PlanError::Cycle(s)) if s.len() == 2));
    }
}
