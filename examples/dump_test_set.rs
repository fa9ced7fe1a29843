//! Writes a test set as `.npy` files for a program outside the crate (a PyTorch reference, e.g.
//! `scripts/torchattacks_autoattack.py`, run by `scripts/bench_autoattack.sh`):
//!
//! - `images.npy`: `u8`, `N × 32 × 32 × 3` (NHWC, as the crate holds them; the models take
//!   `byte / 255`);
//! - `labels.npy`: `u8`, `N`;
//! - with `--checkpoint`, `logits.npy`: `f32`, `N × classes`, the checkpoint's model in
//!   evaluation mode on `byte / 255`, to check another implementation's logits against.
//!
//! ```text
//! cargo run --release --example dump_test_set -- --out DIR [--checkpoint CKPT] [--n N]
//! ```
//!
//! With `--checkpoint` the test set is the checkpoint's (its configuration's data set, the one
//! `robust-paf eval` uses); without it, the embedded Fashion-MNIST subset's 1,000 test images.

use std::path::{Path, PathBuf};

use dfdx::nn::BuildModule;
use dfdx::shapes::ConstDim;
use dfdx::tensor::Cpu;

use robust_paf::attacks::{in_eval_mode, logits_of};
use robust_paf::data::{FashionMnist, ImageSet, CHANNELS, IMAGE_BYTES, IMAGE_SIZE};
use robust_paf::models::Classifier;
use robust_paf::ops::Elem;
use robust_paf::train::assess::checkpoint_test_set;
use robust_paf::train::checkpoint::{read_checkpoint, Checkpoint};
use robust_paf::train::{with_model, WithModel};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// A `.npy` (version 1.0) file: `descr` is numpy's type string (`|u1`, `<f4`).
fn npy(descr: &str, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape = match dims.as_slice() {
        [d] => format!("({d},)"),
        ds => format!("({})", ds.join(", ")),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
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

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    println!("{}: {} bytes", path.display(), bytes.len());
    Ok(())
}

/// The logits of the checkpoint's model on the first `n` images of `set`, in batches.
struct Logits<'a> {
    ckpt: &'a Checkpoint,
    set: &'a ImageSet,
    n: usize,
}

impl WithModel<Cpu> for Logits<'_> {
    type Output = Result<(Vec<f32>, usize)>;
    fn run<M: Classifier<Cpu> + BuildModule<Cpu, Elem>>(self) -> Self::Output {
        let dev = Cpu::default();
        let mut model = M::try_build(&dev).map_err(|e| format!("{e:?}"))?;
        self.ckpt.apply(&mut model, None)?;
        let images: Vec<f32> = self.set.pixels()[..self.n * IMAGE_BYTES]
            .iter()
            .map(|&v| v as f32 / 255.0)
            .collect();
        let mut logits = Vec::with_capacity(self.n * M::Classes::SIZE);
        for chunk in images.chunks(256 * IMAGE_BYTES) {
            let b = chunk.len() / IMAGE_BYTES;
            logits.extend(in_eval_mode(&mut model, |m| logits_of(m, &dev, chunk, b))?);
        }
        Ok((logits, M::Classes::SIZE))
    }
}

fn main() -> Result<()> {
    let mut out: Option<PathBuf> = None;
    let mut checkpoint: Option<PathBuf> = None;
    let mut n: Option<usize> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--out" => out = Some(value()?.into()),
            "--checkpoint" => checkpoint = Some(value()?.into()),
            "--n" => n = Some(value()?.parse()?),
            _ => {
                eprintln!("usage: dump_test_set --out DIR [--checkpoint CKPT] [--n N]");
                std::process::exit(2);
            }
        }
    }
    let Some(out) = out else {
        return Err("--out DIR is required".into());
    };
    // the checkpoint with its configuration, and the test set
    let (model, set) = match &checkpoint {
        Some(p) => {
            let c = read_checkpoint(p)?;
            let (cfg, set) = checkpoint_test_set(&c, p, None)?;
            (Some((c, cfg)), set)
        }
        None => (None, FashionMnist::embedded()?.test),
    };
    let n = n.unwrap_or(set.len()).min(set.len());
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    println!("{}: {n} of {} images", set.name, set.len());
    let labels: Vec<u8> = set.labels()[..n]
        .iter()
        .map(|&l| u8::try_from(l).map_err(|_| format!("label {l} does not fit a u8")))
        .collect::<std::result::Result<_, _>>()?;
    write(
        &out.join("images.npy"),
        &npy(
            "|u1",
            &[n, IMAGE_SIZE, IMAGE_SIZE, CHANNELS],
            &set.pixels()[..n * IMAGE_BYTES],
        ),
    )?;
    write(&out.join("labels.npy"), &npy("|u1", &[n], &labels))?;
    if let Some((c, cfg)) = &model {
        let job = Logits {
            ckpt: c,
            set: &set,
            n,
        };
        let (logits, classes) =
            with_model::<Cpu, _>(cfg.model.arch, cfg.data.dataset.classes(), job)??;
        let bytes: Vec<u8> = logits.iter().flat_map(|v| v.to_le_bytes()).collect();
        write(&out.join("logits.npy"), &npy("<f4", &[n, classes], &bytes))?;
    }
    Ok(())
}
