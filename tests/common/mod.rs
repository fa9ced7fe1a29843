//! Helpers shared by the integration tests: a seeded RNG, naive `f64` reference implementations
//! of the ops in `src/ops` (plain loops over NHWC images and OHWI weights, no im2col, no blocking,
//! nothing shared with the crate's kernels), central finite differences, and tolerant comparisons.

#![allow(dead_code)]

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// A deterministic RNG (every test fixes its seed so a failure reproduces).
pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// `n` values uniform in `[lo, hi)`, drawn as `f32`: the exact values both the crate (f32) and
/// the reference (the same values widened to f64) see.
pub fn uniform(rng: &mut StdRng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n).map(|_| rng.gen_range(lo..hi)).collect()
}

/// `n` pairwise distinct values in `[lo, hi)`, spaced at least `(hi − lo)/n` apart, in random
/// order: max pooling without ties, so its gradient is well defined and finite differences with
/// a step far below the spacing see a single winner per window.
pub fn distinct(rng: &mut StdRng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    let mut v: Vec<f32> = (0..n)
        .map(|i| lo + (hi - lo) * i as f32 / n as f32)
        .collect();
    v.shuffle(rng);
    v
}

pub fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// `Σ r·y`, the scalar loss every gradient test differentiates (r fixed and random, so each
/// output element gets its own non-trivial upstream gradient).
pub fn weighted_sum(y: &[f64], r: &[f64]) -> f64 {
    assert_eq!(y.len(), r.len());
    y.iter().zip(r).map(|(y, r)| y * r).sum()
}

/// Central differences `(f(x + h·eᵢ) − f(x − h·eᵢ)) / 2h` for every coordinate `i`.
pub fn fd_grad(x: &[f64], h: f64, f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    let mut xp = x.to_vec();
    (0..x.len())
        .map(|i| {
            xp[i] = x[i] + h;
            let up = f(&xp);
            xp[i] = x[i] - h;
            let down = f(&xp);
            xp[i] = x[i];
            (up - down) / (2.0 * h)
        })
        .collect()
}

/// Asserts `|a − e| ≤ atol + rtol·|e|` element-wise; the message names the first offending index.
pub fn assert_close(what: &str, actual: &[f32], expected: &[f64], rtol: f64, atol: f64) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        let err = (a as f64 - e).abs();
        assert!(
            err <= atol + rtol * e.abs(),
            "{what}[{i}]: got {a}, expected {e} (|err| = {err:.3e}, atol {atol:e}, rtol {rtol:e})"
        );
    }
}

/// Forward values: rel/abs tolerance 1e-4 (f32 kernels against the f64 reference).
pub fn assert_forward(what: &str, actual: &[f32], expected: &[f64]) {
    assert_close(what, actual, expected, 1e-4, 1e-4);
}

/// Gradients (f32, through the tape) against an f64 reference (finite differences of the f64
/// reference forward, or the naive reference backward): `|a − e| ≤ 1e-3·|e| + 1e-4·max|e|`.
/// Refuses vacuous comparisons: the expected gradient must not be (almost) all zero.
pub fn assert_grad(what: &str, actual: &[f32], expected: &[f64]) {
    let scale = expected.iter().fold(0.0f64, |m, e| m.max(e.abs()));
    assert!(
        scale > 1e-3,
        "{what}: expected gradient is ~0 everywhere, the check would be vacuous"
    );
    assert_close(what, actual, expected, 1e-3, 1e-4 * scale);
}

// ---------------------------------------------------------------------------------------------
// Convolution: NHWC input `[b, h, w, ci]`, OHWI weight `[co, k, k, ci]`, zero padding.

#[derive(Clone, Copy, Debug)]
pub struct ConvDims {
    pub b: usize,
    pub h: usize,
    pub w: usize,
    pub ci: usize,
    pub co: usize,
    pub k: usize,
    pub s: usize,
    pub p: usize,
}

