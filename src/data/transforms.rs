//! The image transforms of the ImageNette experiment (docs/reproduction.md §3.7), as the official
//! code's torchvision pipeline computes them on PIL images:
//!
//! - training: `RandomResizedCrop(224)` (scale 0.08–1, aspect ratio 3/4–4/3, torchvision's ten
//!   tries and its central fallback) then `RandomHorizontalFlip()` (p = 0.5);
//! - test: `Resize(255)` (the shorter side to 255, the longer to `⌊255 · long / short⌋`) then
//!   `CenterCrop(224)` (offsets `round((H − 224) / 2)`, Python's rounding, half to even).
//!
//! Resizing is PIL's bilinear filter (what torchvision calls on a PIL image): a triangle kernel
//! whose support grows with the reduction factor (so a downscale averages, it does not skip), one
//! horizontal pass then one vertical, coefficients in fixed point with 22 fractional bits and
//! each pass rounded to bytes, as `libImaging/Resample.c` does. Written here rather than taken
//! from the `image` crate, whose `Triangle` filter rounds in floating point and differs from PIL
//! by one level on some pixels; this one gives PIL's bytes (tested against PIL's numbers).
//! The random draws use the crate's seeded generator, not torch's: the same distributions, not
//! the same crops as a PyTorch run.

use rand::Rng;

use super::DataError;

/// An HWC byte image of any size (the decoded JPEG before the transforms).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawImage {
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// Values per pixel.
    pub channels: usize,
    /// `height · width · channels` bytes, HWC.
    pub pixels: Vec<u8>,
}

impl RawImage {
    /// Checks that `pixels` holds `height · width · channels` bytes and no side is zero.
    pub fn new(
        height: usize,
        width: usize,
        channels: usize,
        pixels: Vec<u8>,
    ) -> Result<Self, DataError> {
        if height == 0 || width == 0 || channels == 0 {
            return Err(DataError::Invalid {
                what: "image".into(),
                reason: format!("{height}×{width}×{channels} has a zero side"),
            });
        }
        if pixels.len() != height * width * channels {
            return Err(DataError::Invalid {
                what: "image".into(),
                reason: format!("{} bytes for {height}×{width}×{channels}", pixels.len()),
            });
        }
        Ok(RawImage {
            height,
            width,
            channels,
            pixels,
        })
    }
}

/// A rectangle of an image: top row, left column, height, width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rect {
    pub top: usize,
    pub left: usize,
    pub height: usize,
    pub width: usize,
}

/// Fixed-point precision of PIL's 8-bit resampling (`PRECISION_BITS = 32 − 8 − 2`).
const PRECISION_BITS: u32 = 22;

/// PIL's `precompute_coeffs` for the bilinear filter: for each output position, the first input
/// index and the fixed-point weights of the inputs it reads.
fn coefficients(in_size: usize, out_size: usize) -> Vec<(usize, Vec<i32>)> {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filterscale; // the bilinear filter's support is 1
    let ss = 1.0 / filterscale;
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            // C's (int) cast truncates toward zero
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let mut k: Vec<f64> = (xmin..xmax)
                .map(|x| {
                    let t = ((x as f64 - center + 0.5) * ss).abs();
                    if t < 1.0 {
                        1.0 - t
                    } else {
                        0.0
                    }
                })
                .collect();
            let ww: f64 = k.iter().sum();
            if ww != 0.0 {
                k.iter_mut().for_each(|v| *v /= ww);
            }
            let one = (1u64 << PRECISION_BITS) as f64;
            let fixed = k
                .iter()
                .map(|&v| {
                    if v < 0.0 {
                        (-0.5 + v * one) as i32
                    } else {
                        (0.5 + v * one) as i32
                    }
                })
                .collect();
            (xmin, fixed)
        })
        .collect()
}

fn clip8(acc: i64) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes the `region` of `img` to `out_h`×`out_w` with PIL's bilinear filter (horizontal pass,
/// then vertical; a pass whose size does not change is skipped, as in PIL). The output has
/// `img.channels` channels.
pub fn resize_bilinear(img: &RawImage, region: Rect, out_h: usize, out_w: usize) -> RawImage {
    let c = img.channels;
    debug_assert!(region.top + region.height <= img.height);
    debug_assert!(region.left + region.width <= img.width);
    let half = 1i64 << (PRECISION_BITS - 1);
    // horizontal pass: region rows × out_w
    let (rows, cols) = (region.height, out_w);
    let horizontal: Vec<u8> = if region.width == out_w {
        let mut v = Vec::with_capacity(rows * cols * c);
        for y in 0..rows {
            let s = ((region.top + y) * img.width + region.left) * c;
            v.extend_from_slice(&img.pixels[s..s + out_w * c]);
        }
        v
    } else {
        let coeffs = coefficients(region.width, out_w);
        let mut v = vec![0u8; rows * cols * c];
        for y in 0..rows {
            let row =
                &img.pixels[((region.top + y) * img.width + region.left) * c..][..region.width * c];
            for (x, (start, k)) in coeffs.iter().enumerate() {
                for ch in 0..c {
                    let mut acc = half;
                    for (j, &w) in k.iter().enumerate() {
                        acc += row[(start + j) * c + ch] as i64 * w as i64;
                    }
                    v[(y * cols + x) * c + ch] = clip8(acc);
                }
            }
        }
        v
    };
    // vertical pass: out_h × out_w
    let pixels = if rows == out_h {
        horizontal
    } else {
        let coeffs = coefficients(rows, out_h);
        let mut v = vec![0u8; out_h * cols * c];
        for (y, (start, k)) in coeffs.iter().enumerate() {
            for x in 0..cols * c {
                let mut acc = half;
                for (j, &w) in k.iter().enumerate() {
                    acc += horizontal[(start + j) * cols * c + x] as i64 * w as i64;
                }
                v[y * cols * c + x] = clip8(acc);
            }
        }
        v
    };
    RawImage {
        height: out_h,
        width: out_w,
        channels: c,
        pixels,
    }
}

