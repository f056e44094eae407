//! sgml-pipelines: everything with I/O. The object store, the sources, the runner
//! that gives every step its run id, lineage and atomic outputs, and the steps.
//! The `sgml` binary (src/main.rs) is a thin command line over this crate.

pub mod bundles;
pub mod events;
pub mod generate;
pub mod io;
pub mod mapping;
pub mod publish;
pub mod run;
pub mod serve;
pub mod sources;
pub mod steps;
pub mod store;
