//! Class-per-folder PNG images, the layout the paper's code read DDPM-6M from
//! (docs/reproduction.md §3.5: `utils.py::get_synthetic_dataloader` builds a torchvision
//! `ImageFolder` over `data/cifar5m/`, the CIFAR-5m `.npz` parts converted to one PNG per image, no
//! augmentation).
//!
//! `root/<class>/<image>.png`: every sub-directory of `root` is a class, every `.png` in it an
//! image of that class. Classes are numbered in the order of their names (numerically when all
//! names are numbers, `0`..`9`, else by name as torchvision does), images sorted by file name,
//! so the indices are reproducible. Hidden entries (names starting with `.`) and files that are
//! not `.png` are skipped. Images are decoded lazily, on [`ImageSource::read`]; they must be
//! 32×32 RGB8, RGBA8 (alpha dropped) or grey8 (copied to the 3 channels).

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::{DataError, ImageSet, ImageShape, ImageSource, CHANNELS, IMAGE_BYTES, IMAGE_SIZE};

/// A class-per-folder directory of PNG images.
#[derive(Clone, Debug)]
pub struct ImageFolder {
    root: PathBuf,
    class_names: Vec<String>,
    /// Every image file and its class index, class by class.
    files: Vec<(PathBuf, u16)>,
}

/// The entries of `dir` sorted by name, hidden ones (`.`…) skipped: `(name, path, is a
/// directory, following links)`.
pub(super) fn read_dir_sorted(dir: &Path) -> Result<Vec<(String, PathBuf, bool)>, DataError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        // follows symbolic links, like torchvision
        let is_dir = path.is_dir();
        out.push((name, path, is_dir));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn is_png(name: &str) -> bool {
    Path::new(name)
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("png"))
}

