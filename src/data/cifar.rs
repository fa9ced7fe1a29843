//! CIFAR-10 and CIFAR-100 readers for the official binary format (docs/reproduction.md §3.1: the
//! CIFAR training and test sets, raw `[0, 1]` pixels, no normalisation).
//!
//! * CIFAR-10 (`cifar-10-batches-bin/`): `data_batch_1.bin` … `data_batch_5.bin` (train) and
//!   `test_batch.bin`, records of 3073 bytes: one label byte (0–9), then 3072 pixel bytes.
//! * CIFAR-100 (`cifar-100-binary/`): `train.bin` and `test.bin`, records of 3074 bytes: the
//!   coarse label (0–19), the fine label (0–99), then 3072 pixel bytes. [`load_cifar100`] uses
//!   the fine labels, [`load_cifar100_coarse`] the coarse ones.
//!
//! Pixels are stored channel-major (CHW: 1024 red, 1024 green, 1024 blue, each 32×32 row-major);
//! the readers convert them to the HWC bytes of [`ImageSet`]. Each file is read whole into one
//! buffer sized from its real length (file metadata), and a length that is not a positive
//! multiple of the record size, or a label out of range, is an error, never a panic.
//! [`super::download`] fetches the archives.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::{DataError, ImageSet, CHANNELS, IMAGE_BYTES, IMAGE_SIZE};

/// Folder of the extracted CIFAR-10 binary archive.
pub const CIFAR10_FOLDER: &str = "cifar-10-batches-bin";
/// Folder of the extracted CIFAR-100 binary archive.
pub const CIFAR100_FOLDER: &str = "cifar-100-binary";
/// CIFAR-10 training batches, in order.
pub const CIFAR10_TRAIN_FILES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
/// CIFAR-10 test batch.
pub const CIFAR10_TEST_FILE: &str = "test_batch.bin";
/// CIFAR-100 training file.
pub const CIFAR100_TRAIN_FILE: &str = "train.bin";
/// CIFAR-100 test file.
pub const CIFAR100_TEST_FILE: &str = "test.bin";
/// Bytes of one CIFAR-10 record (1 label + 3072 pixels).
pub const CIFAR10_RECORD_BYTES: usize = 1 + IMAGE_BYTES;
/// Bytes of one CIFAR-100 record (coarse label + fine label + 3072 pixels).
pub const CIFAR100_RECORD_BYTES: usize = 2 + IMAGE_BYTES;

/// Which CIFAR dataset (and, for CIFAR-100, which labels) to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CifarVariant {
    /// CIFAR-10: 10 classes.
    Cifar10,
    /// CIFAR-100 with its 100 fine labels (the usual CIFAR-100 benchmark).
    Cifar100Fine,
    /// CIFAR-100 with its 20 coarse labels (superclasses).
    Cifar100Coarse,
}

impl CifarVariant {
    /// Name used in [`ImageSet::name`] ("CIFAR-10", "CIFAR-100", "CIFAR-100 (coarse)").
    pub fn name(self) -> &'static str {
        match self {
            CifarVariant::Cifar10 => "CIFAR-10",
            CifarVariant::Cifar100Fine => "CIFAR-100",
            CifarVariant::Cifar100Coarse => "CIFAR-100 (coarse)",
        }
    }

    /// Number of classes.
    pub fn classes(self) -> usize {
        match self {
            CifarVariant::Cifar10 => 10,
            CifarVariant::Cifar100Fine => 100,
            CifarVariant::Cifar100Coarse => 20,
        }
    }

    /// Folder the official archive extracts to.
    pub fn folder(self) -> &'static str {
        match self {
            CifarVariant::Cifar10 => CIFAR10_FOLDER,
            _ => CIFAR100_FOLDER,
        }
    }

    /// Bytes of one record.
    pub fn record_bytes(self) -> usize {
        match self {
            CifarVariant::Cifar10 => CIFAR10_RECORD_BYTES,
            _ => CIFAR100_RECORD_BYTES,
        }
    }

    /// Number of label bytes before the pixels of each record.
    fn label_bytes(self) -> usize {
        self.record_bytes() - IMAGE_BYTES
    }

    /// Offset of the label this variant uses inside a record.
    fn label_offset(self) -> usize {
        match self {
            CifarVariant::Cifar10 | CifarVariant::Cifar100Coarse => 0,
            CifarVariant::Cifar100Fine => 1,
        }
    }

    /// Training files, in order.
    pub fn train_files(self) -> &'static [&'static str] {
        match self {
            CifarVariant::Cifar10 => &CIFAR10_TRAIN_FILES,
            _ => &[CIFAR100_TRAIN_FILE],
        }
    }

    /// Test file.
    pub fn test_file(self) -> &'static str {
        match self {
            CifarVariant::Cifar10 => CIFAR10_TEST_FILE,
            _ => CIFAR100_TEST_FILE,
        }
    }

    /// What to do when the data is not there.
    fn hint(self) -> String {
        let download = match self {
            CifarVariant::Cifar10 => "download_cifar10",
            _ => "download_cifar100",
        };
        format!(
            " (run {download}(dir) or pass the folder containing {})",
            self.folder()
        )
    }
}

/// A CIFAR dataset: the official training and test splits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cifar {
    /// The training split (50 000 images for the official files).
    pub train: ImageSet,
    /// The test split (10 000 images for the official files).
    pub test: ImageSet,
}

/// Reads CIFAR-10 from `dir`: either the `cifar-10-batches-bin` folder itself or its parent.
pub fn load_cifar10(dir: &Path) -> Result<Cifar, DataError> {
    load_cifar(dir, CifarVariant::Cifar10)
}

