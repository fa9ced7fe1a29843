//! Makes the embedded Fashion-MNIST subset (`data/fashion-mnist-subset/`) from the full set:
//! the first 200 training images of each class and the first 100 test images of each class,
//! in file order, written as gzipped IDX files in the original format, byte-for-byte
//! reproducibly (gzip with no file name and modification time 0).
//!
//! `cargo run --example make_fashion_subset -- /usr/share/datasets/fashion-mnist data/fashion-mnist-subset`
//!
//! (the full set comes with `apt-get install dataset-fashion-mnist`). The subset's
//! `README.md` is written by hand and is not touched.

use std::path::{Path, PathBuf};

use robust_paf::data::fashion_mnist::{
    first_per_class, gzip_reproducible, idx_images_bytes, idx_labels_bytes, read_idx_images,
    read_idx_labels, IdxImages, FILES, SUBSET_TEST_PER_CLASS, SUBSET_TRAIN_PER_CLASS,
};
use robust_paf::data::DataError;

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
    Ok(())
}
