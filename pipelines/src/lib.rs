//! sgml-pipelines: the batch pipelines, with all their I/O. The runner that gives
//! every step its run id, lineage and atomic outputs ([`run`]), the sources and
//! mappings that read exports and databases, the steps, and the plan that runs the
//! step graph ([`plan`]). The `sgml` binary (sgml-cli) is a thin command line over
//! this crate, sgml-registry and sgml-serve.

pub mod bundles;
pub mod io;
pub mod keys;
pub mod mapping;
pub mod memory;
pub mod partition;
pub mod plan;
pub mod run;
pub mod sources;
pub mod steps;

/// The store every step reads and writes (sgml-registry's).
pub use sgml_registry::store;

#[cfg(test)]
mod tests {
    /// Ingest and serving refuse the same titles.
    #[test]
    fn the_contract_and_the_models_agree_on_the_longest_title() {
        assert_eq!(
            sgml_features::contract::MAX_TITLE_CHARS,
            sgml_models::MAX_TITLE_CHARS
        );
    }
}
