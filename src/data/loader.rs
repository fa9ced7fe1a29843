//! Batching (docs/reproduction.md §3.1, §3.5): seeded shuffled epochs, augmentation of real images,
//! a background thread that prepares the next batches while the current one trains, and the mixed
//! real + synthetic batches of the paper's DDPM runs.
//!
//! - [`Loader`]: one source; every epoch is a fresh seeded permutation; the last batch may be
//!   short (PyTorch's `drop_last=False`), or dropped.
//! - [`MixedLoader`]: every batch is `real_per_batch` real images (augmented) and
//!   `synthetic_per_batch` synthetic ones (never augmented), shuffled within the batch; the epoch
//!   length is set by the real data, ⌈50,000 / 256⌉ = 196 steps for CIFAR-10 at 256 + 256; each
//!   epoch draws its synthetic images from a new permutation of the synthetic set (the paper's
//!   `combine_dataloaders`, §3.5: the last step has 80 real + 256 synthetic images).
//!
//! Batches arrive as [`HostBatch`] (f32 pixels in `[0, 1]`, NHWC, and labels) and become dfdx
//! tensors on any device with [`HostBatch::images`] / [`HostBatch::one_hot`].
//! Reproducible: the permutation depends on `(seed, epoch)`, each batch's augmentation on
//! `(seed, epoch, step)`, never on thread timing.

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use dfdx::shapes::{Const, ConstDim};
use dfdx::tensor::{Tensor, TensorFromVec};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::{DataError, ImageShape, ImageSource};

/// A batch in host memory: pixels as `[0, 1]` floats in NHWC order, labels, and which images are
/// synthetic.
#[derive(Clone, Debug, PartialEq)]
pub struct HostBatch {
    /// `len() · shape.bytes()` values in `[0, 1]` (byte / 255), NHWC.
    pub pixels: Vec<f32>,
    /// The size of every image (the source's).
    pub shape: ImageShape,
    /// Class of each image.
    pub labels: Vec<u16>,
    /// Whether each image came from the synthetic source (always false for [`Loader`]).
    pub synthetic: Vec<bool>,
    /// Index of each image in its source.
    pub indices: Vec<usize>,
    /// A data-parallel shard ([`Loader::with_shard`]): the position of this batch's first image
    /// in the whole batch (0 without shards).
    pub offset: usize,
    /// The size of the whole batch the shard was cut from (`len()` without shards).
    pub global_len: usize,
}

/// The crate's CIFAR image batch type: `(batch, 32, 32, 3)` floats on device `D`.
pub type ImageBatch<D> = Tensor<(usize, Const<32>, Const<32>, Const<3>), f32, D>;

impl HostBatch {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    /// True for an empty batch.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    /// The 32×32×3 images as a dfdx tensor on `dev` (one copy); `Invalid` for images of
    /// another shape ([`HostBatch::images_as`] takes any).
    pub fn images<D: TensorFromVec<f32>>(&self, dev: &D) -> Result<ImageBatch<D>, DataError> {
        self.images_as(dev)
    }

    /// The images as a `(batch, H, W, C)` dfdx tensor on `dev` (one copy); `Invalid` when the
    /// batch's [`ImageShape`] is not `H`×`W`×`C`.
    #[allow(clippy::type_complexity)]
    pub fn images_as<H: ConstDim, W: ConstDim, C: ConstDim, D: TensorFromVec<f32>>(
        &self,
        dev: &D,
    ) -> Result<Tensor<(usize, H, W, C), f32, D>, DataError> {
        let want = ImageShape::new(H::SIZE, W::SIZE, C::SIZE);
        if self.shape != want || self.pixels.len() != self.len() * want.bytes() {
            return Err(invalid(
                "batch",
                format!(
                    "holds {} images, the tensor asked for is {want}",
                    self.shape
                ),
            ));
        }
        Ok(dev.tensor_from_vec(
            self.pixels.clone(),
            (self.len(), H::default(), W::default(), C::default()),
        ))
    }
    /// One-hot labels `(batch, NC)` on `dev` (what `cross_entropy_with_logits_loss` takes).
    /// Labels ≥ `NC` are an error.
    pub fn one_hot<const NC: usize, D: TensorFromVec<f32>>(
        &self,
        dev: &D,
    ) -> Result<Tensor<(usize, Const<NC>), f32, D>, DataError> {
        let mut v = vec![0.0f32; self.len() * NC];
        for (i, &l) in self.labels.iter().enumerate() {
            if l as usize >= NC {
                return Err(DataError::LabelOutOfRange {
                    path: "batch".into(),
                    index: i,
                    label: l as u64,
                    classes: NC,
                });
            }
            v[i * NC + l as usize] = 1.0;
        }
        Ok(dev.tensor_from_vec(v, (self.len(), Const)))
    }
}

