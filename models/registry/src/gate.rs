//! The gate a challenger passes before it replaces the champion: its gate metric
//! against the champion's, both measured on the challenger's own holdout at training
//! time (the manifest carries `champion_<metric>` and `training_data.champion_version`).

use sgml_models::Bundle;

/// Why a version may not replace the alias's current version.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GateFailure {
    #[error("version {version} has no {metric} metric")]
    NoMetric { version: String, metric: String },
    #[error("version {version} was not compared with a champion at training time")]
    NotCompared { version: String },
    #[error(
        "version {version} was compared with {} at training time, but the champion is now {champion}",
        measured_against.as_deref().unwrap_or("none")
    )]
    ComparedWithAnother {
        version: String,
        measured_against: Option<String>,
        champion: String,
    },
    #[error(
        "{metric} {new:.4} vs champion {champion} {old:.4} on the same holdout (limit {bound:.4})"
    )]
    Worse {
        metric: String,
        new: f64,
        old: f64,
        champion: String,
        bound: f64,
    },
}

/// The gate of `challenger` against the version the alias names now (`None`: no
/// champion yet, which always passes). On success, the verdict in words.
pub fn check(challenger: &Bundle, current: Option<&str>) -> Result<String, GateFailure> {
    let m = challenger.manifest();
    let Some(current) = current else {
        return Ok("no champion yet".into());
    };
    let g = &m.gate;
    let Some(&new) = m.metrics.get(&g.metric) else {
        return Err(GateFailure::NoMetric {
            version: m.version.clone(),
            metric: g.metric.clone(),
        });
    };
    let Some(&old) = m.metrics.get(&format!("champion_{}", g.metric)) else {
        return Err(GateFailure::NotCompared {
            version: m.version.clone(),
        });
    };
    let measured_against = m.training_data.champion_version.as_deref();
    if measured_against != Some(current) {
        return Err(GateFailure::ComparedWithAnother {
            version: m.version.clone(),
            measured_against: measured_against.map(str::to_string),
            champion: current.to_string(),
        });
    }
    let (passes, bound) = g.passes(new, old);
    if passes {
        Ok(format!(
            "{} {new:.4} vs champion {current} {old:.4} on the same holdout (limit {bound:.4})",
            g.metric
        ))
    } else {
        Err(GateFailure::Worse {
            metric: g.metric.clone(),
            new,
            old,
            champion: current.to_string(),
            bound,
        })
    }
}
