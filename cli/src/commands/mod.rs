//! One module per command: its arguments, and the one library call it makes.

pub mod generate;
pub mod ingest;
pub mod models;
pub mod predict;
pub mod run_all;
pub mod serve;
pub mod steps;
pub mod train;
