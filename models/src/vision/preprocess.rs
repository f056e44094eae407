//! From a decoded photo to the network's input, exactly as torchvision's
//! `Resize(256)`, `CenterCrop(224)`, `ToTensor()`, `Normalize(0.5, 0.5)` do it on a
//! PIL image, so an embedding here is PyTorch's for the same pixels.
//!
//! The resize is Pillow's bilinear resampling written out (horizontal pass, then
//! vertical, each with Pillow's 22-bit fixed-point weights and rounding to 8 bits in
//! between). The `image` crate's Triangle filter is the same idea computed in f32 and
//! vertical first, which moves some pixels by a level; written here because no crate
//! promises Pillow's exact bytes, and the embedding fixture holds us to them.

use image::RgbImage;

/// The side torchvision resizes the shorter side to before cropping.
pub const RESIZE: u32 = 256;
/// The network's input side.
pub const CROP: u32 = 224;

/// Pillow's `PRECISION_BITS` for 8-bit images.
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// One output pixel's source window and fixed-point weights.
struct Window {
    first: usize,
    weights: Vec<i32>,
}

/// Pillow's `precompute_coeffs` for the bilinear filter over the whole input, then
/// `normalize_coeffs_8bpc`.
fn windows(input: usize, output: usize) -> Vec<Window> {
    let scale = input as f64 / output as f64;
    let filter_scale = scale.max(1.0);
    let support = filter_scale; // the bilinear filter's support is 1
    let inverse = 1.0 / filter_scale;
    (0..output)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            // Pillow truncates toward zero after adding 0.5 ("round the value").
            let first = ((center - support + 0.5) as i64).max(0) as usize;
            let last = ((center + support + 0.5) as i64).min(input as i64) as usize;
            let raw: Vec<f64> = (first..last)
                .map(|x| {
                    let t = ((x as f64 - center + 0.5) * inverse).abs();
                    if t < 1.0 { 1.0 - t } else { 0.0 }
                })
                .collect();
            let total: f64 = raw.iter().sum();
            let weights = raw
                .iter()
                .map(|w| {
                    let w = if total != 0.0 { w / total } else { *w };
                    let fixed = w * f64::from(1u32 << PRECISION_BITS);
                    (if fixed < 0.0 {
                        fixed - 0.5
                    } else {
                        fixed + 0.5
                    }) as i32
                })
                .collect();
            Window { first, weights }
        })
        .collect()
}

/// Pillow's `clip8`: the fixed-point sum back to a level.
fn clip8(sum: i64) -> u8 {
    if sum >= (1i64 << PRECISION_BITS << 8) {
        255
    } else if sum <= 0 {
        0
    } else {
        (sum >> PRECISION_BITS) as u8
    }
}

/// `src` (`width`×`height` RGB rows) resampled to `out_w`×`out_h`: Pillow's
/// `Image.resize(size, BILINEAR)` as Pillow 13 computes it. Pillow 13 runs the
/// vertical pass first when the height shrinks by more than twice as many pixels as
/// the width (earlier versions always went horizontal first); the order changes
/// which intermediate values are rounded to 8 bits, so it is followed here.
pub fn resize_bilinear(src: &RgbImage, out_w: u32, out_h: u32) -> RgbImage {
    let (w, h) = (src.width() as usize, src.height() as usize);
    let (ow, oh) = (out_w as usize, out_h as usize);
    let pixels = src.as_raw();
    let (need_horizontal, need_vertical) = (ow != w, oh != h);
    let vertical_first = h > oh && (h - oh) as i64 > 2 * (w as i64 - ow as i64);
    let out = match (need_horizontal, need_vertical) {
        (false, false) => pixels.clone(),
        (true, false) => horizontal(pixels, w, 0..h, &windows(w, ow)),
        (false, true) => vertical(pixels, w, 0, &windows(h, oh)),
        (true, true) if vertical_first => {
            let tall = vertical(pixels, w, 0, &windows(h, oh));
            horizontal(&tall, w, 0..oh, &windows(w, ow))
        }
        (true, true) => {
            let rows = windows(h, oh);
            // Only the rows the vertical pass reads are resampled horizontally.
            let first = rows.first().map_or(0, |v| v.first);
            let last = rows
                .last()
                .map_or(0, |v| v.first + v.weights.len())
                .max(first);
            let wide = horizontal(pixels, w, first..last, &windows(w, ow));
            vertical(&wide, ow, first, &rows)
        }
    };
    RgbImage::from_raw(out_w, out_h, out).expect("buffer sized for the output")
}