/// The whole image as a [`Rect`].
pub fn full(img: &RawImage) -> Rect {
    Rect {
        top: 0,
        left: 0,
        height: img.height,
        width: img.width,
    }
}

/// torchvision's `Resize(size)` with an int: the shorter side becomes `size`, the longer
/// `⌊size · long / short⌋`; returns `(height, width)`.
pub fn resize_shorter_side(height: usize, width: usize, size: usize) -> (usize, usize) {
    let (short, long) = if width <= height {
        (width, height)
    } else {
        (height, width)
    };
    let new_long = (size as f64 * long as f64 / short as f64) as usize;
    if width <= height {
        (new_long, size)
    } else {
        (size, new_long)
    }
}

/// torchvision's `CenterCrop(size)` offsets on a `height`×`width` image at least `size` on each
/// side: `(round((H − size) / 2), round((W − size) / 2))`, rounding half to even as Python does.
pub fn center_crop(height: usize, width: usize, size: usize) -> Rect {
    let off = |n: usize| ((n.saturating_sub(size)) as f64 / 2.0).round_ties_even() as usize;
    Rect {
        top: off(height),
        left: off(width),
        height: size.min(height),
        width: size.min(width),
    }
}

/// The test transform: `Resize(resize)` then `CenterCrop(size)` (ImageNette: 255, 224). An image
/// smaller than `size` after the resize (impossible when `resize ≥ size`) is an error.
pub fn resize_center_crop(
    img: &RawImage,
    resize: usize,
    size: usize,
) -> Result<RawImage, DataError> {
    let (h, w) = resize_shorter_side(img.height, img.width, resize);
    if h < size || w < size {
        return Err(DataError::Invalid {
            what: "transform".into(),
            reason: format!(
                "a {}×{} image resized to {h}×{w} is smaller than the {size}-pixel crop",
                img.height, img.width
            ),
        });
    }
    let resized = resize_bilinear(img, full(img), h, w);
    let r = center_crop(h, w, size);
    Ok(crop(&resized, r))
}

/// The pixels of `r` as an image of their own.
pub fn crop(img: &RawImage, r: Rect) -> RawImage {
    let c = img.channels;
    let mut pixels = Vec::with_capacity(r.height * r.width * c);
    for y in r.top..r.top + r.height {
        let s = (y * img.width + r.left) * c;
        pixels.extend_from_slice(&img.pixels[s..s + r.width * c]);
    }
    RawImage {
        height: r.height,
        width: r.width,
        channels: c,
        pixels,
    }
}

/// Mirrors `img` left–right in place.
pub fn flip_horizontal(img: &mut RawImage) {
    let (w, c) = (img.width, img.channels);
    for row in img.pixels.chunks_exact_mut(w * c) {
        for x in 0..w / 2 {
            for ch in 0..c {
                row.swap(x * c + ch, (w - 1 - x) * c + ch);
            }
        }
    }
}

/// The area fraction and aspect-ratio ranges of `RandomResizedCrop`'s defaults.
pub const RRC_SCALE: (f64, f64) = (0.08, 1.0);
/// `(3/4, 4/3)`.
pub const RRC_RATIO: (f64, f64) = (3.0 / 4.0, 4.0 / 3.0);

/// torchvision's `RandomResizedCrop.get_params` with the default scale and ratio: up to ten draws
/// of an area fraction (uniform in 0.08–1) and a log-uniform aspect ratio (3/4–4/3), the first
/// that fits placed uniformly; else the central crop of the image clamped to the ratio range.
pub fn random_resized_crop_params<R: Rng>(height: usize, width: usize, rng: &mut R) -> Rect {
    let area = (height * width) as f64;
    let (lr0, lr1) = (RRC_RATIO.0.ln(), RRC_RATIO.1.ln());
    for _ in 0..10 {
        let target = area * rng.gen_range(RRC_SCALE.0..RRC_SCALE.1);
        let aspect = rng.gen_range(lr0..lr1).exp();
        let w = (target * aspect).sqrt().round_ties_even() as usize;
        let h = (target / aspect).sqrt().round_ties_even() as usize;
        if 0 < w && w <= width && 0 < h && h <= height {
            let top = rng.gen_range(0..=height - h);
            let left = rng.gen_range(0..=width - w);
            return Rect {
                top,
                left,
                height: h,
                width: w,
            };
        }
    }
    let in_ratio = width as f64 / height as f64;
    let (h, w) = if in_ratio < RRC_RATIO.0 {
        (
            (width as f64 / RRC_RATIO.0).round_ties_even() as usize,
            width,
        )
    } else if in_ratio > RRC_RATIO.1 {
        (
            height,
            (height as f64 * RRC_RATIO.1).round_ties_even() as usize,
        )
    } else {
        (height, width)
    };
    let (h, w) = (h.clamp(1, height), w.clamp(1, width));
    Rect {
        top: (height - h) / 2,
        left: (width - w) / 2,
        height: h,
        width: w,
    }
}

/// The training transform: `RandomResizedCrop(size)` then `RandomHorizontalFlip()`.
pub fn random_resized_crop_flip<R: Rng>(img: &RawImage, size: usize, rng: &mut R) -> RawImage {
    let r = random_resized_crop_params(img.height, img.width, rng);
    let mut out = resize_bilinear(img, r, size, size);
    if rng.gen_bool(0.5) {
        flip_horizontal(&mut out);
    }
    out
}
