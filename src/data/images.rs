//! [`ImageSet`]: labelled images held in memory as bytes, the common form every reader produces,
//! and [`ImageSource`], random access to images that need not all be in memory. Images are
//! channels last (HWC, as in the CIFAR `.npz` files and the crate's NHWC tensors), one byte per
//! value, all of one [`ImageShape`]: 32×32×3 for CIFAR, Fashion-MNIST and the DDPM sets,
//! 224×224×3 for ImageNette (docs/reproduction.md §3.7). They become `[0, 1]` floats only when
//! batched (no mean/std normalisation, §3.1).

use std::path::Path;

use rand::rngs::StdRng;

use super::augment::CropFlip;
use super::DataError;

/// Height and width of every image the CIFAR models take.
pub const IMAGE_SIZE: usize = 32;
/// Channels of every image (RGB; grey images are copied to 3 channels).
pub const CHANNELS: usize = 3;
/// Bytes of one image: 32 · 32 · 3.
pub const IMAGE_BYTES: usize = IMAGE_SIZE * IMAGE_SIZE * CHANNELS;

/// The size of one image: height, width and channels, stored HWC, one byte per value.
///
/// ```
/// use robust_paf::data::ImageShape;
/// assert_eq!(ImageShape::CIFAR.bytes(), 32 * 32 * 3);
/// assert_eq!(ImageShape::square(224).to_string(), "224×224×3");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct ImageShape {
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// Values per pixel (3: RGB).
    pub channels: usize,
}

impl ImageShape {
    /// 32×32×3: CIFAR-10/100, the padded Fashion-MNIST, the DDPM sets.
    pub const CIFAR: ImageShape = ImageShape::new(IMAGE_SIZE, IMAGE_SIZE, CHANNELS);

    /// `height`×`width`×`channels`.
    pub const fn new(height: usize, width: usize, channels: usize) -> Self {
        ImageShape {
            height,
            width,
            channels,
        }
    }

    /// A square RGB image, `side`×`side`×3 (ImageNette's 224).
    pub const fn square(side: usize) -> Self {
        ImageShape::new(side, side, CHANNELS)
    }

    /// Bytes of one image: height · width · channels.
    pub const fn bytes(&self) -> usize {
        self.height * self.width * self.channels
    }
}

impl Default for ImageShape {
    fn default() -> Self {
        ImageShape::CIFAR
    }
}

impl std::fmt::Display for ImageShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}×{}×{}", self.height, self.width, self.channels)
    }
}

/// Labelled images of one [`ImageShape`] in memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSet {
    /// What the set is ("CIFAR-10 train", "Fashion-MNIST test (padded to 32×32, 3 channels)").
    pub name: String,
    /// Number of classes; every label is below it.
    pub classes: usize,
    shape: ImageShape,
    pixels: Vec<u8>,
    labels: Vec<u16>,
}

impl ImageSet {
    /// 32×32×3 images ([`ImageShape::CIFAR`]); see [`ImageSet::with_shape`].
    pub fn new(
        name: impl Into<String>,
        classes: usize,
        pixels: Vec<u8>,
        labels: Vec<u16>,
        origin: &Path,
    ) -> Result<Self, DataError> {
        ImageSet::with_shape(name, classes, ImageShape::CIFAR, pixels, labels, origin)
    }

