//! Quality measures of a photo and the verdict a catalogue team acts on: blur
//! (variance of the Laplacian), brightness (mean grey) and contrast (standard deviation
//! of grey), each as OpenCV computes it.

use image::RgbImage;
use serde::{Deserialize, Serialize};

/// An 8-bit grey image, row-major.
pub struct Grey {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

/// RGB to grey with OpenCV's 8-bit rounding (`cvtColor(…, COLOR_BGR2GRAY)`: BT.601
/// weights in 14-bit fixed point, rounded), so measures match OpenCV's on the same
/// pixels rather than drifting by a rounding.
pub fn grey(rgb: &RgbImage) -> Grey {
    const R: u32 = 4899;
    const G: u32 = 9617;
    const B: u32 = 1868;
    let pixels = rgb
        .as_raw()
        .chunks_exact(3)
        .map(|p| {
            ((u32::from(p[0]) * R + u32::from(p[1]) * G + u32::from(p[2]) * B + (1 << 13)) >> 14)
                as u8
        })
        .collect();
    Grey {
        width: rgb.width() as usize,
        height: rgb.height() as usize,
        pixels,
    }
}

/// A photo's measures.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Quality {
    /// Variance of the 4-neighbour Laplacian (`cv2.Laplacian(grey, CV_64F).var()`): low
    /// means few edges, a blurred or empty photo.
    pub blur: f64,
    /// Mean grey level, 0–255.
    pub brightness: f64,
    /// Standard deviation of grey (RMS contrast), 0–127.5.
    pub contrast: f64,
}

/// Measures `grey`. The Laplacian's border is OpenCV's default (reflect-101: the pixel
/// beyond an edge is the one just inside it).
pub fn measure(grey: &Grey) -> Quality {
    let (w, h) = (grey.width, grey.height);
    let n = (w * h) as f64;
    if w == 0 || h == 0 {
        return Quality {
            blur: 0.0,
            brightness: 0.0,
            contrast: 0.0,
        };
    }
    let px = |x: usize, y: usize| i64::from(grey.pixels[y * w + x]);
    // Reflect-101 neighbour of i in 0..len (a single row or column reflects to itself).
    let before = |i: usize, len: usize| if i > 0 { i - 1 } else { 1.min(len - 1) };
    let after = |i: usize, len: usize| {
        if i + 1 < len {
            i + 1
        } else {
            i.saturating_sub(1)
        }
    };
    let (mut sum, mut squares) = (0i64, 0i64);
    let (mut grey_sum, mut grey_squares) = (0i64, 0i64);
    for y in 0..h {
        let (up, down) = (before(y, h), after(y, h));
        for x in 0..w {
            let c = px(x, y);
            let lap = px(before(x, w), y) + px(after(x, w), y) + px(x, up) + px(x, down) - 4 * c;
            sum += lap;
            squares += lap * lap;
            grey_sum += c;
            grey_squares += c * c;
        }
    }
    // Sums are exact integers; the variances come from them in one step.
    let variance = |s: i64, q: i64| (q as f64 - (s as f64) * (s as f64) / n).max(0.0) / n;
    Quality {
        blur: variance(sum, squares),
        brightness: grey_sum as f64 / n,
        contrast: variance(grey_sum, grey_squares).sqrt(),
    }
}

/// What a photo is judged to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Ok,
    Blurry,
    Dark,
    Overexposed,
    LowContrast,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Blurry => "blurry",
            Verdict::Dark => "dark",
            Verdict::Overexposed => "overexposed",
            Verdict::LowContrast => "low_contrast",
        }
    }
}

/// The thresholds of the verdict.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct QualityPolicy {
    /// Below this Laplacian variance a photo is blurry.
    pub min_blur: f64,
    /// Below this mean grey a photo is dark.
    pub min_brightness: f64,
    /// Above this mean grey a photo is washed out (product shots on white sit near
    /// 200–235, so the bar is high).
    pub max_brightness: f64,
    /// Below this grey standard deviation a photo shows almost nothing.
    pub min_contrast: f64,
}

