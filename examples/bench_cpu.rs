//! CPU benchmark (not a test; issue 11): the time of each step a CIFAR ResNet-18 run is made of,
//! with ReLU and with PSSiLU (one shared instance, learnable α and β):
//!
//! - `train32`, `train128`: a training step (forward, backward, SGD) at B=32 and B=128;
//! - `pgd128`: one PGD step at B=128 (forward + input gradient only, batch norm in eval mode,
//!   as every attack computes it);
//! - `at128`: the paper's full PGD-AT step at B=128 ([`train_step`] with
//!   `TrainerConfig::paper(PgdAt)`: the clean train-mode pass, PGD-10 in eval mode, the training
//!   forward + backward, the β penalty and clip, SGD).
//!
//! `RAYON_NUM_THREADS=2 cargo run --release --example bench_cpu -- [--rows train32,pgd128,...]
//! [--act relu|pssilu|all] [--reps 3] [--at-reps 1] [--quick]`
//!
//! Each row prints a human line and a tab-separated `ROW row act median_ms min_ms max_ms` line;
//! the process ends with `PEAK_RSS_MB` (its resident-memory high-water mark, Linux). The paired
//! comparison with PyTorch (`scripts/bench_torch.py`, the same rows) is
//! `scripts/bench_pair.sh`, which runs each row in its own process, alternating the two sides.
//! `ROBUST_PAF_PROFILE=1` adds the milliseconds per step spent in each op.

use std::time::Instant;

use dfdx::prelude::*;
use robust_paf::activations::{Activation, Pssilu, Relu};
use robust_paf::attacks::host_images;
use robust_paf::models::{Classifier, ResNet18};
use robust_paf::ops::profile::scope;
use robust_paf::train::{
    train_step, Sgd, SgdSettings, Start, StepSettings, TrainerConfig, TrainerKind,
};

type Dev = Cpu;
type Images = Tensor<(usize, Const<32>, Const<32>, Const<3>), f32, Dev>;
type OneHot = Tensor<(usize, Const<10>), f32, Dev>;

const ROWS: [&str; 4] = ["train32", "train128", "pgd128", "at128"];

fn images(dev: &Dev, b: usize) -> (Images, OneHot, Vec<usize>) {
    let x: Images = dev.sample_uniform_like(&(b, Const, Const, Const));
    let labels: Vec<usize> = (0..b).map(|i| i % 10).collect();
    let mut y = vec![0.0f32; b * 10];
    for (i, &l) in labels.iter().enumerate() {
        y[i * 10 + l] = 1.0;
    }
    (x, dev.tensor_from_vec(y, (b, Const)), labels)
}

