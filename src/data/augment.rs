//! Training augmentation of docs/reproduction.md §3.1: `RandomCrop(32, padding=4)` (zero padding)
//! followed by `RandomHorizontalFlip` (p = 0.5), on HWC bytes (32×32×3 for CIFAR; any
//! [`ImageShape`] keeps its size), seeded. Synthetic images get none (§3.5); test images get none.
//! ImageNette's augmentation (§3.7) is in [`super::transforms`].

use rand::Rng;

use super::{ImageShape, CHANNELS, IMAGE_SIZE};

/// Zero padding of the random crop.
pub const CROP_PADDING: usize = 4;

/// One draw of the augmentation: crop offset in the padded 40×40 image and the flip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CropFlip {
    /// Row offset in `0..=2·CROP_PADDING`.
    pub dy: usize,
    /// Column offset in `0..=2·CROP_PADDING`.
    pub dx: usize,
    /// Mirror left–right after cropping.
    pub flip: bool,
}

impl CropFlip {
    /// Draws offsets uniformly in `0..=8` and a fair coin for the flip (torchvision's order).
    pub fn sample<R: Rng>(rng: &mut R) -> Self {
        CropFlip {
            dy: rng.gen_range(0..=2 * CROP_PADDING),
            dx: rng.gen_range(0..=2 * CROP_PADDING),
            flip: rng.gen_bool(0.5),
        }
    }

    /// The identity (offset 4, 4, no flip).
    pub fn identity() -> Self {
        CropFlip {
            dy: CROP_PADDING,
            dx: CROP_PADDING,
            flip: false,
        }
    }

    /// Writes the augmented `src` into `dst` (both 32×32×3 HWC): `dst[y][x] = padded[y + dy][x′ + dx]`
    /// with `x′ = 31 − x` when flipped, where `padded` is `src` with 4 zero pixels on every side.
    pub fn apply(&self, src: &[u8], dst: &mut [u8]) {
        // the sizes as constants (and the asserts on them) let the compiler drop the bounds
        // checks of the inlined loop: the CIFAR loader's hot path (`bench_data`)
        assert_eq!(src.len(), IMAGE_SIZE * IMAGE_SIZE * CHANNELS);
        assert_eq!(dst.len(), IMAGE_SIZE * IMAGE_SIZE * CHANNELS);
        self.crop_flip(src, dst, IMAGE_SIZE, IMAGE_SIZE, CHANNELS)
    }

    /// [`CropFlip::apply`] for images of any `shape` (the crop keeps the size: `H`×`W` out of the
    /// padded `(H + 8)`×`(W + 8)`, `x′ = W − 1 − x` when flipped); 32×32×3 goes to
    /// [`CropFlip::apply`]. Panics if a buffer is not `shape.bytes()` long.
    pub fn apply_shape(&self, src: &[u8], dst: &mut [u8], shape: ImageShape) {
        if shape == ImageShape::CIFAR {
            return self.apply(src, dst);
        }
        assert_eq!(src.len(), shape.bytes());
        assert_eq!(dst.len(), shape.bytes());
        self.crop_flip(src, dst, shape.height, shape.width, shape.channels)
    }

    #[inline(always)]
    fn crop_flip(&self, src: &[u8], dst: &mut [u8], h: usize, w: usize, c: usize) {
        for y in 0..h {
            let sy = (y + self.dy) as isize - CROP_PADDING as isize;
            for x in 0..w {
                let xc = if self.flip { w - 1 - x } else { x };
                let sx = (xc + self.dx) as isize - CROP_PADDING as isize;
                let d = &mut dst[(y * w + x) * c..(y * w + x + 1) * c];
                if sy < 0 || sx < 0 || sy >= h as isize || sx >= w as isize {
                    d.fill(0);
                } else {
                    let s = (sy as usize * w + sx as usize) * c;
                    d.copy_from_slice(&src[s..s + c]);
                }
            }
        }
    }
}

/// Applies a fresh [`CropFlip`] drawn from `rng` to `src`, into `dst`.
pub fn random_crop_flip<R: Rng>(src: &[u8], dst: &mut [u8], rng: &mut R) {
    CropFlip::sample(rng).apply(src, dst)
}
