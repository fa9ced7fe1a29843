//! Tests of the tensor ops of `src/ops` (convolution, batch norm, pooling, flatten) and of the
//! layers built on them (`src/models/layers.rs`), on the CPU backend.
//!
//! - Forward values are compared with naive `f64` loops (`tests/common`), NHWC images and OHWI
//!   weights, for every (kernel, stride, padding) the paper's architectures use
//!   (docs/reproduction.md §2).
//! - Gradients go through dfdx's tape (`leaky_trace()`, loss `Σ r·y` with a fixed random `r`,
//!   `backward()`, `grads.get(..)`) and are compared with central finite differences of the `f64`
//!   reference forward (step 1e-4 for the ops that are linear in the perturbed value, 1e-5 for
//!   batch norm): the reference forward is itself checked against the crate's forward, so the
//!   two checks together tie the crate's backward to the crate's forward: every gradient is
//!   tested against finite differences.
//! - Batch norm's running statistics follow PyTorch (momentum 0.1, unbiased running variance),
//!   with the expected numbers worked out by hand in the comments.

use crate::common;

use common::*;
use dfdx::nn::{Module, ModuleMut};
use dfdx::prelude::*;
use robust_paf::models::layers::{BatchNorm2d, BatchNormState, Conv2d, Conv2dBias, Mode};
use robust_paf::ops::{
    avg_pool2d, batch_norm2d_eval, conv2d, flatten, global_avg_pool2d, max_pool2d, try_avg_pool2d,
    try_batch_norm2d_eval, try_batch_norm2d_train, try_conv2d, try_flatten, try_global_avg_pool2d,
    try_max_pool2d, ConvOut, PoolOut,
};

/// Batch norm ε (PyTorch's default) and momentum.
const EPS: f64 = 1e-5;
const MOMENTUM: f64 = 0.1;

/// `(y values, gradients)` of the loss `Σ r·y` for a traced output `y` (`r` given as a slice in
/// `y`'s memory order).
macro_rules! weighted_backward {
    ($y:expr, $r:expr) => {{
        let y = $y;
        let r = y.device().tensor_from_vec($r.to_vec(), *y.shape());
        let values = y.as_vec();
        (values, (y * r).sum::<Rank0, _>().backward())
    }};
}

fn dev() -> Cpu {
    Cpu::default()
}

fn nhwc<const B: usize, const H: usize, const W: usize, const C: usize>(
    v: &[f32],
) -> Tensor<Rank4<B, H, W, C>, f32, Cpu> {
    dev().tensor_from_vec(v.to_vec(), (Const::<B>, Const::<H>, Const::<W>, Const::<C>))
}

fn vector<const C: usize>(v: &[f32]) -> Tensor<Rank1<C>, f32, Cpu> {
    dev().tensor_from_vec(v.to_vec(), (Const::<C>,))
}

// =============================================================================================
// The reference itself

/// The naive reference convolution on a case small enough to do by hand.
#[test]
fn reference_conv_matches_hand_computed_values() {
    // Equivalent PyTorch (values worked by hand: each output is the sum of the 3×3
    // neighbourhood of 1..9 that lies inside the image, e.g. 1+2+4+5 = 12 at the corner):
    //   x = torch.arange(1., 10.).view(1, 1, 3, 3); w = torch.ones(1, 1, 3, 3)
    //   F.conv2d(x, w, padding=1)            -> [[12, 21, 16], [27, 45, 33], [24, 39, 28]]
    //   F.conv2d(x, w, padding=1, stride=2)  -> [[12, 16], [24, 28]]
    //   F.conv2d(x, w, bias=torch.tensor([0.5]))  -> [[45.5]]
    let x: Vec<f64> = (1..=9).map(f64::from).collect();
    let w = vec![1.0; 9];
    let d = ConvDims {
        b: 1,
        h: 3,
        w: 3,
        ci: 1,
        co: 1,
        k: 3,
        s: 1,
        p: 1,
    };
    assert_eq!(
        conv2d_ref(&d, &x, &w, None),
        [12., 21., 16., 27., 45., 33., 24., 39., 28.]
    );
    let d2 = ConvDims { s: 2, ..d };
    assert_eq!(conv2d_ref(&d2, &x, &w, None), [12., 16., 24., 28.]);
    let d0 = ConvDims { p: 0, ..d };
    assert_eq!(conv2d_ref(&d0, &x, &w, Some(&[0.5])), [45.5]);
    // And the crate's op on the same numbers.
    let y = conv2d::<1, 1, _, _, _, 1, 1, 3, _, _>(
        nhwc::<1, 3, 3, 1>(&[1., 2., 3., 4., 5., 6., 7., 8., 9.]),
        &dev().tensor_from_vec(
            vec![1.0f32; 9],
            (Const::<1>, Const::<3>, Const::<3>, Const::<1>),
        ),
        None,
    );
    assert_eq!(y.as_vec(), [12., 21., 16., 27., 45., 33., 24., 39., 28.]);
}

// =============================================================================================
// Convolution

struct ConvRun {
    /// Forward without a tape.
    y: Vec<f32>,
    /// Forward with a tape (the values the gradients belong to).
    y_traced: Vec<f32>,
    gx: Vec<f32>,
    gw: Vec<f32>,
    gb: Option<Vec<f32>>,
}

/// Runs `try_conv2d::<S, P, ..>` on the given values, untraced and traced (loss `Σ r·y`).
fn crate_conv<
    const B: usize,
    const H: usize,
    const W: usize,
    const CI: usize,
    const CO: usize,
    const K: usize,
    const S: usize,
    const P: usize,
>(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    r: &[f32],
) -> ConvRun
where
    Const<H>: ConvOut<K, S, P>,
    Const<W>: ConvOut<K, S, P>,
{
    let x = nhwc::<B, H, W, CI>(x);
    let w = dev().tensor_from_vec(
        w.to_vec(),
        (Const::<CO>, Const::<K>, Const::<K>, Const::<CI>),
    );
    let b = bias.map(vector::<CO>);
    let y = try_conv2d::<S, P, _, _, _, CI, CO, K, _, _>(x.clone(), &w, b.as_ref())
        .unwrap()
        .as_vec();
    let traced =
        try_conv2d::<S, P, _, _, _, CI, CO, K, _, _>(x.leaky_trace(), &w, b.as_ref()).unwrap();
    let (y_traced, grads) = weighted_backward!(traced, r);
    ConvRun {
        y,
        y_traced,
        gx: grads.get(&x).as_vec(),
        gw: grads.get(&w).as_vec(),
        gb: b.map(|b| grads.get(&b).as_vec()),
    }
}

struct ConvData {
    d: ConvDims,
    x: Vec<f32>,
    w: Vec<f32>,
    bias: Vec<f32>,
    r: Vec<f32>,
}

fn conv_data(d: ConvDims, seed: u64) -> ConvData {
    let mut g = rng(seed);
    ConvData {
        x: uniform(&mut g, d.x_len(), -1.0, 1.0),
        w: uniform(&mut g, d.w_len(), -1.0, 1.0),
        bias: uniform(&mut g, d.co, -1.0, 1.0),
        r: uniform(&mut g, d.y_len(), -1.0, 1.0),
        d,
    }
}

fn dims<
    const B: usize,
    const H: usize,
    const W: usize,
    const CI: usize,
    const CO: usize,
    const K: usize,
    const S: usize,
    const P: usize,
>() -> ConvDims {
    ConvDims {
        b: B,
        h: H,
        w: W,
        ci: CI,
        co: CO,
        k: K,
        s: S,
        p: P,
    }
}

