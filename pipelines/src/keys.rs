//! The keys a table has shown during ingest, in memory that does not grow with the
//! input: a bounded in-memory set that spills to sorted runs on disk, each run
//! fronted by a Bloom filter.
//!
//! Duplicate keys are found across every chunk of a table, so the set of keys seen
//! is the one piece of ingest state that grows with the input (34 bytes a key in a
//! hash set: over 400 MB at peak for ten million keys). Here a key costs 16 bytes on
//! disk and 2 bytes of filter in memory; a lookup that the filters do not rule out
//! reads one 16 KiB block of one run.
//!
//! Written here rather than taken from a crate: the keys are already 128-bit hashes
//! (xxh3, from validation), so the filter needs no hashing of its own, and the crates
//! that spill (external sorters) answer "what is in the set" after the fact, not
//! "was this key seen" while the rows stream.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;

use sgml_features::validate::SeenKeys;

/// Keys held in memory before they spill to a run (about 35 MB of hash set).
pub const RESIDENT_KEYS: usize = 1 << 20;

/// Keys per block of a run: one in-memory fence per block, one read per lookup.
const BLOCK_KEYS: usize = 1024;

/// Bloom filter bits per key, in 512-bit blocks of one cache line each, with
/// [`PROBES`] probes: about one false positive in 500 lookups.
const FILTER_BITS_PER_KEY: usize = 16;
const PROBES: u32 = 8;

/// A set of 128-bit key fingerprints that spills to disk past [`RESIDENT_KEYS`].
pub struct SpillingKeys {
    dir: Option<tempfile::TempDir>,
    resident: HashSet<u128>,
    cap: usize,
    runs: Vec<Run>,
}

impl SpillingKeys {
    pub fn new() -> SpillingKeys {
        SpillingKeys::with_cap(RESIDENT_KEYS)
    }

    /// A set that spills every `cap` keys (tests use a small one).
    pub fn with_cap(cap: usize) -> SpillingKeys {
        let cap = cap.max(1);
        SpillingKeys {
            dir: None,
            // Sized once: hashbrown touches only its control bytes until keys
            // arrive, so a small table costs little, and a large one never pays
            // for a resize (old and new tables live side by side while it runs).
            resident: HashSet::with_capacity(cap),
            cap,
            runs: Vec::new(),
        }
    }

    /// Runs written so far.
    pub fn runs(&self) -> usize {
        self.runs.len()
    }

    fn spill(&mut self) -> std::io::Result<()> {
        let mut keys: Vec<u128> = self.resident.drain().collect();
        keys.sort_unstable();
        let dir = match &self.dir {
            Some(dir) => dir,
            None => self
                .dir
                .insert(tempfile::Builder::new().prefix("sgml-keys-").tempdir()?),
        };
        let mut file = tempfile::tempfile_in(dir.path())?;
        let mut out = BufWriter::with_capacity(1 << 16, &mut file);
        for key in &keys {
            out.write_all(&key.to_le_bytes())?;
        }
        out.flush()?;
        drop(out);
        let mut filter = Filter::new(keys.len());
        for key in &keys {
            filter.insert(*key);
        }
        self.runs.push(Run {
            file,
            len: keys.len(),
            fences: keys.iter().step_by(BLOCK_KEYS).copied().collect(),
            filter,
        });
        Ok(())
    }
}

impl Default for SpillingKeys {
    fn default() -> Self {
        SpillingKeys::new()
    }
}

impl SeenKeys for SpillingKeys {
    fn insert(&mut self, key: u128) -> std::io::Result<bool> {
        if self.resident.contains(&key) {
            return Ok(false);
        }
        for run in &self.runs {
            if run.filter.may_contain(key) && run.contains(key)? {
                return Ok(false);
            }
        }
        self.resident.insert(key);
        if self.resident.len() >= self.cap {
            self.spill()?;
        }
        Ok(true)
    }
}

/// Sorted keys in a file, the first key of every block in memory.
struct Run {
    file: File,
    len: usize,
    fences: Vec<u128>,
    filter: Filter,
}

