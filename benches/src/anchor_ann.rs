//! The Rust side of `benches/anchors/ann.py`: builds the similar-products index
//! (`sgml_models::ann`, the code `sgml train similar` runs) over the vectors the
//! Python harness wrote, then answers every query at each search expansion and
//! reports build time, queries per second and the neighbours found (the harness
//! scores recall against its exact ground truth, the same for every peer).
//!
//! Usage (prints one JSON object):
//!   anchor-ann BASE.f32 QUERIES.f32 DIM METRIC QUANT THREADS M EF_CONSTRUCTION EF,EF,... K OUT.u32
//!       BASE/QUERIES: little-endian f32 rows of DIM; METRIC: cos or l2; QUANT: f32, f16
//!       or i8 (how the graph stores vectors). OUT.u32 gets the neighbours' row numbers
//!       (u32), K per query, one block per EF in order.
//!
//! The base vectors are memory-mapped rather than read, so that at a million rows the
//! memory reported is the index's: `rss_anon_mb` after the build (the graph and its
//! stored vectors) besides the process's peak `VmHWM`, which also counts the mapped
//! file's pages.

use std::io::Write;
use std::time::Instant;

use anyhow::bail;
use rayon::prelude::*;
use sgml_benches::vectors::{as_f32, map_f32, read_f32, status_mib};
use sgml_models::ann::{AnnIndex, AnnParams, Filter, Metric, Quantization, Rows};

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [
        _,
        base,
        queries,
        dim,
        metric,
        quant,
        threads,
        m,
        efc,
        efs,
        k,
        out,
    ] = args.as_slice()
    else {
        bail!(
            "usage: anchor-ann BASE.f32 QUERIES.f32 DIM METRIC QUANT THREADS M EF_CONSTRUCTION EF,EF,... K OUT.u32"
        );
    };
    let dim: usize = dim.parse()?;
    let threads: usize = threads.parse()?;
    let k: usize = k.parse()?;
    let efs: Vec<usize> = efs.split(',').map(str::parse).collect::<Result<_, _>>()?;
    let metric = match metric.as_str() {
        "cos" => Metric::Cos,
        "l2" => Metric::L2,
        other => bail!("metric {other}: expected cos or l2"),
    };
    let quantization = match quant.as_str() {
        "f32" => Quantization::F32,
        "f16" => Quantization::F16,
        "i8" => Quantization::I8,
        other => bail!("quantization {other}: expected f32, f16 or i8"),
    };
    let base_map = map_f32(base)?;
    let base = as_f32(&base_map)?;
    let queries = read_f32(queries)?;
    let n = base.len() / dim;
    let rows = Rows {
        product_id: (0..n).map(|i| i.to_string()).collect(),
        seller_id: vec![String::new(); n],
        market: vec![None; n],
    };
    let params = AnnParams {
        connectivity: m.parse()?,
        expansion_add: efc.parse()?,
        expansion_search: efs[0],
        quantization,
        metric,
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    let started = Instant::now();
    let index = pool.install(|| AnnIndex::build(base, dim, rows, &params))?;
    let build_seconds = started.elapsed().as_secs_f64();
    let rss_anon_mb = status_mib("RssAnon");
    let mut found = std::io::BufWriter::new(std::fs::File::create(out)?);
    let mut runs = Vec::new();
    for &ef in &efs {
        index.set_expansion_search(ef);
        let started = Instant::now();
        let results: Vec<Vec<u32>> = pool.install(|| {
            queries
                .par_chunks_exact(dim)
                .map(|q| {
                    let got = index.search(q, k, &Filter::default())?;
                    let mut ids: Vec<u32> = got.iter().map(|nb| nb.row as u32).collect();
                    ids.resize(k, u32::MAX);
                    Ok(ids)
                })
                .collect::<anyhow::Result<_>>()
        })?;
        let seconds = started.elapsed().as_secs_f64();
        for ids in &results {
            for id in ids {
                found.write_all(&id.to_le_bytes())?;
            }
        }
        runs.push(serde_json::json!({
            "ef": ef, "seconds": seconds, "qps": results.len() as f64 / seconds,
        }));
    }
    found.flush()?;
    println!(
        "{}",
        serde_json::json!({
            "library": format!("usearch {} (sgml_models::ann)", sgml_models::ann::library_version()),
            "acceleration": index.acceleration(),
            "quantization": quant,
            "rss_anon_mb": rss_anon_mb, "peak_rss_mb": status_mib("VmHWM"),
            "vectors": n, "dim": dim, "threads": threads,
            "build_seconds": build_seconds, "runs": runs,
        })
    );
    Ok(())
}
