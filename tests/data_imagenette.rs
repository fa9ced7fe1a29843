//! ImageNette (docs/reproduction.md §3.7): torchvision's transforms on PIL images, reproduced
//! byte for byte (golden values from PIL 13.0 / torchvision 0.29, generator below), the
//! `imagenette2` folder reader on a tiny JPEG folder generated here, typed decode errors and the
//! skip policy, and batches of images that are not 32×32.
//!
//! The golden values were printed by this script (the `pattern` is also `pattern` below):
//!
//! ```python
//! import numpy as np; from PIL import Image
//! import torchvision.transforms as T, torchvision.transforms.functional as F
//! def pattern(h, w):
//!     y, x, c = np.meshgrid(np.arange(h), np.arange(w), np.arange(3), indexing="ij")
//!     return ((y * 31 + x * 17 + c * 53 + (x * y) % 7 * 11) % 256).astype(np.uint8)
//! def checksum(a):
//!     a = np.asarray(a).astype(np.int64).ravel()
//!     return int(a.sum()), int((a * (np.arange(a.size) % 1009 + 1)).sum())
//! down = np.asarray(Image.fromarray(pattern(11, 13)).resize((5, 4), Image.BILINEAR))
//! up = np.asarray(Image.fromarray(pattern(3, 4)).resize((7, 5), Image.BILINEAR))
//! t = T.Compose([T.Resize(255), T.CenterCrop(224)])
//! test_a = np.asarray(t(Image.fromarray(pattern(300, 400))))
//! test_b = np.asarray(t(Image.fromarray(pattern(500, 333))))
//! rrc = np.asarray(F.resized_crop(Image.fromarray(pattern(300, 400)), 37, 51, 180, 250, [224, 224],
//!                                 T.InterpolationMode.BILINEAR))
//! sizes = [F.resize(Image.fromarray(pattern(h, w)), 255).size[::-1]
//!          for (h, w) in [(300, 400), (500, 333), (255, 256), (1000, 257)]]
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use dfdx::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;
use robust_paf::data::transforms::{
    center_crop, full, random_resized_crop_params, resize_bilinear, resize_center_crop,
    resize_shorter_side, RawImage, Rect,
};
use robust_paf::data::{
    DataError, ImageNette, ImageNetteConfig, ImageSet, ImageShape, ImageSource, Loader,
    LoaderConfig, OnCorrupt, Split,
};

fn pattern(h: usize, w: usize) -> RawImage {
    let mut v = Vec::with_capacity(h * w * 3);
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                v.push(((y * 31 + x * 17 + c * 53 + (x * y) % 7 * 11) % 256) as u8);
            }
        }
    }
    RawImage::new(h, w, 3, v).unwrap()
}

fn checksum(a: &[u8]) -> (i64, i64) {
    let sum = a.iter().map(|&v| v as i64).sum();
    let weighted = a
        .iter()
        .enumerate()
        .map(|(i, &v)| v as i64 * (i as i64 % 1009 + 1))
        .sum();
    (sum, weighted)
}

fn px(img: &RawImage, y: usize, x: usize) -> [u8; 3] {
    let s = (y * img.width + x) * 3;
    [img.pixels[s], img.pixels[s + 1], img.pixels[s + 2]]
}

#[test]
fn bilinear_resize_is_pils_byte_for_byte() {
    let down = resize_bilinear(&pattern(11, 13), full(&pattern(11, 13)), 4, 5);
    #[rustfmt::skip]
    let want_down: [u8; 60] = [67, 120, 162, 120, 166, 158, 162, 170, 99, 144, 124, 83, 94, 96, 99,
        150, 164, 124, 163, 116, 85, 123, 83, 98, 82, 97, 141, 83, 135, 160, 145, 84, 91, 77, 81,
        132, 66, 115, 152, 114, 163, 191, 153, 177, 121, 98, 110, 146, 115, 163, 171, 150, 197,
        116, 149, 130, 110, 129, 76, 103];
    assert_eq!(down.pixels, want_down);

    let up = resize_bilinear(&pattern(3, 4), full(&pattern(3, 4)), 5, 7);
    #[rustfmt::skip]
    let want_up: [u8; 105] = [0, 53, 106, 6, 59, 112, 16, 69, 122, 26, 79, 132, 35, 88, 141, 45,
        98, 151, 51, 104, 157, 12, 65, 118, 20, 73, 126, 32, 85, 138, 45, 98, 151, 57, 110, 163, 69,
        122, 175, 77, 130, 183, 31, 84, 137, 41, 94, 147, 57, 110, 163, 73, 126, 179, 89, 142, 195,
        105, 158, 211, 115, 168, 221, 50, 103, 156, 62, 115, 168, 82, 135, 188, 102, 155, 208, 121,
        174, 217, 141, 194, 149, 153, 206, 106, 62, 115, 168, 76, 129, 182, 98, 151, 204, 121, 174,
        227, 143, 196, 231, 165, 218, 107, 179, 232, 29];
    assert_eq!(up.pixels, want_up);
}

