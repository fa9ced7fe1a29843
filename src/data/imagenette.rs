//! ImageNette (docs/reproduction.md §3.7): fastai's 10-class subset of ImageNet in its
//! `imagenette2` layout, `ROOT/{train,val}/<wnid>/*.JPEG`, read as the official code's torchvision
//! `ImageFolder` reads it, with its transforms ([`super::transforms`]): training images
//! `RandomResizedCrop(224)` + horizontal flip, test images `Resize(255)` + `CenterCrop(224)`,
//! 224×224×3 out.
//!
//! - Classes are the sub-folders of `train/`, sorted by name (the wnids `n01440764`, ...: the
//!   order torchvision's `ImageFolder` numbers them in); `val/` must have the same ones. Images are
//!   the files with an image extension torchvision accepts (`.jpg`, `.jpeg`, `.png`, any case),
//!   sorted by name; hidden entries are skipped. The smaller releases (`imagenette2-320`,
//!   `imagenette2-160`) have the same layout.
//! - JPEGs are decoded with the `image` crate (its pure-Rust `zune-jpeg` decoder), grey and CMYK
//!   images converted to RGB as PIL's `convert("RGB")` does, by the loader, the images of a batch
//!   in parallel on rayon's threads ([`ImageSource::read`] decodes, [`ImageSource::costly_reads`]
//!   says so; nothing is held in memory but the file list). A different
//!   JPEG decoder than PIL's libjpeg-turbo: on the test fixture the decoded values differ from
//!   PIL's by at most 4 levels, 0.36 on average, 74 % of them equal
//!   (`tests/data_imagenette.rs`).
//! - [`download_imagenette`] fetches fastai's archive and checks its MD5 (torchvision's).
//! - A file that does not decode is a [`DataError::Decode`] naming it, or, with
//!   [`OnCorrupt::Skip`], is replaced by the next image that decodes (and listed in
//!   [`ImageNetteSplit::skipped`]); [`ImageNetteSplit::load`] then leaves it out.

use std::collections::BTreeSet;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rand::rngs::StdRng;
use rayon::prelude::*;

use super::folder::read_dir_sorted;
use super::transforms::{random_resized_crop_flip, resize_center_crop, RawImage};
use super::{DataError, ImageSet, ImageShape, ImageSource};

/// The side of the images the ImageNet-stem model takes.
pub const IMAGENETTE_SIZE: usize = 224;
/// The shorter side the test images are resized to before the center crop: `int(1.14 · 224)`.
pub const IMAGENETTE_RESIZE: usize = 255;
/// fastai's address of the full-size archive (1.5 GB).
pub const IMAGENETTE_URL: &str = "https://s3.amazonaws.com/fast-ai-imageclas/imagenette2.tgz";
/// MD5 of [`IMAGENETTE_URL`] (as torchvision's `datasets.Imagenette` checks it).
pub const IMAGENETTE_MD5: &str = "fe2fc210e6bb7c5664d602c3cd71e612";
/// The folder the archive extracts to.
pub const IMAGENETTE_FOLDER: &str = "imagenette2";

/// Downloads fastai's `imagenette2.tgz` (1.5 GB) into `root/imagenette2` unless a complete folder
/// is already there, checking its MD5, as [`super::download_cifar10`] does for CIFAR-10; returns
/// the folder, checked by [`ImageNette::open`].
pub fn download_imagenette(root: &Path) -> Result<PathBuf, DataError> {
    download_imagenette_from(IMAGENETTE_URL, IMAGENETTE_MD5, root)
}

/// [`download_imagenette`] from another address (a mirror; the tests' server on 127.0.0.1):
/// the `.tgz` at `url`, whose MD5 must be `md5_hex`, extracting to `imagenette2/`. Nothing is
/// left in `root` on any failure ([`super::download_and_extract`]); a folder already there is
/// only opened, never downloaded again.
pub fn download_imagenette_from(
    url: &str,
    md5_hex: &str,
    root: &Path,
) -> Result<PathBuf, DataError> {
    // no per-file sizes to check (13,394 images): the MD5 vouches for the archive, and the layout
    // is checked by opening it
    let dir = super::download_and_extract(url, md5_hex, root, IMAGENETTE_FOLDER, &[])?;
    ImageNette::open(&dir)?;
    Ok(dir)
}

