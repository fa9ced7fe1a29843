//! Fashion-MNIST (Xiao, Rasul & Vollgraf 2017, Zalando Research): 70,000 28×28 greyscale
//! images of clothing in 10 classes, 60,000 for training and 10,000 for testing, stored as
//! (usually gzipped) IDX files.
//!
//! It is the crate's **offline default**: a class-balanced subset (2,000 training images,
//! 200 per class, and 1,000 test images, 100 per class; about 1 MB) is committed under
//! `data/fashion-mnist-subset/` and compiled into the library with `include_bytes!`
//! ([`FashionMnist::embedded`]), so the quick start and the tests train and evaluate on real
//! images with no download and from any working directory. The full set is read from a
//! directory ([`FashionMnist::load`]) found by [`FashionMnist::locate`]: an explicit path, the
//! `ROBUST_PAF_FASHION_MNIST` environment variable, or the Debian package
//! `dataset-fashion-mnist` (`/usr/share/datasets/fashion-mnist`).
//!
//! Fashion-MNIST is MIT-licensed, Copyright (c) 2017 Zalando SE; the subset's
//! `README.md` carries the licence text.
//!
//! The CIFAR models take 32×32×3 images, so every 28×28 grey image is **padded with 2 zero
//! pixels on each side to 32×32 and its grey value copied to R, G and B**: the models run
//! unchanged. Every [`ImageSet::name`] made here says so.
//!
//! The IDX reader never trusts a header for allocation: it computes the size the dimensions
//! imply (checked arithmetic), reads at most that many bytes plus one, and returns
//! [`DataError::Size`] when the data is shorter or longer, so a lying header (10⁹ images in a
//! 1 kB file) is a quick error, not an out-of-memory.

use std::ffi::{OsStr, OsString};
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

use super::images::{ImageSet, CHANNELS, IMAGE_BYTES, IMAGE_SIZE};
use super::DataError;

/// Number of classes.
pub const CLASSES: usize = 10;
/// Class names, in label order.
pub const CLASS_NAMES: [&str; CLASSES] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];
/// Height and width of the original images.
pub const SIDE: usize = 28;
/// Zero pixels added on each side to reach [`IMAGE_SIZE`].
pub const PAD: usize = (IMAGE_SIZE - SIDE) / 2;
/// IDX magic of an unsigned-byte, 3-dimensional array (images).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// IDX magic of an unsigned-byte, 1-dimensional array (labels).
pub const LABELS_MAGIC: u32 = 0x0000_0801;
/// Environment variable naming a directory with the full set.
pub const ENV_VAR: &str = "ROBUST_PAF_FASHION_MNIST";
/// Where the Debian package puts the full set.
pub const DEBIAN_DIR: &str = "/usr/share/datasets/fashion-mnist";
/// The Debian package with the full set.
pub const APT_PACKAGE: &str = "dataset-fashion-mnist";
/// File names (without `.gz`) of the four IDX files: train images, train labels, test images,
/// test labels. Each may be gzipped (`name.gz`, preferred) or not.
pub const FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];
/// Training images per class in the embedded subset.
pub const SUBSET_TRAIN_PER_CLASS: usize = 200;
/// Test images per class in the embedded subset.
pub const SUBSET_TEST_PER_CLASS: usize = 100;
/// Training images per class in the extra set ([`extra_npz_path`]).
pub const EXTRA_PER_CLASS: usize = 100;
/// The extra set's file name in `data/fashion-mnist-subset/`.
pub const EXTRA_FILE: &str = "train-extra.npz";

/// The **extra set** committed beside the embedded subset, `data/fashion-mnist-subset/
/// train-extra.npz` in the crate's source tree: 1,000 Fashion-MNIST training images (the next
/// 100 of each class in file order, none of them in the subset), already padded to 32×32×3, as a
/// deflated `.npz` in the layout of the synthetic DDPM sets (`image` u8 N×32×32×3, `label`).
/// Notebook 04's quick mode mixes it 1:1 into the batches as a **stand-in for generated data**
/// (real images, not DDPM samples), so the synthetic-data path runs on the embedded data.
///
/// The path is the source tree's (`CARGO_MANIFEST_DIR` at build time): it exists where the
/// crate is built from a checkout (the notebooks, the tests, a CLI built there); use
/// [`std::path::Path::is_file`] before relying on it elsewhere.
pub fn extra_npz_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data/fashion-mnist-subset")
        .join(EXTRA_FILE)
}

