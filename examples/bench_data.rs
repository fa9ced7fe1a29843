//! Data-loading benchmark (not a test; issue 4): batches/s and images/s of the training loader
//! (shuffle + crop/flip augmentation + conversion to `[0, 1]` floats, on its background thread)
//! and of the mixed real + synthetic loader at the paper's 256 + 256, from in-memory sets of
//! CIFAR-10 size (50,000 real, 100,000 synthetic generated images), plus the copy into a dfdx CPU
//! tensor. Loading must never be the bottleneck of a GPU training step (≈ 20–60 ms at B=512).
//!
//! `cargo run --release --example bench_data`
//!
//! `cargo run --release --example bench_data -- --imagenette DIR` also times ImageNette's
//! training loader on the `imagenette2` folder `DIR` (JPEG decoding, `RandomResizedCrop(224)` +
//! flip, the images of a batch read in parallel on rayon's threads) and its test transform.

use std::sync::Arc;
use std::time::Instant;

use dfdx::prelude::*;
use robust_paf::data::{ImageSet, Loader, LoaderConfig, MixedConfig, MixedLoader, IMAGE_BYTES};

fn generated(n: usize, name: &str) -> ImageSet {
    let pixels: Vec<u8> = (0..n * IMAGE_BYTES).map(|i| (i * 31 % 251) as u8).collect();
    let labels = (0..n).map(|i| (i % 10) as u16).collect();
    ImageSet::new(name, 10, pixels, labels, name.as_ref()).unwrap()
}

/// Images/s of ImageNette's loaders at B=32 over one pass of `dir`'s training split (at most 8
/// batches) and the validation split's in-memory decoding.
fn imagenette(dir: &str) {
    use robust_paf::data::{ImageNette, ImageNetteConfig, Split};
    let nette = ImageNette::open(dir).unwrap_or_else(|e| {
        eprintln!("bench_data: {e}");
        std::process::exit(1)
    });
    let train = Arc::new(
        nette
            .split(Split::Train, ImageNetteConfig::default())
            .unwrap(),
    );
    let loader = Loader::new(train, LoaderConfig::train(32, 0)).unwrap();
    let t = Instant::now();
    let mut n = 0;
    for b in loader.epoch(0).take(8) {
        n += b.unwrap().len();
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "imagenette train B=32:    {:7.1} batches/s {:8.1} img/s ({} threads)",
        n as f64 / 32.0 / s,
        n as f64 / s,
        rayon::current_num_threads()
    );
    let val = nette
        .split(Split::Val, ImageNetteConfig::default())
        .unwrap();
    let t = Instant::now();
    let set = val.load(Some(256)).unwrap();
    let s = t.elapsed().as_secs_f64();
    println!(
        "imagenette val load:                        {:8.1} img/s",
        set.len() as f64 / s
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--imagenette") {
        match args.get(i + 1) {
            Some(dir) => imagenette(dir),
            None => {
                eprintln!("bench_data: --imagenette needs the imagenette2 folder");
                std::process::exit(2)
            }
        }
    }
    let real = Arc::new(generated(50_000, "real"));
    let syn = Arc::new(generated(100_000, "synthetic"));
    let dev = Cpu::default();
    let steps = 60;

    let loader = Loader::new(real.clone(), LoaderConfig::train(256, 0)).unwrap();
    let t = Instant::now();
    let mut n = 0;
    for b in loader.epoch(0).take(steps) {
        let b = b.unwrap();
        n += b.len();
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "train loader  B=256:      {:7.1} batches/s {:8.0} img/s",
        steps as f64 / s,
        n as f64 / s
    );

    let mixed = MixedLoader::new(real, syn, MixedConfig::one_to_one(256, 0)).unwrap();
    let t = Instant::now();
    let mut n = 0;
    for b in mixed.epoch(0).take(steps) {
        let b = b.unwrap();
        n += b.len();
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "mixed loader  B=256+256:  {:7.1} batches/s {:8.0} img/s",
        steps as f64 / s,
        n as f64 / s
    );

    let t = Instant::now();
    let mut n = 0;
    for b in mixed.epoch(1).take(steps) {
        let b = b.unwrap();
        let x = b.images(&dev).unwrap();
        let y = b.one_hot::<10, _>(&dev).unwrap();
        assert_eq!(x.shape().0, y.shape().0);
        n += x.shape().0;
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "mixed loader + tensors:   {:7.1} batches/s {:8.0} img/s",
        steps as f64 / s,
        n as f64 / s
    );
}