#[test]
fn test_transform_is_torchvisions_resize_255_center_crop_224() {
    let a = resize_center_crop(&pattern(300, 400), 255, 224).unwrap();
    assert_eq!((a.height, a.width, a.channels), (224, 224, 3));
    assert_eq!(checksum(&a.pixels), (19197048, 9685524676));
    assert_eq!(px(&a, 0, 0), [234, 46, 99]);
    assert_eq!(px(&a, 100, 37), [86, 52, 105]);
    assert_eq!(px(&a, 223, 223), [93, 83, 136]);

    let b = resize_center_crop(&pattern(500, 333), 255, 224).unwrap();
    assert_eq!(checksum(&b.pixels), (19192434, 9681958035));
    assert_eq!(px(&b, 0, 0), [205, 50, 103]);
    assert_eq!(px(&b, 111, 200), [140, 54, 107]);

    // resized_crop(top 37, left 51, 180×250) → 224×224: the training transform's resize
    let r = Rect {
        top: 37,
        left: 51,
        height: 180,
        width: 250,
    };
    let c = resize_bilinear(&pattern(300, 400), r, 224, 224);
    assert_eq!(checksum(&c.pixels), (19193151, 9680258711));
    assert_eq!(px(&c, 5, 9), [26, 79, 132]);
    assert_eq!(px(&c, 200, 100), [216, 111, 66]);
}

#[test]
fn resize_and_crop_sizes_follow_torchvision() {
    // F.resize(img, 255).size, (h, w): the longer side is ⌊255 · long / short⌋
    assert_eq!(resize_shorter_side(300, 400, 255), (255, 340));
    assert_eq!(resize_shorter_side(500, 333, 255), (382, 255));
    assert_eq!(resize_shorter_side(255, 256, 255), (255, 256));
    assert_eq!(resize_shorter_side(1000, 257, 255), (992, 255));
    // CenterCrop: round((H − 224) / 2) with Python's round (half to even): 15.5 → 16, 16.5 → 16
    let r = center_crop(255, 340, 224);
    assert_eq!((r.top, r.left, r.height, r.width), (16, 58, 224, 224));
    assert_eq!(center_crop(257, 224, 224).top, 16);
    assert_eq!(center_crop(259, 224, 224).top, 18); // 17.5 → 18
                                                    // an image too small for the crop is an error, not a panic
    assert!(resize_center_crop(&pattern(10, 10), 8, 9).is_err());
}

#[test]
fn random_resized_crop_draws_within_torchvisions_ranges() {
    let mut rng = StdRng::seed_from_u64(3);
    let (h, w) = (300usize, 400usize);
    let mut fractions = Vec::new();
    for _ in 0..20_000 {
        let r = random_resized_crop_params(h, w, &mut rng);
        assert!(r.height > 0 && r.width > 0);
        assert!(r.top + r.height <= h && r.left + r.width <= w, "{r:?}");
        let area = (r.height * r.width) as f64 / (h * w) as f64;
        // rounding each side to an integer moves the area and ratio a little
        assert!((0.07..=1.0).contains(&area), "area fraction {area}");
        let ratio = r.width as f64 / r.height as f64;
        assert!((0.70..=1.42).contains(&ratio), "aspect ratio {ratio}");
        fractions.push(area);
    }
    // the mean area fraction of the crops of a 300×400 image is not the 0.54 of the uniform draw:
    // large areas at a mismatched aspect ratio do not fit and are drawn again. torchvision's, over
    // 20,000 draws, is 0.4351 ± 0.0015 (standard error):
    //   img = Image.new('RGB', (400, 300)); torch.manual_seed(0)
    //   mean(r[2] * r[3] / 120000 for r in (T.RandomResizedCrop.get_params(img, (0.08, 1.0),
    //        (3 / 4, 4 / 3)) for _ in range(20000)))
    // within 0.01 here (about 6 standard errors of the two means).
    let mean = fractions.iter().sum::<f64>() / fractions.len() as f64;
    assert!((mean - 0.4351).abs() < 0.01, "mean area fraction {mean}");
    // no draw fits a 1000×10 image: torchvision's fallback, the central crop at ratio 3/4
    let r = random_resized_crop_params(1000, 10, &mut rng);
    assert_eq!((r.top, r.left, r.height, r.width), (493, 0, 13, 10));
}