/// Pillow's horizontal 8-bit pass over `rows` of `src` (`w` pixels wide).
fn horizontal(src: &[u8], w: usize, rows: std::ops::Range<usize>, windows: &[Window]) -> Vec<u8> {
    let ow = windows.len();
    let half = 1i64 << (PRECISION_BITS - 1);
    let mut out = vec![0u8; rows.len() * ow * 3];
    for (y, out_row) in rows.zip(out.chunks_exact_mut(ow * 3)) {
        let in_row = &src[y * w * 3..(y + 1) * w * 3];
        for (win, px) in windows.iter().zip(out_row.chunks_exact_mut(3)) {
            for (c, value) in px.iter_mut().enumerate() {
                let mut sum = half;
                for (i, &k) in win.weights.iter().enumerate() {
                    sum += i64::from(in_row[(win.first + i) * 3 + c]) * i64::from(k);
                }
                *value = clip8(sum);
            }
        }
    }
    out
}

/// Pillow's vertical 8-bit pass over `src` (`w` pixels wide, its first row being
/// the source's row `offset`).
fn vertical(src: &[u8], w: usize, offset: usize, windows: &[Window]) -> Vec<u8> {
    let half = 1i64 << (PRECISION_BITS - 1);
    let mut out = vec![0u8; windows.len() * w * 3];
    for (win, out_row) in windows.iter().zip(out.chunks_exact_mut(w * 3)) {
        let first = win.first - offset;
        for (x, value) in out_row.iter_mut().enumerate() {
            let mut sum = half;
            for (i, &k) in win.weights.iter().enumerate() {
                sum += i64::from(src[(first + i) * w * 3 + x]) * i64::from(k);
            }
            *value = clip8(sum);
        }
    }
    out
}

/// torchvision's `_compute_resized_output_size` for an int size: the shorter side to
/// `RESIZE`, the longer scaled and truncated.
pub fn resized_size(width: u32, height: u32) -> (u32, u32) {
    let (short, long) = (width.min(height), width.max(height));
    let new_long = (u64::from(RESIZE) * u64::from(long) / u64::from(short.max(1))) as u32;
    if width <= height {
        (RESIZE, new_long)
    } else {
        (new_long, RESIZE)
    }
}

/// torchvision's `center_crop` offset: `int(round((size - crop) / 2.0))`, where
/// Python rounds halves to even.
fn crop_offset(size: u32, crop: u32) -> u32 {
    let d = size - crop;
    let floor = d / 2;
    if d % 2 == 1 && floor % 2 == 1 {
        floor + 1
    } else {
        floor
    }
}

