//! CPU benchmark (not a test): images/s of a CIFAR ResNet-18 training step (forward, backward,
//! SGD) at B=32 and B=128, and of one PGD step (forward + input gradient, batch norm in eval
//! mode) at B=128, with ReLU and with PSSiLU.
//!
//! `RAYON_NUM_THREADS=2 cargo run --release --example bench_cpu [-- --quick] [--batch 32,128]
//! [--reps 3] [--act relu|pssilu]`
//! Run `OMP_NUM_THREADS=2 python3 scripts/bench_torch_cpu.py` (the same measurements in PyTorch)
//! right after, on the same machine.

use std::time::Instant;

use dfdx::prelude::*;
use robust_paf::activations::{Activation, Pssilu, Relu};
use robust_paf::models::{Classifier, ResNet18};
use robust_paf::ops::profile::scope;
use robust_paf::train::{Sgd, SgdSettings};

type Dev = Cpu;
type Images = Tensor<(usize, Const<32>, Const<32>, Const<3>), f32, Dev>;

fn images(dev: &Dev, b: usize) -> (Images, Tensor<(usize, Const<10>), f32, Dev>) {
    let x: Images = dev.sample_uniform_like(&(b, Const, Const, Const));
    let mut y = vec![0.0f32; b * 10];
    for i in 0..b {
        y[i * 10 + i % 10] = 1.0;
    }
    (x, dev.tensor_from_vec(y, (b, Const)))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn time<F: FnMut()>(reps: usize, mut f: F) -> f64 {
    f(); // warm-up
    median(
        (0..reps)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .collect(),
    )
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

fn bench<A: Activation<Dev>>(dev: &Dev, name: &str, batches: &[usize], reps: usize)
where
    ResNet18<A, Dev>: BuildModule<Dev, f32>,
{
    let mut model = ResNet18::<A, Dev>::new(dev);
    // lr 1e-3: without the paper's β penalty and clipping (a later issue) lr 0.1 on random labels
    // pushes PSSiLU's |β| past 1 in one step, which `step` reports as an error.
    let mut opt = Sgd::new(SgdSettings {
        lr: 1e-3,
        ..Default::default()
    })
    .unwrap();
    let mut grads = model.alloc_grads();
    for &b in batches {
        let (x, y) = images(dev, b);
        model.train();
        let s = time(reps, || {
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
        println!(
            "train step   {name:7} B={b:<4} {:8.1} ms  {:7.1} img/s",
            s * 1e3,
            b as f64 / s
        );
        print_profile(reps + 1);
    }
    let b = *batches.last().unwrap();
    let (x, y) = images(dev, b);
    model.eval();
    // input gradient only, as an attack computes it (PyTorch: torch.autograd.grad(loss, x))
    let s = time(reps, || {
        robust_paf::ops::without_parameter_gradients(|| {
            let logits = model.logits(x.clone().leaky_trace());
            let loss = cross_entropy_with_logits_loss(logits, y.clone());
            let g = loss.backward();
            let _ = g.get(&x);
        })
    });
    println!(
        "PGD step     {name:7} B={b:<4} {:8.1} ms  {:7.1} img/s",
        s * 1e3,
        b as f64 / s
    );
    print_profile(reps + 1);
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
    let dev = Dev::seed_from_u64(0);
    println!(
        "robust-paf CPU benchmark, {} rayon threads",
        rayon::current_num_threads()
    );
    let (mut batches, mut reps): (Vec<usize>, usize) = if quick {
        (vec![8], 1)
    } else {
        (vec![32, 128], 3)
    };
    if let Some(b) = value("--batch") {
        batches = b
            .split(',')
            .map(|s| s.parse().expect("--batch 32,128"))
            .collect();
    }
    if let Some(r) = value("--reps") {
        reps = r.parse().expect("--reps N");
    }
    let act = value("--act").unwrap_or_else(|| "all".into());
    if act == "all" || act == "relu" {
        bench::<Relu<Dev>>(&dev, "ReLU", &batches, reps);
    }
    if act == "all" || act == "pssilu" {
        bench::<Pssilu<Dev>>(&dev, "PSSiLU", &batches, reps);
    }
}
