//! sgml-models: estimators, metrics and the model-bundle format with its verified
//! loader — the one crate a scoring service embeds, so it never depends on polars
//! or AWS.
//!
//! - [`bundle`]: the bundle (files in open formats + a checksummed manifest) and the
//!   loader that refuses anything that does not verify.
//!
//! The estimators (`Fit`/`Predict`) arrive with the pricing issue.

pub mod bundle;

pub use bundle::{Bundle, BundleError, Manifest};
