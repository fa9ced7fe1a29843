//! Attack benchmark (not a test; issue 5): images/s of PGD-10 (the paper's ℓ∞ settings) and of
//! APGD-CE on a CIFAR ResNet-18 (ReLU) at B=128 on the CPU. APGD-CE runs `--apgd-iters`
//! iterations (default 10; AutoAttack uses 100, ten times the time); both do one forward and one
//! input-gradient backward per iteration, no weight gradients.
//!
//! `RAYON_NUM_THREADS=2 cargo run --release --example bench_attacks [-- --batch 128 --apgd-iters 10]`

use std::time::Instant;

use dfdx::prelude::*;
use robust_paf::activations::Relu;
use robust_paf::attacks::{apgd, pgd, ApgdConfig, Norm, PgdConfig};
use robust_paf::models::{Classifier, ResNet18};

fn main() -> Result<(), robust_paf::Error> {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str, default: usize| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .map_or(default, |v| v.parse().expect("a number"))
    };
    let b = value("--batch", 128);
    let iters = value("--apgd-iters", 10);
    let dev = Cpu::seed_from_u64(0);
    let mut model = ResNet18::<Relu<Cpu>, Cpu>::new(&dev);
    let x: Tensor<(usize, Const<32>, Const<32>, Const<3>), f32, Cpu> =
        dev.sample_uniform_like(&(b, Const, Const, Const));
    // labels = the model's own predictions, so APGD attacks every image (it skips misclassified
    // ones)
    let logits = model.logits(x.clone()).as_vec();
    let labels: Vec<usize> = (0..b)
        .map(|i| robust_paf::attacks::argmax(&logits[i * 10..(i + 1) * 10]))
        .collect();
    println!(
        "robust-paf attack benchmark, ResNet-18 ReLU, B={b}, {} rayon threads",
        rayon::current_num_threads()
    );
    let _ = pgd(&mut model, &x, &labels, &{
        let mut c = PgdConfig::paper();
        c.steps = 1;
        c
    })?; // warm-up
    let t = Instant::now();
    pgd(&mut model, &x, &labels, &PgdConfig::paper())?;
    let s = t.elapsed().as_secs_f64();
    println!(
        "PGD-10            {:8.2} s  {:7.1} img/s  ({:.0} ms per iteration)",
        s,
        b as f64 / s,
        s * 100.0
    );
    let mut cfg = ApgdConfig::ce(Norm::Linf, 8.0 / 255.0);
    cfg.n_iter = iters;
    let t = Instant::now();
    let (_, _) = apgd(&mut model, &x, &labels, &cfg)?;
    let s = t.elapsed().as_secs_f64();
    println!(
        "APGD-CE ({iters:3} it) {:8.2} s  {:7.1} img/s  ({:.0} ms per iteration)",
        s,
        b as f64 / s,
        s * 1e3 / iters as f64
    );
    Ok(())
}
