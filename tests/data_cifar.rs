//! CIFAR-10/100 readers and the torchvision-style download (`robust_paf::data::{cifar,
//! download}`, docs/reproduction.md §3.1), on small generated files: no real dataset and no
//! internet.
//!
//! * Round trip: generated binary batches (3 records per file, a known pixel formula, CHW as in
//!   the official files) load with the right labels and with each pixel at its HWC position.
//! * Errors: missing folder or file, truncated file, label out of range → the right variants.
//! * Download: an HTTP/1.1 server on 127.0.0.1 started by the test serves a generated `.tar.gz`;
//!   a good archive lands in place once (a second call makes no request); a wrong MD5, a body cut
//!   short, a 404 and a path-traversal entry fail with nothing left in `root`.

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use md5::{Digest, Md5};
use robust_paf::data::{
    download_and_extract, load_cifar10, load_cifar100, load_cifar100_coarse, DataError, IMAGE_BYTES,
};

const RECORDS: usize = 3;
const C10_RECORD: usize = 3073;
const C100_RECORD: usize = 3074;
const C10_FOLDER: &str = "cifar-10-batches-bin";
const C100_FOLDER: &str = "cifar-100-binary";
const C10_FILES: [&str; 6] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
    "test_batch.bin",
];

/// A fresh, empty directory removed at the end of the test.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "robust-paf-data-cifar-{}-{name}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Pixel of generated image `img` at channel `c`, row `y`, column `x`: distinct enough that a
/// channel/row/column mix-up changes the value.
fn pix(img: usize, c: usize, y: usize, x: usize) -> u8 {
    ((img * 11 + c * 85 + y * 5 + x * 7) % 256) as u8
}

/// The 3072 pixel bytes of image `img` in the official CHW order.
fn chw(img: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(IMAGE_BYTES);
    for c in 0..3 {
        for y in 0..32 {
            for x in 0..32 {
                v.push(pix(img, c, y, x));
            }
        }
    }
    v
}

fn c10_label(img: usize) -> u8 {
    (img % 10) as u8
}
fn c100_coarse(img: usize) -> u8 {
    (img % 20) as u8
}
fn c100_fine(img: usize) -> u8 {
    ((img * 7 + 3) % 100) as u8
}

/// A CIFAR-10 file of `RECORDS` records, images `first..first + RECORDS`.
fn c10_file(first: usize) -> Vec<u8> {
    let mut v = Vec::new();
    for img in first..first + RECORDS {
        v.push(c10_label(img));
        v.extend(chw(img));
    }
    v
}

/// A CIFAR-100 file of `n` records, images `first..first + n`.
fn c100_file(first: usize, n: usize) -> Vec<u8> {
    let mut v = Vec::new();
    for img in first..first + n {
        v.push(c100_coarse(img));
        v.push(c100_fine(img));
        v.extend(chw(img));
    }
    v
}

/// The six CIFAR-10 files: train batch `b` holds images `3b..3b + 3`, the test batch 100..103.
fn c10_files() -> Vec<(&'static str, Vec<u8>)> {
    C10_FILES
        .iter()
        .enumerate()
        .map(|(b, &name)| {
            let first = if b < 5 { b * RECORDS } else { 100 };
            (name, c10_file(first))
        })
        .collect()
}

fn write_c10(dir: &Path) -> PathBuf {
    let folder = dir.join(C10_FOLDER);
    fs::create_dir_all(&folder).unwrap();
    for (name, bytes) in c10_files() {
        fs::write(folder.join(name), bytes).unwrap();
    }
    folder
}

fn write_c100(dir: &Path) -> PathBuf {
    let folder = dir.join(C100_FOLDER);
    fs::create_dir_all(&folder).unwrap();
    fs::write(folder.join("train.bin"), c100_file(0, 4)).unwrap();
    fs::write(folder.join("test.bin"), c100_file(200, 2)).unwrap();
    folder
}

/// Value of HWC image `image` of `set` at (y, x, c).
fn at(set: &robust_paf::data::ImageSet, image: usize, y: usize, x: usize, c: usize) -> u8 {
    set.image(image)[(y * 32 + x) * 3 + c]
}

