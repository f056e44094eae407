//! Decoding a photo's bytes with every size checked before the pixels are allocated:
//! a few hundred bytes can declare a 60,000 × 60,000 image (a decompression bomb), so
//! the header's dimensions are read and checked first, and the decoder then runs under
//! the same limits.
//!
//! JPEG goes through libjpeg-turbo (the `turbojpeg` crate, built from its bundled
//! source), the decoder Pillow, torchvision and OpenCV use: its output is the same
//! bytes theirs is, so measures and embeddings agree with the Python stack's on the
//! same files (zune-jpeg, the `image` crate's, differs by up to 3 levels in a few
//! percent of values, which moved image embeddings to cosine 0.9995 of PyTorch's).
//! CMYK JPEGs, which libjpeg-turbo does not turn into RGB, go to the `image` crate.
//! PNG and WebP are decoded by the `image` crate.

use std::io::Cursor;

use image::{ImageFormat, ImageReader, RgbImage};
use serde::{Deserialize, Serialize};

/// The formats a listing's photo may be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Jpeg,
    Png,
    Webp,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Jpeg => "jpeg",
            Format::Png => "png",
            Format::Webp => "webp",
        }
    }

    fn of(format: ImageFormat) -> Option<Format> {
        match format {
            ImageFormat::Jpeg => Some(Format::Jpeg),
            ImageFormat::Png => Some(Format::Png),
            ImageFormat::WebP => Some(Format::Webp),
            _ => None,
        }
    }

    fn image(self) -> ImageFormat {
        match self {
            Format::Jpeg => ImageFormat::Jpeg,
            Format::Png => ImageFormat::Png,
            Format::Webp => ImageFormat::WebP,
        }
    }
}

/// Progressive scans a JPEG may have (a real photo has about ten).
const MAX_JPEG_SCANS: u32 = 500;

/// What a photo may weigh and measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest file accepted, in bytes.
    pub max_bytes: usize,
    /// Largest image accepted, in pixels (width × height).
    pub max_pixels: u64,
    /// Smallest side accepted, in pixels: smaller is a thumbnail, not a product photo.
    pub min_side: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_bytes: 20 * 1024 * 1024,
            // 50 megapixels: above any phone camera's photo, 150 MB decoded as RGB.
            max_pixels: 50_000_000,
            min_side: 64,
        }
    }
}

/// A decoded photo, as 8-bit RGB.
#[derive(Debug)]
pub struct Photo {
    pub format: Format,
    pub rgb: RgbImage,
}

impl Photo {
    pub fn width(&self) -> u32 {
        self.rgb.width()
    }

    pub fn height(&self) -> u32 {
        self.rgb.height()
    }
}

/// Why a photo was refused. [`PhotoError::rule`] names the quarantine rule.
#[derive(Debug, thiserror::Error)]
pub enum PhotoError {
    #[error("{bytes} bytes, more than the limit of {limit}")]
    TooManyBytes { bytes: usize, limit: usize },
    #[error("empty file")]
    Empty,
    #[error("not a JPEG, PNG or WebP image")]
    UnknownFormat,
    #[error("{width} x {height} pixels, more than the limit of {limit}")]
    TooManyPixels { width: u32, height: u32, limit: u64 },
    #[error("{width} x {height} pixels: a side is under the minimum of {min}")]
    TooSmall { width: u32, height: u32, min: u32 },
    #[error("cannot decode the {format} image: {why}")]
    Decode { format: &'static str, why: String },
}

/// The quarantine rules a refused photo falls under, from its URI to its pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PhotoRule {
    /// The URI is not one a photo may be read from (outside the images directory, a
    /// web address, an unknown scheme).
    Uri,
    /// The file or object is missing or unreadable.
    Read,
    /// Too many bytes or pixels, or too small.
    Size,
    /// Empty, not an accepted format, or broken.
    Decode,
}

impl PhotoRule {
    pub fn as_str(self) -> &'static str {
        match self {
            PhotoRule::Uri => "images.uri",
            PhotoRule::Read => "images.read",
            PhotoRule::Size => "images.size",
            PhotoRule::Decode => "images.decode",
        }
    }
}

impl PhotoError {
    pub fn rule(&self) -> PhotoRule {
        match self {
            PhotoError::TooManyBytes { .. }
            | PhotoError::TooManyPixels { .. }
            | PhotoError::TooSmall { .. } => PhotoRule::Size,
            PhotoError::Empty | PhotoError::UnknownFormat | PhotoError::Decode { .. } => {
                PhotoRule::Decode
            }
        }
    }
}

