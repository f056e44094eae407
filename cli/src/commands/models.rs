//! `sgml models show|list|publish|rollback|history`: the registry from the command
//! line.

use anyhow::Context;
use clap::Subcommand;
use sgml_registry::{CHAMPION, RegistryError, layout, publish, versions};

use crate::global::Global;
use crate::output;

#[derive(Subcommand)]
pub enum Command {
    /// Verify a model version (every checksum) and print its metrics.
    Show {
        /// The model name (pricing, categorize).
        name: String,
        /// A version (default: the newest).
        #[arg(long)]
        version: Option<String>,
    },
    /// Point an alias at an existing version: verifies every file, applies the gate
    /// (the version's gate metric against the champion's on the same holdout), flips
    /// the alias by compare-and-swap, appends to the promotion history and announces
    /// the move (with --amqp-url).
    Publish {
        name: String,
        #[arg(long)]
        version: String,
        #[arg(long, default_value = CHAMPION)]
        alias: String,
        /// Publish even if the gate fails (recorded in the history and the log).
        #[arg(long)]
        force: bool,
        /// Why, for the history.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Versions of a model, newest first, with their aliases and gate metric.
    List { name: String },
    /// Every promotion and rollback of a model, oldest first.
    History { name: String },
    /// Point an alias back at the version it named before its last promotion.
    Rollback {
        name: String,
        #[arg(long, default_value = CHAMPION)]
        alias: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
}

pub fn run(g: &Global, c: &Command) -> anyhow::Result<()> {
    let store = g.open_store()?;
    let store = store.as_ref();
    match c {
        Command::Show { name, version } => {
            let version = match version {
                Some(v) => v.clone(),
                None => versions::latest(store, name)?
                    .with_context(|| format!("no versions of model {name} in {}", g.store))?,
            };
            let bundle = versions::load_version(store, name, &version)?;
            let m = bundle.manifest();
            say!(
                "{} {} ({}, created {}), verified: {} files",
                m.name,
                m.version,
                m.kind,
                m.created_at,
                m.files.len()
            );
            let t = &m.training_data;
            let rows = |cut: &str| t.rows.get(cut).copied().unwrap_or_default();
            if let Some(split) = &t.split {
                say!(
                    "  trained for {} on {} lines (until {}), intervals calibrated on {}, held out {} from {}",
                    t.run_date.as_deref().unwrap_or("?"),
                    rows("train"),
                    split.train_until,
                    rows("calibration"),
                    rows("holdout"),
                    split.holdout_from,
                );
                say!("  training data fingerprint {}", t.fingerprint);
            }
            say!("\n  {:<36} {:>12}", "holdout metric", "value");
            for (metric, value) in &m.metrics {
                say!("  {metric:<36} {value:>12.4}");
            }
            let report = format!(
                "{}report/index.html",
                layout::version_prefix(name, &version)
            );
            if bundle.file("report/index.html").is_some() {
                match store.local_path(&report) {
                    Some(path) => say!("\n  report: {}", path.display()),
                    None => say!("\n  report: {}", store.uri(&report)),
                }
            }
            Ok(())
        }
        Command::Publish {
            name,
            version,
            alias,
            force,
            reason,
        } => {
            let announcer = g.announcer();
            let p = match publish::promote(store, &announcer, name, version, alias, *force, reason)
            {
                Ok(p) => p,
                // Re-running a publish (an Airflow retry) is not a failure.
                Err(e @ RegistryError::AlreadyNamed { .. }) => {
                    say!("{name}: {e}");
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            };
            say!(
                "{name}: {alias} → {} (was {}); {}",
                p.to,
                p.from.as_deref().unwrap_or("unset"),
                p.reason
            );
            if announcer.is_on() {
                output::announcement(name, &p);
            }
            Ok(())
        }
        Command::Rollback {
            name,
            alias,
            reason,
        } => {
            let announcer = g.announcer();
            let p = publish::rollback(store, &announcer, name, alias, reason)?;
            say!(
                "{name}: {alias} rolled back to {} (was {})",
                p.to,
                p.from.as_deref().unwrap_or("unset")
            );
            if announcer.is_on() {
                output::announcement(name, &p);
            }
            Ok(())
        }
        Command::List { name } => {
            for v in versions::list(store, name)? {
                let kind = v.kind.as_deref().unwrap_or("(unreadable manifest)");
                let metric = v
                    .gate_metric
                    .map(|(m, x)| format!("{m} {x:.4}"))
                    .unwrap_or_default();
                say!(
                    "{}  {kind:<16} {metric:<18} {}",
                    v.version,
                    v.aliases.join(", ")
                );
            }
            Ok(())
        }
        Command::History { name } => {
            for logged in publish::log(store, name)? {
                let p = &logged.promotion;
                say!(
                    "{:>4}  {}  {:<8} {:<10} {} → {}  by {}{}: {}{}",
                    p.seq,
                    p.at,
                    p.action.to_string(),
                    p.alias,
                    p.from.as_deref().unwrap_or("unset"),
                    p.to,
                    p.by,
                    if p.forced { " (forced)" } else { "" },
                    p.reason,
                    if logged.applied {
                        ""
                    } else {
                        "  [never applied: the publisher stopped before the alias moved, or lost the race]"
                    }
                );
            }
            Ok(())
        }
    }
}