/// Settings of a [`Loader`].
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LoaderConfig {
    /// Images per batch (> 0).
    pub batch_size: usize,
    /// A new random order every epoch (else the source order).
    pub shuffle: bool,
    /// Random crop (padding 4) + horizontal flip, §3.1 (training on real images only).
    pub augment: bool,
    /// Drop a last batch shorter than `batch_size`.
    pub drop_last: bool,
    /// Seed of the permutations and augmentations.
    pub seed: u64,
    /// Batches prepared ahead by the background thread (≥ 1).
    pub prefetch: usize,
}

impl LoaderConfig {
    /// Training: shuffled, augmented, last batch kept (the paper's CIFAR loader).
    pub fn train(batch_size: usize, seed: u64) -> Self {
        LoaderConfig {
            batch_size,
            shuffle: true,
            augment: true,
            drop_last: false,
            seed,
            prefetch: 2,
        }
    }
    /// Evaluation: source order, no augmentation.
    pub fn eval(batch_size: usize) -> Self {
        LoaderConfig {
            batch_size,
            shuffle: false,
            augment: false,
            drop_last: false,
            seed: 0,
            prefetch: 2,
        }
    }
    fn validate(&self) -> Result<(), DataError> {
        if self.batch_size == 0 {
            return Err(invalid("batch_size", "must be at least 1"));
        }
        if self.prefetch == 0 {
            return Err(invalid("prefetch", "must be at least 1"));
        }
        Ok(())
    }
}

fn invalid(what: &str, reason: impl Into<String>) -> DataError {
    DataError::Invalid {
        what: what.into(),
        reason: reason.into(),
    }
}

/// A seed for `(seed, stream, epoch, step)`: SplitMix64 over the mixed words, so nearby inputs
/// give unrelated streams.
fn mix(words: [u64; 4]) -> u64 {
    let mut z = 0x9E37_79B9_7F4A_7C15u64;
    for w in words {
        z = (z ^ w).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
    }
    z
}

fn permutation(n: usize, shuffle: bool, seed: u64, stream: u64, epoch: usize) -> Vec<usize> {
    let mut p: Vec<usize> = (0..n).collect();
    if shuffle {
        p.shuffle(&mut StdRng::seed_from_u64(mix([
            seed,
            stream,
            epoch as u64,
            0,
        ])));
    }
    p
}

/// The images of rank `rank` of `size` in a batch of `n`: positions
/// `⌊rank·n/size⌋..⌊(rank + 1)·n/size⌋` (contiguous, as PyTorch `DataParallel` scatters a batch;
/// sizes differ by at most one, none empty when `n ≥ size`).
pub fn shard_range(n: usize, rank: usize, size: usize) -> std::ops::Range<usize> {
    let size = size.max(1);
    rank * n / size..(rank + 1) * n / size
}

/// `(rank, size)` kept in range: at least one rank, `rank < size`.
fn shard(rank: usize, size: usize) -> (usize, usize) {
    let size = size.max(1);
    (rank.min(size - 1), size)
}

/// One image of a batch to prepare: where it comes from and whether to augment it.
#[derive(Clone, Copy)]
struct Slot {
    synthetic: bool,
    index: usize,
}

