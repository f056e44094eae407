//! The process's peak resident memory, recorded in each run's manifest: what an
//! operator sizes a worker by, and what the scale benchmark reads per task.
//!
//! Linux only (`VmHWM` in /proc/self/status, reset through /proc/self/clear_refs, so
//! each step of a `run all` reports its own peak); `None` elsewhere.

/// Starts a new high-water mark (Linux ≥ 4.0); silently nothing where unsupported.
pub fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The peak resident set since the process started or [`reset_peak`], in MiB.
pub fn peak_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.div_ceil(1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On Linux the peak is read, and it covers memory the process touched.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_peak_covers_what_was_touched() {
        reset_peak();
        let before = peak_mib().expect("VmHWM on Linux");
        let block = vec![1u8; 64 << 20];
        std::hint::black_box(&block);
        let after = peak_mib().unwrap();
        assert!(after >= before.max(64), "{before} → {after} MiB");
    }
}
