//! What the anchor binaries share: reading the vector files the Python harnesses write,
//! and the process's memory as Linux reports it.

pub mod vectors;