/// What to do with an image file that does not decode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnCorrupt {
    /// Stop with [`DataError::Decode`] naming the file (the default: nothing is silently lost).
    #[default]
    Fail,
    /// Replace it by the next image that decodes (the following index, wrapping around), and
    /// record it in [`ImageNetteSplit::skipped`].
    Skip,
}

/// Which split, and so which transform.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// `train/`: [`ImageSource::read_augmented`] is `RandomResizedCrop` + flip; plain
    /// [`ImageSource::read`] gives the test transform.
    Train,
    /// `val/`: the test transform.
    Val,
}

/// Sizes of the transforms (ImageNette's: 224 and 255).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageNetteConfig {
    /// Side of the square images out (the crops).
    pub size: usize,
    /// Shorter side the test images are resized to before the center crop (≥ `size`).
    pub resize: usize,
    /// Undecodable files.
    pub on_corrupt: OnCorrupt,
}

impl Default for ImageNetteConfig {
    fn default() -> Self {
        ImageNetteConfig {
            size: IMAGENETTE_SIZE,
            resize: IMAGENETTE_RESIZE,
            on_corrupt: OnCorrupt::Fail,
        }
    }
}

impl ImageNetteConfig {
    fn validate(&self) -> Result<(), DataError> {
        if self.size == 0 || self.resize < self.size {
            return Err(DataError::Invalid {
                what: "ImageNette transform".into(),
                reason: format!(
                    "size {} and resize {}: need 0 < size ≤ resize",
                    self.size, self.resize
                ),
            });
        }
        Ok(())
    }
}

/// An `imagenette2` folder: the class names and both splits' file lists.
#[derive(Clone, Debug)]
pub struct ImageNette {
    root: PathBuf,
    classes: Vec<String>,
    train: Vec<(PathBuf, u16)>,
    val: Vec<(PathBuf, u16)>,
}

fn is_image(name: &str) -> bool {
    Path::new(name).extension().is_some_and(|e| {
        let e = e.to_ascii_lowercase();
        e == "jpg" || e == "jpeg" || e == "png"
    })
}

/// The sub-folders of `dir`, sorted by name (hidden ones skipped): the classes.
fn class_folders(dir: &Path) -> Result<Vec<String>, DataError> {
    Ok(read_dir_sorted(dir)?
        .into_iter()
        .filter(|(_, _, is_dir)| *is_dir)
        .map(|(name, _, _)| name)
        .collect())
}

fn list_split(dir: &Path, classes: &[String]) -> Result<Vec<(PathBuf, u16)>, DataError> {
    if !dir.is_dir() {
        return Err(DataError::Missing {
            path: dir.to_path_buf(),
            hint: " (expected imagenette2/{train,val}/<wnid>/*.JPEG)".into(),
        });
    }
    let found = class_folders(dir)?;
    if found != classes {
        return Err(DataError::format(
            dir,
            format!(
                "class folders {found:?} differ from train/'s {classes:?} (the splits must have \
                 the same classes)"
            ),
        ));
    }
    let mut files = Vec::new();
    for (k, class) in classes.iter().enumerate() {
        let before = files.len();
        let class_dir = dir.join(class);
        for (name, path, is_dir) in read_dir_sorted(&class_dir)? {
            if !is_dir && is_image(&name) && path.is_file() {
                files.push((path, k as u16));
            }
        }
        if files.len() == before {
            return Err(DataError::format(
                &class_dir,
                "holds no .JPEG/.jpg/.png images",
            ));
        }
    }
    Ok(files)
}

impl ImageNette {
    /// Lists `root` (the `imagenette2` folder, or any folder with `train/` and `val/` laid out
    /// the same way). A missing folder is [`DataError::Missing`]; splits with different classes,
    /// an empty class or more than 65,536 classes are [`DataError::Format`].
    pub fn open(root: impl AsRef<Path>) -> Result<Self, DataError> {
        let root = root.as_ref();
        if !root.is_dir() {
            return Err(DataError::Missing {
                path: root.to_path_buf(),
                hint: " (expected the imagenette2 folder: train/ and val/ with one folder of \
                       JPEGs per class)"
                    .into(),
            });
        }
        let train_dir = root.join("train");
        if !train_dir.is_dir() {
            return Err(DataError::Missing {
                path: train_dir,
                hint: " (expected imagenette2/{train,val}/<wnid>/*.JPEG)".into(),
            });
        }
        let classes = class_folders(&train_dir)?;
        if classes.is_empty() || classes.len() > u16::MAX as usize + 1 {
            return Err(DataError::format(
                &train_dir,
                format!("{} class folders (expected 1 to 65,536)", classes.len()),
            ));
        }
        let train = list_split(&train_dir, &classes)?;
        let val = list_split(&root.join("val"), &classes)?;
        Ok(ImageNette {
            root: root.to_path_buf(),
            classes,
            train,
            val,
        })
    }

