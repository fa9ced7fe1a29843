//! GPU benchmark (not a test; issue 3): ResNet-18 (CIFAR) training step at B=128 and B=512, one
//! PGD step (forward + input gradient, batch norm in eval mode) at B=128, a full PGD-10
//! adversarial-training step (10 attack steps + 1 training step, ε = 8/255, step 2/255) at B=128 with ReLU and with PSSiLU, a WRN-28-10
//! training step at B=128, and the peak GPU memory in use (sampled after every step; includes
//! dfdx's allocation cache). Median of `--reps` (default 10) after 3 warm-ups, synchronised.
//!
//! With a CUDA toolkit: `cargo run --release --features cuda --example bench_gpu`
//! (`-- --reps N`, `-- --small` for tiny batches). Without one (README.md, "CUDA"):
//! `source <(bash scripts/cuda-toolkit.sh)`,
//! `cargo build --release --features cuda --example bench_gpu`, pack with
//! `bash scripts/cuda-pack.sh .gpu target/release/examples/bench_gpu`, and on the GPU machine
//! `source .gpu/cuda-env.sh && bench_gpu`, in the same command as the PyTorch reference of the
//! same rows, `python3 scripts/bench_torch.py --device cuda` (fp32, TF32 off; it needs PyTorch
//! with CUDA on that machine).

use std::time::Instant;

use dfdx::prelude::*;
use robust_paf::activations::{Activation, Pssilu, Relu};
use robust_paf::models::{Classifier, ResNet18, WideResNet28x10};
use robust_paf::train::{Sgd, SgdSettings};

type Dev = Cuda;
type Images = Tensor<(usize, Const<32>, Const<32>, Const<3>), f32, Dev>;
type Labels = Tensor<(usize, Const<10>), f32, Dev>;

struct Memory {
    peak: usize,
}

impl Memory {
    fn sample(&mut self) {
        if let Ok((free, total)) = cudarc::driver::result::mem_get_info() {
            self.peak = self.peak.max(total - free);
        }
    }
}

fn data(dev: &Dev, b: usize) -> (Images, Labels) {
    let x: Images = dev.sample_uniform_like(&(b, Const, Const, Const));
    let mut y = vec![0.0f32; b * 10];
    for i in 0..b {
        y[i * 10 + (i * 7) % 10] = 1.0;
    }
    (x, dev.tensor_from_vec(y, (b, Const)))
}

fn median_ms(dev: &Dev, reps: usize, mem: &mut Memory, mut f: impl FnMut()) -> f64 {
    for _ in 0..3 {
        f();
    }
    dev.synchronize();
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            dev.synchronize();
            let ms = s.elapsed().as_secs_f64() * 1e3;
            mem.sample();
            ms
        })
        .collect();
    t.sort_by(|a, b| a.partial_cmp(b).unwrap());
    t[t.len() / 2]
}

fn report(what: &str, b: usize, ms: f64) {
    println!(
        "RESULT {what:58} B={b:4} median {ms:9.3} ms {:10.0} img/s",
        b as f64 * 1e3 / ms
    );
}

/// sign(g) ∈ {−1, 0, 1} from dfdx comparisons.
fn sign(g: Images) -> Images {
    let dev = g.device().clone();
    let ones: Images = dev.ones_like(g.shape());
    let zeros: Images = dev.zeros_like(g.shape());
    let pos = g.gt(0.0).choose(ones.clone(), zeros.clone());
    let neg = g.lt(0.0).choose(ones, zeros);
    pos - neg
}

/// PGD-10 ℓ∞ as in the PyTorch reference: uniform start, 10 sign steps, projection onto the ε-ball
/// and [0, 1] after each, model in eval mode.
fn pgd<
    M: Classifier<
        Dev,
        Height = Const<32>,
        Width = Const<32>,
        Channels = Const<3>,
        Classes = Const<10>,
    >,
>(
    m: &M,
    x: &Images,
    y: &Labels,
) -> Images {
    let (eps, step) = (8.0f32 / 255.0, 2.0f32 / 255.0);
    let dev = x.device().clone();
    let start: Images = dev.sample_uniform_like(x.shape());
    let mut adv = (x.clone() + (start * (2.0 * eps) - eps)).clamp(0.0, 1.0);
    for _ in 0..10 {
        let logits = m.logits(adv.leaky_trace());
        let g = cross_entropy_with_logits_loss(logits, y.clone()).backward();
        let grad = g.get(&adv);
        let moved = adv + sign(grad) * step;
        let delta = (moved - x.clone()).clamp(-eps, eps);
        adv = (x.clone() + delta).clamp(0.0, 1.0);
    }
    adv
}

