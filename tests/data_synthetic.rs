//! Synthetic-data readers (docs/reproduction.md §3.5): `.npz` archives written here byte by byte
//! (the `.npy` headers by hand, zipped `Stored` and `Deflated` with the `zip` crate) and read back
//! through `NpzImages` (memory-mapped random access), `NpzStream`, `load_npz` and `ConcatSource`;
//! the errors of malformed files (missing key, wrong dtype or shape, bad labels, counts that
//! disagree, truncation, a header that lies); and class-per-folder PNG directories.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use robust_paf::data::{
    load_npz, ConcatSource, DataError, ImageFolder, ImageSource, NpzImages, NpzStream, IMAGE_BYTES,
};
use zip::write::SimpleFileOptions;
use zip::CompressionMethod;

/// A fresh directory for one test.
fn tmp(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("data_synthetic")
        .join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Pixel `k` (HWC byte index) of image `i` in a file seeded `seed`.
fn px(seed: usize, i: usize, k: usize) -> u8 {
    ((seed * 101 + i * 7 + k * 13) % 251) as u8
}

fn pattern(seed: usize, n: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| (0..IMAGE_BYTES).map(move |k| px(seed, i, k)))
        .collect()
}

/// A version 1.0 `.npy` file: magic, header dict padded to a multiple of 64 bytes, data.
fn npy(descr: &str, shape: &[u64], data: &[u8]) -> Vec<u8> {
    let dims = match shape {
        [d] => format!("({d},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {dims}, }}");
    while (10 + dict.len() + 1) % 64 != 0 {
        dict.push(' ');
    }
    dict.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.extend_from_slice(data);
    out
}

fn images_npy(seed: usize, n: usize) -> Vec<u8> {
    npy("|u1", &[n as u64, 32, 32, 3], &pattern(seed, n))
}

fn labels_u8(labels: &[u8]) -> Vec<u8> {
    npy("|u1", &[labels.len() as u64], labels)
}

fn labels_i64(labels: &[i64]) -> Vec<u8> {
    let data: Vec<u8> = labels.iter().flat_map(|l| l.to_le_bytes()).collect();
    npy("<i8", &[labels.len() as u64], &data)
}

/// Zips `members` (name without `.npy`, bytes) into `path`.
fn write_npz(path: &Path, members: &[(&str, Vec<u8>)], method: CompressionMethod) {
    let mut w = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let opts = SimpleFileOptions::default().compression_method(method);
    for (name, bytes) in members {
        w.start_file(format!("{name}.npy"), opts).unwrap();
        w.write_all(bytes).unwrap();
    }
    w.finish().unwrap();
}

const STORED: CompressionMethod = CompressionMethod::Stored;
const DEFLATED: CompressionMethod = CompressionMethod::Deflated;

fn format_reason(e: DataError) -> String {
    match e {
        DataError::Format { reason, .. } => reason,
        e => panic!("expected a Format error, got {e:?}"),
    }
}

#[test]
fn stored_npz_random_access_with_u8_labels() {
    let dir = tmp("stored_u8");
    let path = dir.join("s.npz");
    let labels = [3u8, 1, 4, 1, 5];
    write_npz(
        &path,
        &[("image", images_npy(1, 5)), ("label", labels_u8(&labels))],
        STORED,
    );
    let s = NpzImages::open(&path, 10).unwrap();
    assert_eq!((s.len(), s.classes()), (5, 10));
    assert_eq!(s.labels(), &[3, 1, 4, 1, 5]);
    let mut out = vec![0u8; IMAGE_BYTES];
    for i in [4, 0, 3, 2, 1] {
        let l = s.read(i, &mut out).unwrap();
        assert_eq!(l, labels[i] as u16);
        assert_eq!(out[0], px(1, i, 0), "image {i}, first byte");
        assert_eq!(out[1234], px(1, i, 1234), "image {i}, byte 1234");
        assert_eq!(out, &pattern(1, 5)[i * IMAGE_BYTES..(i + 1) * IMAGE_BYTES]);
    }
    assert_eq!(
        s.image(2).unwrap()[IMAGE_BYTES - 1],
        px(1, 2, IMAGE_BYTES - 1)
    );
    assert!(s.image(5).is_none());
    assert!(s.image(usize::MAX).is_none());
    assert!(s.read(usize::MAX, &mut out).is_err());
    assert!(matches!(
        s.read(5, &mut out),
        Err(DataError::Invalid { .. })
    ));
    // the whole file, through load_npz (stored members are streamed as well)
    let set = load_npz(&path, 10).unwrap();
    assert_eq!(set.pixels(), pattern(1, 5).as_slice());
    assert_eq!(set.labels(), &[3, 1, 4, 1, 5]);
    assert_eq!(s.to_image_set().unwrap().pixels(), set.pixels());
}

#[test]
fn deflated_npz_streams_and_loads_with_i64_labels() {
    let dir = tmp("deflated_i64");
    let path = dir.join("d.npz");
    let labels: Vec<i64> = vec![9, 0, 8, 1, 7, 2, 6];
    write_npz(
        &path,
        &[("image", images_npy(2, 7)), ("label", labels_i64(&labels))],
        DEFLATED,
    );
    // the archive really is compressed (the pattern repeats)
    assert!(std::fs::metadata(&path).unwrap().len() < (7 * IMAGE_BYTES) as u64);
    // no random access into a deflated member
    let reason = format_reason(NpzImages::open(&path, 10).unwrap_err());
    assert!(reason.contains("deflate"), "{reason}");

    let stream = NpzStream::open(&path, 10, 3).unwrap();
    assert_eq!(stream.len(), 7);
    let chunks: Vec<(Vec<u8>, Vec<u16>)> = stream.map(Result::unwrap).collect();
    assert_eq!(
        chunks.iter().map(|c| c.1.len()).collect::<Vec<_>>(),
        vec![3, 3, 1]
    );
    assert_eq!(chunks[1].1, vec![1, 7, 2]);
    assert_eq!(chunks[1].0.len(), 3 * IMAGE_BYTES);
    // image 4 is the second of chunk 1
    assert_eq!(chunks[1].0[IMAGE_BYTES + 100], px(2, 4, 100));
    assert_eq!(chunks[2].0[IMAGE_BYTES - 1], px(2, 6, IMAGE_BYTES - 1));
    let all: Vec<u8> = chunks.iter().flat_map(|c| c.0.clone()).collect();
    assert_eq!(all, pattern(2, 7));

    let set = load_npz(&path, 10).unwrap();
    assert_eq!(set.len(), 7);
    assert_eq!(set.labels(), &[9, 0, 8, 1, 7, 2, 6]);
    assert_eq!(set.image(5)[17], px(2, 5, 17));
    assert_eq!(set.pixels(), pattern(2, 7).as_slice());
}

/// `open_npz_source` (what a run's `data.synthetic` uses) maps a stored file and decompresses
/// a deflated one into memory; both give the same images and labels.
#[test]
fn npz_source_maps_stored_and_loads_deflated() {
    let dir = tmp("source");
    let labels: Vec<u8> = vec![3, 1, 4, 1, 5];
    let members = [("image", images_npy(4, 5)), ("label", labels_u8(&labels))];
    let (stored, deflated) = (dir.join("s.npz"), dir.join("d.npz"));
    write_npz(&stored, &members, STORED);
    write_npz(&deflated, &members, DEFLATED);
    let (a, a_mem) = robust_paf::data::open_npz_source(&stored, 10).unwrap();
    let (b, b_mem) = robust_paf::data::open_npz_source(&deflated, 10).unwrap();
    assert_eq!((a_mem, b_mem), (false, true));
    assert_eq!((a.len(), b.len()), (5, 5));
    let mut x = vec![0u8; IMAGE_BYTES];
    let mut y = vec![0u8; IMAGE_BYTES];
    for (i, &label) in labels.iter().enumerate() {
        assert_eq!(a.read(i, &mut x).unwrap(), label as u16);
        assert_eq!(b.read(i, &mut y).unwrap(), label as u16);
        assert_eq!(x, y, "image {i}");
        assert_eq!(x[7], px(4, i, 7));
    }
    // labels out of range are refused either way
    for p in [&stored, &deflated] {
        assert!(robust_paf::data::open_npz_source(p, 5).is_err());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn label_dtypes_and_cifar5m_keys() {
    let dir = tmp("dtypes");
    let labels = [2i64, 0, 1];
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "<i4",
            labels
                .iter()
                .flat_map(|&l| (l as i32).to_le_bytes())
                .collect(),
        ),
        (
            "<u2",
            labels
                .iter()
                .flat_map(|&l| (l as u16).to_le_bytes())
                .collect(),
        ),
        (
            "<i2",
            labels
                .iter()
                .flat_map(|&l| (l as i16).to_le_bytes())
                .collect(),
        ),
        (
            ">i2",
            labels
                .iter()
                .flat_map(|&l| (l as i16).to_be_bytes())
                .collect(),
        ),
        (
            "<u4",
            labels
                .iter()
                .flat_map(|&l| (l as u32).to_le_bytes())
                .collect(),
        ),
        (
            "<u8",
            labels
                .iter()
                .flat_map(|&l| (l as u64).to_le_bytes())
                .collect(),
        ),
        ("|i1", labels.iter().map(|&l| l as u8).collect()),
    ];
    for (k, (descr, data)) in cases.into_iter().enumerate() {
        let path = dir.join(format!("{k}.npz"));
        let label = npy(descr, &[3], &data);
        // CIFAR-5m's own keys, X and Y, for half of them
        let (ik, lk) = if k % 2 == 0 {
            ("image", "label")
        } else {
            ("X", "Y")
        };
        write_npz(&path, &[(ik, images_npy(3, 3)), (lk, label)], STORED);
        let s = NpzImages::open(&path, 3).unwrap_or_else(|e| panic!("{descr}: {e}"));
        assert_eq!(s.labels(), &[2, 0, 1], "{descr}");
    }
    // a negative label is refused
    let path = dir.join("neg.npz");
    write_npz(
        &path,
        &[("image", images_npy(3, 2)), ("label", labels_i64(&[0, -1]))],
        STORED,
    );
    let reason = format_reason(NpzImages::open(&path, 10).unwrap_err());
    assert!(reason.contains("-1"), "{reason}");
    // float labels are refused
    let path = dir.join("float.npz");
    write_npz(
        &path,
        &[
            ("image", images_npy(3, 1)),
            ("label", npy("<f4", &[1], &1f32.to_le_bytes())),
        ],
        STORED,
    );
    let reason = format_reason(load_npz(&path, 10).unwrap_err());
    assert!(reason.contains("<f4"), "{reason}");
}

#[test]
fn missing_file_and_missing_key() {
    let dir = tmp("missing");
    assert!(matches!(
        NpzImages::open(dir.join("nope.npz"), 10),
        Err(DataError::Missing { .. })
    ));
    assert!(matches!(
        load_npz(dir.join("nope.npz"), 10),
        Err(DataError::Missing { .. })
    ));
    let path = dir.join("nolabel.npz");
    write_npz(&path, &[("image", images_npy(0, 2))], STORED);
    for e in [
        NpzImages::open(&path, 10).unwrap_err(),
        load_npz(&path, 10).unwrap_err(),
    ] {
        let reason = format_reason(e);
        assert!(reason.contains("`label`"), "{reason}");
        assert!(reason.contains("keys found: image"), "{reason}");
    }
}

#[test]
fn wrong_image_dtype_and_shapes() {
    let dir = tmp("dtype_shape");
    let lab = labels_u8(&[0, 1]);
    // float32 images
    let path = dir.join("f32.npz");
    let floats = vec![0u8; 2 * IMAGE_BYTES * 4];
    write_npz(
        &path,
        &[
            ("image", npy("<f4", &[2, 32, 32, 3], &floats)),
            ("label", lab.clone()),
        ],
        STORED,
    );
    let reason = format_reason(NpzImages::open(&path, 10).unwrap_err());
    assert!(
        reason.contains("'<f4'") && reason.contains("uint8"),
        "{reason}"
    );
    // channels first
    let path = dir.join("chw.npz");
    write_npz(
        &path,
        &[
            ("image", npy("|u1", &[2, 3, 32, 32], &pattern(0, 2))),
            ("label", lab.clone()),
        ],
        DEFLATED,
    );
    let reason = format_reason(load_npz(&path, 10).unwrap_err());
    assert!(reason.contains("(2, 3, 32, 32)"), "{reason}");
    assert!(reason.contains("(N, 32, 32, 3)"), "{reason}");
    // 28×28 grey (Fashion-MNIST-like)
    let path = dir.join("28.npz");
    write_npz(
        &path,
        &[
            ("image", npy("|u1", &[2, 28, 28], &vec![7u8; 2 * 28 * 28])),
            ("label", lab.clone()),
        ],
        STORED,
    );
    let reason = format_reason(NpzImages::open(&path, 10).unwrap_err());
    assert!(reason.contains("(2, 28, 28)"), "{reason}");
    // fortran order
    let path = dir.join("fortran.npz");
    let mut img = images_npy(0, 2);
    let at = img.windows(5).position(|w| w == b"False").unwrap();
    img[at..at + 5].copy_from_slice(b"True ");
    write_npz(&path, &[("image", img), ("label", lab)], STORED);
    let reason = format_reason(NpzImages::open(&path, 10).unwrap_err());
    assert!(reason.contains("fortran"), "{reason}");
}

#[test]
fn label_out_of_range() {
    let dir = tmp("label_range");
    for (method, name) in [(STORED, "s.npz"), (DEFLATED, "d.npz")] {
        let path = dir.join(name);
        write_npz(
            &path,
            &[
                ("image", images_npy(0, 3)),
                ("label", labels_i64(&[9, 10, 0])),
            ],
            method,
        );
        let e = load_npz(&path, 10).unwrap_err();
        assert!(
            matches!(
                e,
                DataError::LabelOutOfRange {
                    index: 1,
                    label: 10,
                    classes: 10,
                    ..
                }
            ),
            "{e:?}"
        );
        // with 11 classes the same file is fine
        assert_eq!(load_npz(&path, 11).unwrap().labels(), &[9, 10, 0]);
    }
    let path = dir.join("s.npz");
    assert!(matches!(
        NpzImages::open(&path, 10),
        Err(DataError::LabelOutOfRange { .. })
    ));
    assert!(matches!(
        NpzImages::open(&path, 0),
        Err(DataError::Invalid { .. })
    ));
}

#[test]
fn image_and_label_counts_differ() {
    let dir = tmp("count");
    for (method, name) in [(STORED, "s.npz"), (DEFLATED, "d.npz")] {
        let path = dir.join(name);
        write_npz(
            &path,
            &[
                ("image", images_npy(0, 5)),
                ("label", labels_u8(&[0, 1, 2, 3])),
            ],
            method,
        );
        let e = load_npz(&path, 10).unwrap_err();
        assert!(
            matches!(
                e,
                DataError::CountMismatch {
                    images: 5,
                    labels: 4,
                    ..
                }
            ),
            "{e:?}"
        );
        if method == STORED {
            assert!(matches!(
                NpzImages::open(&path, 10),
                Err(DataError::CountMismatch {
                    images: 5,
                    labels: 4,
                    ..
                })
            ));
        }
    }
}

#[test]
fn truncated_files_are_errors() {
    let dir = tmp("truncated");
    for (method, name) in [(STORED, "s.npz"), (DEFLATED, "d.npz")] {
        let path = dir.join(name);
        write_npz(
            &path,
            &[
                ("image", images_npy(4, 4)),
                ("label", labels_u8(&[0, 1, 2, 3])),
            ],
            method,
        );
        let full = std::fs::read(&path).unwrap();
        let cut_path = dir.join(format!("cut-{name}"));
        for cut in [0, 10, 100, full.len() / 2, full.len() - 30, full.len() - 1] {
            std::fs::write(&cut_path, &full[..cut]).unwrap();
            assert!(load_npz(&cut_path, 10).is_err(), "{name} cut at {cut}");
            assert!(
                NpzImages::open(&cut_path, 10).is_err(),
                "{name} cut at {cut}"
            );
            assert!(
                NpzStream::open(&cut_path, 10, 2).is_err(),
                "{name} cut at {cut}"
            );
        }
    }
    // a member whose data is shorter than its header says, inside a valid archive
    let path = dir.join("short.npz");
    let mut img = images_npy(4, 4);
    img.truncate(img.len() - 100);
    write_npz(
        &path,
        &[("image", img), ("label", labels_u8(&[0, 1, 2, 3]))],
        DEFLATED,
    );
    assert!(matches!(load_npz(&path, 10), Err(DataError::Size { .. })));
    // a corrupt byte in a stored member's image data: the CRC-32 check of load_npz finds it
    let path = dir.join("crc.npz");
    write_npz(
        &path,
        &[("label", labels_u8(&[0])), ("image", images_npy(5, 1))],
        STORED,
    );
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() - 200 - IMAGE_BYTES / 2;
    bytes[at] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let reason = format_reason(load_npz(&path, 10).unwrap_err());
    assert!(reason.contains("CRC"), "{reason}");
}

#[test]
fn header_claiming_a_billion_images_fails_fast() {
    let dir = tmp("billion");
    // the header says 10⁹ images (3 TB) but the member holds two
    let mut img = npy("|u1", &[1_000_000_000, 32, 32, 3], &[]);
    img.extend_from_slice(&pattern(0, 2));
    let mut lab = npy("|u1", &[1_000_000_000], &[]);
    lab.extend_from_slice(&[0, 1]);
    for (method, name) in [(STORED, "s.npz"), (DEFLATED, "d.npz")] {
        let path = dir.join(name);
        write_npz(
            &path,
            &[("image", img.clone()), ("label", lab.clone())],
            method,
        );
        let t = Instant::now();
        let e = load_npz(&path, 10).unwrap_err();
        assert!(matches!(e, DataError::Size { .. }), "{e:?}");
        let e = NpzStream::open(&path, 10, 1000).unwrap_err();
        assert!(matches!(e, DataError::Size { .. }), "{e:?}");
        if method == STORED {
            let e = NpzImages::open(&path, 10).unwrap_err();
            assert!(matches!(e, DataError::Size { .. }), "{e:?}");
        }
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    }
    // a shape whose product overflows u64
    let path = dir.join("overflow.npz");
    let img = npy("|u1", &[u64::MAX / 2, 32, 32, 3], &[]);
    write_npz(&path, &[("image", img), ("label", labels_u8(&[]))], STORED);
    assert!(matches!(
        NpzImages::open(&path, 10),
        Err(DataError::Format { .. })
    ));
    // a header length beyond the cap
    let path = dir.join("huge_header.npz");
    let mut bad = b"\x93NUMPY\x02\x00".to_vec();
    bad.extend_from_slice(&u32::MAX.to_le_bytes());
    bad.extend_from_slice(b"{'descr'");
    write_npz(
        &path,
        &[("image", bad), ("label", labels_u8(&[0]))],
        DEFLATED,
    );
    assert!(matches!(load_npz(&path, 10), Err(DataError::Format { .. })));
    // not an .npy at all
    let path = dir.join("magic.npz");
    write_npz(
        &path,
        &[
            ("image", b"PK not numpy at all".to_vec()),
            ("label", labels_u8(&[0])),
        ],
        STORED,
    );
    assert!(matches!(
        NpzImages::open(&path, 10),
        Err(DataError::BadMagic { .. })
    ));
}

#[test]
fn concat_source_reads_across_the_boundary() {
    let dir = tmp("concat");
    let (a, b) = (dir.join("part0.npz"), dir.join("part1.npz"));
    write_npz(
        &a,
        &[
            ("image", images_npy(10, 3)),
            ("label", labels_u8(&[0, 1, 2])),
        ],
        STORED,
    );
    write_npz(
        &b,
        &[
            ("image", images_npy(20, 4)),
            ("label", labels_i64(&[7, 6, 5, 4])),
        ],
        STORED,
    );
    let c = ConcatSource::open_npz(&[&a, &b], 10).unwrap();
    assert_eq!((c.len(), c.classes(), c.parts()), (7, 10, 2));
    let mut out = vec![0u8; IMAGE_BYTES];
    assert_eq!(c.read(2, &mut out).unwrap(), 2);
    assert_eq!(out, &pattern(10, 3)[2 * IMAGE_BYTES..]);
    assert_eq!(c.read(3, &mut out).unwrap(), 7);
    assert_eq!(out, &pattern(20, 4)[..IMAGE_BYTES]);
    assert_eq!(c.read(6, &mut out).unwrap(), 4);
    assert_eq!(out[5], px(20, 3, 5));
    assert_eq!(c.locate(3), Some((1, 0)));
    assert!(c.read(7, &mut out).is_err());
    assert!(c.read(usize::MAX, &mut out).is_err());
    // mixed sources, an empty part in the middle, and a class-count mismatch
    let empty = dir.join("empty.npz");
    write_npz(
        &empty,
        &[("image", images_npy(0, 0)), ("label", labels_u8(&[]))],
        STORED,
    );
    let c = ConcatSource::new(vec![
        Box::new(load_npz(&a, 10).unwrap()),
        Box::new(NpzImages::open(&empty, 10).unwrap()),
        Box::new(NpzImages::open(&b, 10).unwrap()),
    ])
    .unwrap();
    assert_eq!(c.locate(3), Some((2, 0)));
    assert_eq!(c.read(3, &mut out).unwrap(), 7);
    assert!(ConcatSource::new(vec![
        Box::new(NpzImages::open(&a, 10).unwrap()),
        Box::new(NpzImages::open(&b, 8).unwrap()),
    ])
    .is_err());
    assert!(ConcatSource::new(vec![]).is_err());
}

/// Writes a PNG of `size`×`size` with `channels` (1 grey, 3 RGB, 4 RGBA) 8-bit samples.
fn write_png(path: &Path, size: u32, channels: usize, data: &[u8]) {
    let file = std::fs::File::create(path).unwrap();
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), size, size);
    enc.set_color(match channels {
        1 => png::ColorType::Grayscale,
        3 => png::ColorType::Rgb,
        _ => png::ColorType::Rgba,
    });
    enc.set_depth(png::BitDepth::Eight);
    enc.write_header().unwrap().write_image_data(data).unwrap();
}