    /// The folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Class folder names (wnids), in label order.
    pub fn class_names(&self) -> &[String] {
        &self.classes
    }

    /// One split as an [`ImageSource`] with the transforms of `cfg`.
    pub fn split(&self, split: Split, cfg: ImageNetteConfig) -> Result<ImageNetteSplit, DataError> {
        cfg.validate()?;
        let files = match split {
            Split::Train => self.train.clone(),
            Split::Val => self.val.clone(),
        };
        let name = match split {
            Split::Train => "train",
            Split::Val => "val",
        };
        Ok(ImageNetteSplit {
            name: format!("ImageNette {name} ({})", self.root.display()),
            split,
            cfg,
            classes: self.classes.len(),
            files,
            skipped: Mutex::new(BTreeSet::new()),
        })
    }
}

/// One split of [`ImageNette`]: decodes on every read (see the module docs).
#[derive(Debug)]
pub struct ImageNetteSplit {
    name: String,
    split: Split,
    cfg: ImageNetteConfig,
    classes: usize,
    files: Vec<(PathBuf, u16)>,
    skipped: Mutex<BTreeSet<PathBuf>>,
}

/// Decodes the image file at `path` to RGB bytes (grey, grey + alpha, RGBA and CMYK converted as
/// PIL's `convert("RGB")` does: alpha dropped). An unreadable file is [`DataError::Io`] or
/// [`DataError::Missing`], one that does not decode [`DataError::Decode`].
pub fn decode_image(path: &Path) -> Result<RawImage, DataError> {
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let reader = image::ImageReader::new(BufReader::new(file))
        .with_guessed_format()
        .map_err(|e| DataError::io(path, e))?;
    let decoded = reader.decode().map_err(|e| match e {
        image::ImageError::IoError(e) if e.kind() != std::io::ErrorKind::UnexpectedEof => {
            DataError::io(path, e)
        }
        e => DataError::Decode {
            path: path.to_path_buf(),
            reason: e.to_string(),
        },
    })?;
    let rgb = decoded.into_rgb8();
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    RawImage::new(h, w, 3, rgb.into_raw()).map_err(|e| DataError::Decode {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

impl ImageNetteSplit {
    /// "ImageNette train (ROOT)".
    pub fn name(&self) -> &str {
        &self.name
    }

    /// File of image `i`, `None` if `i >= len()`.
    pub fn path(&self, i: usize) -> Option<&Path> {
        self.files.get(i).map(|(p, _)| p.as_path())
    }

    /// The label of every image, in index order.
    pub fn labels(&self) -> Vec<u16> {
        self.files.iter().map(|&(_, l)| l).collect()
    }

    /// The files skipped so far as undecodable ([`OnCorrupt::Skip`]), sorted.
    pub fn skipped(&self) -> Vec<PathBuf> {
        self.skipped
            .lock()
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Decodes image `i`, or with [`OnCorrupt::Skip`] the first of `i, i+1, …` (wrapping) that
    /// decodes; returns it with its label.
    fn decode_from(&self, i: usize) -> Result<(RawImage, u16), DataError> {
        let n = self.files.len();
        if i >= n {
            return Err(DataError::Invalid {
                what: "index".into(),
                reason: format!("{i} >= {n} images"),
            });
        }
        let mut first_err = None;
        for k in 0..n {
            let (path, label) = &self.files[(i + k) % n];
            match decode_image(path) {
                Ok(img) => return Ok((img, *label)),
                Err(e @ DataError::Decode { .. }) if self.cfg.on_corrupt == OnCorrupt::Skip => {
                    if let Ok(mut s) = self.skipped.lock() {
                        s.insert(path.clone());
                    }
                    first_err.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(first_err.unwrap_or_else(|| DataError::Invalid {
            what: "split".into(),
            reason: "no images".into(),
        }))
    }

    fn check_out(&self, out: &[u8]) -> Result<(), DataError> {
        if out.len() != self.shape().bytes() {
            return Err(DataError::Invalid {
                what: "output buffer".into(),
                reason: format!("{} bytes, expected {}", out.len(), self.shape().bytes()),
            });
        }
        Ok(())
    }

    /// Every image through the test transform, decoded in parallel, into memory (the test set of
    /// a run: 3,925 validation images of 224×224×3 are 590 MB). With [`OnCorrupt::Skip`] the
    /// undecodable files are left out (and listed in [`ImageNetteSplit::skipped`]); `limit`
    /// keeps only the first images.
    pub fn load(&self, limit: Option<usize>) -> Result<ImageSet, DataError> {
        let n = limit.unwrap_or(self.files.len()).min(self.files.len());
        self.load_indices(&(0..n).collect::<Vec<_>>())
    }

    /// [`ImageNetteSplit::load`] of the images at `indices`, in that order (each `< len()`).
    pub fn load_indices(&self, indices: &[usize]) -> Result<ImageSet, DataError> {
        if let Some(&bad) = indices.iter().find(|&&i| i >= self.files.len()) {
            return Err(DataError::Invalid {
                what: "index".into(),
                reason: format!("{bad} >= {} images", self.files.len()),
            });
        }
        let bytes = self.shape().bytes();
        let decoded: Vec<Option<(Vec<u8>, u16)>> = indices
            .par_iter()
            .map(|&i| &self.files[i])
            .map(|(path, label)| match decode_image(path) {
                Ok(img) => {
                    let t =
                        resize_center_crop(&img, self.cfg.resize, self.cfg.size).map_err(|e| {
                            DataError::Decode {
                                path: path.clone(),
                                reason: e.to_string(),
                            }
                        })?;
                    Ok(Some((t.pixels, *label)))
                }
                Err(DataError::Decode { .. }) if self.cfg.on_corrupt == OnCorrupt::Skip => {
                    if let Ok(mut s) = self.skipped.lock() {
                        s.insert(path.clone());
                    }
                    Ok(None)
                }
                Err(e) => Err(e),
            })
            .collect::<Result<_, DataError>>()?;
        let kept = decoded.iter().flatten().count();
        let mut pixels = Vec::with_capacity(kept * bytes);
        let mut labels = Vec::with_capacity(kept);
        for (p, l) in decoded.into_iter().flatten() {
            pixels.extend_from_slice(&p);
            labels.push(l);
        }
        ImageSet::with_shape(
            format!(
                "{} ({kept} images, {}×{} crops)",
                self.name, self.cfg.size, self.cfg.size
            ),
            self.classes,
            self.shape(),
            pixels,
            labels,
            Path::new(&self.name),
        )
    }
}

impl ImageSource for ImageNetteSplit {
    fn len(&self) -> usize {
        self.files.len()
    }
    fn classes(&self) -> usize {
        self.classes
    }
    fn shape(&self) -> ImageShape {
        ImageShape::square(self.cfg.size)
    }
    /// Every read decodes a JPEG and resizes it: the loader reads a batch in parallel.
    fn costly_reads(&self) -> bool {
        true
    }
    /// The test transform (for either split).
    fn read(&self, i: usize, out: &mut [u8]) -> Result<u16, DataError> {
        self.check_out(out)?;
        let (img, label) = self.decode_from(i)?;
        let t = resize_center_crop(&img, self.cfg.resize, self.cfg.size)?;
        out.copy_from_slice(&t.pixels);
        Ok(label)
    }
    /// Training split: `RandomResizedCrop(size)` + flip on the decoded image; the validation
    /// split is never augmented (its test transform).
    fn read_augmented(
        &self,
        i: usize,
        out: &mut [u8],
        _scratch: &mut Vec<u8>,
        rng: &mut StdRng,
    ) -> Result<u16, DataError> {
        if self.split == Split::Val {
            return self.read(i, out);
        }
        self.check_out(out)?;
        let (img, label) = self.decode_from(i)?;
        let t = random_resized_crop_flip(&img, self.cfg.size, rng);
        out.copy_from_slice(&t.pixels);
        Ok(label)
    }
}