/// Decodes `bytes` (JPEG, PNG or WebP, told by their first bytes, never by a file
/// name) to RGB, refusing what breaks `limits` before decoding the pixels.
pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Photo, PhotoError> {
    if bytes.is_empty() {
        return Err(PhotoError::Empty);
    }
    if bytes.len() > limits.max_bytes {
        return Err(PhotoError::TooManyBytes {
            bytes: bytes.len(),
            limit: limits.max_bytes,
        });
    }
    let format = image::guess_format(bytes)
        .ok()
        .and_then(Format::of)
        .ok_or(PhotoError::UnknownFormat)?;
    let broken = |e: image::ImageError| PhotoError::Decode {
        format: format.as_str(),
        why: e.to_string().chars().take(200).collect(),
    };
    let turbo = |e: turbojpeg::Error| PhotoError::Decode {
        format: format.as_str(),
        why: e.to_string().chars().take(200).collect(),
    };
    let jpeg = match format {
        Format::Jpeg => Some(turbojpeg::read_header(bytes).map_err(turbo)?),
        _ => None,
    };
    let (width, height) = match &jpeg {
        Some(h) => (
            u32::try_from(h.width).unwrap_or(u32::MAX),
            u32::try_from(h.height).unwrap_or(u32::MAX),
        ),
        None => ImageReader::with_format(Cursor::new(bytes), format.image())
            .into_dimensions()
            .map_err(broken)?,
    };
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(PhotoError::TooManyPixels {
            width,
            height,
            limit: limits.max_pixels,
        });
    }
    if width.min(height) < limits.min_side {
        return Err(PhotoError::TooSmall {
            width,
            height,
            min: limits.min_side,
        });
    }
    if let Some(h) = jpeg.filter(|h| {
        !matches!(
            h.colorspace,
            turbojpeg::Colorspace::CMYK | turbojpeg::Colorspace::YCCK
        )
    }) {
        let mut d = turbojpeg::Decompressor::new().map_err(turbo)?;
        // A progressive JPEG can declare thousands of scans, each a pass over the
        // whole image: libjpeg-turbo's own advice is to cap them.
        d.set_scan_limit(MAX_JPEG_SCANS).map_err(turbo)?;
        let mut pixels = vec![0u8; h.width * h.height * 3];
        let image = turbojpeg::Image {
            pixels: pixels.as_mut_slice(),
            width: h.width,
            pitch: h.width * 3,
            height: h.height,
            format: turbojpeg::PixelFormat::RGB,
        };
        d.decompress(bytes, image).map_err(turbo)?;
        let rgb = RgbImage::from_raw(width, height, pixels).expect("buffer sized from the header");
        return Ok(Photo { format, rgb });
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format.image());
    let mut decoder_limits = image::Limits::default();
    decoder_limits.max_image_width = Some(width);
    decoder_limits.max_image_height = Some(height);
    // The decoded image at up to 16 bits × 4 channels, and the same again for the
    // decoder's own buffers.
    decoder_limits.max_alloc = Some(limits.max_pixels * 16);
    reader.limits(decoder_limits);
    let image = reader.decode().map_err(broken)?;
    Ok(Photo {
        format,
        rgb: image.into_rgb8(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageEncoder, codecs::png::PngEncoder};

    fn png(width: u32, height: u32) -> Vec<u8> {
        let pixels: Vec<u8> = (0..width * height * 3).map(|i| (i % 251) as u8).collect();
        let mut out = Vec::new();
        PngEncoder::new(&mut out)
            .write_image(&pixels, width, height, image::ExtendedColorType::Rgb8)
            .unwrap();
        out
    }

    #[test]
    fn decodes_within_limits() {
        let photo = decode(&png(80, 70), &Limits::default()).unwrap();
        assert_eq!(
            (photo.width(), photo.height(), photo.format),
            (80, 70, Format::Png)
        );
        assert_eq!(photo.rgb.get_pixel(1, 0).0, [3, 4, 5]);
    }

    #[test]
    fn refuses_by_rule() {
        let limits = Limits::default();
        let small = decode(&png(80, 20), &limits).unwrap_err();
        assert!(matches!(small, PhotoError::TooSmall { height: 20, .. }));
        assert_eq!(small.rule(), PhotoRule::Size);

        let tight = Limits {
            max_pixels: 80 * 80 - 1,
            ..limits
        };
        let big = decode(&png(80, 80), &tight).unwrap_err();
        assert!(matches!(big, PhotoError::TooManyPixels { .. }));

        let heavy = Limits {
            max_bytes: 10,
            ..limits
        };
        assert!(matches!(
            decode(&png(80, 80), &heavy).unwrap_err(),
            PhotoError::TooManyBytes { .. }
        ));

        let text = decode(b"<html>not a photo</html>", &limits).unwrap_err();
        assert_eq!(text.rule(), PhotoRule::Decode);
        assert!(matches!(text, PhotoError::UnknownFormat));
        assert!(matches!(
            decode(b"", &limits).unwrap_err(),
            PhotoError::Empty
        ));

        let mut cut = png(80, 80);
        cut.truncate(cut.len() / 2);
        assert!(matches!(
            decode(&cut, &limits).unwrap_err(),
            PhotoError::Decode { format: "png", .. }
        ));
    }

    /// A PNG header that declares 100,000 × 100,000 pixels in a few dozen bytes is
    /// refused from the header, before any pixel buffer exists.
    #[test]
    fn bomb_is_refused_from_the_header() {
        let mut bomb = png(80, 80);
        // IHDR's width and height: bytes 16..24, then its CRC at 29..33.
        bomb[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        bomb[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        let crc = crc32(&bomb[12..29]);
        bomb[29..33].copy_from_slice(&crc.to_be_bytes());
        let err = decode(&bomb, &Limits::default()).unwrap_err();
        assert!(
            matches!(err, PhotoError::TooManyPixels { width: 100_000, .. }),
            "{err}"
        );
    }

    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
}