/// Forward values of the crate's conv (with and without bias, with and without a tape) against
/// the naive reference.
fn check_conv_forward<
    const B: usize,
    const H: usize,
    const W: usize,
    const CI: usize,
    const CO: usize,
    const K: usize,
    const S: usize,
    const P: usize,
>(
    seed: u64,
) where
    Const<H>: ConvOut<K, S, P>,
    Const<W>: ConvOut<K, S, P>,
{
    let c = conv_data(dims::<B, H, W, CI, CO, K, S, P>(), seed);
    for with_bias in [false, true] {
        let bias = with_bias.then_some(&c.bias[..]);
        let run = crate_conv::<B, H, W, CI, CO, K, S, P>(&c.x, &c.w, bias, &c.r);
        let expected = conv2d_ref(
            &c.d,
            &to_f64(&c.x),
            &to_f64(&c.w),
            bias.map(to_f64).as_deref(),
        );
        let tag = format!("conv {:?} bias={with_bias}", c.d);
        assert_forward(&format!("{tag}: y"), &run.y, &expected);
        assert_forward(&format!("{tag}: traced y"), &run.y_traced, &expected);
    }
}

/// Input, weight and bias gradients of the crate's conv (through the tape) against central
/// differences of the reference; also checks the reference backward (used by the large case
/// below) against the same differences.
fn check_conv_grads<
    const B: usize,
    const H: usize,
    const W: usize,
    const CI: usize,
    const CO: usize,
    const K: usize,
    const S: usize,
    const P: usize,
>(
    seed: u64,
) where
    Const<H>: ConvOut<K, S, P>,
    Const<W>: ConvOut<K, S, P>,
{
    let c = conv_data(dims::<B, H, W, CI, CO, K, S, P>(), seed);
    let (x, w, b, r) = (to_f64(&c.x), to_f64(&c.w), to_f64(&c.bias), to_f64(&c.r));
    let d = c.d;
    for with_bias in [false, true] {
        let bias = with_bias.then_some(&b[..]);
        let run = crate_conv::<B, H, W, CI, CO, K, S, P>(
            &c.x,
            &c.w,
            with_bias.then_some(&c.bias[..]),
            &c.r,
        );
        let tag = format!("conv {d:?} bias={with_bias}");
        assert_forward(
            &format!("{tag}: traced y"),
            &run.y_traced,
            &conv2d_ref(&d, &x, &w, bias),
        );

        // ∂L/∂x, ∂L/∂w, ∂L/∂b by central differences; the conv is linear in each, so a step of
        // 1e-4 leaves only f64 rounding.
        let fd_x = fd_grad(&x, 1e-4, |xp| {
            weighted_sum(&conv2d_ref(&d, xp, &w, bias), &r)
        });
        let fd_w = fd_grad(&w, 1e-4, |wp| {
            weighted_sum(&conv2d_ref(&d, &x, wp, bias), &r)
        });
        assert_grad(&format!("{tag}: dL/dx"), &run.gx, &fd_x);
        assert_grad(&format!("{tag}: dL/dw"), &run.gw, &fd_w);
        match (bias, &run.gb) {
            (Some(bias), Some(gb)) => {
                let fd_b = fd_grad(bias, 1e-4, |bp| {
                    weighted_sum(&conv2d_ref(&d, &x, &w, Some(bp)), &r)
                });
                assert_grad(&format!("{tag}: dL/db"), gb, &fd_b);
            }
            (None, None) => {}
            _ => unreachable!(),
        }

        let (rx, rw, _) = conv2d_ref_backward(&d, &x, &w, &r);
        for (name, a, e) in [("x", &rx, &fd_x), ("w", &rw, &fd_w)] {
            for (i, (a, e)) in a.iter().zip(e.iter()).enumerate() {
                assert!(
                    (a - e).abs() <= 1e-8 * (1.0 + e.abs()),
                    "reference backward d{name}[{i}]: {a} vs {e}"
                );
            }
        }
    }
}

#[test]
fn conv3x3_stride1_pad1_forward() {
    check_conv_forward::<1, 5, 5, 3, 4, 3, 1, 1>(11);
    check_conv_forward::<3, 7, 7, 5, 4, 3, 1, 1>(12);
    check_conv_forward::<3, 5, 7, 3, 4, 3, 1, 1>(13); // non-square
}

#[test]
fn conv3x3_stride2_pad1_forward() {
    check_conv_forward::<1, 5, 5, 3, 4, 3, 2, 1>(21);
    check_conv_forward::<3, 7, 7, 5, 4, 3, 2, 1>(22);
    check_conv_forward::<3, 8, 8, 3, 4, 3, 2, 1>(23); // even: the last input row is in a window
}

#[test]
fn conv1x1_stride1_pad0_forward() {
    // The pointwise path (input = its own im2col matrix).
    check_conv_forward::<1, 5, 5, 3, 4, 1, 1, 0>(31);
    check_conv_forward::<3, 7, 7, 5, 4, 1, 1, 0>(32);
}

#[test]
fn conv1x1_stride2_pad0_forward() {
    check_conv_forward::<1, 5, 5, 3, 4, 1, 2, 0>(41);
    check_conv_forward::<3, 8, 8, 5, 4, 1, 2, 0>(42);
}

#[test]
fn conv7x7_stride2_pad3_forward() {
    // The ImageNet stem (docs/reproduction.md §2.3), on small maps: most taps hit the padding.
    check_conv_forward::<1, 7, 7, 3, 4, 7, 2, 3>(51);
    check_conv_forward::<3, 5, 5, 5, 4, 7, 2, 3>(52);
    check_conv_forward::<1, 12, 12, 3, 4, 7, 2, 3>(53);
}

#[test]
fn conv3x3_stride1_pad1_gradients() {
    check_conv_grads::<2, 5, 5, 3, 4, 3, 1, 1>(61);
    check_conv_grads::<1, 4, 6, 5, 4, 3, 1, 1>(62);
}

#[test]
fn conv3x3_stride2_pad1_gradients() {
    check_conv_grads::<2, 5, 5, 3, 4, 3, 2, 1>(71);
    check_conv_grads::<1, 6, 6, 5, 4, 3, 2, 1>(72);
}

#[test]
fn conv1x1_stride1_pad0_gradients() {
    check_conv_grads::<2, 5, 5, 3, 4, 1, 1, 0>(81);
}

#[test]
fn conv1x1_stride2_pad0_gradients() {
    // Odd rows/columns of the 6×6 input are never read: their gradient must be 0.
    check_conv_grads::<2, 6, 6, 3, 4, 1, 2, 0>(91);
    check_conv_grads::<1, 5, 5, 5, 4, 1, 2, 0>(92);
}

#[test]
fn conv7x7_stride2_pad3_gradients() {
    check_conv_grads::<1, 7, 7, 3, 4, 7, 2, 3>(101);
}

