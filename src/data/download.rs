//! Downloads the CIFAR archives as torchvision does (docs/reproduction.md §3.1: CIFAR-10/100 are
//! the training and test data): fetch the `.tar.gz` from its official address, check its MD5
//! against the published one, extract it, check the expected files and sizes.
//!
//! [`download_and_extract`] is the generic step (tests point it at a server on 127.0.0.1).
//! It never leaves a half-made folder behind: the body streams into a temporary file inside
//! `root` (`.NAME.download`), the archive extracts into a temporary directory inside `root`
//! (`.NAME.extract`), and only a fully checked folder is renamed into place (`std::fs::rename`,
//! atomic on one filesystem). On any failure both temporaries are removed; a leftover from an
//! earlier crash is removed and the download redone. Extraction writes only plain files and
//! directories under `NAME/` and refuses any path that could leave the temporary directory.

use std::fs::{self, File};
use std::io::{BufWriter, IsTerminal, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use md5::{Digest, Md5};

use super::cifar::{
    CIFAR100_FOLDER, CIFAR100_RECORD_BYTES, CIFAR100_TEST_FILE, CIFAR100_TRAIN_FILE,
    CIFAR10_FOLDER, CIFAR10_RECORD_BYTES, CIFAR10_TEST_FILE, CIFAR10_TRAIN_FILES,
};
use super::DataError;

/// Official address of the CIFAR-10 binary archive.
pub const CIFAR10_URL: &str = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz";
/// Published MD5 of [`CIFAR10_URL`] (as in torchvision).
pub const CIFAR10_MD5: &str = "c32a1d4ab5d03f1284b67883e8d87530";
/// Official address of the CIFAR-100 binary archive.
pub const CIFAR100_URL: &str = "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz";
/// Published MD5 of [`CIFAR100_URL`] (as in torchvision).
pub const CIFAR100_MD5: &str = "03b5dce01913d631647c71ecec9e9cb8";

const CIFAR10_BATCH_BYTES: u64 = 10_000 * CIFAR10_RECORD_BYTES as u64;

/// Files of the extracted CIFAR-10 archive and their sizes (10 000 records each).
pub const CIFAR10_EXPECTED_FILES: [(&str, u64); 6] = [
    (CIFAR10_TRAIN_FILES[0], CIFAR10_BATCH_BYTES),
    (CIFAR10_TRAIN_FILES[1], CIFAR10_BATCH_BYTES),
    (CIFAR10_TRAIN_FILES[2], CIFAR10_BATCH_BYTES),
    (CIFAR10_TRAIN_FILES[3], CIFAR10_BATCH_BYTES),
    (CIFAR10_TRAIN_FILES[4], CIFAR10_BATCH_BYTES),
    (CIFAR10_TEST_FILE, CIFAR10_BATCH_BYTES),
];

/// Files of the extracted CIFAR-100 archive and their sizes (50 000 and 10 000 records).
pub const CIFAR100_EXPECTED_FILES: [(&str, u64); 2] = [
    (CIFAR100_TRAIN_FILE, 50_000 * CIFAR100_RECORD_BYTES as u64),
    (CIFAR100_TEST_FILE, 10_000 * CIFAR100_RECORD_BYTES as u64),
];

/// Downloads and extracts CIFAR-10 into `root/cifar-10-batches-bin` (nothing is downloaded when
/// it is already there and complete); returns that folder, ready for
/// [`load_cifar10`](super::cifar::load_cifar10).
pub fn download_cifar10(root: &Path) -> Result<PathBuf, DataError> {
    download_and_extract(
        CIFAR10_URL,
        CIFAR10_MD5,
        root,
        CIFAR10_FOLDER,
        &CIFAR10_EXPECTED_FILES,
    )
}

/// Downloads and extracts CIFAR-100 into `root/cifar-100-binary` (nothing is downloaded when it
/// is already there and complete); returns that folder, ready for
/// [`load_cifar100`](super::cifar::load_cifar100).
pub fn download_cifar100(root: &Path) -> Result<PathBuf, DataError> {
    download_and_extract(
        CIFAR100_URL,
        CIFAR100_MD5,
        root,
        CIFAR100_FOLDER,
        &CIFAR100_EXPECTED_FILES,
    )
}

/// Makes `root/folder_name` hold `expected_files` (name relative to the folder, size in bytes),
/// downloading the `.tar.gz` at `url` (which must extract to `folder_name/`) when it does not.
///
/// * Already complete: returned as is, without any network access.
/// * Present but incomplete: an error (a folder this function did not make is not deleted).
/// * Otherwise: the body is streamed to `root/.folder_name.download` while its MD5 is computed
///   (a progress bar on a terminal, one line at start and end otherwise); a body shorter than its
///   `Content-Length`, an HTTP error status or a network error is [`DataError::Download`], an
///   MD5 other than `md5_hex` is [`DataError::Checksum`]. The archive is extracted into
///   `root/.folder_name.extract`, the expected files and sizes are checked, and only then the
///   folder is renamed to `root/folder_name`. On any failure the temporaries are removed, so
///   `root` holds nothing a loader would accept.
pub fn download_and_extract(
    url: &str,
    md5_hex: &str,
    root: &Path,
    folder_name: &str,
    expected_files: &[(&str, u64)],
) -> Result<PathBuf, DataError> {
    check_folder_name(folder_name)?;
    let target = root.join(folder_name);
    if target.exists() {
        return match check_files(&target, expected_files) {
            Ok(()) => Ok(target),
            Err(e) => Err(DataError::format(
                &target,
                format!("exists but is incomplete ({e}); delete it to download again"),
            )),
        };
    }
    fs::create_dir_all(root).map_err(|e| DataError::io(root, e))?;
    let temp = Temporaries {
        file: root.join(format!(".{folder_name}.download")),
        dir: root.join(format!(".{folder_name}.extract")),
    };
    // A leftover from an interrupted run: start again from nothing.
    temp.remove()?;

    fetch(url, md5_hex, &temp.file)?;
    extract_tar_gz(&temp.file, &temp.dir, folder_name)?;
    let extracted = temp.dir.join(folder_name);
    check_files(&extracted, expected_files)?;
    fs::rename(&extracted, &target).map_err(|e| DataError::io(&target, e))?;
    temp.remove()?;
    Ok(target)
}

/// The temporary file and directory of one download, removed when dropped (on every early
/// return and on panics), so no failure leaves them behind.
struct Temporaries {
    file: PathBuf,
    dir: PathBuf,
}

impl Temporaries {
    fn remove(&self) -> Result<(), DataError> {
        remove_if_present(&self.file, false)?;
        remove_if_present(&self.dir, true)
    }
}

impl Drop for Temporaries {
    fn drop(&mut self) {
        let _ = self.remove();
    }
}

fn remove_if_present(path: &Path, dir: bool) -> Result<(), DataError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(DataError::io(path, e)),
    };
    let result = if dir && meta.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    };
    match result {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(DataError::io(path, e)),
        _ => Ok(()),
    }
}

