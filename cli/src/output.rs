//! How results are shown on stdout.

use chrono::NaiveDate;
use sgml_pipelines::plan::Outcome;
use sgml_pipelines::run::{OutputRecord, RunManifest};
use sgml_registry::publish::{Promotion, Trained};

/// Rows of a table; bundle files are not tables.
fn size(o: &OutputRecord) -> String {
    if o.uri.contains("/models/") {
        "(bundle file)".into()
    } else {
        format!("{} rows", o.rows)
    }
}

pub fn manifest(m: &RunManifest) {
    println!(
        "{} {} (run date {})",
        m.step,
        m.run_id,
        m.run_date.map(|d| d.to_string()).unwrap_or_default()
    );
    for (table, c) in &m.counts {
        println!(
            "  {table:<18} in {:>9}  accepted {:>9}  quarantined {:>7}",
            c.rows_in, c.accepted, c.quarantined
        );
    }
    for o in &m.outputs {
        println!("  wrote {} {}", o.uri, size(o));
    }
    for n in &m.notes {
        println!("  note: {n}");
    }
}

/// What happened to a version training wrote.
pub fn trained(model: &str, t: &Trained, announced: bool) {
    match t {
        Trained::Promoted(p) => {
            println!("  promoted {model} {} to champion ({})", p.to, p.reason);
            if announced {
                announcement(model, p);
            }
        }
        Trained::Kept(why) => println!("  not promoted (gate): {why}"),
    }
}

pub fn announcement(model: &str, p: &Promotion) {
    let event = sgml_registry::events::event_for(model, p);
    println!(
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
    println!("sgml run all: done for run date {date}, store {store}");
    for m in outcomes.iter().map(|o| &o.manifest) {
        println!("\n{} — run {} ({})", m.step, m.run_id, m.status);
        for (table, c) in &m.counts {
            println!(
                "  {table:<18} in {:>9}  accepted {:>9}  quarantined {:>7}",
                c.rows_in, c.accepted, c.quarantined
            );
        }
        for o in &m.outputs {
            if !o.uri.contains("/raw/") || m.step != "ingest" {
                println!("  {:<70} {:>14}", o.uri, size(o));
            }
        }
        for n in m.notes.iter().filter(|n| !n.contains("quarantined by")) {
            println!("  note: {n}");
        }
    }
    println!(
        "\nrun manifests: {store}/runs/  ·  open the features from Python: see notebooks/README.md"
    );
}
