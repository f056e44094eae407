//! Little-endian f32 row files (the harnesses' `tofile`), read or memory-mapped, and
//! the memory figures the ANN anchors report.

use anyhow::{Context, bail};

/// Maps a file of f32 rows; at a million rows the map keeps the base out of the
/// process's anonymous memory, so `RssAnon` measures the index alone.
pub fn map_f32(path: &str) -> anyhow::Result<memmap2::Mmap> {
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
pub fn as_f32(bytes: &[u8]) -> anyhow::Result<&[f32]> {
    // SAFETY: every bit pattern is a valid f32; align_to puts any misaligned bytes in
    // the prefix/suffix, which must be empty.
    let (pre, floats, post) = unsafe { bytes.align_to::<f32>() };
    if !pre.is_empty() || !post.is_empty() || cfg!(target_endian = "big") {
        bail!("base vectors are not aligned little-endian f32");
    }
    Ok(floats)
}

pub fn read_f32(path: &str) -> anyhow::Result<Vec<f32>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {path}"))?;
    if bytes.len() % 4 != 0 {
        bail!("{path}: not a whole number of f32");
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
        .collect())
}

/// A field of /proc/self/status in MiB (Linux; 0 elsewhere).
pub fn status_mib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':').map(str::to_owned))
        })
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}