fn resnet<A: Activation<Dev>>(
    dev: &Dev,
    name: &str,
    batches: &[usize],
    reps: usize,
    mem: &mut Memory,
) where
    ResNet18<A, Dev>: Classifier<
        Dev,
        Height = Const<32>,
        Width = Const<32>,
        Channels = Const<3>,
        Classes = Const<10>,
    >,
    ResNet18<A, Dev>: BuildModule<Dev, f32>,
{
    let mut model = ResNet18::<A, Dev>::new(dev);
    let mut opt = Sgd::new(SgdSettings {
        lr: 1e-3,
        ..Default::default()
    })
    .unwrap();
    let mut grads = model.alloc_grads();
    for &b in batches {
        let (x, y) = data(dev, b);
        model.train();
        let ms = median_ms(dev, reps, mem, || {
            let logits = model.logits_mut(x.clone().traced(grads.clone()));
            grads = cross_entropy_with_logits_loss(logits, y.clone()).backward();
            opt.step(&mut model, &mut grads).unwrap();
            model.zero_grads(&mut grads);
        });
        report(&format!("rust train fwd+bwd+SGD {name} fp32"), b, ms);
    }
    let (x, y) = data(dev, 128);
    model.eval();
    let ms = median_ms(dev, reps, mem, || {
        let logits = model.logits(x.clone().leaky_trace());
        let g = cross_entropy_with_logits_loss(logits, y.clone()).backward();
        let _ = g.get(&x);
    });
    report(
        &format!("rust PGD step (fwd + input grad, eval) {name}"),
        128,
        ms,
    );
    let ms = median_ms(dev, reps.min(5), mem, || {
        model.eval();
        let adv = pgd(&model, &x, &y);
        model.train();
        let logits = model.logits_mut(adv.traced(grads.clone()));
        grads = cross_entropy_with_logits_loss(logits, y.clone()).backward();
        opt.step(&mut model, &mut grads).unwrap();
        model.zero_grads(&mut grads);
    });
    report(
        &format!("rust PGD-10 adv-train step (10 atk+1 train) {name} fp32"),
        128,
        ms,
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let reps = args
        .iter()
        .position(|a| a == "--reps")
        .and_then(|i| args.get(i + 1))
        .map(|r| r.parse::<usize>());
    let reps = match reps {
        None => 10,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("bench_gpu: --reps takes a positive number");
            std::process::exit(2);
        }
    };
    let small = args.iter().any(|a| a == "--small");
    // a clear line, not a panic, on a machine whose driver or GPU is missing
    let dev = match Dev::try_build(0, 0) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("bench_gpu: no usable CUDA device 0 ({e:?}); is the NVIDIA driver loaded?");
            std::process::exit(1);
        }
    };
    let mut mem = Memory { peak: 0 };
    let batches: &[usize] = if small { &[8] } else { &[128, 512] };
    resnet::<Relu<Dev>>(&dev, "relu", batches, reps, &mut mem);
    resnet::<Pssilu<Dev>>(&dev, "pssilu", &batches[..1], reps, &mut mem);
    let b = if small { 4 } else { 128 };
    let mut wrn = WideResNet28x10::<Pssilu<Dev>, Dev>::new(&dev);
    let mut opt = Sgd::new(SgdSettings {
        lr: 1e-3,
        ..Default::default()
    })
    .unwrap();
    let mut grads = wrn.alloc_grads();
    let (x, y) = data(&dev, b);
    let ms = median_ms(&dev, reps.min(5), &mut mem, || {
        let logits = wrn.logits_mut(x.clone().traced(grads.clone()));
        grads = cross_entropy_with_logits_loss(logits, y.clone()).backward();
        opt.step(&mut wrn, &mut grads).unwrap();
        wrn.zero_grads(&mut grads);
    });
    report("rust WRN-28-10 train fwd+bwd+SGD pssilu fp32", b, ms);
    println!(
        "peak GPU memory in use: {:.2} GiB",
        mem.peak as f64 / (1u64 << 30) as f64
    );
}