/// More output rows than one im2col block (4096 rows in `src/ops/cpu/conv.rs`): 9 images of
/// 32×32 = 9216 rows run as blocks of 4 + 4 + 1 images, in the forward and backward passes.
/// Gradients are compared with the naive reference backward (checked against finite
/// differences by the small cases above).
#[test]
fn conv_spanning_several_row_blocks() {
    fn check<const B: usize, const K: usize, const S: usize, const P: usize>(seed: u64)
    where
        Const<32>: ConvOut<K, S, P>,
    {
        let c = conv_data(dims::<B, 32, 32, 3, 4, K, S, P>(), seed);
        let run = crate_conv::<B, 32, 32, 3, 4, K, S, P>(&c.x, &c.w, Some(&c.bias), &c.r);
        let (x, w, b, r) = (to_f64(&c.x), to_f64(&c.w), to_f64(&c.bias), to_f64(&c.r));
        let tag = format!("conv {:?}", c.d);
        let expected = conv2d_ref(&c.d, &x, &w, Some(&b));
        assert_forward(&format!("{tag}: y"), &run.y, &expected);
        assert_forward(&format!("{tag}: traced y"), &run.y_traced, &expected);
        let (gx, gw, gb) = conv2d_ref_backward(&c.d, &x, &w, &r);
        assert_grad(&format!("{tag}: dL/dx"), &run.gx, &gx);
        assert_grad(&format!("{tag}: dL/dw"), &run.gw, &gw);
        assert_grad(&format!("{tag}: dL/db"), run.gb.as_deref().unwrap(), &gb);
    }
    check::<9, 3, 1, 1>(111); // im2col path, 3 blocks
    check::<5, 1, 1, 0>(112); // pointwise path (no im2col), 2 blocks
}

// =============================================================================================
// Batch norm

struct BnRun {
    y: Vec<f32>,
    gx: Vec<f32>,
    gw: Vec<f32>,
    gb: Vec<f32>,
    running_mean: Vec<f32>,
    running_var: Vec<f32>,
}

struct BnData {
    x: Vec<f32>,
    gamma: Vec<f32>,
    beta: Vec<f32>,
    running_mean: Vec<f32>,
    running_var: Vec<f32>,
    r: Vec<f32>,
}

/// Random batch-norm inputs with a different mean and spread per channel and non-trivial γ, β
/// and running statistics.
fn bn_data(n: usize, c: usize, seed: u64) -> BnData {
    let mut g = rng(seed);
    let u = uniform(&mut g, n * c, -1.0, 1.0);
    BnData {
        x: u.iter()
            .enumerate()
            .map(|(i, v)| v * (1.0 + (i % c) as f32) + 2.0 * ((i % c) as f32 - 1.0))
            .collect(),
        gamma: uniform(&mut g, c, 0.5, 1.5),
        beta: uniform(&mut g, c, -0.5, 0.5),
        running_mean: uniform(&mut g, c, -0.5, 0.5),
        running_var: uniform(&mut g, c, 0.5, 2.0),
        r: uniform(&mut g, n * c, -1.0, 1.0),
    }
}

/// Runs `try_batch_norm2d_train` (`train`) or `try_batch_norm2d_eval` traced, loss `Σ r·y`.
fn crate_bn<const B: usize, const H: usize, const W: usize, const C: usize>(
    d: &BnData,
    train: bool,
) -> BnRun {
    let x = nhwc::<B, H, W, C>(&d.x);
    let (w, b) = (vector::<C>(&d.gamma), vector::<C>(&d.beta));
    let (mut rm, mut rv) = (vector::<C>(&d.running_mean), vector::<C>(&d.running_var));
    let y = if train {
        try_batch_norm2d_train(x.leaky_trace(), &w, &b, &mut rm, &mut rv, EPS, MOMENTUM).unwrap()
    } else {
        try_batch_norm2d_eval(x.leaky_trace(), &w, &b, &rm, &rv, EPS).unwrap()
    };
    let (y, grads) = weighted_backward!(y, d.r);
    BnRun {
        y,
        gx: grads.get(&x).as_vec(),
        gw: grads.get(&w).as_vec(),
        gb: grads.get(&b).as_vec(),
        running_mean: rm.as_vec(),
        running_var: rv.as_vec(),
    }
}

/// Forward values and gradients of batch norm against the reference and finite differences.
fn check_bn<const B: usize, const H: usize, const W: usize, const C: usize>(
    train: bool,
    seed: u64,
) {
    let d = bn_data(B * H * W, C, seed);
    let run = crate_bn::<B, H, W, C>(&d, train);
    let (x, gamma, beta, r) = (
        to_f64(&d.x),
        to_f64(&d.gamma),
        to_f64(&d.beta),
        to_f64(&d.r),
    );
    let (rm, rv) = (to_f64(&d.running_mean), to_f64(&d.running_var));
    let forward = |x: &[f64], gamma: &[f64], beta: &[f64]| {
        if train {
            batch_norm_train_ref(x, gamma, beta, EPS)
        } else {
            batch_norm_ref(x, gamma, beta, &rm, &rv, EPS)
        }
    };
    let tag = format!("batch norm {B}x{H}x{W}x{C} train={train}");
    assert_forward(&format!("{tag}: y"), &run.y, &forward(&x, &gamma, &beta));

    // Central differences; in training mode the batch statistics move with x.
    let h = 1e-5;
    let fd_x = fd_grad(&x, h, |xp| weighted_sum(&forward(xp, &gamma, &beta), &r));
    let fd_w = fd_grad(&gamma, h, |gp| weighted_sum(&forward(&x, gp, &beta), &r));
    let fd_b = fd_grad(&beta, h, |bp| weighted_sum(&forward(&x, &gamma, bp), &r));
    assert_grad(&format!("{tag}: dL/dx"), &run.gx, &fd_x);
    assert_grad(&format!("{tag}: dL/dweight"), &run.gw, &fd_w);
    assert_grad(&format!("{tag}: dL/dbias"), &run.gb, &fd_b);

    // Running statistics: r ← 0.9·r + 0.1·s with the unbiased batch variance (training mode);
    // untouched in evaluation mode.
    let (exp_rm, exp_rv): (Vec<f64>, Vec<f64>) = if train {
        let (mean, var) = channel_stats(&x, C);
        let n = (B * H * W) as f64;
        (
            (0..C).map(|c| 0.9 * rm[c] + 0.1 * mean[c]).collect(),
            (0..C)
                .map(|c| 0.9 * rv[c] + 0.1 * var[c] * n / (n - 1.0))
                .collect(),
        )
    } else {
        (rm.clone(), rv.clone())
    };
    assert_close(
        &format!("{tag}: running_mean"),
        &run.running_mean,
        &exp_rm,
        1e-5,
        1e-6,
    );
    assert_close(
        &format!("{tag}: running_var"),
        &run.running_var,
        &exp_rv,
        1e-5,
        1e-6,
    );
}

#[test]
fn batch_norm_train_forward_and_gradients() {
    check_bn::<2, 3, 5, 3>(true, 121);
    check_bn::<1, 4, 4, 5>(true, 122);
    check_bn::<4, 1, 1, 2>(true, 123); // a 1×1 map: statistics over the batch only
}

#[test]
fn batch_norm_eval_forward_and_gradients() {
    check_bn::<2, 3, 5, 3>(false, 131);
    check_bn::<1, 4, 4, 5>(false, 132);
}

