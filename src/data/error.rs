//! What can go wrong reading a dataset: every parser returns these, never panics, and never
//! allocates more than the bytes actually present (a lying header is an error, not an OOM).

use std::path::PathBuf;

use thiserror::Error;

/// A data error, with the file it concerns.
#[derive(Debug, Error)]
pub enum DataError {
    /// A directory or file that should be there is not (with what to do about it).
    #[error("{path}: not found{hint}")]
    Missing { path: PathBuf, hint: String },
    /// An i/o error reading or writing `path`.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file shorter (or longer) than its format or header says.
    #[error("{path}: {what}: expected {expected} bytes, found {actual}")]
    Size {
        path: PathBuf,
        what: String,
        expected: u64,
        actual: u64,
    },
    /// A magic number or signature that is not the format's.
    #[error("{path}: bad magic number {found:#x} (expected {expected:#x})")]
    BadMagic {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    /// A label outside `0..classes`.
    #[error("{path}: label {label} at index {index} is outside 0..{classes}")]
    LabelOutOfRange {
        path: PathBuf,
        index: usize,
        label: u64,
        classes: usize,
    },
    /// Image and label counts that differ.
    #[error("{path}: {images} images but {labels} labels")]
    CountMismatch {
        path: PathBuf,
        images: usize,
        labels: usize,
    },
    /// A malformed file: a missing `.npz` key, a wrong dtype or shape, a bad header, a corrupt
    /// archive member, an image of the wrong size, ...
    #[error("{path}: {reason}")]
    Format { path: PathBuf, reason: String },
    /// An image file that does not decode (a corrupt or truncated JPEG or PNG, an unsupported
    /// format), or whose size the transform cannot take.
    #[error("{path}: cannot decode the image: {reason}")]
    Decode { path: PathBuf, reason: String },
    /// A download whose checksum is not the published one (the file is discarded).
    #[error("{url}: checksum mismatch: expected {expected}, got {actual} (download discarded)")]
    Checksum {
        url: String,
        expected: String,
        actual: String,
    },
    /// A download that failed (network, HTTP status, cut short).
    #[error("{url}: download failed: {reason}")]
    Download { url: String, reason: String },
    /// An invalid argument (batch size 0, a ratio out of range, ...).
    #[error("invalid {what}: {reason}")]
    Invalid { what: String, reason: String },
}

impl DataError {
    /// [`DataError::Io`] for `path`, or [`DataError::Missing`] when the error is "not found".
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        if source.kind() == std::io::ErrorKind::NotFound {
            DataError::Missing {
                path,
                hint: String::new(),
            }
        } else {
            DataError::Io { path, source }
        }
    }
    /// [`DataError::Format`].
    pub fn format(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        DataError::Format {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
