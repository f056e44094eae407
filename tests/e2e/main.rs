//! End-to-end tests: they drive the `sgml` binary that `cargo test` builds, against
//! real files, the real PostgreSQL at 127.0.0.1:5432, a real S3 protocol server on
//! loopback (moto, started by scripts/test), the real RabbitMQ at 127.0.0.1:5672 and
//! the shared UCI export.
//! One test binary with modules, because each debug link of polars costs GBs.

mod common;

mod bad_files;
mod categorize;
mod cli;
mod deps;
mod duplicates;
mod events;
mod images;
mod online_retail;
mod partition;
mod pii;
mod postgres;
mod pricing;
mod publish;
mod retention;
mod run_all;
mod s3;
mod segments;
mod serve;
mod similar;