/// The network input for one photo: `CROP`×`CROP`×3 floats in [-1, 1], pixel-major
/// (each pixel's three channels together).
pub fn input(photo: &RgbImage) -> Vec<f32> {
    let (w, h) = resized_size(photo.width(), photo.height());
    let resized = if (w, h) == photo.dimensions() {
        photo.clone()
    } else {
        resize_bilinear(photo, w, h)
    };
    let (left, top) = (crop_offset(w, CROP), crop_offset(h, CROP));
    let mut out = Vec::with_capacity((CROP * CROP * 3) as usize);
    for y in top..top + CROP {
        let row =
            &resized.as_raw()[(y * w + left) as usize * 3..(y * w + left + CROP) as usize * 3];
        // ToTensor's division, then Normalize's, in f32 as torchvision does them.
        out.extend(row.iter().map(|&p| (f32::from(p) / 255.0 - 0.5) / 0.5));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_torchvision() {
        assert_eq!(resized_size(500, 375), (341, 256));
        assert_eq!(resized_size(375, 500), (256, 341));
        assert_eq!(resized_size(256, 256), (256, 256));
        assert_eq!(resized_size(100, 3000), (256, 7680));
        // Python's round: 16.5 -> 16, 17.5 -> 18.
        assert_eq!(crop_offset(257, 224), 16);
        assert_eq!(crop_offset(259, 224), 18);
        assert_eq!(crop_offset(260, 224), 18);
    }

    #[test]
    fn weights_sum_to_one_in_fixed_point() {
        for (input, output) in [(500, 341), (341, 500), (1000, 7), (7, 7)] {
            for win in windows(input, output) {
                let total: i32 = win.weights.iter().sum();
                assert!((total - (1 << PRECISION_BITS)).abs() <= win.weights.len() as i32);
                assert!(win.first + win.weights.len() <= input);
            }
        }
    }

    #[test]
    fn flat_images_stay_flat_and_inputs_are_in_range() {
        let photo = RgbImage::from_pixel(640, 480, image::Rgb([10, 128, 250]));
        let small = resize_bilinear(&photo, 341, 256);
        assert!(small.pixels().all(|p| p.0 == [10, 128, 250]));
        let x = input(&photo);
        assert_eq!(x.len(), 224 * 224 * 3);
        assert!((x[0] - (10.0 / 255.0 - 0.5) / 0.5).abs() < 1e-7);
        assert!(x.iter().all(|v| (-1.0..=1.0).contains(v)));
    }

    /// Pillow's bytes (13.0) for fixed gradients: the 11×7 image whose pixel (x, y)
    /// is (20x + 3y, 7x + 30y, 255 − 20x), resized with `Image.resize(size, BILINEAR)`
    /// down to 5×3, and to 23×4 (wider, shorter: both directions of the filter); and
    /// a tall one whose passes run in the other order.
    #[test]
    fn gradient_matches_pillow() {
        let src = RgbImage::from_fn(11, 7, |x, y| {
            image::Rgb([
                (20 * x + 3 * y) as u8,
                (7 * x + 30 * y) as u8,
                (255 - 20 * x) as u8,
            ])
        });
        let down: Vec<[u8; 3]> = resize_bilinear(&src, 5, 3).pixels().map(|p| p.0).collect();
        assert_eq!(
            down,
            [
                [19, 32, 239],
                [58, 45, 200],
                [103, 61, 155],
                [148, 77, 110],
                [187, 90, 71],
                [25, 96, 239],
                [64, 109, 200],
                [109, 125, 155],
                [154, 141, 110],
                [193, 154, 71],
                [31, 160, 239],
                [70, 173, 200],
                [115, 189, 155],
                [160, 205, 110],
                [199, 218, 71],
            ]
        );
        let wide: Vec<[u8; 3]> = resize_bilinear(&src, 23, 4)
            .pixels()
            .take(10)
            .map(|p| p.0)
            .collect();
        assert_eq!(
            wide,
            [
                [2, 16, 255],
                [6, 18, 251],
                [16, 21, 241],
                [25, 24, 232],
                [35, 28, 222],
                [45, 31, 212],
                [54, 34, 203],
                [64, 38, 193],
                [73, 41, 184],
                [83, 44, 174],
            ]
        );
        // 7×19 to 5×6: the height shrinks by more than twice the width's pixels, so
        // Pillow 13 goes vertical first (horizontal first would differ in 5 values).
        let tall = RgbImage::from_fn(7, 19, |x, y| {
            image::Rgb([
                ((37 * x + 11 * y) % 256) as u8,
                ((5 * x * y) % 256) as u8,
                ((255 + 256 - 13 * y) % 256) as u8,
            ])
        });
        let down: Vec<[u8; 3]> = resize_bilinear(&tall, 5, 6).pixels().map(|p| p.0).collect();
        assert_eq!(
            down,
            [
                [27, 2, 237],
                [73, 11, 237],
                [126, 21, 237],
                [179, 31, 237],
                [220, 39, 237],
                [59, 7, 199],
                [105, 33, 199],
                [158, 64, 199],
                [207, 95, 199],
                [131, 121, 199],
                [94, 12, 158],
                [140, 58, 158],
                [190, 111, 158],
                [153, 165, 158],
                [57, 173, 158],
                [128, 18, 118],
                [174, 82, 118],
                [191, 155, 118],
                [56, 164, 118],
                [70, 94, 118],
                [163, 23, 77],
                [209, 107, 77],
                [122, 168, 77],
                [59, 75, 77],
                [105, 133, 77],
                [195, 28, 39],
                [158, 129, 39],
                [57, 164, 39],
                [91, 113, 39],
                [137, 175, 39],
            ]
        );
    }
}