/// Reads CIFAR-100 with its 100 fine labels from `dir`: either the `cifar-100-binary` folder
/// itself or its parent.
pub fn load_cifar100(dir: &Path) -> Result<Cifar, DataError> {
    load_cifar(dir, CifarVariant::Cifar100Fine)
}

/// Reads CIFAR-100 with its 20 coarse labels (superclasses) from `dir`, as [`load_cifar100`].
pub fn load_cifar100_coarse(dir: &Path) -> Result<Cifar, DataError> {
    load_cifar(dir, CifarVariant::Cifar100Coarse)
}

/// Reads `variant` from `dir`: either the extracted folder ([`CifarVariant::folder`]) itself or
/// its parent.
pub fn load_cifar(dir: &Path, variant: CifarVariant) -> Result<Cifar, DataError> {
    let folder = resolve_folder(dir, variant)?;
    let train_paths: Vec<PathBuf> = variant
        .train_files()
        .iter()
        .map(|f| folder.join(f))
        .collect();
    let train = read_split(
        &train_paths,
        variant,
        format!("{} train", variant.name()),
        &folder,
    )?;
    let test = read_split(
        &[folder.join(variant.test_file())],
        variant,
        format!("{} test", variant.name()),
        &folder,
    )?;
    Ok(Cifar { train, test })
}

/// Reads one CIFAR binary file: HWC pixels (`n · IMAGE_BYTES` bytes) and the labels `variant`
/// selects, checked against its class count.
pub fn read_cifar_file(
    path: &Path,
    variant: CifarVariant,
) -> Result<(Vec<u8>, Vec<u16>), DataError> {
    let raw = read_whole(path, variant)?;
    let record = variant.record_bytes();
    let n = raw.len() / record;
    let mut pixels = vec![0u8; n * IMAGE_BYTES];
    let mut labels = Vec::with_capacity(n);
    let plane = IMAGE_SIZE * IMAGE_SIZE;
    for (index, (rec, out)) in raw
        .chunks_exact(record)
        .zip(pixels.chunks_exact_mut(IMAGE_BYTES))
        .enumerate()
    {
        let label = rec[variant.label_offset()];
        if label as usize >= variant.classes() {
            return Err(DataError::LabelOutOfRange {
                path: path.to_path_buf(),
                index,
                label: label as u64,
                classes: variant.classes(),
            });
        }
        labels.push(label as u16);
        let chw = &rec[variant.label_bytes()..];
        for c in 0..CHANNELS {
            let src = &chw[c * plane..(c + 1) * plane];
            for (p, &v) in src.iter().enumerate() {
                out[p * CHANNELS + c] = v;
            }
        }
    }
    Ok((pixels, labels))
}

/// The folder holding the files: `dir` itself when it holds the test file (whatever its name),
/// else `dir/<folder>`.
fn resolve_folder(dir: &Path, variant: CifarVariant) -> Result<PathBuf, DataError> {
    if !dir.is_dir() {
        return Err(DataError::Missing {
            path: dir.to_path_buf(),
            hint: variant.hint(),
        });
    }
    if dir.join(variant.test_file()).is_file() {
        return Ok(dir.to_path_buf());
    }
    let nested = dir.join(variant.folder());
    if nested.is_dir() {
        return Ok(nested);
    }
    // `dir` named like the folder but without the files: report the missing file there.
    if dir.file_name().is_some_and(|n| n == variant.folder()) {
        return Ok(dir.to_path_buf());
    }
    Err(DataError::Missing {
        path: nested,
        hint: variant.hint(),
    })
}

/// Reads every file of a split and concatenates them into one [`ImageSet`].
fn read_split(
    paths: &[PathBuf],
    variant: CifarVariant,
    name: String,
    folder: &Path,
) -> Result<ImageSet, DataError> {
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for path in paths {
        let (p, l) = read_cifar_file(path, variant)?;
        if pixels.is_empty() {
            pixels = p;
            labels = l;
        } else {
            pixels.extend_from_slice(&p);
            labels.extend_from_slice(&l);
        }
    }
    ImageSet::new(name, variant.classes(), pixels, labels, folder)
}

/// The whole file, in one allocation sized from its metadata, after checking that the length is
/// a positive multiple of the record size.
fn read_whole(path: &Path, variant: CifarVariant) -> Result<Vec<u8>, DataError> {
    let file = File::open(path).map_err(|e| match DataError::io(path, e) {
        DataError::Missing { path, .. } => DataError::Missing {
            path,
            hint: variant.hint(),
        },
        other => other,
    })?;
    let len = file.metadata().map_err(|e| DataError::io(path, e))?.len();
    let record = variant.record_bytes() as u64;
    if len == 0 || len % record != 0 {
        return Err(DataError::Size {
            path: path.to_path_buf(),
            what: format!(
                "{} file (a positive multiple of {record}-byte records)",
                variant.name()
            ),
            expected: (len / record).max(1) * record,
            actual: len,
        });
    }
    let too_big = || DataError::Size {
        path: path.to_path_buf(),
        what: "file larger than this platform can hold in memory".into(),
        expected: usize::MAX as u64,
        actual: len,
    };
    let cap = usize::try_from(len).map_err(|_| too_big())?;
    let mut buf = Vec::new();
    buf.try_reserve_exact(cap).map_err(|_| too_big())?;
    file.take(len)
        .read_to_end(&mut buf)
        .map_err(|e| DataError::io(path, e))?;
    if buf.len() as u64 != len {
        return Err(DataError::Size {
            path: path.to_path_buf(),
            what: "file shrank while being read".into(),
            expected: len,
            actual: buf.len() as u64,
        });
    }
    Ok(buf)
}