#[test]
fn image_folder_round_trip() {
    let root = tmp("folder");
    for class in ["cat", "dog"] {
        std::fs::create_dir(root.join(class)).unwrap();
    }
    std::fs::write(root.join("README.txt"), "not a class").unwrap();
    // cat: two RGB images and one RGBA, listed out of order on purpose
    let rgb = |seed: usize| pattern(seed, 1);
    write_png(&root.join("cat/b.png"), 32, 3, &rgb(31));
    write_png(&root.join("cat/a.png"), 32, 3, &rgb(30));
    let rgba: Vec<u8> = rgb(32)
        .chunks(3)
        .flat_map(|p| [p[0], p[1], p[2], 99])
        .collect();
    write_png(&root.join("cat/c.PNG"), 32, 4, &rgba);
    std::fs::write(root.join("cat/notes.txt"), "ignored").unwrap();
    std::fs::write(root.join("cat/€€"), "ignored, non-ASCII name").unwrap();
    // dog: one grey image
    let grey: Vec<u8> = (0..32 * 32).map(|k| (k % 256) as u8).collect();
    write_png(&root.join("dog/0001.png"), 32, 1, &grey);

    let f = ImageFolder::open(&root).unwrap();
    assert_eq!(f.class_names(), &["cat", "dog"]);
    assert_eq!((f.len(), f.classes()), (4, 2));
    assert!(f.path(0).unwrap().ends_with("cat/a.png"));
    let mut out = vec![0u8; IMAGE_BYTES];
    assert_eq!(f.read(0, &mut out).unwrap(), 0);
    assert_eq!(out, rgb(30));
    assert_eq!(f.read(1, &mut out).unwrap(), 0);
    assert_eq!(out, rgb(31));
    assert_eq!(f.read(2, &mut out).unwrap(), 0);
    assert_eq!(out, rgb(32), "RGBA loses its alpha");
    assert_eq!(f.read(3, &mut out).unwrap(), 1);
    assert_eq!(
        &out[3 * 40..3 * 40 + 3],
        &[40, 40, 40],
        "grey copied to 3 channels"
    );
    assert!(f.read(4, &mut out).is_err());

    let set = f.load_all().unwrap();
    assert_eq!(set.labels(), &[0, 0, 0, 1]);
    assert_eq!(set.image(1), rgb(31).as_slice());
    assert_eq!(set.image(3)[3 * 255 + 2], 255);
    assert_eq!(set.classes, 2);

    // numeric class names sort numerically: 2 before 10
    let root = tmp("folder_numeric");
    for class in ["10", "2"] {
        std::fs::create_dir(root.join(class)).unwrap();
        write_png(&root.join(class).join("x.png"), 32, 1, &grey);
    }
    let f = ImageFolder::open(&root).unwrap();
    assert_eq!(f.class_names(), &["2", "10"]);
    assert!(f.path(1).unwrap().starts_with(root.join("10")));
    assert_eq!(f.label(1), Some(1));
}

