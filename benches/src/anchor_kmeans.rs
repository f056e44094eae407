//! The Rust side of `benches/anchors/kmeans.py`: fits k-means
//! (`sgml_models::kmeans`, the code `sgml train segments` runs) on the rows the Python
//! harness wrote, timed, and reports inertia and iterations (the harness compares
//! both with scikit-learn's on the same rows, the same k and the same number of runs).
//!
//! Usage (prints one JSON object):
//!   anchor-kmeans DATA.f32 DIM K N_INIT THREADS SEED
//!       DATA: little-endian f32 rows of DIM.

use std::time::Instant;

use anyhow::{Context, bail};
use sgml_models::kmeans::{KMeans, KMeansParams, Points};

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, data, dim, k, n_init, threads, seed] = args.as_slice() else {
        bail!("usage: anchor-kmeans DATA.f32 DIM K N_INIT THREADS SEED");
    };
    let bytes = std::fs::read(data).with_context(|| format!("reading {data}"))?;
    if bytes.len() % 4 != 0 {
        bail!("{data}: not a whole number of f32");
    }
    let values: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
        .collect();
    let dim: usize = dim.parse()?;
    let x = Points::new(&values, dim)?;
    let params = KMeansParams {
        k: k.parse()?,
        n_init: n_init.parse()?,
        seed: seed.parse()?,
        ..KMeansParams::default()
    };
    let threads: usize = threads.parse()?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    let started = Instant::now();
    let fit = pool.install(|| KMeans::fit(x, &params))?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "library": "sgml_models::kmeans", "rows": x.rows(), "dim": dim, "k": params.k,
            "n_init": params.n_init, "threads": threads, "seconds": seconds,
            "inertia": fit.inertia, "iterations": fit.iterations, "converged": fit.converged,
        })
    );
    Ok(())
}