const SUFFIX: &str = "28×28 grey padded to 32×32×3";
const EMBEDDED_DIR: &str = "<embedded>/data/fashion-mnist-subset";
static EMBEDDED: [&[u8]; 4] = [
    include_bytes!("../../data/fashion-mnist-subset/train-images-idx3-ubyte.gz"),
    include_bytes!("../../data/fashion-mnist-subset/train-labels-idx1-ubyte.gz"),
    include_bytes!("../../data/fashion-mnist-subset/t10k-images-idx3-ubyte.gz"),
    include_bytes!("../../data/fashion-mnist-subset/t10k-labels-idx1-ubyte.gz"),
];

/// Images as an IDX file holds them: `count` images of `rows × cols` bytes, row-major.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxImages {
    /// Number of images.
    pub count: usize,
    /// Rows of each image.
    pub rows: usize,
    /// Columns of each image.
    pub cols: usize,
    /// `count · rows · cols` bytes.
    pub pixels: Vec<u8>,
}

impl IdxImages {
    /// Image `i` (`rows · cols` bytes). Panics if `i >= count`.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.rows * self.cols;
        &self.pixels[i * n..(i + 1) * n]
    }
}

/// Fashion-MNIST, padded to 32×32×3.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FashionMnist {
    /// The training images.
    pub train: ImageSet,
    /// The test images.
    pub test: ImageSet,
}

impl FashionMnist {
    /// Reads the four IDX files (gzipped or not) from `dir`.
    pub fn load(dir: &Path) -> Result<Self, DataError> {
        let [train_images, train_labels, test_images, test_labels] = FILES.map(|f| file_in(dir, f));
        let (Some(tri), Some(trl), Some(tei), Some(tel)) =
            (train_images, train_labels, test_images, test_labels)
        else {
            return Err(DataError::Missing {
                path: dir.to_path_buf(),
                hint: format!(": expected {} (each optionally .gz)", FILES.join(", ")),
            });
        };
        Ok(FashionMnist {
            train: load_split(&format!("Fashion-MNIST train ({SUFFIX})"), &tri, &trl)?,
            test: load_split(&format!("Fashion-MNIST test ({SUFFIX})"), &tei, &tel)?,
        })
    }

    /// The directory with the full set: `explicit` if given, else the directory in
    /// `ROBUST_PAF_FASHION_MNIST` if set, else the Debian package's. See [`resolve_dir`].
    pub fn locate(explicit: Option<&Path>) -> Result<PathBuf, DataError> {
        let env = std::env::var_os(ENV_VAR);
        resolve_dir(explicit, env.as_deref(), Path::new(DEBIAN_DIR))
    }

    /// [`FashionMnist::locate`] then [`FashionMnist::load`].
    pub fn load_located(explicit: Option<&Path>) -> Result<Self, DataError> {
        Self::load(&Self::locate(explicit)?)
    }

    /// The committed, class-balanced subset compiled into the library: 2,000 training images
    /// (the first 200 of each class in file order) and 1,000 test images (the first 100 of each
    /// class), file order kept. Works offline and from any working directory.
    pub fn embedded() -> Result<Self, DataError> {
        let origin = |i: usize| PathBuf::from(format!("{EMBEDDED_DIR}/{}.gz", FILES[i]));
        let split = |name: String, i: usize| -> Result<ImageSet, DataError> {
            let images = read_idx_images(EMBEDDED[i], &origin(i))?;
            let labels = read_idx_labels(EMBEDDED[i + 1], &origin(i + 1))?;
            to_image_set(name, &images, &labels, &origin(i))
        };
        Ok(FashionMnist {
            train: split(
                format!("Fashion-MNIST subset train (2,000 of 60,000; {SUFFIX})"),
                0,
            )?,
            test: split(
                format!("Fashion-MNIST subset test (1,000 of 10,000; {SUFFIX})"),
                2,
            )?,
        })
    }
}

