//! The Rust side of `benches/anchors/image_embed.py`: reads, decodes and embeds every
//! photo in a list with EfficientNet-Lite0 (`sgml_models::vision`, what `sgml images`
//! runs per photo after its checks), timed end to end on a thread pool, and writes the
//! embeddings so the harness can compare them with PyTorch's.
//!
//! Usage (prints one JSON object):
//!   anchor-image-embed WEIGHTS_DIR LIST.txt THREADS OUT.f32
//!       LIST.txt: one photo path per line; OUT.f32 gets 1,280 little-endian f32 per
//!       photo, in list order.

use std::io::Write;
use std::time::Instant;

use anyhow::{Context, bail};
use rayon::prelude::*;
use sgml_benches::vectors::status_mib;
use sgml_models::photo::{self, Limits};
use sgml_models::vision::ImageEmbedder;

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, weights, list, threads, out] = args.as_slice() else {
        bail!("usage: anchor-image-embed WEIGHTS_DIR LIST.txt THREADS OUT.f32");
    };
    let paths: Vec<String> = std::fs::read_to_string(list)
        .with_context(|| format!("reading {list}"))?
        .lines()
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    let threads: usize = threads.parse()?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    let started = Instant::now();
    let embedder = ImageEmbedder::load(std::path::Path::new(weights))?;
    let load_seconds = started.elapsed().as_secs_f64();
    let limits = Limits::default();
    let started = Instant::now();
    let vectors: Vec<Vec<f32>> = pool.install(|| {
        paths
            .par_iter()
            .map(|p| {
                let bytes = std::fs::read(p).with_context(|| format!("reading {p}"))?;
                let decoded = photo::decode(&bytes, &limits).with_context(|| p.clone())?;
                Ok(embedder.embed(&decoded.rgb))
            })
            .collect::<anyhow::Result<_>>()
    })?;
    let seconds = started.elapsed().as_secs_f64();
    let mut file = std::io::BufWriter::new(std::fs::File::create(out)?);
    for v in vectors.iter().flatten() {
        file.write_all(&v.to_le_bytes())?;
    }
    file.flush()?;
    println!(
        "{}",
        serde_json::json!({
            "photos": paths.len(), "threads": threads, "seconds": seconds,
            "load_seconds": load_seconds,
            "photos_per_second": paths.len() as f64 / seconds,
            "peak_rss_mb": status_mib("VmHWM"),
        })
    );
    Ok(())
}
