//! The composed ops (`robust_paf::ops::composed`, dfdx public ops only: the CUDA implementation of
//! issue 3) run on the `Cpu` device against the crate's fast CPU kernels: values and every
//! gradient (input, weight, bias, γ, β, activation parameters) within 1e-5 relative (plus 1e-5 of
//! the tensor's largest magnitude for values that cancel to ~0). Every shape the models use:
//! convolutions 3×3/1/1, 3×3/2/1, 1×1/1/0, 1×1/2/0, 7×7/2/3 with and without bias, batch norm in
//! both modes, average / global / 3×3/2/1 max pooling, and all twelve activations
//! (docs/reproduction.md §1.2) including negative raw α/β and PSSiLU at β = 1e-8.

use crate::common;

use common::*;
use dfdx::prelude::*;
use robust_paf::activations::{ActivationKind, PafFn};
use robust_paf::ops::{composed, Backend, ConvGeometry, PoolGeometry, ScalarFn};

/// `(values, [gradients...])` of `Σ r·y`, for the listed tensors.
fn assert_same(what: &str, fast: &[f32], composed: &[f32]) {
    assert_eq!(fast.len(), composed.len(), "{what}: length");
    let scale = fast.iter().fold(0.0f32, |m, v| m.max(v.abs())) as f64;
    assert!(
        scale > 0.0,
        "{what}: all zero, the comparison would prove nothing"
    );
    assert_close(what, composed, &to_f64(fast), 1e-5, 1e-5 * scale);
}

fn loss_grads<S: Shape>(
    y: Tensor<S, f32, Cpu, OwnedTape<f32, Cpu>>,
    r: &[f32],
) -> (Vec<f32>, Gradients<f32, Cpu>) {
    let rt = y.device().tensor_from_vec(r.to_vec(), *y.shape());
    let values = y.as_vec();
    (values, (y * rt).sum::<Rank0, _>().backward())
}

fn check_conv<const CI: usize, const CO: usize, const K: usize>(
    (b, h, w): (usize, usize, usize),
    stride: usize,
    pad: usize,
    with_bias: bool,
    seed: u64,
) {
    let dev = Cpu::default();
    let mut r = rng(seed);
    let ho = ConvGeometry::out_size(h, K, stride, pad);
    let wo = ConvGeometry::out_size(w, K, stride, pad);
    let g = ConvGeometry {
        batch: b,
        h,
        w,
        c_in: CI,
        ho,
        wo,
        c_out: CO,
        k: K,
        stride,
        pad,
    };
    let x = dev.tensor_from_vec(
        uniform(&mut r, b * h * w * CI, -1.0, 1.0),
        (b, h, w, Const::<CI>),
    );
    let wt: Tensor<Rank4<CO, K, K, CI>, f32, Cpu> = dev.tensor_from_vec(
        uniform(&mut r, CO * K * K * CI, -1.0, 1.0),
        Default::default(),
    );
    let bias: Tensor<Rank1<CO>, f32, Cpu> =
        dev.tensor_from_vec(uniform(&mut r, CO, -1.0, 1.0), Default::default());
    let up = uniform(&mut r, b * ho * wo * CO, -1.0, 1.0);
    let out = (b, ho, wo, Const::<CO>);
    let run = |use_composed: bool| {
        let b = with_bias.then_some(&bias);
        let xt = x.leaky_trace();
        let y = if use_composed {
            composed::conv2d(xt, &wt, b, out, g).unwrap()
        } else {
            Cpu::conv2d_kernel(xt, &wt, b, out, g).unwrap()
        };
        let (v, grads) = loss_grads(y, &up);
        let mut all = vec![v, grads.get(&x).as_vec(), grads.get(&wt).as_vec()];
        if with_bias {
            all.push(grads.get(&bias).as_vec());
        }
        all
    };
    let (fast, comp) = (run(false), run(true));
    for (i, (f, c)) in fast.iter().zip(&comp).enumerate() {
        assert_same(&format!("conv {g:?} bias={with_bias} output {i}"), f, c);
    }
}

#[test]
fn composed_convolution_matches_the_cpu_kernel() {
    check_conv::<5, 4, 3>((3, 7, 6), 1, 1, false, 1);
    check_conv::<5, 4, 3>((2, 7, 7), 2, 1, true, 2);
    check_conv::<3, 6, 1>((2, 5, 5), 1, 0, false, 3);
    check_conv::<4, 6, 1>((2, 8, 8), 2, 0, true, 4);
    check_conv::<3, 4, 7>((2, 12, 12), 2, 3, false, 5);
}