/// `folder_name` must be one plain path component (no separator, `.` or `..`).
fn check_folder_name(folder_name: &str) -> Result<(), DataError> {
    let mut components = Path::new(folder_name).components();
    match (components.next(), components.next()) {
        (Some(Component::Normal(n)), None) if n == folder_name => Ok(()),
        _ => Err(DataError::Invalid {
            what: "folder name".into(),
            reason: format!("{folder_name:?} is not a single plain path component"),
        }),
    }
}

/// Every `(name, size)` of `expected` is a file of that size under `dir`.
fn check_files(dir: &Path, expected: &[(&str, u64)]) -> Result<(), DataError> {
    if !dir.is_dir() {
        return Err(DataError::Missing {
            path: dir.to_path_buf(),
            hint: String::new(),
        });
    }
    for &(name, size) in expected {
        let path = dir.join(name);
        let meta = fs::metadata(&path).map_err(|e| DataError::io(&path, e))?;
        if !meta.is_file() {
            return Err(DataError::format(&path, "not a regular file"));
        }
        if meta.len() != size {
            return Err(DataError::Size {
                path,
                what: "extracted file".into(),
                expected: size,
                actual: meta.len(),
            });
        }
    }
    Ok(())
}

/// Streams `url` into `dest` (created anew), checking the byte count against `Content-Length`
/// and the MD5 against `md5_hex`.
fn fetch(url: &str, md5_hex: &str, dest: &Path) -> Result<(), DataError> {
    let download_error = |reason: String| DataError::Download {
        url: url.to_string(),
        reason,
    };
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(30))
        .timeout_read(Duration::from_secs(60))
        .build();
    let response = agent.get(url).call().map_err(|e| match e {
        ureq::Error::Status(code, r) => download_error(format!("HTTP {code} {}", r.status_text())),
        ureq::Error::Transport(t) => download_error(t.to_string()),
    })?;
    let length = match response.header("Content-Length") {
        Some(v) => Some(
            v.trim()
                .parse::<u64>()
                .map_err(|_| download_error(format!("bad Content-Length {v:?}")))?,
        ),
        None => None,
    };

    let quiet = !std::io::stderr().is_terminal();
    let bar = if quiet {
        eprintln!(
            "downloading {url} ({}) to {}",
            length.map_or("unknown size".to_string(), |n| format!("{n} bytes")),
            dest.display()
        );
        ProgressBar::hidden()
    } else {
        let bar = match length {
            Some(n) => ProgressBar::new(n),
            None => ProgressBar::new_spinner(),
        };
        let style = ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_message(url.rsplit('/').next().unwrap_or(url).to_string());
        bar
    };

    let file = File::create(dest).map_err(|e| DataError::io(dest, e))?;
    let mut out = BufWriter::new(file);
    let mut reader = response.into_reader();
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut received: u64 = 0;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                bar.abandon();
                return Err(download_error(format!(
                    "connection failed after {received} bytes: {e}"
                )));
            }
        };
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(|e| DataError::io(dest, e))?;
        received += n as u64;
        bar.inc(n as u64);
        if length.is_some_and(|l| received > l) {
            bar.abandon();
            return Err(download_error(format!(
                "body longer than its Content-Length {}",
                length.unwrap_or(0)
            )));
        }
    }
    out.flush().map_err(|e| DataError::io(dest, e))?;
    drop(out);
    if let Some(l) = length {
        if received != l {
            bar.abandon();
            return Err(download_error(format!(
                "cut short: {received} of {l} bytes received"
            )));
        }
    }
    bar.finish_and_clear();
    let actual = hex(&hasher.finalize());
    if !actual.eq_ignore_ascii_case(md5_hex.trim()) {
        return Err(DataError::Checksum {
            url: url.to_string(),
            expected: md5_hex.trim().to_ascii_lowercase(),
            actual,
        });
    }
    if quiet {
        eprintln!("downloaded {received} bytes from {url}, MD5 {actual} ok");
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Extracts the plain files and directories under `folder_name/` of the `.tar.gz` `archive`
/// into `dest` (created anew). Entries elsewhere, links and special files are skipped; a path
/// that is absolute or holds `..` is an error.
fn extract_tar_gz(archive: &Path, dest: &Path, folder_name: &str) -> Result<(), DataError> {
    let corrupt = |e: std::io::Error| DataError::format(archive, format!("bad .tar.gz: {e}"));
    let file = File::open(archive).map_err(|e| DataError::io(archive, e))?;
    fs::create_dir(dest).map_err(|e| DataError::io(dest, e))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    for entry in tar.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        let path = entry.path().map_err(corrupt)?.into_owned();
        let mut parts = Vec::new();
        for component in path.components() {
            match component {
                Component::Normal(p) => parts.push(p.to_owned()),
                Component::CurDir => {}
                _ => {
                    return Err(DataError::format(
                        archive,
                        format!("unsafe path {} in archive", path.display()),
                    ))
                }
            }
        }
        if parts.first().map_or(true, |p| p != folder_name) {
            continue;
        }
        let out: PathBuf = parts.iter().fold(dest.to_path_buf(), |acc, p| acc.join(p));
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            fs::create_dir_all(&out).map_err(|e| DataError::io(&out, e))?;
        } else if kind.is_file() {
            if let Some(parent) = out.parent() {
                fs::create_dir_all(parent).map_err(|e| DataError::io(parent, e))?;
            }
            // Never write through something already there (a directory, a link).
            if fs::symlink_metadata(&out).is_ok() {
                return Err(DataError::format(
                    archive,
                    format!("{} appears twice in archive", path.display()),
                ));
            }
            let mut f = File::create(&out).map_err(|e| DataError::io(&out, e))?;
            std::io::copy(&mut entry, &mut f).map_err(corrupt)?;
        }
        // Links, devices, fifos...: skipped.
    }
    Ok(())
}
