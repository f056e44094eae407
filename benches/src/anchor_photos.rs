//! The Rust side of `benches/anchors/photos.py`: reads, decodes and measures every
//! photo in a list (`sgml_models::photo`, what `sgml images` runs per photo: decode
//! under limits, grey, blur / brightness / contrast, pHash), timed, on a thread pool.
//!
//! Usage (prints one JSON object):
//!   anchor-photos LIST.txt THREADS
//!       LIST.txt: one photo path per line.

use std::time::Instant;

use anyhow::{Context, bail};
use rayon::prelude::*;
use sgml_models::photo::{self, Limits};

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, list, threads] = args.as_slice() else {
        bail!("usage: anchor-photos LIST.txt THREADS");
    };
    let paths: Vec<String> = std::fs::read_to_string(list)
        .with_context(|| format!("reading {list}"))?
        .lines()
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.parse()?)
        .build()?;
    let limits = Limits::default();
    let started = Instant::now();
    let rows: Vec<serde_json::Value> = pool.install(|| {
        paths
            .par_iter()
            .map(|p| {
                let bytes = std::fs::read(p).with_context(|| format!("reading {p}"))?;
                let decoded = photo::decode(&bytes, &limits).with_context(|| p.clone())?;
                let grey = photo::grey(&decoded.rgb);
                let q = photo::measure(&grey);
                let hash = photo::phash(&grey);
                Ok(serde_json::json!({
                    "blur": q.blur, "brightness": q.brightness, "contrast": q.contrast,
                    "phash": hash.to_hex(),
                }))
            })
            .collect::<anyhow::Result<_>>()
    })?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "photos": paths.len(), "threads": threads.parse::<usize>()?, "seconds": seconds,
            "photos_per_second": paths.len() as f64 / seconds, "rows": rows,
        })
    );
    Ok(())
}
