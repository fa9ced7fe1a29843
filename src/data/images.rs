//! [`ImageSet`]: labelled images held in memory as bytes, the common form every reader produces.
//! Images are 32×32×3, channels last (HWC, as in the CIFAR `.npz` files and the crate's NHWC
//! tensors), one byte per value; they become `[0, 1]` floats only when batched (no mean/std
//! normalisation, docs/reproduction.md §3.1).

use std::path::Path;

use super::DataError;

/// Height and width of every image the CIFAR models take.
pub const IMAGE_SIZE: usize = 32;
/// Channels of every image (RGB; grey images are copied to 3 channels).
pub const CHANNELS: usize = 3;
/// Bytes of one image: 32 · 32 · 3.
pub const IMAGE_BYTES: usize = IMAGE_SIZE * IMAGE_SIZE * CHANNELS;

/// Labelled 32×32×3 images in memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSet {
    /// What the set is ("CIFAR-10 train", "Fashion-MNIST test (padded to 32×32, 3 channels)").
    pub name: String,
    /// Number of classes; every label is below it.
    pub classes: usize,
    pixels: Vec<u8>,
    labels: Vec<u16>,
}

impl ImageSet {
    /// Checks the sizes and labels: `pixels.len() == labels.len() · IMAGE_BYTES`, every label
    /// `< classes`. `origin` names the source in errors.
    pub fn new(
        name: impl Into<String>,
        classes: usize,
        pixels: Vec<u8>,
        labels: Vec<u16>,
        origin: &Path,
    ) -> Result<Self, DataError> {
        if pixels.len() % IMAGE_BYTES != 0 || pixels.len() / IMAGE_BYTES != labels.len() {
            return Err(DataError::CountMismatch {
                path: origin.to_path_buf(),
                images: pixels.len() / IMAGE_BYTES,
                labels: labels.len(),
            });
        }
        if let Some((index, &label)) = labels
            .iter()
            .enumerate()
            .find(|(_, &l)| l as usize >= classes)
        {
            return Err(DataError::LabelOutOfRange {
                path: origin.to_path_buf(),
                index,
                label: label as u64,
                classes,
            });
        }
        Ok(ImageSet {
            name: name.into(),
            classes,
            pixels,
            labels,
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Image `i` as `IMAGE_BYTES` bytes, HWC. Panics if `i >= len()`.
    pub fn image(&self, i: usize) -> &[u8] {
        &self.pixels[i * IMAGE_BYTES..(i + 1) * IMAGE_BYTES]
    }

    /// Label of image `i`. Panics if `i >= len()`.
    pub fn label(&self, i: usize) -> u16 {
        self.labels[i]
    }

    /// All labels.
    pub fn labels(&self) -> &[u16] {
        &self.labels
    }

    /// All pixels, `len() · IMAGE_BYTES` bytes.
    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }

    /// The images at `indices`, in that order (indices must be `< len()`).
    pub fn select(&self, name: impl Into<String>, indices: &[usize]) -> Result<Self, DataError> {
        if let Some(&bad) = indices.iter().find(|&&i| i >= self.len()) {
            return Err(DataError::Invalid {
                what: "index".into(),
                reason: format!("{bad} >= {} images", self.len()),
            });
        }
        let mut pixels = Vec::with_capacity(indices.len() * IMAGE_BYTES);
        for &i in indices {
            pixels.extend_from_slice(self.image(i));
        }
        Ok(ImageSet {
            name: name.into(),
            classes: self.classes,
            pixels,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
        })
    }

    /// Images per class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut c = vec![0; self.classes];
        for &l in &self.labels {
            c[l as usize] += 1;
        }
        c
    }
}

/// Random access to labelled 32×32×3 images that may not all be in memory (a memory-mapped
/// `.npz`, an image folder): what the loaders read from.
pub trait ImageSource: Send + Sync {
    /// Number of images.
    fn len(&self) -> usize;
    /// True when there are no images.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Number of classes.
    fn classes(&self) -> usize;
    /// Copies image `i` (HWC bytes) into `out` (`IMAGE_BYTES` long) and returns its label.
    fn read(&self, i: usize, out: &mut [u8]) -> Result<u16, DataError>;
}

impl ImageSource for ImageSet {
    fn len(&self) -> usize {
        self.labels.len()
    }
    fn classes(&self) -> usize {
        self.classes
    }
    fn read(&self, i: usize, out: &mut [u8]) -> Result<u16, DataError> {
        if i >= self.len() {
            return Err(DataError::Invalid {
                what: "index".into(),
                reason: format!("{i} >= {} images", self.len()),
            });
        }
        out.copy_from_slice(self.image(i));
        Ok(self.labels[i])
    }
}