#[test]
fn composed_batch_norm_matches_the_cpu_kernel() {
    const C: usize = 5;
    let dev = Cpu::default();
    let mut r = rng(11);
    let shape = (4usize, 3usize, 5usize, Const::<C>);
    let n = 4 * 3 * 5 * C;
    let x = dev.tensor_from_vec(uniform(&mut r, n, -2.0, 3.0), shape);
    let gamma: Tensor<Rank1<C>, f32, Cpu> =
        dev.tensor_from_vec(uniform(&mut r, C, 0.5, 1.5), Default::default());
    let beta: Tensor<Rank1<C>, f32, Cpu> =
        dev.tensor_from_vec(uniform(&mut r, C, -0.5, 0.5), Default::default());
    let rm: Tensor<Rank1<C>, f32, Cpu> =
        dev.tensor_from_vec(uniform(&mut r, C, -0.3, 0.3), Default::default());
    let rv: Tensor<Rank1<C>, f32, Cpu> =
        dev.tensor_from_vec(uniform(&mut r, C, 0.5, 2.0), Default::default());
    let up = uniform(&mut r, n, -1.0, 1.0);
    for train in [true, false] {
        let run = |use_composed: bool| {
            let running = (!train).then_some((&rm, &rv));
            let xt = x.leaky_trace();
            let (y, stats) = if use_composed {
                composed::batch_norm(xt, &gamma, &beta, running, 1e-5).unwrap()
            } else {
                Cpu::batch_norm_kernel(xt, &gamma, &beta, running, 1e-5).unwrap()
            };
            let (v, grads) = loss_grads(y, &up);
            let outs = vec![
                v,
                grads.get(&x).as_vec(),
                grads.get(&gamma).as_vec(),
                grads.get(&beta).as_vec(),
            ];
            (outs, stats)
        };
        let ((fast, fs), (comp, cs)) = (run(false), run(true));
        for (i, (f, c)) in fast.iter().zip(&comp).enumerate() {
            assert_same(&format!("batch norm train={train} output {i}"), f, c);
        }
        assert_eq!(fs.is_some(), train);
        if let (Some(fs), Some(cs)) = (&fs, &cs) {
            assert_eq!(fs.count, cs.count);
            for (a, b) in fs
                .mean
                .iter()
                .zip(&cs.mean)
                .chain(fs.var.iter().zip(&cs.var))
            {
                assert!(
                    (a - b).abs() <= 1e-5 * (1.0 + a.abs()),
                    "statistics {a} vs {b}"
                );
            }
        } else {
            assert!(cs.is_none());
        }
    }
}

fn check_pool(
    b: usize,
    (h, w, c): (usize, usize, usize),
    (k, stride, pad): (usize, usize, usize),
    max: bool,
    seed: u64,
) {
    let dev = Cpu::default();
    let mut r = rng(seed);
    let ho = ConvGeometry::out_size(h, k, stride, pad);
    let wo = ConvGeometry::out_size(w, k, stride, pad);
    let g = PoolGeometry {
        batch: b,
        h,
        w,
        c,
        ho,
        wo,
        k,
        kw: k,
        stride,
        pad,
    };
    // distinct values: no ties in a max-pooling window
    let x = dev.tensor_from_vec(distinct(&mut r, b * h * w * c, -1.0, 1.0), (b, h, w, c));
    let up = uniform(&mut r, b * ho * wo * c, -1.0, 1.0);
    let run = |use_composed: bool| {
        let xt = x.leaky_trace();
        let out = (b, ho, wo, c);
        let y = if use_composed {
            composed::pool2d(xt, out, g, max).unwrap()
        } else {
            Cpu::pool2d_kernel(xt, out, g, max).unwrap()
        };
        let (v, grads) = loss_grads(y, &up);
        vec![v, grads.get(&x).as_vec()]
    };
    let (fast, comp) = (run(false), run(true));
    for (i, (f, cc)) in fast.iter().zip(&comp).enumerate() {
        assert_same(&format!("pool {g:?} max={max} output {i}"), f, cc);
    }
}

#[test]
fn composed_pooling_matches_the_cpu_kernel() {
    check_pool(2, (8, 8, 3), (2, 2, 0), false, 21);
    check_pool(2, (8, 8, 3), (4, 4, 0), false, 22);
    check_pool(3, (4, 4, 5), (4, 4, 0), false, 23); // global
    check_pool(2, (9, 9, 3), (3, 2, 1), true, 24); // the ImageNet stem's max pool
    check_pool(2, (8, 8, 3), (3, 2, 1), true, 25);
}

