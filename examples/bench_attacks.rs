//! Attack benchmark (not a test; issues 5 and 11): seconds, images/s and milliseconds per
//! iteration (per query for Square) of PGD-10 (the paper's ℓ∞ settings), APGD-CE, FAB-T (one
//! target class) and Square on random images, on the CIFAR ResNet-18 (ReLU) or on the quick
//! presets' small CNN (`--model small`, PSSiLU: the model of `scripts/bench_autoattack.sh`),
//! with the process's CPU seconds per wall second (how many of the threads were busy).
//! APGD-CE and FAB-T run `--iters` iterations (default 10; AutoAttack runs 100), Square
//! `--queries` queries (default 100; AutoAttack: 5,000). Labels are the model's own predictions,
//! so every image is attacked.
//!
//! `RAYON_NUM_THREADS=2 cargo run --release --example bench_attacks [-- --model resnet18|small
//!  --batch 128 --iters 10 --queries 100 --attacks pgd,apgd,fab,square]`

use std::time::Instant;

use dfdx::prelude::*;
use robust_paf::activations::{Pssilu, Relu};
use robust_paf::attacks::{
    apgd, argmax, fab_targeted, pgd, square, ApgdConfig, FabConfig, Norm, PgdConfig, SquareConfig,
};
use robust_paf::models::{Classifier, ResNet18, SmallCnn};
use robust_paf::progress::process_cpu_seconds;

type Images = Tensor<(usize, Const<32>, Const<32>, Const<3>), f32, Cpu>;

fn run<M>(
    mut model: M,
    dev: &Cpu,
    b: usize,
    iters: usize,
    queries: usize,
    attacks: &[String],
) -> Result<(), robust_paf::Error>
where
    M: Classifier<Cpu, Height = Const<32>, Width = Const<32>, Channels = Const<3>>,
{
    let x: Images = dev.sample_uniform_like(&(b, Const, Const, Const));
    let k = <<M as Classifier<Cpu>>::Classes as dfdx::shapes::ConstDim>::SIZE;
    model.eval();
    let logits = robust_paf::attacks::logits_of(&model, dev, &x.as_vec(), b)?;
    let labels: Vec<usize> = (0..b)
        .map(|i| argmax(&logits[i * k..(i + 1) * k]))
        .collect();
    println!(
        "robust-paf attack benchmark, {}, B={b}, {} rayon threads",
        model.architecture(),
        rayon::current_num_threads()
    );
    let eps = 8.0 / 255.0;
    let report = |name: &str, per: &str, n: usize, t: Instant, c0: Option<f64>| {
        let s = t.elapsed().as_secs_f64();
        let cores = c0
            .zip(process_cpu_seconds())
            .map_or(String::from("?"), |(a, c)| format!("{:.2}", (c - a) / s));
        println!(
            "{name:18} {s:8.2} s  {:7.1} img/s  {:7.1} ms per {per}  cores {cores}",
            b as f64 / s,
            s * 1e3 / n.max(1) as f64
        );
    };
    for a in attacks {
        match a.as_str() {
            "pgd" => {
                let mut warm = PgdConfig::paper();
                warm.steps = 1;
                pgd(&mut model, &x, &labels, &warm)?;
                let (t, c0) = (Instant::now(), process_cpu_seconds());
                pgd(&mut model, &x, &labels, &PgdConfig::paper())?;
                report("PGD-10", "iteration", 10, t, c0);
            }
            "apgd" => {
                let mut cfg = ApgdConfig::ce(Norm::Linf, eps);
                cfg.n_iter = iters;
                let (t, c0) = (Instant::now(), process_cpu_seconds());
                apgd(&mut model, &x, &labels, &cfg)?;
                report(&format!("APGD-CE ({iters} it)"), "iteration", iters, t, c0);
            }
            "fab" => {
                let mut cfg = FabConfig::targeted(Norm::Linf, eps);
                cfg.n_iter = iters;
                cfg.n_target_classes = 1;
                let (t, c0) = (Instant::now(), process_cpu_seconds());
                fab_targeted(&mut model, &x, &labels, &cfg)?;
                report(
                    &format!("FAB-T ({iters} it, 1 target)"),
                    "iteration",
                    iters,
                    t,
                    c0,
                );
            }
            "square" => {
                let mut cfg = SquareConfig::autoattack(eps);
                cfg.n_queries = queries;
                let (t, c0) = (Instant::now(), process_cpu_seconds());
                square(&mut model, &x, &labels, &cfg)?;
                report(&format!("Square ({queries} q)"), "query", queries, t, c0);
            }
            other => {
                eprintln!("bench_attacks: unknown attack {other} (pgd, apgd, fab, square)");
                std::process::exit(2);
            }
        }
    }
    Ok(())
}

fn main() -> Result<(), robust_paf::Error> {
    let args: Vec<String> = std::env::args().collect();
    let text = |flag: &str, default: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .map_or(default.to_string(), |v| v.clone())
    };
    let number = |flag: &str, default: usize| {
        let v = text(flag, &default.to_string());
        v.parse().unwrap_or_else(|_| {
            eprintln!("bench_attacks: {flag} expects a number, got {v}");
            std::process::exit(2)
        })
    };
    let (b, iters, queries) = (
        number("--batch", 128),
        number("--iters", 10),
        number("--queries", 100),
    );
    let attacks: Vec<String> = text("--attacks", "pgd,apgd,fab,square")
        .split(',')
        .map(String::from)
        .collect();
    let dev = Cpu::seed_from_u64(0);
    match text("--model", "resnet18").as_str() {
        "resnet18" => run(
            ResNet18::<Relu<Cpu>, Cpu>::new(&dev),
            &dev,
            b,
            iters,
            queries,
            &attacks,
        ),
        "small" => run(
            SmallCnn::<Pssilu<Cpu>, Cpu>::new(&dev),
            &dev,
            b,
            iters,
            queries,
            &attacks,
        ),
        other => {
            eprintln!("bench_attacks: unknown model {other} (resnet18, small)");
            std::process::exit(2)
        }
    }
}
