//! Augmentation and batching (docs/reproduction.md §3.1, §3.5) on generated sources: crop + flip
//! move pixels exactly as `RandomCrop(32, padding=4)` + `RandomHorizontalFlip` do and are
//! reproducible from a seed; batches are `[0, 1]`; every epoch covers the data once; the mixed
//! loader's batches hold exactly the requested real/synthetic counts, cover the real data once per
//! epoch, never augment synthetic images, and run ⌈50,000 / 256⌉ = 196 steps on a CIFAR-10-sized
//! source.

use std::collections::HashSet;
use std::sync::Arc;

use dfdx::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;
use robust_paf::data::augment::{CropFlip, CROP_PADDING};
use robust_paf::data::{
    DataError, ImageSet, ImageShape, ImageSource, Loader, LoaderConfig, MixedConfig, MixedLoader,
    IMAGE_BYTES,
};

/// A source of `n` images whose every byte encodes (image, pixel) and whose label is `i % 10`:
/// image `i` has value `(i·7 + y·3 + x + c) % 251 + 1` at (y, x, c) — never 0, so padding (0)
/// is recognisable.
struct Generated {
    n: usize,
    offset: usize,
}

fn value(i: usize, y: usize, x: usize, c: usize) -> u8 {
    ((i * 7 + y * 3 + x + c) % 251 + 1) as u8
}

impl ImageSource for Generated {
    fn len(&self) -> usize {
        self.n
    }
    fn classes(&self) -> usize {
        10
    }
    fn shape(&self) -> ImageShape {
        ImageShape::CIFAR
    }
    fn read(&self, i: usize, out: &mut [u8]) -> Result<u16, DataError> {
        let i = i + self.offset;
        for y in 0..32 {
            for x in 0..32 {
                for c in 0..3 {
                    out[(y * 32 + x) * 3 + c] = value(i, y, x, c);
                }
            }
        }
        Ok((i % 10) as u16)
    }
}

fn image(i: usize) -> Vec<u8> {
    let mut v = vec![0; IMAGE_BYTES];
    Generated {
        n: i + 1,
        offset: 0,
    }
    .read(i, &mut v)
    .unwrap();
    v
}

#[test]
fn crop_and_flip_move_pixels_like_torchvision() {
    let src = image(3);
    let mut dst = vec![0; IMAGE_BYTES];
    // identity
    CropFlip::identity().apply(&src, &mut dst);
    assert_eq!(dst, src);
    // offset (0, 8): shifted down by 4, left by 4 (padded[y][x + 8] = src[y − 4][x + 4])
    let t = CropFlip {
        dy: 0,
        dx: 8,
        flip: false,
    };
    t.apply(&src, &mut dst);
    for y in 0..32 {
        for x in 0..32 {
            let want = if y < 4 || x + 4 >= 32 {
                0
            } else {
                value(3, y - 4, x + 4, 1)
            };
            assert_eq!(dst[(y * 32 + x) * 3 + 1], want, "({y}, {x})");
        }
    }
    // flip only: dst[y][x] = src[y][31 − x]
    let f = CropFlip {
        dy: CROP_PADDING,
        dx: CROP_PADDING,
        flip: true,
    };
    f.apply(&src, &mut dst);
    for y in 0..32 {
        for x in 0..32 {
            assert_eq!(dst[(y * 32 + x) * 3 + 2], value(3, y, 31 - x, 2));
        }
    }
}

#[test]
fn augmentation_is_seeded_and_keeps_the_image_values() {
    let src = image(5);
    let run = |seed| {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..20)
            .map(|_| {
                let mut d = vec![0; IMAGE_BYTES];
                robust_paf::data::augment::random_crop_flip(&src, &mut d, &mut rng);
                d
            })
            .collect::<Vec<_>>()
    };
    let (a, b, c) = (run(1), run(1), run(2));
    assert_eq!(a, b, "same seed, same crops");
    assert_ne!(a, c, "another seed, other crops");
    let allowed: HashSet<u8> = src.iter().copied().chain([0]).collect();
    for d in &a {
        assert!(d.iter().all(|v| allowed.contains(v)));
    }
    // the 20 draws are not all the same transformation
    assert!(a.iter().collect::<HashSet<_>>().len() > 5);
}

