//! End-to-end tests: they drive the `sgml` binary that `cargo test` builds, against
//! real files, the real PostgreSQL at 127.0.0.1:5432 and the shared UCI export.
//! One test binary with modules, because each debug link of polars costs GBs.

mod common;

mod bad_files;
mod cli;
mod online_retail;
mod pii;
mod postgres;
mod pricing;
mod retention;
mod run_all;
