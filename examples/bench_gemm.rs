//! What the `gemm` crate reaches on this machine (not a test): GFLOP/s of f32 matrix products of
//! the shapes a ResNet-18 convolution hands it (im2col block × weight for the forward pass, the
//! weight and input gradients), single-threaded, and of a 1024³ product on one and on all threads.
//! The ceiling for the convolutions in `BENCHMARKS.md`.
//!
//! `RAYON_NUM_THREADS=2 cargo run --release --example bench_gemm`

use std::time::Instant;
fn main() {
    // (m, n, k, multi-threaded)
    for &(m, n, k, par) in &[
        (1024usize, 1024usize, 1024usize, false),
        (1024, 1024, 1024, true),
        (455, 64, 576, false),
        (64, 455, 576, false),
        (256, 512, 4608, false),
        (455, 576, 64, false),
        (64, 576, 455, false),
        (512, 4608, 256, false),
    ] {
        let a = vec![1.0f32; m * k];
        let b = vec![1.0f32; k * n];
        let mut c = vec![0.0f32; m * n];
        let p = if par {
            gemm::Parallelism::Rayon(0)
        } else {
            gemm::Parallelism::None
        };
        let reps = (2e10 / (2.0 * (m * n * k) as f64)) as usize + 1;
        let t = Instant::now();
        for _ in 0..reps {
            unsafe {
                gemm::gemm(
                    m,
                    n,
                    k,
                    c.as_mut_ptr(),
                    1,
                    n as isize,
                    false,
                    a.as_ptr(),
                    1,
                    k as isize,
                    b.as_ptr(),
                    1,
                    n as isize,
                    1.0,
                    1.0,
                    false,
                    false,
                    false,
                    p,
                );
            }
        }
        let s = t.elapsed().as_secs_f64();
        println!(
            "{m}x{n}x{k} par={par}: {:.1} GFLOP/s",
            2.0 * (m * n * k * reps) as f64 / s / 1e9
        );
    }
}