/// `dir/name.gz` if it is a file, else `dir/name` if it is a file.
fn file_in(dir: &Path, name: &str) -> Option<PathBuf> {
    [format!("{name}.gz"), name.to_string()]
        .into_iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
}

/// True when `dir` holds all four IDX files.
pub fn has_files(dir: &Path) -> bool {
    FILES.iter().all(|f| file_in(dir, f).is_some())
}

/// The resolution behind [`FashionMnist::locate`], with the environment value and the system
/// directory passed in (testable without touching the process environment).
///
/// An explicit path, then a non-empty `env_value`, is taken as the user's choice: it is
/// returned when it holds the four files and is a [`DataError::Missing`] otherwise (no silent
/// fallback). With neither, `system_dir` is returned when it holds the files; otherwise the
/// error's hint names all three ways to provide the set.
pub fn resolve_dir(
    explicit: Option<&Path>,
    env_value: Option<&OsStr>,
    system_dir: &Path,
) -> Result<PathBuf, DataError> {
    let files = format!("{} (each optionally .gz)", FILES.join(", "));
    let chosen = match (explicit, env_value.filter(|v| !v.is_empty())) {
        (Some(p), _) => Some((p.to_path_buf(), "the explicit path")),
        (None, Some(v)) => Some((PathBuf::from(OsString::from(v)), ENV_VAR)),
        (None, None) => None,
    };
    if let Some((dir, source)) = chosen {
        return if has_files(&dir) {
            Ok(dir)
        } else {
            Err(DataError::Missing {
                path: dir,
                hint: format!(" (given by {source}): it should hold {files}"),
            })
        };
    }
    if has_files(system_dir) {
        return Ok(system_dir.to_path_buf());
    }
    Err(DataError::Missing {
        path: system_dir.to_path_buf(),
        hint: format!(
            ": no full Fashion-MNIST found; pass a directory explicitly, set {ENV_VAR} to one, \
             or install it at {} with `apt-get install {APT_PACKAGE}` (a directory holds {files}); \
             the embedded subset (FashionMnist::embedded) needs none",
            system_dir.display()
        ),
    })
}

fn load_split(name: &str, images: &Path, labels: &Path) -> Result<ImageSet, DataError> {
    let open = |p: &Path| std::fs::File::open(p).map_err(|e| DataError::io(p, e));
    let idx = read_idx_images(std::io::BufReader::new(open(images)?), images)?;
    let lab = read_idx_labels(std::io::BufReader::new(open(labels)?), labels)?;
    to_image_set(name, &idx, &lab, images)
}

/// Reads up to `buf.len()` bytes; returns how many (fewer only at end of data).
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// `r`, gunzipped when it starts with the gzip magic `1f 8b`.
fn decompressed<'a>(mut r: impl Read + 'a, origin: &Path) -> Result<Box<dyn Read + 'a>, DataError> {
    let mut head = [0u8; 2];
    let n = read_up_to(&mut r, &mut head).map_err(|e| DataError::io(origin, e))?;
    let joined = Cursor::new(head[..n].to_vec()).chain(r);
    Ok(if n == 2 && head == [0x1f, 0x8b] {
        Box::new(GzDecoder::new(joined))
    } else {
        Box::new(joined)
    })
}

/// Reads an IDX header: the magic (must be `magic`) and `dims` big-endian u32 dimensions.
fn read_header(
    r: &mut impl Read,
    magic: u32,
    dims: usize,
    what: &str,
    origin: &Path,
) -> Result<Vec<usize>, DataError> {
    let len = 4 * (1 + dims);
    let mut buf = vec![0u8; len];
    let n = read_up_to(r, &mut buf).map_err(|e| DataError::io(origin, e))?;
    if n >= 4 {
        let found = u32::from_be_bytes(buf[..4].try_into().unwrap());
        if found != magic {
            return Err(DataError::BadMagic {
                path: origin.to_path_buf(),
                found,
                expected: magic,
            });
        }
    }
    if n < len {
        return Err(DataError::Size {
            path: origin.to_path_buf(),
            what: format!("IDX {what} header"),
            expected: len as u64,
            actual: n as u64,
        });
    }
    Ok(buf[4..]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes(c.try_into().unwrap()) as usize)
        .collect())
}