impl Run {
    fn contains(&self, key: u128) -> std::io::Result<bool> {
        let block = self.fences.partition_point(|f| *f <= key);
        if block == 0 {
            return Ok(false);
        }
        let start = (block - 1) * BLOCK_KEYS;
        let n = BLOCK_KEYS.min(self.len - start);
        let mut bytes = vec![0u8; n * 16];
        self.file.read_exact_at(&mut bytes, (start * 16) as u64)?;
        let keys: Vec<u128> = bytes
            .chunks_exact(16)
            .map(|b| u128::from_le_bytes(b.try_into().expect("16 bytes")))
            .collect();
        Ok(keys.binary_search(&key).is_ok())
    }
}

/// A blocked Bloom filter: every probe of a key falls in one 64-byte block, so a
/// lookup costs one cache miss.
struct Filter {
    blocks: Vec<[u64; 8]>,
}

impl Filter {
    fn new(keys: usize) -> Filter {
        let blocks = (keys * FILTER_BITS_PER_KEY).div_ceil(512).max(1);
        Filter {
            blocks: vec![[0; 8]; blocks],
        }
    }

    /// The block of a key: picked by the fingerprint's low half.
    fn block(&self, key: u128) -> usize {
        ((key as u64) % self.blocks.len() as u64) as usize
    }

    fn insert(&mut self, key: u128) {
        let block = self.block(key);
        let block = &mut self.blocks[block];
        for bit in probes(key) {
            block[bit / 64] |= 1 << (bit % 64);
        }
    }

    fn may_contain(&self, key: u128) -> bool {
        let block = &self.blocks[self.block(key)];
        probes(key).all(|bit| block[bit / 64] & (1 << (bit % 64)) != 0)
    }
}

/// The bit positions of a key inside its block: from the fingerprint's high half
/// (double hashing).
fn probes(key: u128) -> impl Iterator<Item = usize> {
    let high = (key >> 64) as u64;
    let (h1, h2) = (high as u32, (high >> 32) as u32 | 1);
    (0..PROBES).map(move |i| (h1.wrapping_add(i.wrapping_mul(h2)) % 512) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fingerprint(i: u64) -> u128 {
        xxhash_rust::xxh3::xxh3_128(&i.to_le_bytes())
    }

    /// Spilled or resident, a key is reported seen exactly when it was inserted
    /// before: the same answers as a plain set, over many runs.
    #[test]
    fn answers_like_a_set_across_spills() {
        let mut keys = SpillingKeys::with_cap(1000);
        let mut plain = HashSet::new();
        // Keys 0..20,000 in an order that revisits old ones (a third are repeats).
        for i in 0..30_000u64 {
            let k = fingerprint((i * 7919) % 20_000);
            assert_eq!(keys.insert(k).unwrap(), plain.insert(k), "at {i}");
        }
        assert!(keys.runs() >= 15, "{} runs", keys.runs());
        for i in 0..20_000u64 {
            assert!(!keys.insert(fingerprint(i)).unwrap());
        }
        assert!(keys.insert(fingerprint(20_000)).unwrap());
    }

    /// Keys at a run's edges (its first and last, before the first, after the
    /// last) are found or not found correctly.
    #[test]
    fn run_edges() {
        let mut keys = SpillingKeys::with_cap(3000);
        for k in 10..3010u128 {
            keys.insert(k).unwrap();
        }
        assert_eq!(keys.runs(), 1);
        for k in [10, 1033, 1034, 3009] {
            assert!(keys.runs[0].contains(k).unwrap(), "{k}");
            assert!(!keys.insert(k).unwrap(), "{k}");
        }
        for k in [0, 9, 3010, u128::MAX] {
            assert!(!keys.runs[0].contains(k).unwrap(), "{k}");
        }
    }

    /// The filter has no false negatives and few false positives.
    #[test]
    fn filter_rate() {
        let mut filter = Filter::new(100_000);
        for i in 0..100_000 {
            filter.insert(fingerprint(i));
        }
        assert!((0..100_000).all(|i| filter.may_contain(fingerprint(i))));
        let false_positives = (100_000..200_000)
            .filter(|i| filter.may_contain(fingerprint(*i)))
            .count();
        assert!(false_positives < 1000, "{false_positives} in 100,000");
    }
}
