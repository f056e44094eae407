//! The hnsw_rs peer of `benches/anchors/ann.py`: the pure-Rust HNSW crate the project
//! weighed against usearch ("measure before choosing", issue 15), run on the same
//! vectors, parameters and expansion sweep as `anchor-ann`, so the two Rust choices
//! are compared under one harness and one recall scorer.
//!
//! Usage (prints one JSON object):
//!   anchor-hnsw-rs BASE.f32 QUERIES.f32 DIM METRIC THREADS M EF_CONSTRUCTION EF,EF,... K OUT.u32
//!       METRIC: cos (rows normalized here, then anndists' DistDot, which is 1 − a·b)
//!       or l2 (DistL2). hnsw_rs stores f32 only. OUT.u32 as anchor-ann's.

use std::io::Write;
use std::time::Instant;

use anyhow::bail;
use hnsw_rs::prelude::{DistDot, DistL2, Distance, Hnsw};
use rayon::prelude::*;
use sgml_benches::vectors::{as_f32, map_f32, read_f32, status_mib};

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// hnsw_rs's layer cap (it clamps to 16); with M ≥ 8 a million points use ~7 levels.
const MAX_LAYERS: usize = 16;

struct Run {
    build_seconds: f64,
    rss_anon_mb: f64,
    runs: Vec<serde_json::Value>,
}

fn normalized(rows: &[f32], dim: usize) -> Vec<f32> {
    let mut out = rows.to_vec();
    for row in out.chunks_exact_mut(dim) {
        let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            row.iter_mut().for_each(|x| *x /= norm);
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn run<D: Distance<f32> + Send + Sync>(
    distance: D,
    base: &[f32],
    queries: &[f32],
    dim: usize,
    pool: &rayon::ThreadPool,
    m: usize,
    efc: usize,
    efs: &[usize],
    k: usize,
    found: &mut impl Write,
) -> anyhow::Result<Run> {
    let n = base.len() / dim;
    let started = Instant::now();
    let index: Hnsw<f32, D> = Hnsw::new(m, n, MAX_LAYERS, efc, distance);
    let items: Vec<(&[f32], usize)> = base.chunks_exact(dim).zip(0..).collect();
    pool.install(|| index.parallel_insert_slice(&items));
    let build_seconds = started.elapsed().as_secs_f64();
    let rss_anon_mb = status_mib("RssAnon");
    let mut runs = Vec::new();
    for &ef in efs {
        let started = Instant::now();
        let results: Vec<Vec<u32>> = pool.install(|| {
            queries
                .par_chunks_exact(dim)
                .map(|q| {
                    let mut ids: Vec<u32> = index
                        .search(q, k, ef)
                        .iter()
                        .map(|nb| nb.d_id as u32)
                        .collect();
                    ids.resize(k, u32::MAX);
                    ids
                })
                .collect()
        });
        let seconds = started.elapsed().as_secs_f64();
        for id in results.iter().flatten() {
            found.write_all(&id.to_le_bytes())?;
        }
        runs.push(serde_json::json!({
            "ef": ef, "seconds": seconds, "qps": results.len() as f64 / seconds,
        }));
    }
    Ok(Run {
        build_seconds,
        rss_anon_mb,
        runs,
    })
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, base, queries, dim, metric, threads, m, efc, efs, k, out] = args.as_slice() else {
        bail!(
            "usage: anchor-hnsw-rs BASE.f32 QUERIES.f32 DIM METRIC THREADS M EF_CONSTRUCTION EF,EF,... K OUT.u32"
        );
    };
    let dim: usize = dim.parse()?;
    let threads: usize = threads.parse()?;
    let (m, efc, k): (usize, usize, usize) = (m.parse()?, efc.parse()?, k.parse()?);
    let efs: Vec<usize> = efs.split(',').map(str::parse).collect::<Result<_, _>>()?;
    let base_map = map_f32(base)?;
    let base = as_f32(&base_map)?;
    let queries = read_f32(queries)?;
    let n = base.len() / dim;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    let mut found = std::io::BufWriter::new(std::fs::File::create(out)?);
    let result = match metric.as_str() {
        "cos" => {
            let (base, queries) = (normalized(base, dim), normalized(&queries, dim));
            run(
                DistDot, &base, &queries, dim, &pool, m, efc, &efs, k, &mut found,
            )?
        }
        "l2" => run(
            DistL2, base, &queries, dim, &pool, m, efc, &efs, k, &mut found,
        )?,
        other => bail!("metric {other}: expected cos or l2"),
    };
    found.flush()?;
    println!(
        "{}",
        serde_json::json!({
            "library": "hnsw_rs 0.3.5 (anndists simdeez_f)",
            "rss_anon_mb": result.rss_anon_mb, "peak_rss_mb": status_mib("VmHWM"),
            "vectors": n, "dim": dim, "threads": threads,
            "build_seconds": result.build_seconds, "runs": result.runs,
        })
    );
    Ok(())
}
