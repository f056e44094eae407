//! sgml-models: estimators, metrics and the model-bundle format with its verified
//! loader — the one crate a scoring service embeds, so it never depends on polars
//! or AWS.
//!
//! Thin until the pricing issue lands: the estimators (`Fit`/`Predict`), the bundle
//! manifest and the checksum-verifying loader arrive with it.