/// In evaluation mode batch norm is the affine map `x ↦ (x − μ_run)·γ/sqrt(σ²_run + ε) + β`, so
/// the input gradient is exactly `γ/sqrt(σ²_run + ε) · upstream` — the gradient PGD and
/// AutoAttack need through an `eval()` model (dfdx 0.13's own BatchNorm2D cannot give it).
#[test]
fn batch_norm_eval_input_gradient_is_scaled_upstream() {
    const C: usize = 3;
    let d = bn_data(2 * 4 * 4, C, 141);
    let gamma = [0.5f32, -1.25, 2.0];
    let (rm, rv) = ([0.75f32, -2.0, 0.1], [0.25f32, 4.0, 1.5]);
    let expected: Vec<f64> =
        d.r.iter()
            .enumerate()
            .map(|(i, &r)| {
                let c = i % C;
                gamma[c] as f64 / (rv[c] as f64 + EPS).sqrt() * r as f64
            })
            .collect();

    let mut bn: BatchNorm2d<C, Cpu> = BatchNorm2d::try_new(&dev()).unwrap();
    bn.weight.copy_from(&gamma);
    bn.running_mean.copy_from(&rm);
    bn.running_var.copy_from(&rv);
    bn.set_mode(Mode::Eval);
    let x = nhwc::<2, 4, 4, C>(&d.x);

    // The layer, through `Module::forward` and through `ModuleMut::forward_mut`.
    let (_, grads) = weighted_backward!(bn.forward(x.leaky_trace()), d.r);
    assert_close(
        "eval BN module: dL/dx",
        &grads.get(&x).as_vec(),
        &expected,
        1e-6,
        0.0,
    );
    let (_, grads) = weighted_backward!(bn.forward_mut(x.leaky_trace()), d.r);
    assert_close(
        "eval BN module forward_mut: dL/dx",
        &grads.get(&x).as_vec(),
        &expected,
        1e-6,
        0.0,
    );
    // The function.
    let y = batch_norm2d_eval(
        x.leaky_trace(),
        &bn.weight,
        &bn.bias,
        &bn.running_mean,
        &bn.running_var,
        EPS,
    );
    let (_, grads) = weighted_backward!(y, d.r);
    assert_close(
        "eval BN function: dL/dx",
        &grads.get(&x).as_vec(),
        &expected,
        1e-6,
        0.0,
    );
    // Evaluation mode never touches the running statistics.
    assert_eq!(bn.running_mean.as_vec(), rm);
    assert_eq!(bn.running_var.as_vec(), rv);
}

/// A batch of 2 images of 1×2 pixels, 2 channels (NHWC order: pixel by pixel, channels last):
/// channel 0 sees 1, 2, 3, 6 and channel 1 sees 0, 0, 0, 4.
const BN_X: [f32; 8] = [1., 0., 2., 0., 3., 0., 6., 4.];
// Channel 0: μ = 12/4 = 3, Σ(x − μ)² = 4 + 1 + 0 + 9 = 14, biased σ² = 3.5, unbiased 14/3.
// Channel 1: μ = 4/4 = 1,  Σ(x − μ)² = 1 + 1 + 1 + 9 = 12, biased σ² = 3,   unbiased 4.
// Normalised (γ = 1, β = 0, ε = 1e-5): (x − μ)/sqrt(σ² + ε) with the *biased* σ².
fn bn_x_normalised() -> Vec<f64> {
    let (m, v) = ([3.0, 1.0], [3.5, 3.0]);
    BN_X.iter()
        .enumerate()
        .map(|(i, &x)| (x as f64 - m[i % 2]) / (v[i % 2] + EPS).sqrt())
        .collect()
}

/// The function updates the running statistics like PyTorch's `BatchNorm2d(momentum=0.1)`.
#[test]
fn batch_norm_train_updates_running_stats_like_pytorch() {
    // From running_mean = [1, -1], running_var = [2, 0.5]:
    //   running_mean ← 0.9·[1, -1] + 0.1·[3, 1]      = [1.2, -0.8]
    //   running_var  ← 0.9·[2, 0.5] + 0.1·[14/3, 4]  = [1.8 + 0.466667, 0.45 + 0.4] = [2.266667, 0.85]
    // (the biased variance would give [2.15, 0.75]; no momentum would give [3, 1] / [4.667, 4]).
    let x = nhwc::<2, 1, 2, 2>(&BN_X);
    let (w, b) = (vector::<2>(&[1.0, 1.0]), vector::<2>(&[0.0, 0.0]));
    let (mut rm, mut rv) = (vector::<2>(&[1.0, -1.0]), vector::<2>(&[2.0, 0.5]));
    let y = try_batch_norm2d_train(x, &w, &b, &mut rm, &mut rv, EPS, MOMENTUM).unwrap();
    assert_forward("train BN: y", &y.as_vec(), &bn_x_normalised());
    assert_close("running_mean", &rm.as_vec(), &[1.2, -0.8], 1e-6, 1e-7);
    assert_close(
        "running_var",
        &rv.as_vec(),
        &[1.8 + 0.1 * 14.0 / 3.0, 0.85],
        1e-6,
        1e-7,
    );
}

/// The layer: `forward_mut` in `Mode::Train` updates the running statistics (twice in a row:
/// the momentum chains), `forward` (&self) in `Mode::Train` uses the batch statistics and leaves
/// them alone, and after `set_mode(Mode::Eval)` / `mode = Mode::Eval` both forwards use them.
#[test]
fn batch_norm_module_running_stats_and_modes() {
    let mut bn: BatchNorm2d<2, Cpu> = BatchNorm2d::try_new(&dev()).unwrap();
    assert_eq!(bn.mode, Mode::Train);
    let x = nhwc::<2, 1, 2, 2>(&BN_X);

    // `forward` in training mode: batch statistics, running statistics untouched (0 and 1).
    let y = bn.forward(x.clone());
    assert_forward("Train forward: y", &y.as_vec(), &bn_x_normalised());
    assert_eq!(bn.running_mean.as_vec(), [0.0, 0.0]);
    assert_eq!(bn.running_var.as_vec(), [1.0, 1.0]);

    // `forward_mut` in training mode, from PyTorch's initial state (mean 0, var 1):
    //   running_mean ← 0.9·[0, 0] + 0.1·[3, 1]      = [0.3, 0.1]
    //   running_var  ← 0.9·[1, 1] + 0.1·[14/3, 4]   = [1.366667, 1.3]
    let y = bn.forward_mut(x.clone());
    assert_forward("Train forward_mut: y", &y.as_vec(), &bn_x_normalised());
    assert_close(
        "running_mean after 1 step",
        &bn.running_mean.as_vec(),
        &[0.3, 0.1],
        1e-6,
        1e-7,
    );
    assert_close(
        "running_var after 1 step",
        &bn.running_var.as_vec(),
        &[0.9 + 1.4 / 3.0, 1.3],
        1e-6,
        1e-7,
    );
    // A second step on the same batch, also through a tape (the update does not depend on it):
    //   running_mean ← 0.9·[0.3, 0.1] + 0.1·[3, 1]              = [0.57, 0.19]
    //   running_var  ← 0.9·[1.366667, 1.3] + 0.1·[14/3, 4]      = [1.696667, 1.57]
    let _ = bn.forward_mut(x.leaky_trace());
    assert_close(
        "running_mean after 2 steps",
        &bn.running_mean.as_vec(),
        &[0.57, 0.19],
        1e-6,
        1e-7,
    );
    let rv2 = 0.9 * (0.9 + 1.4 / 3.0) + 1.4 / 3.0;
    assert_close(
        "running_var after 2 steps",
        &bn.running_var.as_vec(),
        &[rv2, 1.57],
        1e-6,
        1e-7,
    );

    // Evaluation mode uses (and keeps) the running statistics, with γ, β applied.
    bn.weight.copy_from(&[2.0, 0.5]);
    bn.bias.copy_from(&[0.25, -1.0]);
    let eval_expected = batch_norm_ref(
        &to_f64(&BN_X),
        &[2.0, 0.5],
        &[0.25, -1.0],
        &[0.57, 0.19],
        &[rv2, 1.57],
        EPS,
    );
    bn.set_mode(Mode::Eval);
    assert_eq!(bn.mode(), Mode::Eval);
    assert_forward(
        "Eval forward: y",
        &bn.forward(x.clone()).as_vec(),
        &eval_expected,
    );
    bn.mode = Mode::Train;
    bn.mode = Mode::Eval; // the public field works as well as `set_mode`
    assert_forward(
        "Eval forward_mut: y",
        &bn.forward_mut(x.clone()).as_vec(),
        &eval_expected,
    );
    assert_close(
        "running_mean after eval",
        &bn.running_mean.as_vec(),
        &[0.57, 0.19],
        1e-6,
        1e-7,
    );
    assert_close(
        "running_var after eval",
        &bn.running_var.as_vec(),
        &[rv2, 1.57],
        1e-6,
        1e-7,
    );

    // And back to training: batch statistics again (γ, β applied).
    bn.set_mode(Mode::Train);
    let train_expected = batch_norm_train_ref(&to_f64(&BN_X), &[2.0, 0.5], &[0.25, -1.0], EPS);
    assert_forward(
        "Train forward after eval: y",
        &bn.forward(x).as_vec(),
        &train_expected,
    );
}