impl Slot {
    /// The source the image comes from.
    fn source<'a>(
        &self,
        real: &'a dyn ImageSource,
        synthetic: Option<&'a dyn ImageSource>,
    ) -> &'a dyn ImageSource {
        match (self.synthetic, synthetic) {
            (true, Some(syn)) => syn,
            _ => real,
        }
    }
}

/// Reads the images of `slots` (augmenting the real ones when `augment`) into a [`HostBatch`].
/// Only the images at `keep` are returned (a shard); those before are still drawn, so that each
/// image is the one a whole batch would hold.
fn assemble(
    real: &dyn ImageSource,
    synthetic: Option<&dyn ImageSource>,
    slots: &[Slot],
    keep: std::ops::Range<usize>,
    augment: bool,
    rng_seed: u64,
) -> Result<HostBatch, DataError> {
    if real.costly_reads() {
        return assemble_parallel(real, synthetic, slots, keep, augment, rng_seed);
    }
    let global_len = slots.len();
    // the sequential generator: the images before the shard are drawn, those after are not needed
    let slots = &slots[..keep.end.min(global_len)];
    let shape = real.shape();
    let mut rng = StdRng::seed_from_u64(rng_seed);
    let mut raw = vec![0u8; shape.bytes()];
    let mut scratch = Vec::new();
    let mut b = HostBatch {
        shape,
        pixels: Vec::with_capacity(slots.len() * shape.bytes()),
        labels: Vec::with_capacity(slots.len()),
        synthetic: Vec::with_capacity(slots.len()),
        indices: Vec::with_capacity(slots.len()),
        offset: 0,
        global_len,
    };
    for s in slots {
        let src = s.source(real, synthetic);
        let label = if augment && !s.synthetic {
            src.read_augmented(s.index, &mut raw, &mut scratch, &mut rng)?
        } else {
            src.read(s.index, &mut raw)?
        };
        b.pixels.extend(raw.iter().map(|&v| v as f32 / 255.0));
        b.labels.push(label);
        b.synthetic.push(s.synthetic);
        b.indices.push(s.index);
    }
    if keep.start > 0 {
        let f = shape.bytes();
        let start = keep.start.min(b.labels.len());
        b.pixels.drain(..start * f);
        b.labels.drain(..start);
        b.synthetic.drain(..start);
        b.indices.drain(..start);
        b.offset = start;
    }
    Ok(b)
}

/// [`assemble`] for sources whose reads decode files ([`ImageSource::costly_reads`]): the images
/// of the batch are read on rayon's threads, each augmented with its own generator seeded by
/// `(rng_seed, position in the batch)`, so the batch depends on the seed alone, not on which
/// thread read what.
fn assemble_parallel(
    real: &dyn ImageSource,
    synthetic: Option<&dyn ImageSource>,
    slots: &[Slot],
    keep: std::ops::Range<usize>,
    augment: bool,
    rng_seed: u64,
) -> Result<HostBatch, DataError> {
    use rayon::prelude::*;
    let shape = real.shape();
    let global_len = slots.len();
    let keep = keep.start.min(global_len)..keep.end.min(global_len);
    let offset = keep.start;
    let slots = &slots[keep];
    let read: Vec<(Vec<u8>, u16)> = slots
        .par_iter()
        .enumerate()
        .map(|(j, s)| {
            let k = offset + j; // the position in the whole batch seeds the image
            let src = s.source(real, synthetic);
            let mut raw = vec![0u8; shape.bytes()];
            let label = if augment && !s.synthetic {
                let mut rng = StdRng::seed_from_u64(mix([rng_seed, 4, k as u64, 0]));
                src.read_augmented(s.index, &mut raw, &mut Vec::new(), &mut rng)?
            } else {
                src.read(s.index, &mut raw)?
            };
            Ok((raw, label))
        })
        .collect::<Result<_, DataError>>()?;
    let mut b = HostBatch {
        shape,
        pixels: Vec::with_capacity(slots.len() * shape.bytes()),
        labels: Vec::with_capacity(slots.len()),
        synthetic: slots.iter().map(|s| s.synthetic).collect(),
        indices: slots.iter().map(|s| s.index).collect(),
        offset,
        global_len,
    };
    for (raw, label) in read {
        b.pixels.extend(raw.iter().map(|&v| v as f32 / 255.0));
        b.labels.push(label);
    }
    Ok(b)
}

