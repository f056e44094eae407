//! Product photos for the generated export: a drawn product (its category's shape in
//! its brand's colour, striped, on a light background) per photographed listing, as
//! `images/<product_id>.jpg`, with what real uploads have — relistings carrying the
//! original's photo edited (resized, recompressed, brightened or darkened, cropped),
//! dark and blurred photos, and, at the export's bad fraction, files that are broken,
//! tiny, not images, missing or named outside the images directory.

use std::path::Path;

use image::codecs::jpeg::JpegEncoder;
use image::imageops::{self, FilterType};
use image::{Rgb, RgbImage};
use rand::prelude::*;
use rand_chacha::ChaCha8Rng;

use crate::{Product, Result, SynthError, io_at};

/// Side of a generated photo, in pixels.
const SIDE: u32 = 96;
/// Shares of photographed originals that are dark or blurred (quality defects, not
/// data errors: they are there whatever the bad fraction).
const DARK: f64 = 0.04;
const BLURRED: f64 = 0.04;
/// The folder of the export photos are written to; `image_uri` is relative to the
/// export.
pub const FOLDER: &str = "images";

/// Writes the photos of about `share` of the original listings (and of every
/// relisting of a photographed one) and returns each product's `image_uri`, empty
/// when it has none.
pub(crate) fn write(
    dir: &Path,
    share: f64,
    bad_fraction: f64,
    rng: &mut ChaCha8Rng,
    products: &[Product],
) -> Result<Vec<String>> {
    let mut uris = vec![String::new(); products.len()];
    if share <= 0.0 {
        return Ok(uris);
    }
    let folder = dir.join(FOLDER);
    std::fs::create_dir_all(&folder).map_err(io_at(&folder))?;
    let mut drawn: Vec<Option<RgbImage>> = vec![None; products.len()];
    for (i, prod) in products.iter().enumerate() {
        let photo = match &prod.relisting {
            None if rng.gen_bool(share.min(1.0)) => {
                let mut img = draw(prod, rng);
                if rng.gen_bool(DARK) {
                    scale_brightness(&mut img, 0.12);
                } else if rng.gen_bool(BLURRED) {
                    img = imageops::blur(&img, 3.0);
                }
                img
            }
            None => continue,
            Some(r) => match &drawn[r.of] {
                Some(original) => edited(original, rng),
                None => continue,
            },
        };
        let name = format!("{}.jpg", prod.id);
        uris[i] = format!("{FOLDER}/{name}");
        if rng.gen_bool(bad_fraction) {
            uris[i] = broken(&folder, &name, &photo, rng)?;
        } else {
            save(&folder.join(&name), &photo, 85)?;
        }
        drawn[i] = Some(photo);
    }
    Ok(uris)
}

/// The product drawn: shape by category, colour by brand, stripes by both.
fn draw(prod: &Product, rng: &mut ChaCha8Rng) -> RgbImage {
    let hue = ((prod.category * 7 + prod.brand * 3) % 12) as f64 / 12.0;
    let colour = hsv(hue, 0.7, 0.75);
    let stripe = 4 + (prod.brand % 4) as u32 * 2;
    let background = 235 + rng.gen_range(0..18) as u8;
    let (cx, cy) = (
        SIDE as f64 / 2.0 + rng.gen_range(-8.0..8.0),
        SIDE as f64 / 2.0 + rng.gen_range(-8.0..8.0),
    );
    let size = rng.gen_range(26.0..38.0);
    let shape = prod.category % 4;
    RgbImage::from_fn(SIDE, SIDE, |x, y| {
        let (dx, dy) = (x as f64 - cx, y as f64 - cy);
        let inside = match shape {
            0 => dx * dx + dy * dy < size * size,
            1 => dx.abs() < size && dy.abs() < size * 0.7,
            2 => dy > -size && dy < size && dx.abs() < (dy + size) * 0.6,
            _ => {
                let r = (dx * dx + dy * dy).sqrt();
                r < size && r > size * 0.55
            }
        };
        if inside {
            let dark = ((x + 2 * y) / stripe).is_multiple_of(2);
            let f = if dark { 0.7 } else { 1.0 };
            Rgb(colour.map(|c| (f64::from(c) * f) as u8))
        } else {
            Rgb([background, background, background.saturating_sub(4)])
        }
    })
}

