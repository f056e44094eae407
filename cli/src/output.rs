//! How results are shown on stdout.

use chrono::NaiveDate;
use sgml_pipelines::plan::Outcome;
use sgml_pipelines::run::{OutputRecord, RunManifest};
use sgml_registry::publish::{Promotion, Trained};

/// Writes one line to stdout (see `say!`).
pub fn line(args: std::fmt::Arguments) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.write_all(b"\n")) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: writing to stdout: {e}");
        std::process::exit(1);
    }
}

fn is_bundle_file(o: &OutputRecord) -> bool {
    o.uri.contains("/models/")
}

/// Rows of a table; bundle files are not tables.
fn size(o: &OutputRecord) -> String {
    if is_bundle_file(o) {
        "(bundle file)".into()
    } else {
        format!("{} rows", o.rows)
    }
}

/// Rows in, accepted and quarantined, per table.
fn counts(m: &RunManifest) {
    for (table, c) in &m.counts {
        say!(
            "  {table:<18} in {:>9}  accepted {:>9}  quarantined {:>7}",
            c.rows_in,
            c.accepted,
            c.quarantined
        );
    }
}

/// What a step command prints when its run has finished: the run in words, what
/// happened to the version it trained, and last the summary line.
pub fn finished(m: &RunManifest, trained: Option<(&str, &Trained, bool)>) {
    manifest(m);
    if let Some((model, t, announced)) = trained {
        self::trained(model, t, announced);
    }
    say!("{}", summary_json(m, trained.map(|(_, t, _)| t)));
}

/// The last line every step command prints: one line of JSON that Airflow keeps as
/// the task's XCom (the DAG's tasks return it; a BashOperator would push the last
/// stdout line too), so it stays short whatever the step wrote: counts and totals,
/// never the list of files (that is in the run manifest, `runs/<run_id>/manifest.json`).
pub fn summary_json(m: &RunManifest, trained: Option<&Trained>) -> serde_json::Value {
    let tables: Vec<&OutputRecord> = m.outputs.iter().filter(|o| !is_bundle_file(o)).collect();
    let model = sgml_pipelines::steps::spec(&m.step).and_then(|s| s.trains);
    let (champion, gate) = match trained {
        Some(Trained::Promoted(p)) => (Some(p.to.clone()), None),
        Some(Trained::Kept(why)) => (None, Some(why.to_string())),
        None => (None, None),
    };
    serde_json::json!({
        "step": m.step,
        "run_id": m.run_id,
        "run_date": m.run_date,
        "status": m.status,
        "counts": m.counts,
        "outputs": m.outputs.len(),
        "rows_written": tables.iter().map(|o| o.rows).sum::<usize>(),
        "version": model.and_then(|name| m.written_version(name)),
        "champion": champion,
        "gate": gate,
        "manifest": sgml_pipelines::run::manifest_key(&m.run_id),
        "skipped": m.skipped,
        "peak_rss_mib": m.peak_rss_mib,
    })
}

fn manifest(m: &RunManifest) {
    say!(
        "{} {} (run date {})",
        m.step,
        m.run_id,
        m.run_date.map(|d| d.to_string()).unwrap_or_default()
    );
    counts(m);
    for o in &m.outputs {
        say!("  wrote {} {}", o.uri, size(o));
    }
    for n in &m.notes {
        say!("  note: {n}");
    }
}

/// What happened to a version training wrote.
pub fn trained(model: &str, t: &Trained, announced: bool) {
    match t {
        Trained::Promoted(p) => {
            say!("  promoted {model} {} to champion ({})", p.to, p.reason);
            if announced {
                announcement(model, p);
            }
        }
        Trained::Kept(why) => say!("  not promoted (gate): {why}"),
    }
}

pub fn announcement(model: &str, p: &Promotion) {
    let event = sgml_registry::events::event_for(model, p);
    say!(
        "  announced {} ({})",
        event.idempotency_key,
        sgml_registry::events::EVENT
    );
}

/// One step of `run all`, as it finishes.
pub fn step_done(o: &Outcome, announced: bool) {
    let m = &o.manifest;
    if let (Some(t), Some(model)) = (
        &o.promotion,
        sgml_pipelines::steps::spec(&m.step).and_then(|s| s.trains),
    ) {
        trained(model, t, announced);
    }
}

pub fn summary(store: &str, run_date: Option<NaiveDate>, outcomes: &[Outcome]) {
    let date = run_date.map(|d| d.to_string()).unwrap_or_default();
    say!("sgml run all: done for run date {date}, store {store}");
    for m in outcomes.iter().map(|o| &o.manifest) {
        say!("\n{} — run {} ({})", m.step, m.run_id, m.status);
        counts(m);
        for o in &m.outputs {
            if !o.uri.contains("/raw/") || m.step != "ingest" {
                say!("  {:<70} {:>14}", o.uri, size(o));
            }
        }
        for n in m.notes.iter().filter(|n| !n.contains("quarantined by")) {
            say!("  note: {n}");
        }
    }
    say!(
        "\nrun manifests: {store}/runs/  ·  open the features from Python: see notebooks/README.md"
    );
    let steps: Vec<_> = outcomes
        .iter()
        .map(|o| {
            serde_json::json!({
                "step": o.manifest.step,
                "run_id": o.manifest.run_id,
                "status": o.manifest.status,
            })
        })
        .collect();
    say!(
        "{}",
        serde_json::json!({ "run_date": run_date, "steps": steps })
    );
}