/// The batches of one epoch, prepared by a background thread `prefetch` batches ahead. Dropping
/// it stops the thread.
pub struct Epoch {
    rx: Option<Receiver<Result<HostBatch, DataError>>>,
    worker: Option<JoinHandle<()>>,
    remaining: usize,
}

impl Epoch {
    fn spawn(
        plan: Vec<(Vec<Slot>, u64)>,
        real: Arc<dyn ImageSource>,
        synthetic: Option<Arc<dyn ImageSource>>,
        augment: bool,
        prefetch: usize,
        shuffle_within: Option<u64>,
        shard: (usize, usize),
    ) -> Self {
        let remaining = plan.len();
        let (tx, rx) = sync_channel(prefetch);
        let worker = std::thread::spawn(move || {
            for (mut slots, seed) in plan {
                if let Some(s) = shuffle_within {
                    slots.shuffle(&mut StdRng::seed_from_u64(mix([s, seed, 1, 1])));
                }
                let keep = shard_range(slots.len(), shard.0, shard.1);
                let batch = assemble(&*real, synthetic.as_deref(), &slots, keep, augment, seed);
                let failed = batch.is_err();
                if tx.send(batch).is_err() || failed {
                    return; // receiver dropped, or an error was delivered: stop
                }
            }
        });
        Epoch {
            rx: Some(rx),
            worker: Some(worker),
            remaining,
        }
    }

    /// Batches left in this epoch.
    pub fn remaining(&self) -> usize {
        self.remaining
    }
}

impl Iterator for Epoch {
    type Item = Result<HostBatch, DataError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        let item = self.rx.as_ref()?.recv().ok();
        match &item {
            Some(Ok(_)) => self.remaining -= 1,
            Some(Err(_)) | None => self.remaining = 0,
        }
        item.or_else(|| {
            Some(Err(DataError::Invalid {
                what: "loader".into(),
                reason: "the background thread stopped".into(),
            }))
        })
    }
}

