//! The pipeline steps. Each declares what it reads and writes ([`StepSpec`]) and
//! implements one `run`; [`crate::run::execute`] does the rest.

pub mod features;
pub mod ingest;
pub mod retention;

use crate::run::StepSpec;

/// The steps of `sgml run all`, in order: the step graph as data.
pub const GRAPH: &[StepSpec] = &[ingest::SPEC, retention::SPEC, features::SPEC];