/// Reads exactly `expected` data bytes after a header: a [`DataError::Size`] when there are
/// fewer or more. Reads at most `expected + 1` bytes and allocates no more than it reads
/// (plus a bounded initial capacity), whatever `expected` is.
fn read_body(
    r: &mut impl Read,
    expected: u64,
    what: &str,
    origin: &Path,
) -> Result<Vec<u8>, DataError> {
    let mut data = Vec::with_capacity(expected.min(1 << 24) as usize);
    r.take(expected.saturating_add(1))
        .read_to_end(&mut data)
        .map_err(|e| DataError::io(origin, e))?;
    let actual = data.len() as u64;
    if actual != expected {
        return Err(DataError::Size {
            path: origin.to_path_buf(),
            what: if actual > expected {
                format!("IDX {what} (data longer than the header says)")
            } else {
                format!("IDX {what} (data shorter than the header says)")
            },
            expected,
            actual,
        });
    }
    Ok(data)
}

/// Reads an IDX file of unsigned-byte images (magic `0x00000803`, dims count × rows × cols),
/// gzipped or not. `origin` names the source in errors.
pub fn read_idx_images(reader: impl Read, origin: &Path) -> Result<IdxImages, DataError> {
    let mut r = decompressed(reader, origin)?;
    let dims = read_header(&mut r, IMAGES_MAGIC, 3, "images", origin)?;
    let (count, rows, cols) = (dims[0], dims[1], dims[2]);
    let expected = (count as u64)
        .checked_mul(rows as u64)
        .and_then(|v| v.checked_mul(cols as u64))
        .filter(|&v| usize::try_from(v).is_ok())
        .ok_or_else(|| {
            DataError::format(origin, format!("IDX dims {count}×{rows}×{cols} overflow"))
        })?;
    let pixels = read_body(&mut r, expected, "images", origin)?;
    Ok(IdxImages {
        count,
        rows,
        cols,
        pixels,
    })
}

/// Reads an IDX file of unsigned-byte labels (magic `0x00000801`, one dim), gzipped or not.
/// The values are not range-checked here ([`to_image_set`] does).
pub fn read_idx_labels(reader: impl Read, origin: &Path) -> Result<Vec<u8>, DataError> {
    let mut r = decompressed(reader, origin)?;
    let dims = read_header(&mut r, LABELS_MAGIC, 1, "labels", origin)?;
    read_body(&mut r, dims[0] as u64, "labels", origin)
}

/// Pads one 28×28 grey image into a 32×32×3 HWC image: 2 zero pixels on each side, the grey
/// value copied to R, G and B. `out` must be `IMAGE_BYTES` long and is fully written.
pub fn pad_image(grey: &[u8], out: &mut [u8]) {
    assert_eq!(grey.len(), SIDE * SIDE);
    assert_eq!(out.len(), IMAGE_BYTES);
    out.fill(0);
    for (y, row) in grey.chunks_exact(SIDE).enumerate() {
        let start = ((y + PAD) * IMAGE_SIZE + PAD) * CHANNELS;
        for (px, &v) in out[start..start + SIDE * CHANNELS]
            .chunks_exact_mut(CHANNELS)
            .zip(row)
        {
            px.fill(v);
        }
    }
}