#[test]
fn image_folder_errors() {
    // a 28×28 image: Format naming the file (when read, since decoding is lazy)
    let root = tmp("folder_28");
    std::fs::create_dir(root.join("0")).unwrap();
    write_png(&root.join("0/small.png"), 28, 3, &vec![1u8; 28 * 28 * 3]);
    let f = ImageFolder::open(&root).unwrap();
    let mut out = vec![0u8; IMAGE_BYTES];
    let e = f.read(0, &mut out).unwrap_err();
    let shown = e.to_string();
    assert!(
        shown.contains("small.png") && shown.contains("28×28"),
        "{shown}"
    );
    assert!(matches!(e, DataError::Format { .. }));
    assert!(matches!(f.load_all(), Err(DataError::Format { .. })));
    // a 16-bit image and a file that is not a PNG
    let root = tmp("folder_16bit");
    std::fs::create_dir(root.join("a")).unwrap();
    {
        let file = std::fs::File::create(root.join("a/deep.png")).unwrap();
        let mut enc = png::Encoder::new(file, 32, 32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Sixteen);
        enc.write_header()
            .unwrap()
            .write_image_data(&vec![0u8; 32 * 32 * 6])
            .unwrap();
    }
    std::fs::write(root.join("a/fake.png"), b"not a png").unwrap();
    let f = ImageFolder::open(&root).unwrap();
    for i in 0..2 {
        let e = f.read(i, &mut out).unwrap_err();
        assert!(matches!(e, DataError::Format { .. }), "{e:?}");
    }
    // an empty root, a class folder without images, a missing root
    let root = tmp("folder_empty");
    assert!(matches!(
        ImageFolder::open(&root),
        Err(DataError::Format { .. })
    ));
    std::fs::create_dir(root.join("cls")).unwrap();
    assert!(matches!(
        ImageFolder::open(&root),
        Err(DataError::Format { .. })
    ));
    assert!(matches!(
        ImageFolder::open(root.join("nope")),
        Err(DataError::Missing { .. })
    ));
}