/// Every pixel of `set` image `i` is the generated image `img`, in HWC order.
fn assert_image(set: &robust_paf::data::ImageSet, i: usize, img: usize) {
    let hwc = set.image(i);
    for y in 0..32 {
        for x in 0..32 {
            for c in 0..3 {
                assert_eq!(
                    hwc[(y * 32 + x) * 3 + c],
                    pix(img, c, y, x),
                    "image {i} (generated {img}) at y={y} x={x} c={c}"
                );
            }
        }
    }
}

#[test]
fn cifar10_round_trip_chw_to_hwc() {
    let tmp = TempDir::new("c10-round-trip");
    let folder = write_c10(&tmp.0);
    // The parent and the folder itself both work.
    for dir in [&tmp.0, &folder] {
        let data = load_cifar10(dir).unwrap();
        assert_eq!(data.train.len(), 5 * RECORDS);
        assert_eq!(data.test.len(), RECORDS);
        assert_eq!(data.train.classes, 10);
        assert_eq!(data.test.classes, 10);
        assert_eq!(data.train.name, "CIFAR-10 train");
        assert_eq!(data.test.name, "CIFAR-10 test");
        // Known values at known positions (computed by hand from `pix`):
        // train image 4 = batch 2, record 1: 4·11 + 1·85 + 2·5 + 3·7 = 160.
        assert_eq!(at(&data.train, 4, 2, 3, 1), 160);
        // train image 0, (0, 0): R 0, G 85, B 170; (0, 1): R 7.
        assert_eq!(at(&data.train, 0, 0, 0, 0), 0);
        assert_eq!(at(&data.train, 0, 0, 0, 1), 85);
        assert_eq!(at(&data.train, 0, 0, 0, 2), 170);
        assert_eq!(at(&data.train, 0, 0, 1, 0), 7);
        // row 1 of train image 0, red: 5.
        assert_eq!(at(&data.train, 0, 1, 0, 0), 5);
        // test image 2 = generated 102: (1122 + 170 + 155 + 217) mod 256 = 128.
        assert_eq!(at(&data.test, 2, 31, 31, 2), 128);
        // Labels: generated image k has label k mod 10.
        let train_labels: Vec<u16> = (0..15).map(|k| (k % 10) as u16).collect();
        assert_eq!(data.train.labels(), &train_labels[..]);
        assert_eq!(data.test.labels(), &[0, 1, 2]);
        for i in 0..data.train.len() {
            assert_image(&data.train, i, i);
        }
        for i in 0..data.test.len() {
            assert_image(&data.test, i, 100 + i);
        }
    }
}

#[test]
fn cifar100_round_trip_fine_and_coarse() {
    let tmp = TempDir::new("c100-round-trip");
    let folder = write_c100(&tmp.0);
    let fine = load_cifar100(&tmp.0).unwrap();
    assert_eq!(fine.train.classes, 100);
    assert_eq!(fine.train.len(), 4);
    assert_eq!(fine.test.len(), 2);
    // fine label of image k: (7k + 3) mod 100.
    assert_eq!(fine.train.labels(), &[3, 10, 17, 24]);
    assert_eq!(fine.test.labels(), &[3, 10]); // images 200, 201: 1403 → 3, 1410 → 10
                                              // train image 3, y 10, x 20, green: 33 + 85 + 50 + 140 = 308 → 52.
    assert_eq!(at(&fine.train, 3, 10, 20, 1), 52);
    // test image 1 = generated 201, (0, 0) blue: 2211 + 170 = 2381 → 77.
    assert_eq!(at(&fine.test, 1, 0, 0, 2), 77);
    for i in 0..4 {
        assert_image(&fine.train, i, i);
    }
    for i in 0..2 {
        assert_image(&fine.test, i, 200 + i);
    }
    let coarse = load_cifar100_coarse(&folder).unwrap();
    assert_eq!(coarse.train.classes, 20);
    assert_eq!(coarse.train.labels(), &[0, 1, 2, 3]);
    assert_eq!(coarse.test.labels(), &[0, 1]); // 200 mod 20, 201 mod 20
    assert_eq!(coarse.train.pixels(), fine.train.pixels());
}

