//! sgml-registry: what a service embeds to find, verify and follow published models,
//! and what training uses to publish them.
//!
//! - [`store`]: the object store (a local directory; an S3 bucket with the `s3`
//!   feature) — get, put (always / create-only / compare-and-swap), list, delete,
//!   rename;
//! - [`layout`]: every key of the `models/` area;
//! - [`versions`]: immutable bundle versions: write, list, load verified;
//! - [`publish`]: aliases, the promotion history, promote / rollback by
//!   compare-and-swap; each move is announced through an [`announce::Announcer`];
//! - [`gate`]: whether a challenger may replace the champion;
//! - [`events`]: the `model.published` message, and (feature `amqp`) the
//!   subscription a service uses to hot-swap models;
//! - [`error`]: [`RegistryError`], the one typed error of this crate.
//!
//! Depends on sgml-models for the bundle format only (no estimator families), and
//! never on polars, postgres or a command line: a scoring service that loads the
//! champion and scores pulls in this crate and the model families it scores.

pub mod announce;
pub mod error;
pub mod events;
pub mod gate;
pub mod layout;
pub mod publish;
pub mod store;
pub mod versions;

pub use announce::Announcer;
pub use error::RegistryError;
pub use layout::CHAMPION;
pub use store::{Condition, LocalStore, Store, StoreError};