/// (median, min, max) seconds of `reps` calls after one warm-up call.
fn time<F: FnMut()>(reps: usize, mut f: F) -> (f64, f64, f64) {
    f(); // warm-up: allocator, thread pool, caches
    let mut v: Vec<f64> = (0..reps.max(1))
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    v.sort_by(|a, b| a.total_cmp(b));
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

/// With `ROBUST_PAF_PROFILE=1`: milliseconds per step spent in each op (then resets).
fn print_profile(steps: usize) {
    if !robust_paf::ops::profile::enabled() {
        return;
    }
    for (name, secs, calls) in robust_paf::ops::profile::report() {
        println!(
            "    {name:24} {:8.1} ms/step  {:5} calls/step",
            secs * 1e3 / steps as f64,
            calls as usize / steps
        );
    }
    robust_paf::ops::profile::reset();
}

fn report(row: &str, act: &str, b: usize, (med, lo, hi): (f64, f64, f64)) {
    println!(
        "{row:9} {act:7} B={b:<4} {:9.1} ms  {:7.1} img/s  (min {:.1}, max {:.1} ms)",
        med * 1e3,
        b as f64 / med,
        lo * 1e3,
        hi * 1e3
    );
    println!(
        "ROW\t{row}\t{}\t{:.3}\t{:.3}\t{:.3}",
        act.to_lowercase(),
        med * 1e3,
        lo * 1e3,
        hi * 1e3
    );
}

/// lr 1e-3: on random labels lr 0.1 can push PSSiLU's |β| towards 1 within a few steps, which
/// `Sgd::step` reports as an error; the time of a step does not depend on the learning rate.
fn optimizer() -> Sgd<Dev> {
    Sgd::new(SgdSettings {
        lr: 1e-3,
        ..Default::default()
    })
    .unwrap()
}

fn bench_row<A: Activation<Dev>>(dev: &Dev, act: &str, row: &str, reps: usize, at_reps: usize)
where
    ResNet18<A, Dev>: BuildModule<Dev, f32>,
{
    let mut model = ResNet18::<A, Dev>::new(dev);
    let mut opt = optimizer();
    match row {
        "train32" | "train128" | "train8" => {
            let b = row["train".len()..].parse().unwrap();
            let (x, y, _) = images(dev, b);
            let mut grads = model.alloc_grads();
            model.train();
            let t = time(reps, || {
                let logits = {
                    let _t = scope("(step) forward");
                    model.logits_mut(x.clone().traced(grads.clone()))
                };
                let loss = cross_entropy_with_logits_loss(logits, y.clone());
                grads = {
                    let _t = scope("(step) backward");
                    loss.backward()
                };
                let _t = scope("(step) sgd + zero_grads");
                opt.step(&mut model, &mut grads).unwrap();
                model.zero_grads(&mut grads);
            });
            report(row, act, b, t);
            print_profile(reps + 1);
        }
        "pgd128" | "pgd8" => {
            let b = row["pgd".len()..].parse().unwrap();
            let (x, y, _) = images(dev, b);
            model.eval();
            // input gradient only, as an attack computes it (PyTorch: torch.autograd.grad(loss, x))
            let t = time(reps, || {
                robust_paf::ops::without_parameter_gradients(|| {
                    let logits = model.logits(x.clone().leaky_trace());
                    let loss = cross_entropy_with_logits_loss(logits, y.clone());
                    let g = loss.backward();
                    let _ = g.get(&x);
                })
            });
            report(row, act, b, t);
            print_profile(reps + 1);
        }
        "at128" | "at8" => {
            let b = row["at".len()..].parse().unwrap();
            let (x, _, labels) = images(dev, b);
            let x = host_images::<ResNet18<A, Dev>, Dev>(dev, x.as_vec(), b);
            let cfg = TrainerConfig::paper(TrainerKind::PgdAt);
            let settings = StepSettings::default();
            let mut seed = 0;
            let t = time(at_reps, || {
                seed += 1;
                train_step(
                    &cfg,
                    &settings,
                    &mut model,
                    &mut opt,
                    &x,
                    &labels,
                    Start::Seeded(seed),
                )
                .unwrap();
            });
            report(row, act, b, t);
            print_profile(at_reps + 1);
        }
        other => {
            eprintln!("error: unknown row {other:?} (rows: {})", ROWS.join(", "));
            std::process::exit(2);
        }
    }
}

/// The process's resident-memory high-water mark in MiB (`VmHWM`, Linux only).
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let number = |flag: &str, default: usize| match value(flag) {
        None => default,
        Some(v) => v.parse().unwrap_or_else(|_| {
            eprintln!("error: {flag} takes a number, not {v:?}");
            std::process::exit(2)
        }),
    };
    let reps = number("--reps", if quick { 1 } else { 3 });
    let at_reps = number("--at-reps", 1);
    let rows: Vec<String> = match value("--rows") {
        Some(r) => r.split(',').map(str::to_string).collect(),
        None if quick => vec!["train8".into(), "pgd8".into(), "at8".into()],
        None => ROWS.iter().map(|s| s.to_string()).collect(),
    };
    let act = value("--act").unwrap_or_else(|| "all".into());
    if !["all", "relu", "pssilu"].contains(&act.as_str()) {
        eprintln!("error: --act is relu, pssilu or all, not {act:?}");
        std::process::exit(2);
    }
    let dev = Dev::seed_from_u64(0);
    println!(
        "robust-paf CPU benchmark, ResNet-18 (CIFAR), {} rayon threads",
        rayon::current_num_threads()
    );
    for row in &rows {
        if act == "all" || act == "relu" {
            bench_row::<Relu<Dev>>(&dev, "ReLU", row, reps, at_reps);
        }
        if act == "all" || act == "pssilu" {
            bench_row::<Pssilu<Dev>>(&dev, "PSSiLU", row, reps, at_reps);
        }
    }
    if let Some(mb) = peak_rss_mb() {
        println!("PEAK_RSS_MB\t{mb:.0}");
    }
}
