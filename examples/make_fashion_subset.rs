//! Makes the embedded Fashion-MNIST subset (`data/fashion-mnist-subset/`) from the full set:
//! the first 200 training images of each class and the first 100 test images of each class,
//! in file order, written as gzipped IDX files in the original format, byte-for-byte
//! reproducibly (gzip with no file name and modification time 0).
//!
//! It also writes the **extra set** of notebook 04 (`train-extra.npz`): the next
//! 100 training images of each class (file-order ranks 200–299, so none is in the subset),
//! padded to 32×32×3 like the crate loads them, as a deflated `.npz` in the layout of the
//! synthetic DDPM sets (`image` u8 N×32×32×3, `label` u8 N): a stand-in for generated images
//! that exercises the synthetic-data path on the embedded data. Reproducible too (fixed zip
//! timestamps, deterministic deflate).
//!
//! `cargo run --example make_fashion_subset -- /usr/share/datasets/fashion-mnist data/fashion-mnist-subset`
//!
//! (the full set comes with `apt-get install dataset-fashion-mnist`). The subset's
//! `README.md` is written by hand and is not touched.

use std::path::{Path, PathBuf};

use std::io::Write;

use robust_paf::data::fashion_mnist::{
    first_per_class, gzip_reproducible, idx_images_bytes, idx_labels_bytes, pad_image,
    read_idx_images, read_idx_labels, IdxImages, EXTRA_FILE, EXTRA_PER_CLASS, FILES,
    SUBSET_TEST_PER_CLASS, SUBSET_TRAIN_PER_CLASS,
};
use robust_paf::data::DataError;
use robust_paf::data::{IMAGE_BYTES, IMAGE_SIZE};

fn open(dir: &Path, name: &str) -> Result<(std::io::BufReader<std::fs::File>, PathBuf), DataError> {
    let gz = dir.join(format!("{name}.gz"));
    let path = if gz.is_file() { gz } else { dir.join(name) };
    let file = std::fs::File::open(&path).map_err(|e| DataError::io(&path, e))?;
    Ok((std::io::BufReader::new(file), path))
}

fn subset(
    full: &Path,
    out: &Path,
    images: &str,
    labels: &str,
    per_class: usize,
) -> Result<(), DataError> {
    let (r, p) = open(full, images)?;
    let idx = read_idx_images(r, &p)?;
    let (r, p) = open(full, labels)?;
    let lab = read_idx_labels(r, &p)?;
    let keep = first_per_class(&lab, per_class);
    let sub = IdxImages {
        count: keep.len(),
        rows: idx.rows,
        cols: idx.cols,
        pixels: keep
            .iter()
            .flat_map(|&i| idx.image(i).iter().copied())
            .collect(),
    };
    let sub_labels: Vec<u8> = keep.iter().map(|&i| lab[i]).collect();
    for (name, bytes) in [
        (images, idx_images_bytes(&sub)),
        (labels, idx_labels_bytes(&sub_labels)),
    ] {
        let path = out.join(format!("{name}.gz"));
        let gz = gzip_reproducible(&bytes);
        std::fs::write(&path, &gz).map_err(|e| DataError::io(&path, e))?;
        println!(
            "{}: {} bytes ({} uncompressed)",
            path.display(),
            gz.len(),
            bytes.len()
        );
    }
    println!(
        "{images}: {} of {} images, {per_class} per class",
        keep.len(),
        idx.count
    );
    Ok(())
}

/// A `.npy` (version 1.0) of `u8` values with the given shape.
fn npy_u8(shape: &[usize], data: &[u8]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '|u1', 'fortran_order': False, 'shape': {shape}, }}");
    // magic (6) + version (2) + length (2) + header + '\n', padded to a multiple of 64
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

/// The extra set: training images of file-order rank `SUBSET_TRAIN_PER_CLASS ..
/// SUBSET_TRAIN_PER_CLASS + EXTRA_PER_CLASS` in each class, padded, as a deflated `.npz`.
fn extra(full: &Path, out: &Path) -> Result<(), DataError> {
    let (r, p) = open(full, FILES[0])?;
    let idx = read_idx_images(r, &p)?;
    let (r, p) = open(full, FILES[1])?;
    let lab = read_idx_labels(r, &p)?;
    let first = first_per_class(&lab, SUBSET_TRAIN_PER_CLASS);
    let wider = first_per_class(&lab, SUBSET_TRAIN_PER_CLASS + EXTRA_PER_CLASS);
    let keep: Vec<usize> = wider.into_iter().filter(|i| !first.contains(i)).collect();
    let mut pixels = vec![0u8; keep.len() * IMAGE_BYTES];
    for (&i, px) in keep.iter().zip(pixels.chunks_exact_mut(IMAGE_BYTES)) {
        pad_image(idx.image(i), px);
    }
    let labels: Vec<u8> = keep.iter().map(|&i| lab[i]).collect();
    let path = out.join(EXTRA_FILE);
    let io = |e: std::io::Error| DataError::io(&path, e);
    let zerr = |e: zip::result::ZipError| DataError::format(&path, e.to_string());
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .compression_level(Some(9))
        .last_modified_time(zip::DateTime::default())
        .unix_permissions(0o644);
    let image_shape = [keep.len(), IMAGE_SIZE, IMAGE_SIZE, 3];
    for (name, bytes) in [
        ("image.npy", npy_u8(&image_shape, &pixels)),
        ("label.npy", npy_u8(&[keep.len()], &labels)),
    ] {
        zip.start_file(name, options).map_err(zerr)?;
        zip.write_all(&bytes).map_err(io)?;
    }
    let bytes = zip.finish().map_err(zerr)?.into_inner();
    std::fs::write(&path, &bytes).map_err(io)?;
    println!(
        "{}: {} images ({} per class, none in the subset; last full index {}), {} bytes",
        path.display(),
        keep.len(),
        EXTRA_PER_CLASS,
        keep.last().copied().unwrap_or(0),
        bytes.len()
    );
    Ok(())
}

fn main() -> Result<(), DataError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [full, out] = args.as_slice() else {
        eprintln!("usage: make_fashion_subset <full-dir> <out-dir>");
        std::process::exit(2);
    };
    let (full, out) = (Path::new(full), Path::new(out));
    std::fs::create_dir_all(out).map_err(|e| DataError::io(out, e))?;
    subset(full, out, FILES[0], FILES[1], SUBSET_TRAIN_PER_CLASS)?;
    subset(full, out, FILES[2], FILES[3], SUBSET_TEST_PER_CLASS)?;
    extra(full, out)?;
    Ok(())
}