// =============================================================================================
// Pooling and flatten

/// Max pooling `K`×`K`, stride `S`, padding `P`: forward and input gradient on distinct values.
fn check_max_pool<
    const B: usize,
    const H: usize,
    const W: usize,
    const C: usize,
    const K: usize,
    const S: usize,
    const P: usize,
>(
    seed: u64,
) where
    Const<H>: ConvOut<K, S, P>,
    Const<W>: ConvOut<K, S, P>,
{
    let d = PoolDims {
        b: B,
        h: H,
        w: W,
        c: C,
        k: K,
        s: S,
        p: P,
    };
    let mut g = rng(seed);
    let xv = distinct(&mut g, d.x_len(), -1.0, 1.0); // spacing ≥ 2/len ≫ the FD step: no ties
    let r = uniform(&mut g, d.y_len(), -1.0, 1.0);
    let x = nhwc::<B, H, W, C>(&xv);
    let tag = format!("max pool {d:?}");
    let y_plain = try_max_pool2d::<K, S, P, _, _, _, C, _, _>(x.clone())
        .unwrap()
        .as_vec();
    let (y, grads) = weighted_backward!(
        try_max_pool2d::<K, S, P, _, _, _, C, _, _>(x.leaky_trace()).unwrap(),
        r
    );
    let (xf, rf) = (to_f64(&xv), to_f64(&r));
    let expected = max_pool_ref(&d, &xf);
    assert_forward(&format!("{tag}: y"), &y_plain, &expected);
    assert_forward(&format!("{tag}: traced y"), &y, &expected);
    let fd = fd_grad(&xf, 1e-6, |xp| weighted_sum(&max_pool_ref(&d, xp), &rf));
    assert_grad(&format!("{tag}: dL/dx"), &grads.get(&x).as_vec(), &fd);
}

/// Average pooling `K`×`K`, stride `K`.
fn check_avg_pool<const B: usize, const H: usize, const W: usize, const C: usize, const K: usize>(
    seed: u64,
) where
    Const<H>: PoolOut<K>,
    Const<W>: PoolOut<K>,
{
    let d = PoolDims {
        b: B,
        h: H,
        w: W,
        c: C,
        k: K,
        s: K,
        p: 0,
    };
    let mut g = rng(seed);
    let xv = uniform(&mut g, d.x_len(), -1.0, 1.0);
    let r = uniform(&mut g, d.y_len(), -1.0, 1.0);
    let x = nhwc::<B, H, W, C>(&xv);
    let tag = format!("avg pool {d:?}");
    let y_plain = try_avg_pool2d::<K, _, _, _, C, _, _>(x.clone())
        .unwrap()
        .as_vec();
    let (y, grads) = weighted_backward!(
        try_avg_pool2d::<K, _, _, _, C, _, _>(x.leaky_trace()).unwrap(),
        r
    );
    let (xf, rf) = (to_f64(&xv), to_f64(&r));
    let expected = avg_pool_ref(&d, &xf);
    assert_forward(&format!("{tag}: y"), &y_plain, &expected);
    assert_forward(&format!("{tag}: traced y"), &y, &expected);
    let fd = fd_grad(&xf, 1e-4, |xp| weighted_sum(&avg_pool_ref(&d, xp), &rf));
    assert_grad(&format!("{tag}: dL/dx"), &grads.get(&x).as_vec(), &fd);
}

#[test]
fn avg_pool_forward_and_gradients() {
    // (153): WRN's avg_pool2d(8) on its 8×8 map (docs/reproduction.md §2.2)
    check_avg_pool::<2, 6, 6, 3, 2>(151);
    check_avg_pool::<3, 4, 8, 5, 4>(152); // non-square
    check_avg_pool::<2, 8, 8, 3, 8>(153);
    check_avg_pool::<1, 16, 16, 2, 8>(154);
}

#[test]
fn max_pool_forward_and_gradients() {
    // the ImageNet stem's 3×3/2 pad 1 (docs/reproduction.md §2.3)
    check_max_pool::<2, 7, 7, 3, 3, 2, 1>(161);
    check_max_pool::<1, 8, 6, 4, 3, 2, 1>(162);
    check_max_pool::<2, 5, 5, 2, 3, 1, 1>(163); // overlapping windows: one input can win several
    check_max_pool::<2, 6, 6, 3, 2, 2, 0>(164); // VGG's 2×2/2
}

#[test]
fn global_avg_pool_forward_and_gradients() {
    const B: usize = 3;
    const H: usize = 5;
    const W: usize = 7;
    const C: usize = 4;
    let mut g = rng(171);
    let xv = uniform(&mut g, B * H * W * C, -1.0, 1.0);
    let r = uniform(&mut g, B * C, -1.0, 1.0);
    let x = nhwc::<B, H, W, C>(&xv);
    let y_plain: Tensor<Rank2<B, C>, f32, Cpu> = try_global_avg_pool2d(x.clone()).unwrap();
    let (y, grads) = weighted_backward!(global_avg_pool2d(x.leaky_trace()), r);
    let (xf, rf) = (to_f64(&xv), to_f64(&r));
    let expected = global_avg_pool_ref(&xf, B, H, W, C);
    assert_forward("global avg pool: y", &y_plain.as_vec(), &expected);
    assert_forward("global avg pool: traced y", &y, &expected);
    let fd = fd_grad(&xf, 1e-4, |xp| {
        weighted_sum(&global_avg_pool_ref(xp, B, H, W, C), &rf)
    });
    assert_grad("global avg pool: dL/dx", &grads.get(&x).as_vec(), &fd);
}

#[test]
fn flatten_forward_and_gradients() {
    let mut g = rng(181);
    let xv = uniform(&mut g, 3 * 5, -1.0, 1.0);
    let r = uniform(&mut g, 3 * 5, -1.0, 1.0);
    let x = nhwc::<3, 1, 1, 5>(&xv);
    let y: Tensor<Rank2<3, 5>, f32, Cpu> = try_flatten(x.clone()).unwrap();
    assert_eq!(
        y.as_vec(),
        xv,
        "flatten of a 1×1 map keeps (batch, channel) order and values"
    );
    let (_, grads) = weighted_backward!(flatten(x.leaky_trace()), r);
    let (xf, rf) = (to_f64(&xv), to_f64(&r));
    let fd = fd_grad(&xf, 1e-4, |xp| weighted_sum(xp, &rf));
    assert_grad("flatten: dL/dx", &grads.get(&x).as_vec(), &fd);
}