impl Drop for Epoch {
    fn drop(&mut self) {
        drop(self.rx.take()); // unblocks a worker waiting to send
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

/// Batches of one source: see the module docs.
///
/// ```
/// use std::sync::Arc;
/// use robust_paf::data::{FashionMnist, Loader, LoaderConfig, MixedConfig, MixedLoader};
///
/// # fn main() -> Result<(), robust_paf::data::DataError> {
/// let f = FashionMnist::embedded()?; // 2,000 train / 1,000 test images, 32×32×3
/// let train = Arc::new(f.train);
/// // shuffled, random crop (padding 4) + flip, a background thread preparing batches (§3.1)
/// let loader = Loader::new(train.clone(), LoaderConfig::train(128, 0))?;
/// assert_eq!(loader.steps_per_epoch(), 16);
/// let batch = loader.epoch(0).next().unwrap()?;
/// assert_eq!((batch.len(), batch.pixels.len()), (128, 128 * 32 * 32 * 3));
/// assert!(batch.pixels.iter().all(|v| (0.0..=1.0).contains(v)));
///
/// // 1:1 real and synthetic images in every batch (§3.5); here the test set stands in for them
/// let mixed = MixedLoader::new(train, Arc::new(f.test), MixedConfig::one_to_one(64, 0))?; // 64 + 64
/// let batch = mixed.epoch(0).next().unwrap()?;
/// assert_eq!(batch.synthetic.iter().filter(|&&s| s).count(), 64);
/// # Ok(())
/// # }
/// ```
pub struct Loader {
    source: Arc<dyn ImageSource>,
    cfg: LoaderConfig,
    shard: (usize, usize),
}

impl Loader {
    /// A loader over `source`; errors on an invalid config.
    pub fn new(source: Arc<dyn ImageSource>, cfg: LoaderConfig) -> Result<Self, DataError> {
        cfg.validate()?;
        Ok(Loader {
            source,
            cfg,
            shard: (0, 1),
        })
    }

    /// Rank `rank` of `size`'s shard of every batch ([`shard_range`]): the images a whole batch
    /// holds at those positions, identical (order, augmentation) to the unsharded loader's.
    pub fn with_shard(mut self, rank: usize, size: usize) -> Self {
        self.shard = shard(rank, size);
        self
    }

    /// Batches per epoch.
    pub fn steps_per_epoch(&self) -> usize {
        let (n, b) = (self.source.len(), self.cfg.batch_size);
        if self.cfg.drop_last {
            n / b
        } else {
            n.div_ceil(b)
        }
    }

    /// The size of the smallest batch of an epoch (the last one may be short).
    pub fn smallest_batch(&self) -> usize {
        let (n, b) = (self.source.len(), self.cfg.batch_size);
        if self.cfg.drop_last || n % b == 0 {
            b.min(n.max(1))
        } else {
            n % b
        }
    }

    /// The settings.
    pub fn config(&self) -> &LoaderConfig {
        &self.cfg
    }

    /// The batches of epoch `epoch` (0-based), prepared in the background.
    pub fn epoch(&self, epoch: usize) -> Epoch {
        self.epoch_from(epoch, 0)
    }

    /// The batches of epoch `epoch` from batch `first` on: the same batches as the tail of
    /// [`Loader::epoch`] (order and augmentation depend only on the seed, the epoch and the step),
    /// without preparing the skipped ones. A resumed training run continues here.
    pub fn epoch_from(&self, epoch: usize, first: usize) -> Epoch {
        let order = permutation(self.source.len(), self.cfg.shuffle, self.cfg.seed, 0, epoch);
        let plan = order
            .chunks(self.cfg.batch_size)
            .take(self.steps_per_epoch())
            .enumerate()
            .map(|(step, idx)| {
                let slots = idx
                    .iter()
                    .map(|&index| Slot {
                        synthetic: false,
                        index,
                    })
                    .collect();
                (slots, mix([self.cfg.seed, 2, epoch as u64, step as u64]))
            })
            .skip(first)
            .collect();
        Epoch::spawn(
            plan,
            self.source.clone(),
            None,
            self.cfg.augment,
            self.cfg.prefetch,
            None,
            self.shard,
        )
    }
}

/// Settings of a [`MixedLoader`] (docs/reproduction.md §3.5: 256 + 256).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MixedConfig {
    /// Real images per batch (> 0).
    pub real_per_batch: usize,
    /// Synthetic images per batch (> 0).
    pub synthetic_per_batch: usize,
    /// Augment the real images (crop + flip); synthetic images are never augmented.
    pub augment: bool,
    /// Seed of the permutations, augmentations and in-batch shuffles.
    pub seed: u64,
    /// Batches prepared ahead.
    pub prefetch: usize,
}

impl MixedConfig {
    /// The paper's 1:1 mixing: `b` real + `b` synthetic images per batch.
    pub fn one_to_one(b: usize, seed: u64) -> Self {
        MixedConfig {
            real_per_batch: b,
            synthetic_per_batch: b,
            augment: true,
            seed,
            prefetch: 2,
        }
    }
}

/// Real + synthetic batches: see the module docs.
pub struct MixedLoader {
    real: Arc<dyn ImageSource>,
    synthetic: Arc<dyn ImageSource>,
    cfg: MixedConfig,
    shard: (usize, usize),
}

impl MixedLoader {
    /// Errors on an empty source, a zero batch part, or sources whose classes differ.
    pub fn new(
        real: Arc<dyn ImageSource>,
        synthetic: Arc<dyn ImageSource>,
        cfg: MixedConfig,
    ) -> Result<Self, DataError> {
        if cfg.real_per_batch == 0 || cfg.synthetic_per_batch == 0 {
            return Err(invalid(
                "mixed batch",
                "real_per_batch and synthetic_per_batch must both be at least 1",
            ));
        }
        if cfg.prefetch == 0 {
            return Err(invalid("prefetch", "must be at least 1"));
        }
        if real.is_empty() || synthetic.is_empty() {
            return Err(invalid("mixed loader", "a source is empty"));
        }
        if real.shape() != synthetic.shape() {
            return Err(invalid(
                "mixed loader",
                format!(
                    "real images are {}, synthetic {}",
                    real.shape(),
                    synthetic.shape()
                ),
            ));
        }
        if real.classes() != synthetic.classes() {
            return Err(invalid(
                "mixed loader",
                format!(
                    "real data has {} classes, synthetic {}",
                    real.classes(),
                    synthetic.classes()
                ),
            ));
        }
        Ok(MixedLoader {
            real,
            synthetic,
            cfg,
            shard: (0, 1),
        })
    }