#[test]
fn missing_folder_and_file() {
    let tmp = TempDir::new("missing");
    let nowhere = tmp.0.join("nowhere");
    match load_cifar10(&nowhere) {
        Err(DataError::Missing { path, hint }) => {
            assert_eq!(path, nowhere);
            assert!(hint.contains("download_cifar10"), "{hint}");
            assert!(hint.contains(C10_FOLDER), "{hint}");
        }
        other => panic!("expected Missing, got {other:?}"),
    }
    // An existing directory without the folder.
    match load_cifar10(&tmp.0) {
        Err(DataError::Missing { path, hint }) => {
            assert_eq!(path, tmp.0.join(C10_FOLDER));
            assert!(hint.contains("download_cifar10"), "{hint}");
        }
        other => panic!("expected Missing, got {other:?}"),
    }
    match load_cifar100(&tmp.0) {
        Err(DataError::Missing { path, hint }) => {
            assert_eq!(path, tmp.0.join(C100_FOLDER));
            assert!(hint.contains("download_cifar100"), "{hint}");
        }
        other => panic!("expected Missing, got {other:?}"),
    }
    // The folder without one of its batches.
    let folder = write_c10(&tmp.0);
    fs::remove_file(folder.join("data_batch_5.bin")).unwrap();
    match load_cifar10(&tmp.0) {
        Err(DataError::Missing { path, .. }) => {
            assert_eq!(path, folder.join("data_batch_5.bin"))
        }
        other => panic!("expected Missing, got {other:?}"),
    }
}

#[test]
fn truncated_and_empty_files_are_size_errors() {
    let tmp = TempDir::new("truncated");
    let folder = write_c10(&tmp.0);
    let batch = folder.join("data_batch_3.bin");
    let short = RECORDS * C10_RECORD - 5;
    fs::write(&batch, &c10_file(6)[..short]).unwrap();
    match load_cifar10(&folder) {
        Err(DataError::Size {
            path,
            expected,
            actual,
            ..
        }) => {
            assert_eq!(path, batch);
            assert_eq!(actual, short as u64);
            assert_eq!(expected, ((RECORDS - 1) * C10_RECORD) as u64);
        }
        other => panic!("expected Size, got {other:?}"),
    }
    fs::write(&batch, b"").unwrap();
    match load_cifar10(&folder) {
        Err(DataError::Size { path, actual, .. }) => {
            assert_eq!(path, batch);
            assert_eq!(actual, 0);
        }
        other => panic!("expected Size, got {other:?}"),
    }
    // A CIFAR-10 record length is not a CIFAR-100 one.
    let c100 = write_c100(&tmp.0);
    fs::write(c100.join("test.bin"), c10_file(0)).unwrap();
    assert!(matches!(
        load_cifar100(&tmp.0),
        Err(DataError::Size { actual, .. }) if actual == (RECORDS * C10_RECORD) as u64
    ));
    assert_ne!((RECORDS * C10_RECORD) % C100_RECORD, 0);
}

#[test]
fn label_out_of_range() {
    let tmp = TempDir::new("labels");
    let folder = write_c10(&tmp.0);
    let test = folder.join("test_batch.bin");
    let mut bytes = c10_file(100);
    bytes[C10_RECORD] = 10; // label of record 1
    fs::write(&test, bytes).unwrap();
    match load_cifar10(&folder) {
        Err(DataError::LabelOutOfRange {
            path,
            index,
            label,
            classes,
        }) => {
            assert_eq!(path, test);
            assert_eq!((index, label, classes), (1, 10, 10));
        }
        other => panic!("expected LabelOutOfRange, got {other:?}"),
    }
    // CIFAR-100: fine label 100 (byte 1), coarse label 20 (byte 0), each caught by its reader.
    let c100 = write_c100(&tmp.0);
    let train = c100.join("train.bin");
    let mut bytes = c100_file(0, 4);
    bytes[2 * C100_RECORD + 1] = 100;
    fs::write(&train, &bytes).unwrap();
    assert!(matches!(
        load_cifar100(&tmp.0),
        Err(DataError::LabelOutOfRange {
            index: 2,
            label: 100,
            classes: 100,
            ..
        })
    ));
    assert!(load_cifar100_coarse(&tmp.0).is_ok());
    let mut bytes = c100_file(0, 4);
    bytes[3 * C100_RECORD] = 20;
    fs::write(&train, &bytes).unwrap();
    assert!(matches!(
        load_cifar100_coarse(&tmp.0),
        Err(DataError::LabelOutOfRange {
            index: 3,
            label: 20,
            classes: 20,
            ..
        })
    ));
    assert!(load_cifar100(&tmp.0).is_ok());
}

// ---------------------------------------------------------------------------------------------
// Download
// ---------------------------------------------------------------------------------------------

