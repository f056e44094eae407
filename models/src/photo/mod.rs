//! Product photos, with no I/O: decoding bytes under limits ([`decode`]), the quality
//! measures a catalogue team checks ([`quality`]) and the perceptual hash that finds
//! the same picture edited ([`phash`]).
//!
//! The measures follow OpenCV's definitions (8-bit grey as `cv2.cvtColor(BGR2GRAY)`
//! rounds it, the Laplacian with OpenCV's default border), so a value here is the value
//! a data scientist gets from `cv2.Laplacian(grey, cv2.CV_64F).var()` on the same pixels.

pub mod decode;
pub mod phash;
pub mod quality;

pub use decode::{Format, Limits, Photo, PhotoError, PhotoRule, decode};
pub use phash::{PHash, phash};
pub use quality::{Grey, Quality, QualityPolicy, Verdict, grey, measure};

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .to_path_buf()
    }

    /// OpenCV's values on the same files (tests/fixtures/opencv/make_fixture.py: JPEG
    /// photos of shared/data's clothing set, and a drawn PNG and lossless WebP): blur,
    /// brightness and contrast within 1%. The JPEG decoders differ (zune-jpeg here,
    /// libjpeg-turbo in OpenCV) by a level here and there; the measures must not.
    #[test]
    fn measures_agree_with_opencv() {
        let fixture = root().join("tests/fixtures/opencv");
        let reference: serde_json::Value =
            serde_json::from_slice(&std::fs::read(fixture.join("quality.json")).unwrap()).unwrap();
        let photos = reference["photos"].as_array().unwrap();
        assert!(photos.len() >= 20);
        let mut worst = (0.0f64, String::new());
        for p in photos {
            let file = p["file"].as_str().unwrap();
            let path = match file.strip_prefix("fixture:") {
                Some(name) => fixture.join(name),
                None => root().join("../shared/data").join(file),
            };
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let photo = decode(&bytes, &Limits::default()).unwrap();
            assert_eq!(
                (photo.width(), photo.height()),
                (
                    p["width"].as_u64().unwrap() as u32,
                    p["height"].as_u64().unwrap() as u32
                ),
                "{file}"
            );
            let q = measure(&grey(&photo.rgb));
            for (name, ours) in [
                ("blur", q.blur),
                ("brightness", q.brightness),
                ("contrast", q.contrast),
            ] {
                let theirs = p[name].as_f64().unwrap();
                let gap = (ours - theirs).abs() / theirs.abs().max(1e-9);
                assert!(gap <= 0.01, "{file}: {name} {ours} vs OpenCV's {theirs}");
                if gap > worst.0 {
                    worst = (gap, format!("{file} {name}"));
                }
            }
        }
        eprintln!(
            "largest gap from OpenCV: {:.4}% ({})",
            100.0 * worst.0,
            worst.1
        );
    }
}