impl Default for QualityPolicy {
    fn default() -> QualityPolicy {
        QualityPolicy {
            min_blur: 20.0,
            min_brightness: 40.0,
            max_brightness: 248.0,
            min_contrast: 12.0,
        }
    }
}

impl QualityPolicy {
    /// The verdict on `q`: the first failed check in the order dark, overexposed, low
    /// contrast, blurry (a dark photo also has few edges; "dark" is the reason to fix).
    pub fn verdict(&self, q: &Quality) -> Verdict {
        if q.brightness < self.min_brightness {
            Verdict::Dark
        } else if q.brightness > self.max_brightness {
            Verdict::Overexposed
        } else if q.contrast < self.min_contrast {
            Verdict::LowContrast
        } else if q.blur < self.min_blur {
            Verdict::Blurry
        } else {
            Verdict::Ok
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grey_of(width: usize, height: usize, f: impl Fn(usize, usize) -> u8) -> Grey {
        let mut pixels = Vec::with_capacity(width * height);
        for y in 0..height {
            for x in 0..width {
                pixels.push(f(x, y));
            }
        }
        Grey {
            width,
            height,
            pixels,
        }
    }

    #[test]
    fn grey_rounds_as_opencv() {
        // OpenCV: cvtColor(np.uint8([[[b, g, r]]]), COLOR_BGR2GRAY) for these pixels.
        let rgb =
            RgbImage::from_raw(4, 1, vec![255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 200, 30]).unwrap();
        assert_eq!(grey(&rgb).pixels, vec![76, 150, 29, 124]);
    }

    #[test]
    fn flat_image_has_no_edges() {
        let q = measure(&grey_of(20, 10, |_, _| 90));
        assert_eq!((q.blur, q.brightness, q.contrast), (0.0, 90.0, 0.0));
    }

    /// A one-pixel spot: the Laplacian is −4v there and v at its four neighbours, 0
    /// elsewhere, whatever the borders do (the spot is inside).
    #[test]
    fn laplacian_of_a_spot() {
        let v = 100.0;
        let q = measure(&grey_of(
            5,
            5,
            |x, y| if (x, y) == (2, 2) { 100 } else { 0 },
        ));
        let n = 25.0;
        let values = [-4.0 * v, v, v, v, v];
        let mean: f64 = values.iter().sum::<f64>() / n;
        let var = values.iter().map(|l| l * l).sum::<f64>() / n - mean * mean;
        assert!((q.blur - var).abs() < 1e-9, "{} vs {var}", q.blur);
        assert!((q.brightness - 4.0).abs() < 1e-12);
    }

    /// At an edge, reflect-101 takes the pixel just inside as the one beyond: a spot
    /// in a corner has its inner neighbours (0) on all four sides, so −4v there, and v
    /// at the two pixels it touches. (Replicate borders would give −2v: the spot would
    /// be its own neighbour twice.)
    #[test]
    fn border_reflects_101() {
        let q = measure(&grey_of(4, 4, |x, y| if (x, y) == (0, 0) { 8 } else { 0 }));
        let values = [-32.0, 8.0, 8.0];
        let n = 16.0;
        let mean: f64 = values.iter().sum::<f64>() / n;
        let var = values.iter().map(|l| l * l).sum::<f64>() / n - mean * mean;
        assert!((q.blur - var).abs() < 1e-9, "{} vs {var}", q.blur);
    }

    #[test]
    fn verdicts() {
        let policy = QualityPolicy::default();
        let q = |blur, brightness, contrast| Quality {
            blur,
            brightness,
            contrast,
        };
        assert_eq!(policy.verdict(&q(500.0, 180.0, 60.0)), Verdict::Ok);
        assert_eq!(policy.verdict(&q(5.0, 180.0, 60.0)), Verdict::Blurry);
        assert_eq!(policy.verdict(&q(5.0, 20.0, 60.0)), Verdict::Dark);
        assert_eq!(policy.verdict(&q(500.0, 252.0, 60.0)), Verdict::Overexposed);
        assert_eq!(policy.verdict(&q(500.0, 120.0, 3.0)), Verdict::LowContrast);
    }
}