fn check_activation(kind: ActivationKind, alpha: f32, beta: f32, seed: u64) {
    let dev = Cpu::default();
    let mut r = rng(seed);
    let n = 2 * 3 * 4 * 5;
    let shape = (2usize, Const::<3>, Const::<4>, Const::<5>);
    let x = dev.tensor_from_vec(uniform(&mut r, n, -4.0, 4.0), shape);
    let up = uniform(&mut r, n, -1.0, 1.0);
    let pa: Tensor<Rank1<1>, f32, Cpu> = dev.tensor([alpha]);
    let pb: Tensor<Rank1<1>, f32, Cpu> = dev.tensor([beta]);
    let f = PafFn { kind, alpha, beta };
    let params: [Option<&Tensor<Rank1<1>, f32, Cpu>>; 2] = match kind {
        ActivationKind::Pssilu => [Some(&pa), Some(&pb)],
        _ if kind.num_params() >= 1 => [Some(&pa), None],
        _ => [None, None],
    };
    let run = |use_composed: bool| {
        let xt = x.leaky_trace();
        let y = if use_composed {
            f.compose(xt, params).unwrap()
        } else {
            Cpu::pointwise_kernel(xt, f, params).unwrap()
        };
        let (v, grads) = loss_grads(y, &up);
        let mut all = vec![v, grads.get(&x).as_vec()];
        for p in params.iter().flatten() {
            all.push(grads.get(*p).as_vec());
        }
        all
    };
    let (fast, comp) = (run(false), run(true));
    for (i, (fv, cv)) in fast.iter().zip(&comp).enumerate() {
        assert_same(&format!("{kind:?} α={alpha} β={beta} output {i}"), fv, cv);
    }
}

#[test]
fn composed_activations_match_the_cpu_kernel() {
    use ActivationKind::*;
    for (i, kind) in ActivationKind::ALL.into_iter().enumerate() {
        let (a0, b0) = kind.initial_params();
        let seed = 100 + i as u64;
        let mut cases = vec![(a0 as f32, b0 as f32)];
        match kind {
            Prelu | Pelu | Pprelu | Pblu | Psoftplus => cases.push((0.7, 0.0)),
            Psilu => cases.extend([(1.3, 0.0), (-0.7, 0.0)]),
            PssiluFixed => cases.extend([(1.3, 0.2), (-0.7, 1e-8)]),
            Pssilu => cases.extend([(1.3, 0.2), (-0.7, -0.3), (1.0, 1e-8)]),
            _ => {}
        }
        for (a, b) in cases {
            // PReLU and ReBLU start at α = 0: their α gradient is still non-zero, their output
            // on negative inputs is zero, which `assert_same` accepts (not all zero overall).
            check_activation(kind, a, b, seed);
        }
    }
}

/// The composed `f(bn(x) + r)` (CUDA's `batch_norm_act_kernel`) against the CPU's fused kernel,
/// both modes, with the residual, PSSiLU with both parameters learnable.
#[test]
fn composed_batch_norm_activation_matches_the_fused_cpu_kernel() {
    const C: usize = 4;
    let dev = Cpu::default();
    let mut r = rng(31);
    let shape = (3usize, 4usize, 2usize, Const::<C>);
    let n = 3 * 4 * 2 * C;
    let x = dev.tensor_from_vec(uniform(&mut r, n, -2.0, 3.0), shape);
    let res = dev.tensor_from_vec(uniform(&mut r, n, -1.0, 1.0), shape);
    let gamma: Tensor<Rank1<C>, f32, Cpu> =
        dev.tensor_from_vec(uniform(&mut r, C, 0.5, 1.5), Default::default());
    let beta: Tensor<Rank1<C>, f32, Cpu> =
        dev.tensor_from_vec(uniform(&mut r, C, -0.5, 0.5), Default::default());
    let rm: Tensor<Rank1<C>, f32, Cpu> =
        dev.tensor_from_vec(uniform(&mut r, C, -0.3, 0.3), Default::default());
    let rv: Tensor<Rank1<C>, f32, Cpu> =
        dev.tensor_from_vec(uniform(&mut r, C, 0.5, 2.0), Default::default());
    let pa: Tensor<Rank1<1>, f32, Cpu> = dev.tensor([1.3]);
    let pb: Tensor<Rank1<1>, f32, Cpu> = dev.tensor([0.2]);
    let f = PafFn {
        kind: ActivationKind::Pssilu,
        alpha: 1.3,
        beta: 0.2,
    };
    let up = uniform(&mut r, n, -1.0, 1.0);
    for train in [true, false] {
        let run = |use_composed: bool| {
            let running = (!train).then_some((&rm, &rv));
            let xt = x.leaky_trace();
            let rt = Some(res.leaky_trace());
            let params = [Some(&pa), Some(&pb)];
            let (y, _) = if use_composed {
                composed::batch_norm_act(xt, rt, &gamma, &beta, running, 1e-5, f, params).unwrap()
            } else {
                Cpu::batch_norm_act_kernel(xt, rt, &gamma, &beta, running, 1e-5, f, params).unwrap()
            };
            let (v, grads) = loss_grads(y, &up);
            vec![
                v,
                grads.get(&x).as_vec(),
                grads.get(&res).as_vec(),
                grads.get(&gamma).as_vec(),
                grads.get(&beta).as_vec(),
                grads.get(&pa).as_vec(),
                grads.get(&pb).as_vec(),
            ]
        };
        let (fast, comp) = (run(false), run(true));
        for (i, (fv, cv)) in fast.iter().zip(&comp).enumerate() {
            assert_same(&format!("bn+act train={train} output {i}"), fv, cv);
        }
    }
}