/// What the test server answers.
#[derive(Clone)]
pub enum Reply {
    /// 200 with the whole body.
    Full(Vec<u8>),
    /// 200 announcing the whole body's Content-Length, then half the body and a closed connection.
    CutShort(Vec<u8>),
    /// 404.
    NotFound,
}

/// A one-file HTTP/1.1 server on 127.0.0.1 that counts the requests it answers.
pub struct Server {
    pub url: String,
    requests: Arc<AtomicUsize>,
}

pub fn serve(reply: Reply) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                match stream.read(&mut byte) {
                    Ok(1) => head.push(byte[0]),
                    _ => break,
                }
            }
            counter.fetch_add(1, Ordering::SeqCst);
            let _ = match &reply {
                Reply::Full(body) => stream
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/gzip\r\n\
                             Content-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .and_then(|_| stream.write_all(body)),
                Reply::CutShort(body) => stream
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/gzip\r\n\
                             Content-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .and_then(|_| stream.write_all(&body[..body.len() / 2])),
                Reply::NotFound => stream.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found",
                ),
            };
            let _ = stream.flush();
            let _ = stream.shutdown(Shutdown::Both);
        }
    });
    Server {
        url: format!("http://{addr}/cifar-10-binary.tar.gz"),
        requests,
    }
}

impl Server {
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// A `.tar.gz` holding `cifar-10-batches-bin/` with the six generated batches, a readme, and a
/// file outside the folder (which extraction skips).
fn c10_archive() -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_size(0);
    dir.set_mode(0o755);
    dir.set_cksum();
    tar.append_data(&mut dir, format!("{C10_FOLDER}/"), std::io::empty())
        .unwrap();
    let mut files = c10_files();
    files.push(("readme.html", b"<html>CIFAR-10</html>".to_vec()));
    for (name, bytes) in files {
        append_file(&mut tar, &format!("{C10_FOLDER}/{name}"), &bytes);
    }
    append_file(&mut tar, "elsewhere/ignored.txt", b"not part of the folder");
    tar.into_inner().unwrap().finish().unwrap()
}

