//! Property tests of every data parser (issue 4, "no panic, no unbounded allocation from a lying
//! header"): random bytes, valid files cut at every length class, and valid files with bytes
//! flipped go to each parser; each must return `Ok` or a `DataError`, never panic, and finish
//! quickly (no reading or allocating what a header merely claims). Seeded, so a failure
//! reproduces; the `cargo fuzz` targets under `fuzz/` explore the same entry points without
//! limits.

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use robust_paf::data::cifar::{read_cifar_file, CifarVariant};
use robust_paf::data::fashion_mnist::{
    gzip_reproducible, idx_images_bytes, idx_labels_bytes, read_idx_images, read_idx_labels,
    IdxImages,
};
use robust_paf::data::npz::read_npy_header;
use robust_paf::data::{decode_png, load_npz, NpzImages, NpzStream, IMAGE_BYTES};

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("robust-paf-fuzz-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Inputs: random bytes of random lengths, every prefix length class of `valid`, and `valid` with
/// random bytes replaced.
fn inputs(valid: &[u8], rng: &mut StdRng) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for _ in 0..20 {
        let n = rng.gen_range(0..2048);
        out.push((0..n).map(|_| rng.gen()).collect());
    }
    let cuts = [0, 1, 2, 3, 4, 7, 8, 15, 16, 17, 31, 64, 100, 1000];
    for &c in &cuts {
        if c < valid.len() {
            out.push(valid[..c].to_vec());
        }
    }
    for _ in 0..20 {
        out.push(valid[..rng.gen_range(0..valid.len().max(1))].to_vec());
    }
    for _ in 0..40 {
        let mut v = valid.to_vec();
        for _ in 0..rng.gen_range(1..8) {
            if !v.is_empty() {
                let i = rng.gen_range(0..v.len().clamp(1, 64));
                v[i] = rng.gen();
            }
        }
        out.push(v);
    }
    out
}

fn within_time(what: &str, f: impl FnOnce()) {
    let t = Instant::now();
    f();
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "{what} took {:?}",
        t.elapsed()
    );
}

#[test]
fn idx_readers_never_panic() {
    let mut rng = StdRng::seed_from_u64(1);
    let images = IdxImages {
        count: 3,
        rows: 28,
        cols: 28,
        pixels: (0..3 * 784).map(|i| i as u8).collect(),
    };
    for valid in [
        idx_images_bytes(&images),
        gzip_reproducible(&idx_images_bytes(&images)),
    ] {
        for input in inputs(&valid, &mut rng) {
            within_time("read_idx_images", || {
                let _ = read_idx_images(Cursor::new(&input), Path::new("fuzz"));
            });
        }
    }
    for valid in [
        idx_labels_bytes(&[1, 2, 3]),
        gzip_reproducible(&idx_labels_bytes(&[1, 2, 3])),
    ] {
        for input in inputs(&valid, &mut rng) {
            within_time("read_idx_labels", || {
                let _ = read_idx_labels(Cursor::new(&input), Path::new("fuzz"));
            });
        }
    }
}

#[test]
fn cifar_reader_never_panics() {
    let mut rng = StdRng::seed_from_u64(2);
    let dir = temp_dir("cifar");
    let path = dir.join("batch.bin");
    let mut valid = Vec::new();
    for i in 0..3u8 {
        valid.push(i);
        valid.extend(std::iter::repeat(i).take(IMAGE_BYTES));
    }
    for input in inputs(&valid, &mut rng) {
        std::fs::write(&path, &input).unwrap();
        for v in [CifarVariant::Cifar10, CifarVariant::Cifar100Fine] {
            within_time("read_cifar_file", || {
                let _ = read_cifar_file(&path, v);
            });
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A valid `.npy` of `n` uint8 images 32×32×3 (or labels when `labels`).
fn npy(n: usize, labels: bool) -> Vec<u8> {
    let (descr, shape, body): (&str, String, Vec<u8>) = if labels {
        (
            "|u1",
            format!("({n},)"),
            (0..n).map(|i| (i % 10) as u8).collect(),
        )
    } else {
        (
            "|u1",
            format!("({n}, 32, 32, 3)"),
            (0..n * IMAGE_BYTES).map(|i| i as u8).collect(),
        )
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut v = b"\x93NUMPY\x01\x00".to_vec();
    v.extend((header.len() as u16).to_le_bytes());
    v.extend(header.as_bytes());
    v.extend(body);
    v
}

fn npz(stored: bool) -> Vec<u8> {
    let mut buf = Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut buf);
        let method = if stored {
            zip::CompressionMethod::Stored
        } else {
            zip::CompressionMethod::Deflated
        };
        let opts = zip::write::SimpleFileOptions::default().compression_method(method);
        z.start_file("image.npy", opts).unwrap();
        z.write_all(&npy(3, false)).unwrap();
        z.start_file("label.npy", opts).unwrap();
        z.write_all(&npy(3, true)).unwrap();
        z.finish().unwrap();
    }
    buf.into_inner()
}

#[test]
fn npy_and_npz_readers_never_panic() {
    let mut rng = StdRng::seed_from_u64(3);
    for valid in [npy(2, false), npy(5, true)] {
        for input in inputs(&valid, &mut rng) {
            within_time("read_npy_header", || {
                let len = input.len() as u64;
                let _ = read_npy_header(&mut Cursor::new(&input), len, Path::new("f"), "m");
            });
        }
    }
    let dir = temp_dir("npz");
    let path = dir.join("data.npz");
    for stored in [true, false] {
        let valid = npz(stored);
        assert!(load_npz(
            &{
                std::fs::write(&path, &valid).unwrap();
                path.clone()
            },
            10
        )
        .is_ok());
        for input in inputs(&valid, &mut rng) {
            std::fs::write(&path, &input).unwrap();
            within_time("npz readers", || {
                let _ = load_npz(&path, 10);
                let _ = NpzImages::open(&path, 10);
                if let Ok(s) = NpzStream::open(&path, 10, 2) {
                    for chunk in s {
                        if chunk.is_err() {
                            break;
                        }
                    }
                }
            });
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn png_decoder_never_panics() {
    let mut rng = StdRng::seed_from_u64(4);
    let mut valid = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut valid, 32, 32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().unwrap();
        w.write_image_data(&vec![7u8; IMAGE_BYTES]).unwrap();
    }
    let dir = temp_dir("png");
    let path = dir.join("img.png");
    let mut out = vec![0u8; IMAGE_BYTES];
    std::fs::write(&path, &valid).unwrap();
    decode_png(&path, &mut out).unwrap();
    assert!(out.iter().all(|&v| v == 7));
    for input in inputs(&valid, &mut rng) {
        std::fs::write(&path, &input).unwrap();
        within_time("decode_png", || {
            let _ = decode_png(&path, &mut out);
        });
    }
    let _ = std::fs::remove_dir_all(&dir);
}