impl ImageFolder {
    /// Lists `root`: its sub-directories are the classes, the `.png` files in each the images.
    /// A missing root is `Missing`; a root without class folders, a class folder without PNGs
    /// or more than 65,536 classes is `Format`.
    pub fn open(root: impl AsRef<Path>) -> Result<Self, DataError> {
        let root = root.as_ref();
        if !root.exists() {
            return Err(DataError::Missing {
                path: root.to_path_buf(),
                hint: " (expected a directory with one sub-directory of .png images per class)"
                    .into(),
            });
        }
        let mut classes: Vec<(String, PathBuf)> = read_dir_sorted(root)?
            .into_iter()
            .filter(|(_, _, dir)| *dir)
            .map(|(name, path, _)| (name, path))
            .collect();
        if classes.is_empty() {
            return Err(DataError::format(
                root,
                "no class sub-directories (expected one folder of .png images per class)",
            ));
        }
        if classes.len() > u16::MAX as usize + 1 {
            return Err(DataError::format(
                root,
                format!("{} class folders (at most 65536)", classes.len()),
            ));
        }
        if classes.iter().all(|(n, _)| n.parse::<u64>().is_ok()) {
            classes.sort_by_key(|(n, _)| n.parse::<u64>().unwrap_or(u64::MAX));
        }
        let mut files = Vec::new();
        for (class, (name, dir)) in classes.iter().enumerate() {
            let before = files.len();
            for (file, path, is_dir) in read_dir_sorted(dir)? {
                if !is_dir && is_png(&file) {
                    files.push((path, class as u16));
                }
            }
            if files.len() == before {
                return Err(DataError::format(
                    dir,
                    format!("class folder `{name}` holds no .png images"),
                ));
            }
        }
        Ok(ImageFolder {
            root: root.to_path_buf(),
            class_names: classes.into_iter().map(|(n, _)| n).collect(),
            files,
        })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Class folder names, in class-index order.
    pub fn class_names(&self) -> &[String] {
        &self.class_names
    }

    /// File of image `i`, `None` if `i >= len()`.
    pub fn path(&self, i: usize) -> Option<&Path> {
        self.files.get(i).map(|(p, _)| p.as_path())
    }

    /// Label of image `i`, `None` if `i >= len()`.
    pub fn label(&self, i: usize) -> Option<u16> {
        self.files.get(i).map(|&(_, l)| l)
    }

    /// Decodes every image (in parallel) into an [`ImageSet`].
    pub fn load_all(&self) -> Result<ImageSet, DataError> {
        let mut pixels = vec![0u8; self.files.len() * IMAGE_BYTES];
        pixels
            .par_chunks_mut(IMAGE_BYTES)
            .zip(self.files.par_iter())
            .try_for_each(|(out, (path, _))| decode_png(path, out))?;
        let labels = self.files.iter().map(|&(_, l)| l).collect();
        ImageSet::new(
            format!("image folder {}", self.root.display()),
            self.class_names.len(),
            pixels,
            labels,
            &self.root,
        )
    }
}

impl ImageSource for ImageFolder {
    fn len(&self) -> usize {
        self.files.len()
    }
    fn classes(&self) -> usize {
        self.class_names.len()
    }
    fn shape(&self) -> ImageShape {
        ImageShape::CIFAR
    }
    fn read(&self, i: usize, out: &mut [u8]) -> Result<u16, DataError> {
        let (path, label) = self.files.get(i).ok_or_else(|| DataError::Invalid {
            what: "index".into(),
            reason: format!("{i} >= {} images", self.files.len()),
        })?;
        decode_png(path, out)?;
        Ok(*label)
    }
}

/// Decodes the 32×32 PNG at `path` into `out` (`IMAGE_BYTES`, HWC RGB): RGB8 as is, RGBA8 without
/// its alpha, grey8 copied to the three channels; any other size or colour type is `Format`.
pub fn decode_png(path: &Path, out: &mut [u8]) -> Result<(), DataError> {
    if out.len() != IMAGE_BYTES {
        return Err(DataError::Invalid {
            what: "output buffer".into(),
            reason: format!("{} bytes, expected {IMAGE_BYTES}", out.len()),
        });
    }
    let png_err = |e: png::DecodingError| match e {
        png::DecodingError::IoError(e) if e.kind() != std::io::ErrorKind::UnexpectedEof => {
            DataError::io(path, e)
        }
        e => DataError::format(path, format!("not a valid PNG: {e}")),
    };
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut decoder = png::Decoder::new(BufReader::new(file));
    decoder.set_transformations(png::Transformations::IDENTITY);
    let mut reader = decoder.read_info().map_err(png_err)?;
    let (w, h) = (reader.info().width, reader.info().height);
    if (w as usize, h as usize) != (IMAGE_SIZE, IMAGE_SIZE) {
        return Err(DataError::format(
            path,
            format!("{w}×{h} image, expected {IMAGE_SIZE}×{IMAGE_SIZE}"),
        ));
    }
    let (color, depth) = reader.output_color_type();
    let channels = match (color, depth) {
        (png::ColorType::Rgb, png::BitDepth::Eight) => 3,
        (png::ColorType::Rgba, png::BitDepth::Eight) => 4,
        (png::ColorType::Grayscale, png::BitDepth::Eight) => 1,
        (c, d) => {
            return Err(DataError::format(
                path,
                format!(
                    "{c:?} with {} bits per sample; expected 8-bit RGB, RGBA or grey",
                    d as u8
                ),
            ))
        }
    };
    let mut buf = vec![0u8; reader.output_buffer_size()];
    let frame = reader.next_frame(&mut buf).map_err(png_err)?;
    let line = frame.line_size;
    if line < IMAGE_SIZE * channels || buf.len() < line * IMAGE_SIZE {
        return Err(DataError::format(
            path,
            "PNG rows shorter than the image width",
        ));
    }
    for (y, row) in out.chunks_exact_mut(IMAGE_SIZE * CHANNELS).enumerate() {
        let src = &buf[y * line..y * line + IMAGE_SIZE * channels];
        for (px, s) in row
            .chunks_exact_mut(CHANNELS)
            .zip(src.chunks_exact(channels))
        {
            if channels == 1 {
                px.fill(s[0]);
            } else {
                px.copy_from_slice(&s[..CHANNELS]);
            }
        }
    }
    Ok(())
}