pub fn append_file<W: Write>(tar: &mut tar::Builder<W>, path: &str, bytes: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.set_size(bytes.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    tar.append_data(&mut h, path, bytes).unwrap();
}

pub fn md5_hex(bytes: &[u8]) -> String {
    Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn expected_files() -> Vec<(&'static str, u64)> {
    C10_FILES
        .iter()
        .map(|&n| (n, (RECORDS * C10_RECORD) as u64))
        .collect()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn download_good_archive_once() {
    let archive = c10_archive();
    let md5 = md5_hex(&archive);
    let server = serve(Reply::Full(archive));
    let tmp = TempDir::new("dl-good");
    let root = tmp.0.join("data");
    // Leftovers of an interrupted earlier run: removed and redone.
    fs::create_dir_all(root.join(format!(".{C10_FOLDER}.extract/{C10_FOLDER}"))).unwrap();
    fs::write(
        root.join(format!(
            ".{C10_FOLDER}.extract/{C10_FOLDER}/data_batch_1.bin"
        )),
        b"partial",
    )
    .unwrap();
    fs::write(
        root.join(format!(".{C10_FOLDER}.download")),
        b"half an archive",
    )
    .unwrap();

    let files = expected_files();
    let folder = download_and_extract(&server.url, &md5, &root, C10_FOLDER, &files).unwrap();
    assert_eq!(folder, root.join(C10_FOLDER));
    assert_eq!(server.requests(), 1);
    // Only the folder: no temporaries, nothing from outside the folder.
    assert_eq!(entries(&root), vec![C10_FOLDER.to_string()]);
    let mut names: Vec<String> = C10_FILES.iter().map(|s| s.to_string()).collect();
    names.push("readme.html".into());
    names.sort();
    assert_eq!(entries(&folder), names);

    let data = load_cifar10(&root).unwrap();
    assert_eq!(data.train.len(), 15);
    assert_eq!(at(&data.train, 4, 2, 3, 1), 160);
    assert_eq!(data.test.labels(), &[0, 1, 2]);

    // Already there: no second request (upper-case MD5 accepted too).
    let again =
        download_and_extract(&server.url, &md5.to_uppercase(), &root, C10_FOLDER, &files).unwrap();
    assert_eq!(again, folder);
    assert_eq!(server.requests(), 1);

    // A folder that is there but incomplete is reported, not downloaded over or deleted.
    fs::remove_file(folder.join("test_batch.bin")).unwrap();
    match download_and_extract(&server.url, &md5, &root, C10_FOLDER, &files) {
        Err(DataError::Format { path, reason }) => {
            assert_eq!(path, folder);
            assert!(reason.contains("incomplete"), "{reason}");
        }
        other => panic!("expected Format, got {other:?}"),
    }
    assert_eq!(server.requests(), 1);
    assert!(folder.join("data_batch_1.bin").is_file());
}

#[test]
fn download_wrong_md5_leaves_nothing() {
    let archive = c10_archive();
    let good = md5_hex(&archive);
    let wrong = md5_hex(b"something else");
    assert_ne!(good, wrong);
    let server = serve(Reply::Full(archive));
    let tmp = TempDir::new("dl-md5");
    let root = tmp.0.join("data");
    match download_and_extract(&server.url, &wrong, &root, C10_FOLDER, &expected_files()) {
        Err(DataError::Checksum {
            url,
            expected,
            actual,
        }) => {
            assert_eq!(url, server.url);
            assert_eq!(expected, wrong);
            assert_eq!(actual, good);
        }
        other => panic!("expected Checksum, got {other:?}"),
    }
    assert_eq!(server.requests(), 1);
    assert_eq!(entries(&root), Vec::<String>::new());
    assert!(load_cifar10(&root).is_err());
}

#[test]
fn download_cut_short_leaves_nothing() {
    let archive = c10_archive();
    let md5 = md5_hex(&archive);
    let server = serve(Reply::CutShort(archive));
    let tmp = TempDir::new("dl-cut");
    let root = tmp.0.join("data");
    match download_and_extract(&server.url, &md5, &root, C10_FOLDER, &expected_files()) {
        Err(DataError::Download { url, .. }) => assert_eq!(url, server.url),
        other => panic!("expected Download, got {other:?}"),
    }
    assert_eq!(server.requests(), 1);
    assert_eq!(entries(&root), Vec::<String>::new());
    assert!(load_cifar10(&root).is_err());
}

#[test]
fn download_404_is_a_download_error() {
    let server = serve(Reply::NotFound);
    let tmp = TempDir::new("dl-404");
    let root = tmp.0.join("data");
    match download_and_extract(
        &server.url,
        &"0".repeat(32),
        &root,
        C10_FOLDER,
        &expected_files(),
    ) {
        Err(DataError::Download { url, reason }) => {
            assert_eq!(url, server.url);
            assert!(reason.contains("404"), "{reason}");
        }
        other => panic!("expected Download, got {other:?}"),
    }
    assert_eq!(server.requests(), 1);
    assert_eq!(entries(&root), Vec::<String>::new());
}

#[test]
fn download_refuses_path_traversal() {
    // An archive whose member climbs out of the folder (written with a raw header name, which the
    // tar builder would refuse), with the right MD5: extraction fails, nothing is written.
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for (name, bytes) in c10_files() {
        append_file(&mut tar, &format!("{C10_FOLDER}/{name}"), &bytes);
    }
    let evil = format!("{C10_FOLDER}/../../evil.txt");
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..evil.len()].copy_from_slice(evil.as_bytes());
    h.set_size(4);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    tar.append(&h, &b"evil"[..]).unwrap();
    let archive = tar.into_inner().unwrap().finish().unwrap();
    let md5 = md5_hex(&archive);
    let server = serve(Reply::Full(archive));
    let tmp = TempDir::new("dl-traversal");
    let root = tmp.0.join("data");
    match download_and_extract(&server.url, &md5, &root, C10_FOLDER, &expected_files()) {
        Err(DataError::Format { reason, .. }) => assert!(reason.contains("unsafe"), "{reason}"),
        other => panic!("expected Format, got {other:?}"),
    }
    assert_eq!(entries(&root), Vec::<String>::new());
    assert_eq!(entries(&tmp.0), vec!["data".to_string()]);
    assert!(!tmp.0.join("evil.txt").exists());
}

#[test]
fn download_rejects_bad_folder_names() {
    let tmp = TempDir::new("dl-names");
    for name in ["", "..", "a/b", "/abs", "."] {
        assert!(
            matches!(
                download_and_extract("http://127.0.0.1:9/x", "", &tmp.0, name, &[]),
                Err(DataError::Invalid { .. })
            ),
            "{name:?}"
        );
    }
}
