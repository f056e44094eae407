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

use anyhow::{Context, bail};
use rayon::prelude::*;
use sgml_models::ann::{AnnIndex, AnnParams, Filter, Metric, Quantization, Rows};

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn map_f32(path: &str) -> anyhow::Result<memmap2::Mmap> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {path}"))?;
    // SAFETY: the harness wrote the file before starting this process and does not
    // touch it while the map lives.
    let map = unsafe { memmap2::Mmap::map(&file) }.with_context(|| format!("mapping {path}"))?;
    if map.len() % 4 != 0 {
        bail!("{path}: not a whole number of f32");
    }
    Ok(map)
}

/// The mapped bytes as f32 (x86 is little-endian, as the harness writes them; a map
/// starts on a page, so it is aligned).
fn as_f32(bytes: &[u8]) -> anyhow::Result<&[f32]> {
    // SAFETY: every bit pattern is a valid f32; align_to puts any misaligned bytes in
    // the prefix/suffix, which must be empty.
    let (pre, floats, post) = unsafe { bytes.align_to::<f32>() };
    if !pre.is_empty() || !post.is_empty() || cfg!(target_endian = "big") {
        bail!("base vectors are not aligned little-endian f32");
    }
    Ok(floats)
}

/// A field of /proc/self/status in MiB (Linux; 0 elsewhere).
fn status_mib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':').map(str::to_owned))
        })
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn read_f32(path: &str) -> anyhow::Result<Vec<f32>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {path}"))?;
    if bytes.len() % 4 != 0 {
        bail!("{path}: not a whole number of f32");
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
        .collect())
}

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