fn hsv(h: f64, s: f64, v: f64) -> [u8; 3] {
    let i = (h * 6.0).floor();
    let f = h * 6.0 - i;
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - f * s), v * (1.0 - (1.0 - f) * s));
    let (r, g, b) = match i as u32 % 6 {
        0 => (v, t, p),
        1 => (q, v, p),
        2 => (p, v, t),
        3 => (p, q, v),
        4 => (t, p, v),
        _ => (v, p, q),
    };
    [r, g, b].map(|c| (c * 255.0).round() as u8)
}

fn scale_brightness(img: &mut RgbImage, factor: f64) {
    for p in img.pixels_mut() {
        p.0 =
            p.0.map(|c| (f64::from(c) * factor).round().clamp(0.0, 255.0) as u8);
    }
}

/// Another seller's copy of a photo: one or two of the edits marketplaces see.
fn edited(original: &RgbImage, rng: &mut ChaCha8Rng) -> RgbImage {
    let mut img = original.clone();
    let edits = 1 + usize::from(rng.gen_bool(0.4));
    for _ in 0..edits {
        img = match rng.gen_range(0..4) {
            // Resized: 70–90% (a side stays above the 64-pixel minimum).
            0 => {
                let side = (f64::from(SIDE) * rng.gen_range(0.7..0.9)) as u32;
                imageops::resize(&img, side, side, FilterType::Triangle)
            }
            // Brightened or darkened by up to a fifth.
            1 => {
                let factor = if rng.gen_bool(0.5) { 1.2 } else { 0.8 };
                scale_brightness(&mut img, factor);
                img
            }
            // Cropped by 10% and scaled back.
            2 => {
                let (w, h) = img.dimensions();
                let (cw, ch) = (w * 9 / 10, h * 9 / 10);
                let crop = imageops::crop_imm(&img, (w - cw) / 2, (h - ch) / 2, cw, ch).to_image();
                imageops::resize(&crop, w, h, FilterType::Triangle)
            }
            // Recompressed at low quality.
            _ => {
                let mut bytes = Vec::new();
                let quality = rng.gen_range(35..60);
                JpegEncoder::new_with_quality(&mut bytes, quality)
                    .encode_image(&img)
                    .expect("encoding to memory");
                image::load_from_memory(&bytes)
                    .expect("decoding what was just encoded")
                    .into_rgb8()
            }
        };
    }
    img
}

/// A bad upload in place of `photo`: its `image_uri`.
fn broken(folder: &Path, name: &str, photo: &RgbImage, rng: &mut ChaCha8Rng) -> Result<String> {
    let path = folder.join(name);
    let uri = format!("{FOLDER}/{name}");
    match rng.gen_range(0..5) {
        // Cut off mid-upload.
        0 => {
            let mut bytes = encode(photo, 85);
            bytes.truncate(bytes.len() / 3);
            put(&path, &bytes)?;
        }
        // A thumbnail.
        1 => save(
            &path,
            &imageops::resize(photo, 40, 40, FilterType::Triangle),
            85,
        )?,
        // Not an image at all.
        2 => put(&path, b"<html><body>404 Not Found</body></html>")?,
        // Never uploaded.
        3 => return Ok(format!("{FOLDER}/missing-{name}")),
        // A path that climbs out of the export.
        _ => return Ok(format!("../../{name}")),
    }
    Ok(uri)
}

fn encode(img: &RgbImage, quality: u8) -> Vec<u8> {
    let mut bytes = Vec::new();
    JpegEncoder::new_with_quality(&mut bytes, quality)
        .encode_image(img)
        .expect("encoding to memory");
    bytes
}

fn save(path: &Path, img: &RgbImage, quality: u8) -> Result<()> {
    put(path, &encode(img, quality))
}

fn put(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|source| SynthError::Io {
        path: path.display().to_string(),
        source,
    })
}
