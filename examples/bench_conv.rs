//! Convolution benchmark (not a test; issue 11): the 3×3 stride-1 convolutions of a CIFAR
//! ResNet-18 at B=32, forward and backward (input + weight gradients), im2col + gemm against the
//! shifted-gemm ("implicit") path of `src/ops/cpu/conv3x3.rs`. The two algorithms alternate call
//! by call, so a machine whose speed drifts weighs on both alike; the kernels alone are timed
//! (`ops::profile`), not the copies into and out of dfdx's tensors.
//!
//! `RAYON_NUM_THREADS=2 cargo run --release --example bench_conv [-- --batch 32 --reps 7]`

use dfdx::prelude::*;
use robust_paf::ops::{conv2d, profile, set_conv_algorithm, ConvAlgorithm};

type Dev = Cpu;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn take(name: &str) -> f64 {
    profile::report()
        .into_iter()
        .find(|(n, _, _)| *n == name)
        .map_or(f64::NAN, |(_, s, _)| s)
}

/// One shape (`H`×`H`, `C` channels in and out): a macro, as `ConvOut` is implemented per size.
macro_rules! shape {
    ($H:literal, $C:literal, $dev:expr, $b:expr, $reps:expr) => {{
        const H: usize = $H;
        const C: usize = $C;
        let (dev, b, reps): (&Dev, usize, usize) = ($dev, $b, $reps);
    let x: Tensor<(usize, Const<H>, Const<H>, Const<C>), f32, Dev> =
        dev.sample_uniform_like(&(b, Const, Const, Const));
    let w: Tensor<Rank4<C, 3, 3, C>, f32, Dev> = dev.sample_uniform();
    let flop = 2.0 * (b * H * H * C * C * 9) as f64;
    let algs = [ConvAlgorithm::Im2col, ConvAlgorithm::Implicit];
    let mut times = vec![[Vec::new(), Vec::new()]; 2];
    for rep in 0..=reps {
        for (i, &a) in algs.iter().enumerate() {
            set_conv_algorithm(a);
            profile::reset();
            let y = conv2d::<1, 1, _, _, _, C, C, 3, _, _>(x.clone().leaky_trace(), &w, None);
            let g = y.sum().backward();
            let _ = g.get(&w);
            if rep > 0 {
                times[i][0].push(take("conv fwd"));
                times[i][1].push(take("conv bwd"));
            }
        }
    }
    for (d, name, f) in [(0, "forward", flop), (1, "backward", 2.0 * flop)] {
        let im = median(times[0][d].clone());
        let imp = median(times[1][d].clone());
        println!(
            "{H:2}x{H:<2} {C:3} ch B={b:<3} {name:8}  im2col {:7.1} ms ({:4.0} GFLOP/s)  implicit {:7.1} ms ({:4.0} GFLOP/s)  implicit / im2col {:.2}",
            im * 1e3,
            f / im / 1e9,
            imp * 1e3,
            f / imp / 1e9,
            imp / im
        );
    }
    }};
}

fn main() {
    // the kernels' own timers (ops::profile), read after each call
    std::env::set_var("ROBUST_PAF_PROFILE", "1");
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str, default: usize| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .map_or(default, |v| v.parse().expect("a number"))
    };
    let (b, reps) = (value("--batch", 32), value("--reps", 7));
    let dev = Dev::seed_from_u64(0);
    println!(
        "3x3 stride-1 convolutions, {} rayon threads, median of {reps}",
        rayon::current_num_threads()
    );
    shape!(32, 64, &dev, b, reps);
    shape!(16, 128, &dev, b, reps);
    shape!(8, 256, &dev, b, reps);
    shape!(4, 512, &dev, b, reps);
    set_conv_algorithm(ConvAlgorithm::Auto);
}