/// ImageNet stem max-pool (docs/reproduction.md §2.3): 3×3, stride 2, padding 1 on 112×112 gives
/// 56×56 (checked by the type annotation), and the padding never wins even when every input is
/// negative (PyTorch pads with −∞; zero padding would make every border output 0).
#[test]
fn max_pool_112_to_56_padding_never_wins() {
    let d = PoolDims {
        b: 1,
        h: 112,
        w: 112,
        c: 2,
        k: 3,
        s: 2,
        p: 1,
    };
    let mut g = rng(191);
    let xv = distinct(&mut g, d.x_len(), -2.0, -1.0);
    let r = uniform(&mut g, d.y_len(), -1.0, 1.0);
    let x = nhwc::<1, 112, 112, 2>(&xv);
    let y: Tensor<Rank4<1, 56, 56, 2>, f32, Cpu, _> =
        max_pool2d::<3, 2, 1, _, _, _, 2, _, _>(x.leaky_trace());
    assert_eq!(
        *y.shape(),
        (Const::<1>, Const::<56>, Const::<56>, Const::<2>)
    );
    let (y, grads) = weighted_backward!(y, r);
    assert!(
        y.iter().all(|&v| v < -1.0 + 1e-6),
        "a padding cell won a window"
    );
    let xf = to_f64(&xv);
    assert_forward("max pool 112: y", &y, &max_pool_ref(&d, &xf));

    // The gradient lands on each window's arg-max (a real pixel), so it sums to Σ r.
    let index: std::collections::HashMap<u32, usize> = xv
        .iter()
        .enumerate()
        .map(|(i, v)| (v.to_bits(), i))
        .collect();
    let mut expected = vec![0.0f64; d.x_len()];
    for (o, (&yo, &ro)) in y.iter().zip(&r).enumerate() {
        let i = index[&yo.to_bits()]; // distinct inputs: the output value names its source
        assert_eq!(i % 2, o % 2, "arg-max in the wrong channel");
        expected[i] += ro as f64;
    }
    let gx = grads.get(&x).as_vec();
    assert_grad("max pool 112: dL/dx", &gx, &expected);
    let (sum_g, sum_r) = (
        gx.iter().map(|&v| v as f64).sum::<f64>(),
        r.iter().map(|&v| v as f64).sum::<f64>(),
    );
    assert!(
        (sum_g - sum_r).abs() < 1e-3,
        "gradient mass lost into the padding: {sum_g} vs {sum_r}"
    );
}

// =============================================================================================
// Gradient accumulation: a tensor used more than once gets the sum of every contribution
// (the kernels take the output gradient out of `Gradients` and must add, not overwrite, into the
// input's and parameters' buffers).

/// The input feeds two convolutions with different weights: dL/dx = conv₁ᵀ(r) + conv₂ᵀ(r).
#[test]
fn input_used_by_two_convs_gets_both_gradients() {
    fn check<const K: usize, const S: usize, const P: usize>(seed: u64)
    where
        Const<6>: ConvOut<K, S, P>,
    {
        let d = dims::<2, 6, 6, 3, 4, K, S, P>();
        let (a, b) = (conv_data(d, seed), conv_data(d, seed + 1));
        let x = nhwc::<2, 6, 6, 3>(&a.x);
        let w1 = dev().tensor_from_vec(
            a.w.clone(),
            (Const::<4>, Const::<K>, Const::<K>, Const::<3>),
        );
        let w2 = dev().tensor_from_vec(
            b.w.clone(),
            (Const::<4>, Const::<K>, Const::<K>, Const::<3>),
        );
        let xt = x.leaky_trace();
        let y1 = conv2d::<S, P, _, _, _, 3, 4, K, _, _>(xt.with_empty_tape(), &w1, None);
        let y2 = conv2d::<S, P, _, _, _, 3, 4, K, _, _>(xt, &w2, None);
        let (_, grads) = weighted_backward!(y1 + y2, a.r);
        let (xf, rf) = (to_f64(&a.x), to_f64(&a.r));
        let (g1, _, _) = conv2d_ref_backward(&d, &xf, &to_f64(&a.w), &rf);
        let (g2, _, _) = conv2d_ref_backward(&d, &xf, &to_f64(&b.w), &rf);
        let expected: Vec<f64> = g1.iter().zip(&g2).map(|(a, b)| a + b).collect();
        assert_grad(
            &format!("two convs {d:?}: dL/dx"),
            &grads.get(&x).as_vec(),
            &expected,
        );
    }
    check::<3, 1, 1>(201); // im2col path (col2im adds)
    check::<1, 1, 0>(202); // pointwise path (gemm reads the destination)
    check::<3, 2, 1>(203);
}

/// A residual connection `x + conv(x)`: dL/dx = r + convᵀ(r), for the im2col and pointwise paths.
#[test]
fn residual_input_gets_identity_plus_conv_gradient() {
    fn check<const K: usize, const P: usize>(seed: u64)
    where
        Const<5>: ConvOut<K, 1, P, Out = Const<5>>,
    {
        let d = dims::<2, 5, 5, 4, 4, K, 1, P>();
        let c = conv_data(d, seed);
        let x = nhwc::<2, 5, 5, 4>(&c.x);
        let w = dev().tensor_from_vec(
            c.w.clone(),
            (Const::<4>, Const::<K>, Const::<K>, Const::<4>),
        );
        let xt = x.leaky_trace();
        let y = xt.with_empty_tape() + conv2d::<1, P, _, _, _, 4, 4, K, _, _>(xt, &w, None);
        let (_, grads) = weighted_backward!(y, c.r);
        let rf = to_f64(&c.r);
        let (gc, _, _) = conv2d_ref_backward(&d, &to_f64(&c.x), &to_f64(&c.w), &rf);
        let expected: Vec<f64> = gc.iter().zip(&rf).map(|(g, r)| g + r).collect();
        assert_grad(
            &format!("residual {d:?}: dL/dx"),
            &grads.get(&x).as_vec(),
            &expected,
        );
    }
    check::<3, 1>(211);
    check::<1, 0>(212);
}

/// One weight (and bias) shared by two convolutions: dL/dw and dL/db are the sums.
#[test]
fn weight_shared_by_two_convs_gets_both_gradients() {
    let d = dims::<2, 5, 5, 3, 4, 3, 1, 1>();
    let (a, b) = (conv_data(d, 221), conv_data(d, 222));
    let (x1, x2) = (nhwc::<2, 5, 5, 3>(&a.x), nhwc::<2, 5, 5, 3>(&b.x));
    let w = dev().tensor_from_vec(
        a.w.clone(),
        (Const::<4>, Const::<3>, Const::<3>, Const::<3>),
    );
    let bias = vector::<4>(&a.bias);
    let y = conv2d::<1, 1, _, _, _, 3, 4, 3, _, _>(x1.leaky_trace(), &w, Some(&bias))
        + conv2d::<1, 1, _, _, _, 3, 4, 3, _, _>(x2.leaky_trace(), &w, Some(&bias));
    let (_, grads) = weighted_backward!(y, a.r);
    let (wf, rf) = (to_f64(&a.w), to_f64(&a.r));
    let (_, gw1, gb1) = conv2d_ref_backward(&d, &to_f64(&a.x), &wf, &rf);
    let (_, gw2, gb2) = conv2d_ref_backward(&d, &to_f64(&b.x), &wf, &rf);
    let sum = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(a, b)| a + b).collect::<Vec<_>>();
    assert_grad(
        "shared weight: dL/dw",
        &grads.get(&w).as_vec(),
        &sum(&gw1, &gw2),
    );
    assert_grad(
        "shared bias: dL/db",
        &grads.get(&bias).as_vec(),
        &sum(&gb1, &gb2),
    );
}