#[test]
fn loader_covers_every_image_once_per_epoch_in_a_new_order() {
    let src = Arc::new(Generated { n: 103, offset: 0 });
    let loader = Loader::new(src, LoaderConfig::train(16, 9)).unwrap();
    assert_eq!(loader.steps_per_epoch(), 7);
    let mut orders = Vec::new();
    for epoch in 0..2 {
        let mut seen = Vec::new();
        for b in loader.epoch(epoch) {
            let b = b.unwrap();
            assert!(b.len() == 16 || b.len() == 103 % 16);
            assert!(b.pixels.iter().all(|&v| (0.0..=1.0).contains(&v)));
            assert_eq!(b.pixels.len(), b.len() * IMAGE_BYTES);
            for (k, &i) in b.indices.iter().enumerate() {
                assert_eq!(b.labels[k] as usize, i % 10);
            }
            seen.extend(b.indices);
        }
        let mut sorted = seen.clone();
        sorted.sort();
        assert_eq!(sorted, (0..103).collect::<Vec<_>>(), "epoch {epoch}");
        orders.push(seen);
    }
    assert_ne!(orders[0], orders[1], "each epoch is a new permutation");
    // reproducible: the same loader again gives the same batches
    let again: Vec<_> = loader.epoch(1).map(|b| b.unwrap()).collect();
    let first: Vec<_> = loader.epoch(1).map(|b| b.unwrap()).collect();
    assert_eq!(again, first);
    // drop_last
    let mut cfg = LoaderConfig::train(16, 9);
    cfg.drop_last = true;
    let l = Loader::new(Arc::new(Generated { n: 103, offset: 0 }), cfg).unwrap();
    assert_eq!(l.epoch(0).count(), 6);
}

#[test]
fn evaluation_loader_keeps_order_and_pixels() {
    let set = {
        let mut px = Vec::new();
        for i in 0..5 {
            px.extend(image(i));
        }
        ImageSet::new("five", 10, px, (0..5).collect(), "mem".as_ref()).unwrap()
    };
    let loader = Loader::new(Arc::new(set), LoaderConfig::eval(2)).unwrap();
    let batches: Vec<_> = loader.epoch(0).map(|b| b.unwrap()).collect();
    assert_eq!(batches.len(), 3);
    assert_eq!(batches[0].indices, vec![0, 1]);
    // the pixel at (image 1, y 2, x 3, c 1) is byte/255
    let p = batches[0].pixels[IMAGE_BYTES + (2 * 32 + 3) * 3 + 1];
    assert_eq!(p, value(1, 2, 3, 1) as f32 / 255.0);
    // to tensors
    let dev = Cpu::default();
    let x = batches[0].images(&dev).unwrap();
    assert_eq!(x.shape().0, 2);
    let y = batches[0].one_hot::<10, _>(&dev).unwrap();
    assert_eq!(y.as_vec()[10 + 1], 1.0);
    assert!(
        batches[0].one_hot::<1, _>(&dev).is_err(),
        "label 1 with 1 class"
    );
}