impl ConvDims {
    pub fn ho(&self) -> usize {
        (self.h + 2 * self.p - self.k) / self.s + 1
    }
    pub fn wo(&self) -> usize {
        (self.w + 2 * self.p - self.k) / self.s + 1
    }
    pub fn x_len(&self) -> usize {
        self.b * self.h * self.w * self.ci
    }
    pub fn w_len(&self) -> usize {
        self.co * self.k * self.k * self.ci
    }
    pub fn y_len(&self) -> usize {
        self.b * self.ho() * self.wo() * self.co
    }
    /// Visits every (input index, weight index, output index) triple of the convolution sum,
    /// skipping taps that fall into the zero padding.
    fn for_each_tap(&self, mut f: impl FnMut(usize, usize, usize)) {
        let (ho, wo) = (self.ho(), self.wo());
        for b in 0..self.b {
            for oh in 0..ho {
                for ow in 0..wo {
                    for co in 0..self.co {
                        let yi = ((b * ho + oh) * wo + ow) * self.co + co;
                        for kh in 0..self.k {
                            let ih = (oh * self.s + kh) as isize - self.p as isize;
                            if ih < 0 || ih >= self.h as isize {
                                continue;
                            }
                            for kw in 0..self.k {
                                let iw = (ow * self.s + kw) as isize - self.p as isize;
                                if iw < 0 || iw >= self.w as isize {
                                    continue;
                                }
                                for ci in 0..self.ci {
                                    let xi = ((b * self.h + ih as usize) * self.w + iw as usize)
                                        * self.ci
                                        + ci;
                                    let wi = ((co * self.k + kh) * self.k + kw) * self.ci + ci;
                                    f(xi, wi, yi);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `y[b, oh, ow, co] = bias[co] + Σ_{kh, kw, ci} x[b, oh·s − p + kh, ow·s − p + kw, ci] · w[co, kh, kw, ci]`.
pub fn conv2d_ref(d: &ConvDims, x: &[f64], w: &[f64], bias: Option<&[f64]>) -> Vec<f64> {
    assert_eq!((x.len(), w.len()), (d.x_len(), d.w_len()));
    let mut y = vec![0.0; d.y_len()];
    if let Some(bias) = bias {
        for (i, y) in y.iter_mut().enumerate() {
            *y = bias[i % d.co];
        }
    }
    d.for_each_tap(|xi, wi, yi| y[yi] += x[xi] * w[wi]);
    y
}

/// Gradients of `Σ gy·conv2d_ref(x, w, b)` with respect to x, w and b (the same loops, adjoint).
pub fn conv2d_ref_backward(
    d: &ConvDims,
    x: &[f64],
    w: &[f64],
    gy: &[f64],
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    assert_eq!(gy.len(), d.y_len());
    let mut gx = vec![0.0; d.x_len()];
    let mut gw = vec![0.0; d.w_len()];
    let mut gb = vec![0.0; d.co];
    d.for_each_tap(|xi, wi, yi| {
        gx[xi] += w[wi] * gy[yi];
        gw[wi] += x[xi] * gy[yi];
    });
    for (i, g) in gy.iter().enumerate() {
        gb[i % d.co] += g;
    }
    (gx, gw, gb)
}

// ---------------------------------------------------------------------------------------------
// Batch norm over every axis but the last (channels), NHWC.

/// Per-channel mean and **biased** variance `Σ(x − μ)²/n` over all rows of `x` (`c` channels).
pub fn channel_stats(x: &[f64], c: usize) -> (Vec<f64>, Vec<f64>) {
    let n = (x.len() / c) as f64;
    let mut mean = vec![0.0; c];
    for (i, v) in x.iter().enumerate() {
        mean[i % c] += v / n;
    }
    let mut var = vec![0.0; c];
    for (i, v) in x.iter().enumerate() {
        var[i % c] += (v - mean[i % c]).powi(2) / n;
    }
    (mean, var)
}

/// `y = (x − mean)/sqrt(var + eps)·γ + β`, per channel, with the given statistics.
pub fn batch_norm_ref(
    x: &[f64],
    gamma: &[f64],
    beta: &[f64],
    mean: &[f64],
    var: &[f64],
    eps: f64,
) -> Vec<f64> {
    let c = gamma.len();
    x.iter()
        .enumerate()
        .map(|(i, v)| {
            let ch = i % c;
            (v - mean[ch]) / (var[ch] + eps).sqrt() * gamma[ch] + beta[ch]
        })
        .collect()
}

/// Training mode: normalise with the batch mean and the biased batch variance.
pub fn batch_norm_train_ref(x: &[f64], gamma: &[f64], beta: &[f64], eps: f64) -> Vec<f64> {
    let (mean, var) = channel_stats(x, gamma.len());
    batch_norm_ref(x, gamma, beta, &mean, &var, eps)
}

// ---------------------------------------------------------------------------------------------
// Pooling, NHWC.

#[derive(Clone, Copy, Debug)]
pub struct PoolDims {
    pub b: usize,
    pub h: usize,
    pub w: usize,
    pub c: usize,
    pub k: usize,
    pub s: usize,
    pub p: usize,
}

impl PoolDims {
    pub fn ho(&self) -> usize {
        (self.h + 2 * self.p - self.k) / self.s + 1
    }
    pub fn wo(&self) -> usize {
        (self.w + 2 * self.p - self.k) / self.s + 1
    }
    pub fn x_len(&self) -> usize {
        self.b * self.h * self.w * self.c
    }
    pub fn y_len(&self) -> usize {
        self.b * self.ho() * self.wo() * self.c
    }
    /// The input indices inside the window of output `(b, oh, ow, ch)`, padding skipped.
    fn window(&self, b: usize, oh: usize, ow: usize, ch: usize) -> Vec<usize> {
        let mut v = Vec::new();
        for kh in 0..self.k {
            let ih = (oh * self.s + kh) as isize - self.p as isize;
            for kw in 0..self.k {
                let iw = (ow * self.s + kw) as isize - self.p as isize;
                if ih >= 0 && iw >= 0 && ih < self.h as isize && iw < self.w as isize {
                    v.push(((b * self.h + ih as usize) * self.w + iw as usize) * self.c + ch);
                }
            }
        }
        v
    }
    fn map(&self, x: &[f64], f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
        assert_eq!(x.len(), self.x_len());
        let (ho, wo) = (self.ho(), self.wo());
        let mut y = Vec::with_capacity(self.y_len());
        for b in 0..self.b {
            for oh in 0..ho {
                for ow in 0..wo {
                    for ch in 0..self.c {
                        let vals: Vec<f64> = self
                            .window(b, oh, ow, ch)
                            .into_iter()
                            .map(|i| x[i])
                            .collect();
                        assert!(!vals.is_empty(), "window entirely in the padding");
                        y.push(f(&vals));
                    }
                }
            }
        }
        y
    }
}

/// Max over the window; padding cells are absent (PyTorch pads max pooling with −∞).
pub fn max_pool_ref(d: &PoolDims, x: &[f64]) -> Vec<f64> {
    d.map(x, |v| v.iter().copied().fold(f64::NEG_INFINITY, f64::max))
}

/// Mean over the `k×k` window (used unpadded, stride `k`).
pub fn avg_pool_ref(d: &PoolDims, x: &[f64]) -> Vec<f64> {
    assert_eq!(d.p, 0);
    let kk = (d.k * d.k) as f64;
    d.map(x, |v| v.iter().sum::<f64>() / kk)
}

/// Mean over all `h·w` pixels of each image and channel: `[b, h, w, c]` → `[b, c]`.
pub fn global_avg_pool_ref(x: &[f64], b: usize, h: usize, w: usize, c: usize) -> Vec<f64> {
    assert_eq!(x.len(), b * h * w * c);
    let mut y = vec![0.0; b * c];
    for (i, v) in x.iter().enumerate() {
        let (img, ch) = (i / (h * w * c), i % c);
        y[img * c + ch] += v / (h * w) as f64;
    }
    y
}
pub mod tiny;

/// The lines of a run's `metrics.jsonl` without their timings (what a resumed run must repeat).
pub fn untimed_metrics(dir: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            let o = v.as_object_mut().unwrap();
            for k in ["seconds", "eval_seconds", "images_per_second"] {
                o.remove(k);
            }
            v
        })
        .collect()
}