// ---------------------------------------------------------------- the imagenette2 folder

const WNIDS: [&str; 3] = ["n01440764", "n02102040", "n02979186"];

/// Writes `ROOT/{train,val}/<wnid>/<k>.JPEG`: `per_class` images of 40×30 (train) and 30×50 (val)
/// per class, each a flat colour in red that encodes the class (green the index, blue a ramp).
pub fn make_folder(tag: &str, per_class: usize) -> PathBuf {
    let root = std::env::temp_dir().join(format!(
        "robust-paf-imagenette-{tag}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&root);
    for (split, (w, h)) in [("train", (40u32, 30u32)), ("val", (30, 50))] {
        for (k, wnid) in WNIDS.iter().enumerate() {
            let dir = root.join(split).join(wnid);
            std::fs::create_dir_all(&dir).unwrap();
            for i in 0..per_class {
                let img = image::RgbImage::from_fn(w, h, |x, _| {
                    image::Rgb([(k * 100) as u8, (i * 10) as u8, (x * 4) as u8])
                });
                img.save(dir.join(format!("ILSVRC_{i:03}.JPEG"))).unwrap();
            }
        }
    }
    // hidden files and other extensions are not images
    std::fs::write(root.join("train").join(WNIDS[0]).join(".DS_Store"), b"x").unwrap();
    std::fs::write(root.join("train").join(WNIDS[0]).join("notes.txt"), b"x").unwrap();
    root
}

fn small() -> ImageNetteConfig {
    ImageNetteConfig {
        size: 16,
        resize: 18,
        on_corrupt: OnCorrupt::Fail,
    }
}

#[test]
fn reads_the_imagenette2_layout_with_sorted_classes() {
    let root = make_folder("layout", 2);
    let nette = ImageNette::open(&root).unwrap();
    assert_eq!(nette.class_names(), WNIDS);
    let train = nette.split(Split::Train, small()).unwrap();
    let val = nette
        .split(Split::Val, ImageNetteConfig::default())
        .unwrap();
    assert_eq!((train.len(), val.len(), train.classes()), (6, 6, 3));
    assert_eq!(train.shape(), ImageShape::square(16));
    assert_eq!(val.shape(), ImageShape::square(224));
    assert!(train
        .path(0)
        .unwrap()
        .ends_with("n01440764/ILSVRC_000.JPEG"));

    // the test transform of a flat-colour image is that colour (within JPEG's error)
    let mut out = vec![0u8; 16 * 16 * 3];
    let label = train.read(4, &mut out).unwrap();
    assert_eq!(label, 2);
    assert!((out[0] as i32 - 200).abs() <= 4, "red {}", out[0]);

    let mut big = vec![0u8; 224 * 224 * 3];
    assert_eq!(val.read(2, &mut big).unwrap(), 1);
    // a wrong buffer is an error
    assert!(val.read(2, &mut out).is_err());
    assert!(val.read(6, &mut big).is_err());

    // the augmentation is reproducible from its seed and is not the test transform
    let (mut a, mut b, mut s) = (out.clone(), out.clone(), Vec::new());
    train
        .read_augmented(1, &mut a, &mut s, &mut StdRng::seed_from_u64(9))
        .unwrap();
    train
        .read_augmented(1, &mut b, &mut s, &mut StdRng::seed_from_u64(9))
        .unwrap();
    assert_eq!(a, b);

    // the whole validation split in memory
    let set: ImageSet = val.load(Some(4)).unwrap();
    assert_eq!((set.len(), set.shape()), (4, ImageShape::square(224)));
    assert_eq!(set.labels(), &[0, 0, 1, 1]);
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn a_folder_that_is_not_imagenette_is_a_clear_error() {
    let missing = std::env::temp_dir().join("robust-paf-no-such-imagenette");
    assert!(matches!(
        ImageNette::open(&missing),
        Err(DataError::Missing { .. })
    ));
    let root = make_folder("mismatch", 1);
    std::fs::remove_dir_all(root.join("val").join(WNIDS[2])).unwrap();
    let err = ImageNette::open(&root).unwrap_err();
    assert!(matches!(err, DataError::Format { .. }), "{err}");
    assert!(err.to_string().contains("differ"), "{err}");
    std::fs::remove_dir_all(&root).unwrap();

    let root = make_folder("bad-config", 1);
    let nette = ImageNette::open(&root).unwrap();
    let bad = ImageNetteConfig {
        size: 224,
        resize: 200,
        on_corrupt: OnCorrupt::Fail,
    };
    assert!(matches!(
        nette.split(Split::Val, bad),
        Err(DataError::Invalid { .. })
    ));
    std::fs::remove_dir_all(&root).unwrap();
}

fn corrupt(root: &Path) -> PathBuf {
    // a JPEG cut after its first 200 bytes, and a file that is no image at all
    let victim = root.join("val").join(WNIDS[1]).join("ILSVRC_000.JPEG");
    let bytes = std::fs::read(&victim).unwrap();
    std::fs::write(&victim, &bytes[..200]).unwrap();
    std::fs::write(
        root.join("val").join(WNIDS[1]).join("ILSVRC_001.JPEG"),
        b"not a jpeg",
    )
    .unwrap();
    victim
}

#[test]
fn corrupt_jpegs_are_typed_errors_or_skipped_as_configured() {
    let root = make_folder("corrupt", 2);
    let victim = corrupt(&root);
    let nette = ImageNette::open(&root).unwrap();

    let fail = nette.split(Split::Val, small()).unwrap();
    let mut out = vec![0u8; 16 * 16 * 3];
    let err = fail.read(2, &mut out).unwrap_err();
    assert!(
        matches!(&err, DataError::Decode { path, .. } if *path == victim),
        "{err}"
    );
    assert!(matches!(
        fail.read(3, &mut out),
        Err(DataError::Decode { .. })
    ));
    assert!(matches!(fail.load(None), Err(DataError::Decode { .. })));
    assert_eq!(fail.read(4, &mut out).unwrap(), 2);

    let skip = nette
        .split(
            Split::Val,
            ImageNetteConfig {
                on_corrupt: OnCorrupt::Skip,
                ..small()
            },
        )
        .unwrap();
    // images 2 and 3 do not decode: both reads give image 4 (class 2)
    assert_eq!(skip.read(2, &mut out).unwrap(), 2);
    assert_eq!(skip.read(3, &mut out).unwrap(), 2);
    assert_eq!(skip.skipped().len(), 2);
    let set = skip.load(None).unwrap();
    assert_eq!(
        set.labels(),
        &[0, 0, 2, 2],
        "the two corrupt files are left out"
    );
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn batches_carry_their_image_shape() {
    let root = make_folder("loader", 3);
    let nette = ImageNette::open(&root).unwrap();
    let train = Arc::new(nette.split(Split::Train, small()).unwrap());
    let loader = Loader::new(train, LoaderConfig::train(4, 0)).unwrap();
    let batches: Vec<_> = loader.epoch(0).map(|b| b.unwrap()).collect();
    assert_eq!(batches.len(), 3);
    assert_eq!(batches[0].shape, ImageShape::square(16));
    assert_eq!(batches[0].pixels.len(), 4 * 16 * 16 * 3);
    let dev = Cpu::default();
    let x: Tensor<(usize, Const<16>, Const<16>, Const<3>), f32, Cpu> =
        batches[0].images_as(&dev).unwrap();
    assert_eq!(x.shape().0, 4);
    // asking for CIFAR's 32×32 tensor is an error, not a panic
    assert!(batches[0].images(&dev).is_err());
    // the same epoch again: the same crops (seeded by epoch and step, not by timing)
    let again: Vec<_> = loader.epoch(0).map(|b| b.unwrap()).collect();
    assert_eq!(batches, again);
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn image_sets_of_any_shape_check_their_sizes() {
    let shape = ImageShape::new(2, 3, 3);
    let set = ImageSet::with_shape("t", 2, shape, vec![7; 36], vec![0, 1], Path::new("t")).unwrap();
    assert_eq!((set.len(), set.image(1).len()), (2, 18));
    assert_eq!(set.select("s", &[1]).unwrap().shape(), shape);
    assert!(ImageSet::with_shape("t", 2, shape, vec![7; 35], vec![0, 1], Path::new("t")).is_err());
    assert!(ImageSet::with_shape(
        "t",
        2,
        ImageShape::new(0, 3, 3),
        vec![],
        vec![],
        Path::new("t")
    )
    .is_err());
}

/// `imagenette2.tgz` from a server on 127.0.0.1: the MD5 is checked, the folder moved into place
/// and opened; a second call does not download again; a wrong MD5 leaves nothing behind.
#[test]
fn download_checks_the_md5_and_leaves_nothing_on_failure() {
    use crate::data_cifar::{append_file, md5_hex, serve, Reply};
    use robust_paf::data::download_imagenette_from;
    let src = make_folder("archive", 1);
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for split in ["train", "val"] {
        for wnid in WNIDS {
            let file = src.join(split).join(wnid).join("ILSVRC_000.JPEG");
            let bytes = std::fs::read(&file).unwrap();
            append_file(
                &mut tar,
                &format!("imagenette2/{split}/{wnid}/ILSVRC_000.JPEG"),
                &bytes,
            );
        }
    }
    append_file(
        &mut tar,
        "imagenette2/noisy_imagenette.csv",
        b"path,noisy_labels_0\n",
    );
    let archive = tar.into_inner().unwrap().finish().unwrap();
    let server = serve(Reply::Full(archive.clone()));
    let root =
        std::env::temp_dir().join(format!("robust-paf-imagenette-dl-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);

    let wrong = "0".repeat(32);
    let err = download_imagenette_from(&server.url, &wrong, &root).unwrap_err();
    assert!(matches!(err, DataError::Checksum { .. }), "{err}");
    assert_eq!(
        std::fs::read_dir(&root).unwrap().count(),
        0,
        "nothing left behind"
    );

    let dir = download_imagenette_from(&server.url, &md5_hex(&archive), &root).unwrap();
    assert_eq!(dir, root.join("imagenette2"));
    let nette = ImageNette::open(&dir).unwrap();
    assert_eq!(nette.class_names(), WNIDS);
    let before = server.requests();
    download_imagenette_from(&server.url, &md5_hex(&archive), &root).unwrap();
    assert_eq!(
        server.requests(),
        before,
        "already there: no second download"
    );
    std::fs::remove_dir_all(&root).unwrap();
    std::fs::remove_dir_all(&src).unwrap();
}

/// The JPEG decoder (the `image` crate's zune-jpeg) against PIL's (libjpeg-turbo 6.2 in PIL 13),
/// which the official code's `ImageFolder` uses: `tests/fixtures/pil-q90-64x48.jpg` (a gradient
/// with noise, saved by PIL at quality 90, 4:2:0 chroma) and PIL's decoding of it,
/// `pil-q90-64x48.rgb` (HWC bytes):
///
/// ```python
/// rng = np.random.default_rng(7); y, x = np.mgrid[0:48, 0:64]
/// img = np.stack([x * 4, y * 5, (x + y) * 2 + 40], -1) + rng.normal(0, 12, (48, 64, 3))
/// Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save("pil-q90-64x48.jpg", quality=90)
/// open("pil-q90-64x48.rgb", "wb").write(np.asarray(Image.open("pil-q90-64x48.jpg").convert("RGB")).tobytes())
/// ```
#[test]
fn jpeg_decoding_is_within_a_few_levels_of_pils() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let ours = robust_paf::data::decode_image(&dir.join("pil-q90-64x48.jpg")).unwrap();
    let pil = std::fs::read(dir.join("pil-q90-64x48.rgb")).unwrap();
    assert_eq!((ours.height, ours.width, ours.channels), (48, 64, 3));
    assert_eq!(ours.pixels.len(), pil.len());
    let diffs: Vec<i32> = ours
        .pixels
        .iter()
        .zip(&pil)
        .map(|(&a, &b)| (a as i32 - b as i32).abs())
        .collect();
    let max = *diffs.iter().max().unwrap();
    let mean = diffs.iter().sum::<i32>() as f64 / diffs.len() as f64;
    let exact = diffs.iter().filter(|&&d| d == 0).count() as f64 / diffs.len() as f64;
    eprintln!(
        "decoder vs PIL: max |diff| {max}, mean {mean:.3}, exact {:.1} %",
        exact * 100.0
    );
    // measured (zune-jpeg 0.5 in image 0.25): max 4, mean 0.363, 74.4 % exact
    assert!(max <= 6 && mean <= 0.6, "max {max}, mean {mean}");
}