#[test]
fn mixed_loader_batches_hold_the_ratio_and_cover_the_real_data() {
    let real = Arc::new(Generated { n: 50, offset: 0 });
    let syn = Arc::new(Generated {
        n: 1000,
        offset: 100_000,
    });
    let cfg = MixedConfig {
        real_per_batch: 8,
        synthetic_per_batch: 24,
        augment: true,
        seed: 3,
        prefetch: 2,
    };
    let loader = MixedLoader::new(real, syn, cfg).unwrap();
    assert_eq!(loader.steps_per_epoch(), 7);
    let mut real_seen = Vec::new();
    let mut syn_seen = Vec::new();
    let batches: Vec<_> = loader.epoch(0).map(|b| b.unwrap()).collect();
    assert_eq!(batches.len(), 7);
    for (step, b) in batches.iter().enumerate() {
        let n_real = b.synthetic.iter().filter(|s| !**s).count();
        let n_syn = b.synthetic.iter().filter(|s| **s).count();
        assert_eq!(n_syn, 24, "step {step}");
        assert_eq!(n_real, if step < 6 { 8 } else { 50 - 48 }, "step {step}");
        // shuffled within the batch: synthetic images are not all at the end
        if step == 0 {
            assert!(b.synthetic[..8].iter().any(|s| *s));
        }
        for k in 0..b.len() {
            let i = b.indices[k];
            if b.synthetic[k] {
                syn_seen.push(i);
                // never augmented: the synthetic image is exactly the source image
                let mut raw = vec![0; IMAGE_BYTES];
                let label = Generated {
                    n: 1000,
                    offset: 100_000,
                }
                .read(i, &mut raw)
                .unwrap();
                assert_eq!(b.labels[k], label);
                let px = &b.pixels[k * IMAGE_BYTES..(k + 1) * IMAGE_BYTES];
                assert!(px.iter().zip(&raw).all(|(p, r)| *p == *r as f32 / 255.0));
            } else {
                real_seen.push(i);
            }
        }
    }
    real_seen.sort();
    assert_eq!(real_seen, (0..50).collect::<Vec<_>>());
    let distinct: HashSet<_> = syn_seen.iter().collect();
    assert_eq!(
        distinct.len(),
        syn_seen.len(),
        "no synthetic image twice in an epoch"
    );
}

#[test]
fn mixed_loader_runs_196_steps_on_cifar10_at_256_plus_256() {
    let real = Arc::new(Generated {
        n: 50_000,
        offset: 0,
    });
    let syn = Arc::new(Generated {
        n: 6_000_000,
        offset: 0,
    });
    let loader = MixedLoader::new(real, syn, MixedConfig::one_to_one(256, 0)).unwrap();
    assert_eq!(loader.steps_per_epoch(), 196);
}

#[test]
fn invalid_loader_settings_are_errors() {
    let src = || Arc::new(Generated { n: 10, offset: 0 });
    assert!(Loader::new(src(), LoaderConfig::train(0, 0)).is_err());
    let mut c = LoaderConfig::train(4, 0);
    c.prefetch = 0;
    assert!(Loader::new(src(), c).is_err());
    let mut m = MixedConfig::one_to_one(4, 0);
    m.synthetic_per_batch = 0;
    assert!(MixedLoader::new(src(), src(), m).is_err());
    let empty = Arc::new(Generated { n: 0, offset: 0 });
    assert!(MixedLoader::new(empty, src(), MixedConfig::one_to_one(4, 0)).is_err());
}

/// A source that fails on one image: the loader delivers the error and stops, no panic.
struct Failing;
impl ImageSource for Failing {
    fn len(&self) -> usize {
        10
    }
    fn classes(&self) -> usize {
        10
    }
    fn shape(&self) -> ImageShape {
        ImageShape::CIFAR
    }
    fn read(&self, i: usize, out: &mut [u8]) -> Result<u16, DataError> {
        if i == 7 {
            return Err(DataError::format("image 7", "corrupt"));
        }
        out.fill(1);
        Ok(0)
    }
}

#[test]
fn a_failing_read_is_an_error_not_a_panic() {
    let loader = Loader::new(Arc::new(Failing), LoaderConfig::eval(4)).unwrap();
    let results: Vec<_> = loader.epoch(0).collect();
    assert!(results[0].is_ok());
    assert!(matches!(results[1], Err(DataError::Format { .. })));
    assert_eq!(results.len(), 2, "the epoch ends at the error");
}