/// `x + bn(x)` (training and evaluation mode) and `x + maxpool₃ₓ₃,₁,₁(x)`: the batch-norm and
/// pooling kernels add into an input gradient that already holds the identity's share.
#[test]
fn batch_norm_and_max_pool_inputs_used_twice() {
    const C: usize = 3;
    let d = bn_data(2 * 4 * 4, C, 231);
    let (xf, rf) = (to_f64(&d.x), to_f64(&d.r));
    let x = nhwc::<2, 4, 4, C>(&d.x);
    let (w, b) = (vector::<C>(&d.gamma), vector::<C>(&d.beta));
    // Running statistics: a copy the training-mode call may update, the originals for eval.
    let (mut rm, mut rv) = (vector::<C>(&d.running_mean), vector::<C>(&d.running_var));
    let (rm0, rv0) = (vector::<C>(&d.running_mean), vector::<C>(&d.running_var));
    let (gamma, beta) = (to_f64(&d.gamma), to_f64(&d.beta));
    let (rmf, rvf) = (to_f64(&d.running_mean), to_f64(&d.running_var));

    for train in [true, false] {
        let xt = x.leaky_trace();
        let y = if train {
            try_batch_norm2d_train(
                xt.with_empty_tape(),
                &w,
                &b,
                &mut rm,
                &mut rv,
                EPS,
                MOMENTUM,
            )
            .unwrap()
        } else {
            try_batch_norm2d_eval(xt.with_empty_tape(), &w, &b, &rm0, &rv0, EPS).unwrap()
        };
        let (_, grads) = weighted_backward!(xt + y, d.r);
        let f = |xp: &[f64]| {
            let bn = if train {
                batch_norm_train_ref(xp, &gamma, &beta, EPS)
            } else {
                batch_norm_ref(xp, &gamma, &beta, &rmf, &rvf, EPS)
            };
            weighted_sum(&bn, &rf) + weighted_sum(xp, &rf)
        };
        assert_grad(
            &format!("x + bn(x), train={train}: dL/dx"),
            &grads.get(&x).as_vec(),
            &fd_grad(&xf, 1e-5, f),
        );
    }

    let p = PoolDims {
        b: 2,
        h: 5,
        w: 5,
        c: 2,
        k: 3,
        s: 1,
        p: 1,
    };
    let mut g = rng(232);
    let xv = distinct(&mut g, p.x_len(), -1.0, 1.0);
    let r = uniform(&mut g, p.y_len(), -1.0, 1.0);
    let x = nhwc::<2, 5, 5, 2>(&xv);
    let xt = x.leaky_trace();
    let y = xt.with_empty_tape() + max_pool2d::<3, 1, 1, _, _, _, 2, _, _>(xt);
    let (_, grads) = weighted_backward!(y, r);
    let (xf, rf) = (to_f64(&xv), to_f64(&r));
    let fd = fd_grad(&xf, 1e-6, |xp| {
        weighted_sum(&max_pool_ref(&p, xp), &rf) + weighted_sum(xp, &rf)
    });
    assert_grad("x + maxpool(x): dL/dx", &grads.get(&x).as_vec(), &fd);

    // Average pooling 1×1 is the identity: x + avgpool₁(x) has gradient 2r.
    let xt = x.leaky_trace();
    let y = xt.with_empty_tape() + avg_pool2d::<1, _, _, _, 2, _, _>(xt);
    let (_, grads) = weighted_backward!(y, r);
    assert_grad(
        "x + avgpool1(x): dL/dx",
        &grads.get(&x).as_vec(),
        &rf.iter().map(|r| 2.0 * r).collect::<Vec<_>>(),
    );
}

/// A conv → batch-norm stack used the dfdx way (`alloc_grads`, `traced`, `backward`, no
/// zeroing in between): parameter gradients match finite differences of the reference chain,
/// add up over two passes, and reset with `zero_grads`. Non-leaky gradients keep only the
/// parameters', so this also checks that the kernels put every parameter gradient back.
#[test]
fn conv_bn_stack_parameter_gradients_accumulate_across_passes() {
    let d = dims::<2, 5, 5, 3, 4, 3, 1, 1>();
    let c = conv_data(d, 241);
    let bd = bn_data(1, 4, 242);
    let mut model: (Conv2dBias<3, 4, 3, 1, 1, Cpu>, BatchNorm2d<4, Cpu>) = (
        Conv2dBias {
            weight: dev().tensor_from_vec(
                c.w.clone(),
                (Const::<4>, Const::<3>, Const::<3>, Const::<3>),
            ),
            bias: vector::<4>(&c.bias),
        },
        BatchNorm2d::try_new(&dev()).unwrap(),
    );
    model.1.weight.copy_from(&bd.gamma);
    model.1.bias.copy_from(&bd.beta);
    let x = nhwc::<2, 5, 5, 3>(&c.x);
    let read = |m: &(Conv2dBias<3, 4, 3, 1, 1, Cpu>, BatchNorm2d<4, Cpu>),
                g: &Gradients<f32, Cpu>| {
        [
            g.get(&m.0.weight).as_vec(),
            g.get(&m.0.bias).as_vec(),
            g.get(&m.1.weight).as_vec(),
            g.get(&m.1.bias).as_vec(),
        ]
    };

    let grads = model.alloc_grads();
    let (_, grads) = weighted_backward!(model.forward_mut(x.clone().traced(grads)), c.r);
    let [gw, gb, gg, gbeta] = read(&model, &grads);

    let (xf, rf) = (to_f64(&c.x), to_f64(&c.r));
    let (w, b, gamma, beta) = (
        to_f64(&c.w),
        to_f64(&c.bias),
        to_f64(&bd.gamma),
        to_f64(&bd.beta),
    );
    let loss = |w: &[f64], b: &[f64], gamma: &[f64], beta: &[f64]| {
        weighted_sum(
            &batch_norm_train_ref(&conv2d_ref(&d, &xf, w, Some(b)), gamma, beta, EPS),
            &rf,
        )
    };
    let h = 1e-5;
    assert_grad(
        "stack: dL/dconv.weight",
        &gw,
        &fd_grad(&w, h, |p| loss(p, &b, &gamma, &beta)),
    );
    assert_grad(
        "stack: dL/dbn.weight",
        &gg,
        &fd_grad(&gamma, h, |p| loss(&w, &b, p, &beta)),
    );
    assert_grad(
        "stack: dL/dbn.bias",
        &gbeta,
        &fd_grad(&beta, h, |p| loss(&w, &b, &gamma, p)),
    );
    // Training-mode batch norm subtracts the batch mean: the conv bias cannot change the loss.
    assert_close("stack: dL/dconv.bias", &gb, &[0.0; 4], 0.0, 1e-4);

    // A second pass on the same gradients adds the same amounts (training-mode batch norm uses
    // the batch statistics, so the running-statistics update does not change them).
    let (_, mut grads) = weighted_backward!(model.forward_mut(x.clone().traced(grads)), c.r);
    let twice = read(&model, &grads);
    for (name, (g2, g1)) in ["conv.weight", "conv.bias", "bn.weight", "bn.bias"]
        .iter()
        .zip(twice.iter().zip([&gw, &gb, &gg, &gbeta]))
    {
        let expected: Vec<f64> = g1.iter().map(|&g| 2.0 * g as f64).collect();
        assert_close(
            &format!("stack, 2 passes: dL/d{name}"),
            g2,
            &expected,
            1e-5,
            1e-6,
        );
    }
    model.zero_grads(&mut grads);
    let (_, grads) = weighted_backward!(model.forward_mut(x.traced(grads)), c.r);
    assert_grad(
        "stack after zero_grads: dL/dconv.weight",
        &read(&model, &grads)[0],
        &to_f64(&gw),
    );
}

// =============================================================================================
// Compile-pass: the well-shaped counterparts of the `compile_fail` doctests of src/ops/mod.rs
// compile and run.