    /// Checks the sizes and labels: `pixels.len() == labels.len() · shape.bytes()`, every label
    /// `< classes`, a shape with no zero side. `origin` names the source in errors.
    pub fn with_shape(
        name: impl Into<String>,
        classes: usize,
        shape: ImageShape,
        pixels: Vec<u8>,
        labels: Vec<u16>,
        origin: &Path,
    ) -> Result<Self, DataError> {
        let bytes = shape.bytes();
        if bytes == 0 {
            return Err(DataError::Invalid {
                what: "image shape".into(),
                reason: format!("{shape} has a zero side"),
            });
        }
        if pixels.len() % bytes != 0 || pixels.len() / bytes != labels.len() {
            return Err(DataError::CountMismatch {
                path: origin.to_path_buf(),
                images: pixels.len() / bytes,
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
            shape,
            pixels,
            labels,
        })
    }

    /// The size of every image.
    pub fn shape(&self) -> ImageShape {
        self.shape
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Image `i` as `shape().bytes()` bytes, HWC. Panics if `i >= len()`.
    pub fn image(&self, i: usize) -> &[u8] {
        let b = self.shape.bytes();
        &self.pixels[i * b..(i + 1) * b]
    }

    /// Label of image `i`. Panics if `i >= len()`.
    pub fn label(&self, i: usize) -> u16 {
        self.labels[i]
    }

    /// All labels.
    pub fn labels(&self) -> &[u16] {
        &self.labels
    }

    /// All pixels, `len() · shape().bytes()` bytes.
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
        let mut pixels = Vec::with_capacity(indices.len() * self.shape.bytes());
        for &i in indices {
            pixels.extend_from_slice(self.image(i));
        }
        Ok(ImageSet {
            name: name.into(),
            classes: self.classes,
            shape: self.shape,
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

/// Random access to labelled images of one [`ImageShape`] that may not all be in memory (a
/// memory-mapped `.npz`, an image folder, ImageNette's JPEGs): what the loaders read from.
pub trait ImageSource: Send + Sync {
    /// Number of images.
    fn len(&self) -> usize;
    /// True when there are no images.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Number of classes.
    fn classes(&self) -> usize;
    /// The size of every image [`ImageSource::read`] writes.
    fn shape(&self) -> ImageShape;
    /// Copies image `i` (HWC bytes) into `out` (`shape().bytes()` long) and returns its label.
    fn read(&self, i: usize, out: &mut [u8]) -> Result<u16, DataError>;
    /// Whether a read is costly enough (a file to decode and resize: ImageNette's JPEGs) that
    /// the loader should read a batch's images in parallel, on rayon's threads, rather than one
    /// after the other on its background thread. The default is `false` (images in memory or
    /// memory-mapped: a copy each).
    fn costly_reads(&self) -> bool {
        false
    }
    /// Image `i` with the training augmentation drawn from `rng`, into `out`; `scratch` is a buffer
    /// the implementation may use. The default is the CIFAR augmentation of docs/reproduction.md
    /// §3.1 (random crop with 4 zero pixels of padding, then a horizontal flip with p = 0.5) on
    /// [`ImageSource::read`]'s image; a source whose augmentation starts from the undecoded image
    /// (ImageNette's `RandomResizedCrop`, §3.7) overrides it.
    fn read_augmented(
        &self,
        i: usize,
        out: &mut [u8],
        scratch: &mut Vec<u8>,
        rng: &mut StdRng,
    ) -> Result<u16, DataError> {
        scratch.resize(out.len(), 0);
        let label = self.read(i, scratch)?;
        CropFlip::sample(rng).apply_shape(scratch, out, self.shape());
        Ok(label)
    }
}

impl ImageSource for ImageSet {
    fn len(&self) -> usize {
        self.labels.len()
    }
    fn classes(&self) -> usize {
        self.classes
    }
    fn shape(&self) -> ImageShape {
        self.shape
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

/// Some images of another source, in a given order: a training subset of a source that is not
/// in memory (ImageNette's `data.train_subset`).
pub struct Subset {
    source: std::sync::Arc<dyn ImageSource>,
    indices: Vec<usize>,
}

impl Subset {
    /// The images of `source` at `indices`, in that order (each `< source.len()`).
    pub fn new(
        source: std::sync::Arc<dyn ImageSource>,
        indices: Vec<usize>,
    ) -> Result<Self, DataError> {
        if let Some(&bad) = indices.iter().find(|&&i| i >= source.len()) {
            return Err(DataError::Invalid {
                what: "index".into(),
                reason: format!("{bad} >= {} images", source.len()),
            });
        }
        Ok(Subset { source, indices })
    }

    /// The source's index of image `i`.
    fn index(&self, i: usize) -> Result<usize, DataError> {
        self.indices
            .get(i)
            .copied()
            .ok_or_else(|| DataError::Invalid {
                what: "index".into(),
                reason: format!("{i} >= {} images", self.indices.len()),
            })
    }
}

impl ImageSource for Subset {
    fn len(&self) -> usize {
        self.indices.len()
    }
    fn classes(&self) -> usize {
        self.source.classes()
    }
    fn shape(&self) -> ImageShape {
        self.source.shape()
    }
    fn costly_reads(&self) -> bool {
        self.source.costly_reads()
    }
    fn read(&self, i: usize, out: &mut [u8]) -> Result<u16, DataError> {
        let j = self.index(i)?;
        self.source.read(j, out)
    }
    fn read_augmented(
        &self,
        i: usize,
        out: &mut [u8],
        scratch: &mut Vec<u8>,
        rng: &mut StdRng,
    ) -> Result<u16, DataError> {
        let j = self.index(i)?;
        self.source.read_augmented(j, out, scratch, rng)
    }
}

/// The indices of `labels` taken class by class in turn (the first image of each class, then the
/// second of each, ...; classes in label order, images in their order): every prefix holds the
/// classes about evenly, unlike the class-sorted order of a folder of class folders.
pub fn balanced_order(labels: &[u16]) -> Vec<usize> {
    let classes = labels.iter().map(|&l| l as usize + 1).max().unwrap_or(0);
    let mut per_class: Vec<std::collections::VecDeque<usize>> = vec![Default::default(); classes];
    for (i, &l) in labels.iter().enumerate() {
        per_class[l as usize].push_back(i);
    }
    let mut out = Vec::with_capacity(labels.len());
    while out.len() < labels.len() {
        for q in per_class.iter_mut() {
            if let Some(i) = q.pop_front() {
                out.push(i);
            }
        }
    }
    out
}
