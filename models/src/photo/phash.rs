//! The perceptual hash (pHash, as the Python `imagehash` library defines it): the grey
//! image reduced to 32 × 32, its 2-D DCT, and one bit per coefficient of the lowest 8 × 8
//! frequencies, set when above their median. Resizing, recompressing or brightening a
//! photo moves few bits; another photo differs in about half. Written here because it
//! is twenty lines over the grey image this module already has, and a crate would
//! define its own variant of the hash.

use serde::{Deserialize, Serialize};

use super::quality::Grey;

/// Side of the reduced image.
const SIDE: usize = 32;
/// Side of the block of low frequencies kept.
const LOW: usize = 8;

/// A 64-bit perceptual hash; bit 63 is the DC coefficient's, then row by row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PHash(pub u64);

impl PHash {
    /// Bits that differ: 0 for the same picture, about 32 for unrelated ones.
    pub fn distance(self, other: PHash) -> u32 {
        (self.0 ^ other.0).count_ones()
    }

    /// Sixteen hex digits, as `str(imagehash.phash(...))` prints.
    pub fn to_hex(self) -> String {
        format!("{:016x}", self.0)
    }
}

/// The pHash of `grey` (any size ≥ 1 × 1).
pub fn phash(grey: &Grey) -> PHash {
    let small = area_resize(grey);
    // cos(π·u·(2n+1) / 2N) for the LOW frequencies kept.
    let mut basis = [[0f64; SIDE]; LOW];
    for (u, row) in basis.iter_mut().enumerate() {
        for (n, b) in row.iter_mut().enumerate() {
            *b = (std::f64::consts::PI * u as f64 * (2 * n + 1) as f64 / (2 * SIDE) as f64).cos();
        }
    }
    // Rows first (SIDE × LOW), then columns (LOW × LOW): DCT-II, unnormalised (a common
    // factor does not move the median test).
    let mut rows = [[0f64; LOW]; SIDE];
    for (y, out) in rows.iter_mut().enumerate() {
        for (v, o) in out.iter_mut().enumerate() {
            *o = (0..SIDE).map(|x| small[y * SIDE + x] * basis[v][x]).sum();
        }
    }
    let mut coef = [0f64; LOW * LOW];
    for u in 0..LOW {
        for v in 0..LOW {
            coef[u * LOW + v] = (0..SIDE).map(|y| rows[y][v] * basis[u][y]).sum();
        }
    }
    let mut sorted = coef;
    sorted.sort_by(f64::total_cmp);
    let median = (sorted[LOW * LOW / 2 - 1] + sorted[LOW * LOW / 2]) / 2.0;
    PHash(
        coef.iter()
            .enumerate()
            .filter(|(_, c)| **c > median)
            .fold(0u64, |h, (i, _)| h | 1 << (63 - i)),
    )
}

/// `grey` reduced to SIDE × SIDE by area averaging: each output pixel is the mean of
/// the input it covers, fractional pixels weighted by their share (a box filter, so no
/// aliasing whatever the reduction).
fn area_resize(grey: &Grey) -> Vec<f64> {
    let spans = |len: usize| -> Vec<Vec<(usize, f64)>> {
        let scale = len as f64 / SIDE as f64;
        (0..SIDE)
            .map(|o| {
                let (start, end) = (o as f64 * scale, (o + 1) as f64 * scale);
                let first = start.floor() as usize;
                let last = (end.ceil() as usize).min(len);
                (first..last)
                    .map(|i| {
                        let cover = (end.min((i + 1) as f64) - start.max(i as f64)).max(0.0);
                        (i, cover / scale)
                    })
                    .filter(|(_, w)| *w > 0.0)
                    .collect()
            })
            .collect()
    };
    let (xs, ys) = (spans(grey.width), spans(grey.height));
    // Columns first: height × SIDE, then rows.
    let mut narrow = vec![0f64; grey.height * SIDE];
    for y in 0..grey.height {
        let row = &grey.pixels[y * grey.width..(y + 1) * grey.width];
        for (o, span) in xs.iter().enumerate() {
            narrow[y * SIDE + o] = span.iter().map(|(x, w)| f64::from(row[*x]) * w).sum();
        }
    }
    let mut out = vec![0f64; SIDE * SIDE];
    for (o, span) in ys.iter().enumerate() {
        for x in 0..SIDE {
            out[o * SIDE + x] = span.iter().map(|(y, w)| narrow[y * SIDE + x] * w).sum();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scene(width: usize, height: usize, shift: i32) -> Grey {
        // A few shapes and a gradient: enough low-frequency structure for a stable hash.
        let mut pixels = Vec::with_capacity(width * height);
        for y in 0..height {
            for x in 0..width {
                let (fx, fy) = (x as f64 / width as f64, y as f64 / height as f64);
                let mut v = 60.0 + 120.0 * fx;
                if ((fx - 0.3).powi(2) + (fy - 0.4).powi(2)) < 0.04 {
                    v = 230.0;
                }
                if fx > 0.6 && fy > 0.55 && fx < 0.9 {
                    v = 20.0;
                }
                pixels.push((v as i32 + shift).clamp(0, 255) as u8);
            }
        }
        Grey {
            width,
            height,
            pixels,
        }
    }

    #[test]
    fn area_resize_keeps_the_mean() {
        let g = scene(333, 251, 0);
        let mean_in = g.pixels.iter().map(|&p| f64::from(p)).sum::<f64>() / (333.0 * 251.0);
        let small = area_resize(&g);
        let mean_out = small.iter().sum::<f64>() / (SIDE * SIDE) as f64;
        assert!((mean_in - mean_out).abs() < 1e-6, "{mean_in} vs {mean_out}");
    }

    #[test]
    fn edits_move_few_bits_and_other_pictures_many() {
        let original = phash(&scene(400, 300, 0));
        let resized = phash(&scene(200, 150, 0));
        let brighter = phash(&scene(400, 300, 25));
        assert!(
            original.distance(resized) <= 4,
            "{}",
            original.distance(resized)
        );
        assert!(
            original.distance(brighter) <= 4,
            "{}",
            original.distance(brighter)
        );
        // Another picture: the scene mirrored.
        let g = scene(400, 300, 0);
        let mut mirrored = g.pixels.clone();
        for row in mirrored.chunks_mut(400) {
            row.reverse();
        }
        let other = phash(&Grey {
            pixels: mirrored,
            ..g
        });
        assert!(
            original.distance(other) >= 16,
            "{}",
            original.distance(other)
        );
        assert_eq!(original.to_hex().len(), 16);
    }

    /// Half the bits are set, less ties: the median splits the 64 coefficients.
    #[test]
    fn median_splits() {
        let h = phash(&scene(128, 128, 0));
        assert!(
            (28..=32).contains(&h.0.count_ones()),
            "{}",
            h.0.count_ones()
        );
    }
}