#[test]
fn well_shaped_layers_compile_and_chain() {
    let dev = dev();
    // (a) Conv2d<3, 64, 3, 1, 1> on a 3-channel image; (b) BatchNorm2d<64> after it.
    let conv: Conv2d<3, 64, 3, 1, 1, Cpu> = Conv2d {
        weight: dev.sample_normal(),
    };
    let mut bn: BatchNorm2d<64, Cpu> = BatchNorm2d::try_new(&dev).unwrap();
    let x: Tensor<Rank4<2, 8, 8, 3>, f32, Cpu> = dev.sample_uniform();
    let h: Tensor<Rank4<2, 8, 8, 64>, f32, Cpu> = bn.forward_mut(conv.forward(x.clone()));
    // (c) avg_pool2d::<8> on an 8×8 map; (d) flatten of the 1×1 result.
    let p: Tensor<Rank4<2, 1, 1, 64>, f32, Cpu> =
        try_avg_pool2d::<8, _, _, _, 64, _, _>(h).unwrap();
    let f: Tensor<Rank2<2, 64>, f32, Cpu> = try_flatten(p).unwrap();
    // Training-mode BN (β = 0) then a mean over the whole map: per channel, the per-image means
    // average to β = 0 over the batch.
    let v = f.as_vec();
    for c in 0..64 {
        assert!(
            (v[c] + v[64 + c]).abs() < 1e-4,
            "channel {c}: {} + {}",
            v[c],
            v[64 + c]
        );
    }
    assert!(
        v.iter().any(|v| v.abs() > 1e-3),
        "degenerate: all outputs zero"
    );
    // Conv2dBias is the function with a bias.
    let conv_b: Conv2dBias<3, 64, 3, 1, 1, Cpu> = Conv2dBias {
        weight: conv.weight.clone(),
        bias: dev.sample_normal(),
    };
    let y = conv_b.forward(x.clone()).as_vec();
    let expected =
        conv2d::<1, 1, _, _, _, 3, 64, 3, _, _>(x, &conv.weight, Some(&conv_b.bias)).as_vec();
    assert_eq!(y, expected);
}

// =============================================================================================
// Batch norm + residual + activation fused into one op

/// The fused op `f(bn(x) + r)` (what every ResNet block runs) gives the values and every
/// gradient (x, the residual, γ, β and the activation's α, β) of batch norm, `+`, activation
/// run as separate ops, in both modes, with and without the residual, for ReLU and for PSSiLU
/// with non-trivial parameters (α = 1.3, β = 0.2, so both parameter gradients are non-zero).
#[test]
fn fused_batch_norm_activation_matches_the_separate_ops() {
    check_fused_bn_act::<3, 5, 4, 6>(91, false);
}

/// The same over several of the backward pass's 256-row chunks (4·12·12 = 576 rows: two whole
/// chunks and a partial one), and with the input itself as the residual (`f(bn(x) + x)`: one
/// tensor whose gradient gets both contributions).
#[test]
fn fused_batch_norm_activation_over_several_chunks_and_with_the_input_as_residual() {
    check_fused_bn_act::<4, 12, 12, 3>(92, false);
    check_fused_bn_act::<4, 12, 12, 3>(93, true);
    check_fused_bn_act::<3, 5, 4, 6>(94, true);
}

#[allow(clippy::too_many_arguments)]
fn run_bn_act<A, const B: usize, const H: usize, const W: usize, const C: usize>(
    act: &A,
    fused: bool,
    train: bool,
    with_res: bool,
    alias: bool,
    data: [&[f32]; 7],
) -> Vec<Vec<f32>>
where
    A: robust_paf::activations::Activation<Cpu>,
{
    use robust_paf::ops::try_batch_norm2d_act;
    let [xv, resv, gamma, beta, rmean, rvar, upstream] = data;
    let x = nhwc::<B, H, W, C>(xv);
    let res = if alias {
        x.clone()
    } else {
        nhwc::<B, H, W, C>(resv)
    };
    let (g, b) = (vector::<C>(gamma), vector::<C>(beta));
    let (mut rm, mut rv) = (vector::<C>(rmean), vector::<C>(rvar));
    let xt = x.leaky_trace();
    // the input as residual: the same tensor (same id) on a fresh tape
    let rt = with_res.then(|| {
        if alias {
            xt.retaped()
        } else {
            res.clone().leaky_trace()
        }
    });
    let y = if fused {
        let (f, params) = act.pointwise_fn();
        let running = (!train).then_some((&rm, &rv));
        try_batch_norm2d_act(xt, rt, &g, &b, running, EPS, f, params)
            .unwrap()
            .0
    } else {
        let z = if train {
            try_batch_norm2d_train(xt, &g, &b, &mut rm, &mut rv, EPS, MOMENTUM).unwrap()
        } else {
            try_batch_norm2d_eval(xt, &g, &b, &rm, &rv, EPS).unwrap()
        };
        let z = match rt {
            Some(rt) => z + rt,
            None => z,
        };
        act.try_forward(z).unwrap()
    };
    let (values, grads) = weighted_backward!(y, upstream);
    let mut out = vec![values, grads.get(&x).as_vec(), grads.get(&g).as_vec()];
    out.push(grads.get(&b).as_vec());
    if with_res && !alias {
        out.push(grads.get(&res).as_vec());
    }
    if let (_, [Some(alpha), Some(beta)]) = act.pointwise_fn() {
        out.push(grads.get(alpha).as_vec());
        out.push(grads.get(beta).as_vec());
    }
    out
}

fn check_fused_bn_act<const B: usize, const H: usize, const W: usize, const C: usize>(
    seed: u64,
    alias: bool,
) {
    use robust_paf::activations::{Activation, Pssilu, Relu};
    let n = B * H * W * C;
    let mut r = rng(seed);
    let xv = uniform(&mut r, n, -2.0, 3.0);
    let resv = uniform(&mut r, n, -1.0, 1.0);
    let gamma = uniform(&mut r, C, 0.5, 1.5);
    let beta = uniform(&mut r, C, -0.5, 0.5);
    let rmean = uniform(&mut r, C, -0.3, 0.3);
    let rvar = uniform(&mut r, C, 0.5, 2.0);
    let upstream = uniform(&mut r, n, -1.0, 1.0);
    let mut pssilu = Pssilu::<Cpu>::new(&dev());
    pssilu.set_parameter("alpha", 1.3).unwrap();
    pssilu.set_parameter("beta", 0.2).unwrap();
    let relu = Relu::<Cpu>::new(&dev());
    let data = [
        &xv[..],
        &resv[..],
        &gamma[..],
        &beta[..],
        &rmean[..],
        &rvar[..],
        &upstream[..],
    ];
    for train in [true, false] {
        for with_res in [false, true] {
            let cases = [
                (
                    "ReLU",
                    run_bn_act::<_, B, H, W, C>(&relu, true, train, with_res, alias, data),
                    run_bn_act::<_, B, H, W, C>(&relu, false, train, with_res, alias, data),
                ),
                (
                    "PSSiLU",
                    run_bn_act::<_, B, H, W, C>(&pssilu, true, train, with_res, alias, data),
                    run_bn_act::<_, B, H, W, C>(&pssilu, false, train, with_res, alias, data),
                ),
            ];
            for (name, fused, separate) in cases {
                assert_eq!(fused.len(), separate.len());
                for (i, (f, s)) in fused.iter().zip(&separate).enumerate() {
                    assert!(f.iter().any(|v| *v != 0.0), "{name} output {i} is all zero");
                    let what = format!(
                        "{name} {B}x{H}x{W}x{C} train={train} residual={with_res} alias={alias} output {i}"
                    );
                    assert_close(&what, f, &to_f64(s), 1e-5, 1e-5);
                }
            }
        }
    }
}