/// Checks 28×28 images, equal image and label counts and labels below 10, then pads every
/// image to 32×32×3 ([`pad_image`]). `origin` names the source in errors.
pub fn to_image_set(
    name: impl Into<String>,
    images: &IdxImages,
    labels: &[u8],
    origin: &Path,
) -> Result<ImageSet, DataError> {
    if images.rows != SIDE || images.cols != SIDE {
        return Err(DataError::format(
            origin,
            format!(
                "images are {}×{}, Fashion-MNIST's are {SIDE}×{SIDE}",
                images.rows, images.cols
            ),
        ));
    }
    if images.count != labels.len() {
        return Err(DataError::CountMismatch {
            path: origin.to_path_buf(),
            images: images.count,
            labels: labels.len(),
        });
    }
    if let Some((index, &label)) = labels
        .iter()
        .enumerate()
        .find(|(_, &l)| l as usize >= CLASSES)
    {
        return Err(DataError::LabelOutOfRange {
            path: origin.to_path_buf(),
            index,
            label: label as u64,
            classes: CLASSES,
        });
    }
    let mut pixels = vec![0u8; images.count * IMAGE_BYTES];
    for (i, out) in pixels.chunks_exact_mut(IMAGE_BYTES).enumerate() {
        pad_image(images.image(i), out);
    }
    ImageSet::new(
        name,
        CLASSES,
        pixels,
        labels.iter().map(|&l| l as u16).collect(),
        origin,
    )
}

/// Writes `data` as gzip, byte-for-byte reproducibly (no file name, modification time 0,
/// best compression): how the embedded subset was written.
pub fn gzip_reproducible(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    enc.write_all(data).expect("writing to a Vec");
    enc.finish().expect("writing to a Vec")
}

/// The IDX bytes (uncompressed) of `images` (magic `0x00000803`).
pub fn idx_images_bytes(images: &IdxImages) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + images.pixels.len());
    for v in [
        IMAGES_MAGIC,
        images.count as u32,
        images.rows as u32,
        images.cols as u32,
    ] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out.extend_from_slice(&images.pixels);
    out
}

/// The IDX bytes (uncompressed) of `labels` (magic `0x00000801`).
pub fn idx_labels_bytes(labels: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + labels.len());
    out.extend_from_slice(&LABELS_MAGIC.to_be_bytes());
    out.extend_from_slice(&(labels.len() as u32).to_be_bytes());
    out.extend_from_slice(labels);
    out
}

/// The first `per_class` indices of each class, in file order (how the embedded subset was
/// chosen).
pub fn first_per_class(labels: &[u8], per_class: usize) -> Vec<usize> {
    let mut seen = [0usize; 256];
    labels
        .iter()
        .enumerate()
        .filter(|(_, &l)| {
            let keep = seen[l as usize] < per_class;
            seen[l as usize] += keep as usize;
            keep
        })
        .map(|(i, _)| i)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_per_class_keeps_file_order() {
        let labels = [3, 1, 3, 3, 1, 0, 1, 3];
        assert_eq!(first_per_class(&labels, 2), vec![0, 1, 2, 4, 5]);
        assert_eq!(first_per_class(&labels, 0), Vec::<usize>::new());
    }

    #[test]
    fn pad_image_places_grey_in_the_centre_of_all_channels() {
        let grey: Vec<u8> = (0..SIDE * SIDE).map(|i| (i % 200 + 1) as u8).collect();
        let mut out = vec![9u8; IMAGE_BYTES];
        pad_image(&grey, &mut out);
        let at = |r: usize, c: usize, ch: usize| out[(r * IMAGE_SIZE + c) * CHANNELS + ch];
        for r in 0..IMAGE_SIZE {
            for c in 0..IMAGE_SIZE {
                let inside = (PAD..PAD + SIDE).contains(&r) && (PAD..PAD + SIDE).contains(&c);
                let want = if inside {
                    grey[(r - PAD) * SIDE + c - PAD]
                } else {
                    0
                };
                for ch in 0..CHANNELS {
                    assert_eq!(at(r, c, ch), want, "({r}, {c}, {ch})");
                }
            }
        }
    }

    #[test]
    fn embedded_data_parses() {
        let fm = FashionMnist::embedded().unwrap();
        assert_eq!((fm.train.len(), fm.test.len()), (2000, 1000));
    }
}