    /// Rank `rank` of `size`'s shard of every batch (see [`Loader::with_shard`]).
    pub fn with_shard(mut self, rank: usize, size: usize) -> Self {
        self.shard = shard(rank, size);
        self
    }

    /// The size of the smallest batch of an epoch (the last one's real part may be short).
    pub fn smallest_batch(&self) -> usize {
        let (n, b) = (self.real.len(), self.cfg.real_per_batch);
        let last = if n % b == 0 { b } else { n % b };
        last + self.cfg.synthetic_per_batch
    }

    /// Steps per epoch: ⌈real images / real_per_batch⌉.
    pub fn steps_per_epoch(&self) -> usize {
        self.real.len().div_ceil(self.cfg.real_per_batch)
    }

    /// The settings.
    pub fn config(&self) -> &MixedConfig {
        &self.cfg
    }

    /// The batches of epoch `epoch`: every real image once (shuffled), each step completed by
    /// `synthetic_per_batch` synthetic images from this epoch's permutation of the synthetic set
    /// (restarted with a new permutation if the set is smaller than an epoch needs), each batch
    /// shuffled.
    pub fn epoch(&self, epoch: usize) -> Epoch {
        self.epoch_from(epoch, 0)
    }

    /// The batches of epoch `epoch` from batch `first` on (see [`Loader::epoch_from`]).
    pub fn epoch_from(&self, epoch: usize, first: usize) -> Epoch {
        let seed = self.cfg.seed;
        let real = permutation(self.real.len(), true, seed, 10, epoch);
        let n_syn = self.synthetic.len();
        let mut syn = permutation(n_syn, true, seed, 11, epoch);
        let mut syn_pos = 0;
        let mut refill = 0u64;
        let mut plan = Vec::with_capacity(self.steps_per_epoch());
        for (step, r) in real.chunks(self.cfg.real_per_batch).enumerate() {
            let mut slots: Vec<Slot> = r
                .iter()
                .map(|&index| Slot {
                    synthetic: false,
                    index,
                })
                .collect();
            for _ in 0..self.cfg.synthetic_per_batch {
                if syn_pos == n_syn {
                    refill += 1;
                    syn = permutation(n_syn, true, seed, 12 + refill, epoch);
                    syn_pos = 0;
                }
                slots.push(Slot {
                    synthetic: true,
                    index: syn[syn_pos],
                });
                syn_pos += 1;
            }
            plan.push((slots, mix([seed, 3, epoch as u64, step as u64])));
        }
        plan.drain(..first.min(plan.len()));
        Epoch::spawn(
            plan,
            self.real.clone(),
            Some(self.synthetic.clone()),
            self.cfg.augment,
            self.cfg.prefetch,
            Some(seed),
            self.shard,
        )
    }
}
