//! Integration tests of the twelve activations (docs/reproduction.md §1.2–§1.4, §7): golden values,
//! finite-difference gradients (in f64 on `ScalarActivation` and through the dfdx tape in f32),
//! numerical stability for |x| up to 1e4, one instance shared by several sites, frozen
//! parameters, and shape properties.
//!
//! Golden numbers were generated with python3's `math` module; each snippet is written above
//! its numbers. Common python prelude:
//! ```python
//! from math import *
//! def sig(z): return 1/(1+exp(-z))
//! xs = [-3.0, -1.0, -0.5, 0.5, 1.0, 3.0]
//! ```

// `with_module!` bodies are shared by the zero-sized (Copy) and the parametric activations.
#![allow(clippy::clone_on_copy)]

use dfdx::nn::{
    BuildModule, DeviceBuildExt, NumParams, RecursiveWalker, ResetParams, TensorCollection,
    TensorOptions, TensorVisitor, ViewTensorName,
};
use dfdx::shapes::{Rank1, Shape};
use dfdx::tensor::{
    AsArray, Cpu, Gradients, NoneTape, Tensor, TensorFromVec, Trace, WithEmptyTape,
};
use dfdx::tensor_ops::{Backward, MeanTo, SumTo};
use rand::{Rng, SeedableRng};
use robust_paf::activations::prelude::*;
use robust_paf::activations::ActivationKind as K;
use robust_paf::activations::PSSILU_FIXED_BETA_DEFAULT;
use robust_paf::Error;

type Param = Tensor<Rank1<1>, f32, Cpu>;
type Vector<T = NoneTape> = Tensor<(usize,), f32, Cpu, T>;

/// Inputs for gradient checks: away from the kinks at 0 (and |x| ≤ 6).
const XS: [f64; 12] = [
    -6.0, -4.0, -2.5, -1.3, -0.7, -0.2, 0.15, 0.6, 1.1, 2.4, 4.0, 5.5,
];

/// (kind, raw α, raw β): the paper's init of every activation plus off-init, negative and (for
/// PSSiLU) tiny-β settings (docs/reproduction.md §1.2, §6 step 1).
fn cases() -> Vec<(ActivationKind, f64, f64)> {
    let mut v: Vec<_> = ActivationKind::ALL
        .iter()
        .map(|&k| (k, k.initial_params().0, k.initial_params().1))
        .collect();
    v.extend([
        (K::Prelu, -0.25, 0.0),
        (K::Prelu, 0.3, 0.0),
        (K::Pelu, 0.5, 0.0),
        (K::Pelu, -0.7, 0.0),
        (K::Pprelu, 1.5, 0.0),
        (K::Pprelu, -0.5, 0.0),
        (K::Pblu, 0.5, 0.0),
        (K::Pblu, -0.3, 0.0),
        (K::Psilu, 2.5, 0.0),
        (K::Psilu, -2.0, 0.0),
        (K::Psoftplus, 2.0, 0.0),
        (K::Psoftplus, -0.5, 0.0),
        (K::PssiluFixed, 1.0, 0.1),
        (K::PssiluFixed, -1.5, 0.42),
        (K::PssiluFixed, 2.0, 0.0),
        (K::Pssilu, 1.0, 0.3),
        (K::Pssilu, -1.5, -0.2),
        (K::Pssilu, 2.0, -1e-8),
        (K::Pssilu, 0.7, 0.6),
    ]);
    v
}

/// Builds the module of `kind` with raw (α, β), binds it to `$act` and its learnable parameter
/// tensors (in the order α, β) to `$params`, and evaluates `$body`.
macro_rules! with_module {
    ($dev:expr, $case:expr, |$act:ident, $params:ident| $body:expr) => {{
        let dev: &Cpu = $dev;
        let (kind, a, b): (ActivationKind, f64, f64) = $case;
        match kind {
            ActivationKind::Relu => {
                let $act = Relu::new(dev);
                let $params: Vec<&Param> = vec![];
                $body
            }
            ActivationKind::Elu => {
                let $act = Elu::new(dev);
                let $params: Vec<&Param> = vec![];
                $body
            }
            ActivationKind::Softplus => {
                let $act = Softplus::new(dev);
                let $params: Vec<&Param> = vec![];
                $body
            }
            ActivationKind::Silu => {
                let $act = Silu::new(dev);
                let $params: Vec<&Param> = vec![];
                $body
            }
            ActivationKind::Prelu => {
                let $act = Prelu::with_alpha(dev, a).unwrap();
                let $params = vec![&$act.alpha];
                $body
            }
            ActivationKind::Pelu => {
                let $act = Pelu::with_alpha(dev, a).unwrap();
                let $params = vec![&$act.alpha];
                $body
            }
            ActivationKind::Pprelu => {
                let $act = PreluPlus::with_alpha(dev, a).unwrap();
                let $params = vec![&$act.alpha];
                $body
            }
            ActivationKind::Pblu => {
                let $act = Reblu::with_alpha(dev, a).unwrap();
                let $params = vec![&$act.alpha];
                $body
            }
            ActivationKind::Psilu => {
                let $act = Psilu::with_alpha(dev, a).unwrap();
                let $params = vec![&$act.alpha];
                $body
            }
            ActivationKind::Psoftplus => {
                let $act = Psoftplus::with_alpha(dev, a).unwrap();
                let $params = vec![&$act.alpha];
                $body
            }
            ActivationKind::PssiluFixed => {
                let $act = PssiluFixed::with_params(dev, a, b).unwrap();
                let $params = vec![&$act.alpha];
                $body
            }
            ActivationKind::Pssilu => {
                let $act = Pssilu::with_params(dev, a, b).unwrap();
                let $params = vec![&$act.alpha, &$act.beta];
                $body
            }
        }
    }};
}

fn vector(dev: &Cpu, xs: &[f64]) -> Vector {
    dev.tensor_from_vec(xs.iter().map(|&x| x as f32).collect(), (xs.len(),))
}

fn to_f64(t: &Vector) -> Vec<f64> {
    t.as_vec().into_iter().map(f64::from).collect()
}

fn close(got: f64, want: f64, tol: f64) -> bool {
    (got - want).abs() <= tol * (1.0 + want.abs())
}

/// `Σ wᵢ f(xᵢ)` through the tape: returns (∂L/∂x, [∂L/∂p for p in params]).
fn tape_gradients<A: Activation<Cpu>>(
    dev: &Cpu,
    act: &A,
    params: &[&Param],
    xs: &[f64],
    ws: &[f64],
) -> (Vec<f64>, Vec<f64>) {
    let x = vector(dev, xs);
    let w = vector(dev, ws);
    let y = act.forward(x.leaky_trace());
    let loss = (y * w).sum::<(), _>();
    let grads = loss.backward();
    let gx = to_f64(&grads.get(&x));
    let gp = params
        .iter()
        .map(|p| grads.get(*p).as_vec()[0] as f64)
        .collect();
    (gx, gp)
}

/// `Σ wᵢ f(xᵢ)` in f64 on the scalar function.
fn scalar_loss(s: &ScalarActivation, xs: &[f64], ws: &[f64]) -> f64 {
    xs.iter().zip(ws).map(|(&x, &w)| w * s.value(x)).sum()
}

/// Central-difference step for a raw parameter: small, and never across the kink of |p| at 0.
fn param_step(p: f64, h: f64) -> f64 {
    if p == 0.0 {
        h
    } else {
        (h * p.abs().max(1.0)).min(p.abs() / 4.0)
    }
}

fn with_param(s: &ScalarActivation, i: usize, v: f64) -> ScalarActivation {
    let mut s = *s;
    if i == 0 {
        s.alpha = v;
    } else {
        s.beta = v;
    }
    s
}

fn weights(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    // f32-representable weights in ±[0.25, 1.25].
    (0..n)
        .map(|_| {
            let w: f64 = rng.gen_range(0.25..1.25);
            let sign = if rng.gen_bool(0.5) { 1.0 } else { -1.0 };
            (sign * w) as f32 as f64
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Finite differences in f64 on the closed forms (docs/reproduction.md §1.2, §7; §6 step 1).

#[test]
fn scalar_derivatives_match_central_differences_in_f64() {
    for (kind, a, b) in cases() {
        let s = ScalarActivation::new(kind, a, b);
        for &x in &XS {
            let h = 1e-6;
            let fd = (s.value(x + h) - s.value(x - h)) / (2.0 * h);
            assert!(
                close(s.derivative(x), fd, 1e-6),
                "{kind:?} α={a} β={b} x={x}: f'"
            );
            let fd2 = (s.derivative(x + h) - s.derivative(x - h)) / (2.0 * h);
            assert!(
                close(s.second_derivative(x), fd2, 1e-6),
                "{kind:?} α={a} β={b} x={x}: f''"
            );

            let dp = s.parameter_derivatives(x);
            let learnable = kind.num_params();
            for (i, p) in [a, b].into_iter().enumerate().take(learnable) {
                // β = ±1e-8 (docs/reproduction.md §1.2): the step must stay on one side of |β|'s
                // kink.
                let h = param_step(p, 1e-6);
                let fd = (with_param(&s, i, p + h).value(x) - with_param(&s, i, p - h).value(x))
                    / (2.0 * h);
                assert!(
                    close(dp[i], fd, 1e-5),
                    "{kind:?} α={a} β={b} x={x}: ∂f/∂p{i} {} vs {fd}",
                    dp[i]
                );
            }
            for (i, d) in dp.iter().enumerate().skip(learnable) {
                assert_eq!(*d, 0.0, "{kind:?}: no parameter {i}");
            }
        }
    }
}

#[test]
fn param_step_never_crosses_zero() {
    for p in [1e-8, -1e-8, 0.3, -0.2, 1.0, 100.0] {
        let h = param_step(p, 1e-6);
        assert!(h > 0.0 && h < p.abs(), "p = {p}, h = {h}");
    }
}

// docs/reproduction.md §7: df/da = x²σ(1−σ)/(1−B)·sign(a), df/db = x(σ−1)/(1−B)²·sign(b), with
// negative raw α and β, so a missing sign(·) fails here.
// python: a,b=-1.5,-0.2; A,B=abs(a),abs(b)
//   for x in [-2.0,-0.5,1.0,3.0]: s=sig(A*x)
//     dx=((s-B)+x*A*s*(1-s))/(1-B); da=-x*x*s*(1-s)/(1-B); db=-x*(s-1)/(1-B)**2
const PSSILU_GRAD_XS: [f64; 4] = [-2.0, -0.5, 1.0, 3.0];
const PSSILU_GRAD_GOLDEN: [[f64; 3]; 4] = [
    [-0.3601301325, -0.2258832987, -2.976794146],
    [-0.05324993062, -0.06809218555, -0.5306083587],
    [1.051617693, -0.1864330651, 0.2850398809],
    [1.047388864, -0.1222450844, 0.05150129358],
];

#[test]
fn pssilu_gradients_match_paper_section_7_with_negative_raw_parameters() {
    let s = ScalarActivation::new(ActivationKind::Pssilu, -1.5, -0.2);
    for (x, g) in PSSILU_GRAD_XS.iter().zip(PSSILU_GRAD_GOLDEN) {
        let dp = s.parameter_derivatives(*x);
        assert!(close(s.derivative(*x), g[0], 1e-9), "x={x}");
        assert!(close(dp[0], g[1], 1e-9), "x={x}");
        assert!(close(dp[1], g[2], 1e-9), "x={x}");
    }
    // Through the tape, each element separately (unit upstream gradient).
    let dev = Cpu::default();
    let act = Pssilu::with_params(&dev, -1.5, -0.2).unwrap();
    for (x, g) in PSSILU_GRAD_XS.iter().zip(PSSILU_GRAD_GOLDEN) {
        let (gx, gp) = tape_gradients(&dev, &act, &[&act.alpha, &act.beta], &[*x], &[1.0]);
        assert!(close(gx[0], g[0], 1e-5) && close(gp[0], g[1], 1e-5) && close(gp[1], g[2], 1e-5));
    }
}

// ---------------------------------------------------------------------------------------------
// Through the dfdx tape in f32 (docs/reproduction.md §6 step 1).

#[test]
fn tape_gradients_match_finite_differences() {
    let dev = Cpu::default();
    for (ci, case) in cases().into_iter().enumerate() {
        let (kind, a, b) = case;
        let ws = weights(XS.len(), ci as u64);
        with_module!(&dev, case, |act, params| {
            let (gx, gp) = tape_gradients(&dev, &act, &params, &XS, &ws);
            assert_eq!(gp.len(), kind.num_params());
            let s = act.scalar();

            // (1) Against f64 central differences of the same loss (tight: f32 rounding only).
            for (i, &x) in XS.iter().enumerate() {
                let h = 1e-6;
                let fd = ws[i] * (s.value(x + h) - s.value(x - h)) / (2.0 * h);
                assert!(
                    close(gx[i], fd, 1e-4),
                    "{kind:?} α={a} β={b} x={x}: {} vs {fd}",
                    gx[i]
                );
            }
            for (i, g) in gp.iter().enumerate() {
                let p = if i == 0 { s.alpha } else { s.beta };
                let h = param_step(p, 1e-6);
                let fd = (scalar_loss(&with_param(&s, i, p + h), &XS, &ws)
                    - scalar_loss(&with_param(&s, i, p - h), &XS, &ws))
                    / (2.0 * h);
                assert!(
                    close(*g, fd, 1e-4),
                    "{kind:?} α={a} β={b} param {i}: {g} vs {fd}"
                );
            }

            // (2) Against f32 central differences of the module's own forward (loose: the step
            // must be large in f32). Skipped for a parameter within 10 steps of |p|'s kink.
            let loss32 = |m: &dyn Fn(Vector) -> Vector, xs: &[f64]| -> f64 {
                to_f64(&m(vector(&dev, xs)))
                    .iter()
                    .zip(&ws)
                    .map(|(y, w)| y * w)
                    .sum()
            };
            let h = 1e-2;
            let plus: Vec<f64> = XS.iter().map(|x| x + h).collect();
            let minus: Vec<f64> = XS.iter().map(|x| x - h).collect();
            let yp = to_f64(&act.forward(vector(&dev, &plus)));
            let ym = to_f64(&act.forward(vector(&dev, &minus)));
            for i in 0..XS.len() {
                let fd = ws[i] * (yp[i] - ym[i]) / (2.0 * h);
                assert!(
                    close(gx[i], fd, 5e-3),
                    "{kind:?} α={a} β={b} x={}: f32 fd",
                    XS[i]
                );
            }
            for (i, g) in gp.iter().enumerate() {
                let name = ["alpha", "beta"][i];
                let p = act.parameter(name).unwrap();
                let h = 1e-2 * p.abs().max(1.0);
                if p.abs() < 10.0 * h && p != 0.0 {
                    continue;
                }
                let mut up = act.clone();
                up.set_parameter(name, p + h).unwrap();
                let mut down = act.clone();
                down.set_parameter(name, p - h).unwrap();
                let fd = (loss32(&|x| up.forward(x), &XS) - loss32(&|x| down.forward(x), &XS))
                    / (2.0 * h);
                assert!(
                    close(*g, fd, 5e-3),
                    "{kind:?} α={a} β={b} {name}: {g} vs f32 fd {fd}"
                );
            }
        });
    }
}

#[test]
fn tape_gradient_of_exp_mean_matches_closed_form() {
    // The dfdx idiom (its own op tests): `.exp().mean().backward()` gives non-trivial upstream gradients.
    // PSSiLU at the paper's init, β = 1e-8 (docs/reproduction.md §1.2): d|β|/dβ = sign(β) = 1 ≠ 0.
    let dev = Cpu::default();
    let act = Pssilu::new(&dev);
    let xs = [-2.0, -0.5, 0.25, 1.5];
    let x = vector(&dev, &xs);
    let grads = act
        .forward(x.leaky_trace())
        .exp()
        .mean::<(), _>()
        .backward();
    let s = act.scalar();
    let n = xs.len() as f64;
    let gx = to_f64(&grads.get(&x));
    let (mut ga, mut gb) = (0.0, 0.0);
    for (i, &x) in xs.iter().enumerate() {
        let up = s.value(x).exp() / n;
        assert!(close(gx[i], up * s.derivative(x), 1e-5));
        ga += up * s.parameter_derivatives(x)[0];
        gb += up * s.parameter_derivatives(x)[1];
    }
    assert!(close(grads.get(&act.alpha).as_vec()[0] as f64, ga, 1e-5));
    assert!(close(grads.get(&act.beta).as_vec()[0] as f64, gb, 1e-5));
    assert!(gb.abs() > 0.1, "β's gradient is not killed at β = 1e-8");
}

// ---------------------------------------------------------------------------------------------
// Golden values.

// docs/reproduction.md §1.3: PSSiLU f(x) at x = (−5, −2, −1, 0, 1, 2, 5), four (α, β) rows,
// to 1e-4.
// python: [round(x*(sig(a*x)-b)/(1-b),4) for x in (-5,-2,-1,0,1,2,5)]
const PAPER_XS: [f64; 7] = [-5.0, -2.0, -1.0, 0.0, 1.0, 2.0, 5.0];
const PAPER_ROWS: [(f64, f64, [f64; 7]); 4] = [
    (
        1.0,
        0.0,
        [-0.0335, -0.2384, -0.2689, 0.0, 0.7311, 1.7616, 4.9665],
    ),
    (
        1.0,
        0.1,
        [0.5184, -0.0427, -0.1877, 0.0, 0.7012, 1.7351, 4.9628],
    ),
    (
        1.0,
        0.3,
        [2.0951, 0.5166, 0.0444, 0.0, 0.6158, 1.6594, 4.9522],
    ),
    (
        2.0,
        0.3,
        [2.1425, 0.8058, 0.2583, 0.0, 0.8297, 1.9486, 4.9997],
    ),
];

#[test]
fn pssilu_matches_paper_spot_values() {
    let dev = Cpu::default();
    let x = vector(&dev, &PAPER_XS);
    for (a, b, want) in PAPER_ROWS {
        let learnable = Pssilu::with_params(&dev, a, b).unwrap();
        let fixed = PssiluFixed::with_params(&dev, a, b).unwrap();
        let y1 = to_f64(&learnable.forward(x.clone()));
        let y2 = to_f64(&fixed.forward(x.clone()));
        for i in 0..PAPER_XS.len() {
            let s = ScalarActivation::new(ActivationKind::Pssilu, a, b).value(PAPER_XS[i]);
            assert!(
                (s - want[i]).abs() <= 0.5e-4 + 1e-12,
                "α={a} β={b} x={}",
                PAPER_XS[i]
            );
            assert!(
                (y1[i] - want[i]).abs() <= 1e-4,
                "Pssilu α={a} β={b} x={}",
                PAPER_XS[i]
            );
            assert!(
                (y2[i] - want[i]).abs() <= 1e-4,
                "PssiluFixed α={a} β={b} x={}",
                PAPER_XS[i]
            );
        }
        // β = 0, α = 1 is SiLU.
        if a == 1.0 && b == 0.0 {
            let silu = to_f64(&Silu::new(&dev).forward(x.clone()));
            assert!(silu.iter().zip(&y1).all(|(s, p)| (s - p).abs() < 1e-6));
        }
    }
}

const GOLDEN_XS: [f64; 6] = [-3.0, -1.0, -0.5, 0.5, 1.0, 3.0];

/// (kind, α, β, f at GOLDEN_XS), each from the python formula in the comment
/// (docs/reproduction.md §1.2).
#[rustfmt::skip]
const GOLDEN: [(ActivationKind, f64, f64, [f64; 6]); 13] = [
    // python: [max(x,0.0) for x in xs]
    (ActivationKind::Relu, 0.0, 0.0, [0.0, 0.0, 0.0, 0.5, 1.0, 3.0]),
    // python: [x if x>0 else exp(x)-1 for x in xs]
    (ActivationKind::Elu, 0.0, 0.0, [-0.9502129316, -0.6321205588, -0.3934693403, 0.5, 1.0, 3.0]),
    // python: [log(1+exp(x)) for x in xs]
    (ActivationKind::Softplus, 0.0, 0.0, [0.04858735157, 0.3132616875, 0.4740769842, 0.9740769842, 1.313261688, 3.048587352]),
    // python: [x*sig(x) for x in xs]
    (ActivationKind::Silu, 0.0, 0.0, [-0.1422776195, -0.2689414214, -0.1887703344, 0.3112296656, 0.7310585786, 2.85772238]),
    // python: [x if x>0 else -0.25*x for x in xs]
    (ActivationKind::Prelu, -0.25, 0.0, [0.75, 0.25, 0.125, 0.5, 1.0, 3.0]),
    // python: [x if x>0 else 0.5*(exp(x)-1) for x in xs]
    (ActivationKind::Pelu, 0.5, 0.0, [-0.4751064658, -0.3160602794, -0.1967346701, 0.5, 1.0, 3.0]),
    // python: [1.5*x if x>0 else 0.0 for x in xs]
    (ActivationKind::Pprelu, 1.5, 0.0, [0.0, 0.0, 0.0, 0.75, 1.5, 4.5]),
    // python: [0.5*(sqrt(x*x+1)-1)+x if x>0 else 0.0 for x in xs]
    (ActivationKind::Pblu, 0.5, 0.0, [0.0, 0.0, 0.0, 0.5590169944, 1.207106781, 4.08113883]),
    // python (|α| = 2 for raw α = −2): [x*sig(2*x) for x in xs]
    (ActivationKind::Psilu, -2.0, 0.0, [-0.00741786947, -0.119202922, -0.1344707107, 0.3655292893, 0.880797078, 2.992582131]),
    // python: [log(1+exp(2*x))/2 for x in xs]
    (ActivationKind::Psoftplus, 2.0, 0.0, [0.001237842569, 0.06346400552, 0.1566308438, 0.6566308438, 1.063464006, 3.001237843]),
    // python (raw α, no abs): [log(1+exp(-0.5*x))/(-0.5) for x in xs]
    (ActivationKind::Psoftplus, -0.5, 0.0, [-3.402826556, -1.948153968, -1.65187884, -1.15187884, -0.9481539684, -0.402826556]),
    // python: [x*(sig(x)-0.3)/0.7 for x in xs]
    (ActivationKind::PssiluFixed, 1.0, 0.3, [1.082460544, 0.04436939804, -0.055386192, 0.2303280937, 0.6157979695, 2.796746258]),
    // python (|α| = 1.5, |β| = 0.2): [x*(sig(1.5*x)-0.2)/0.8 for x in xs]
    (ActivationKind::Pssilu, -1.5, -0.2, [0.7087989651, 0.02196809524, -0.07551331302, 0.299486687, 0.7719680952, 2.958798965]),
];

#[test]
fn every_activation_matches_its_formula() {
    let dev = Cpu::default();
    let x = vector(&dev, &GOLDEN_XS);
    let mut seen = std::collections::HashSet::new();
    for (kind, a, b, want) in GOLDEN {
        seen.insert(kind);
        let s = ScalarActivation::new(kind, a, b);
        let y = with_module!(&dev, (kind, a, b), |act, _params| to_f64(
            &act.forward(x.clone())
        ));
        for i in 0..GOLDEN_XS.len() {
            assert!(
                close(s.value(GOLDEN_XS[i]), want[i], 1e-9),
                "{kind:?} x={}",
                GOLDEN_XS[i]
            );
            assert!(
                close(y[i], want[i], 1e-6),
                "{kind:?} module x={}",
                GOLDEN_XS[i]
            );
        }
    }
    assert_eq!(seen.len(), 12, "every activation has golden values");
}

#[test]
fn kinks_follow_the_code_masks() {
    // docs/reproduction.md §7 "Step-function PAFs": at x = 0, PReLU outputs 0 with gradient 0 in
    // every branch; ReLU′(0) = 0; PELU uses x ≤ 0 for the exponential branch; ReBLU is 0 for x ≤ 0.
    let dev = Cpu::default();
    let prelu = Prelu::with_alpha(&dev, -0.5).unwrap();
    let (gx, gp) = tape_gradients(&dev, &prelu, &[&prelu.alpha], &[0.0], &[1.0]);
    assert_eq!((gx[0], gp[0]), (0.0, 0.0));
    let (gx, _) = tape_gradients(&dev, &Relu::new(&dev), &[], &[0.0], &[1.0]);
    assert_eq!(gx[0], 0.0);
    let pelu = Pelu::with_alpha(&dev, 0.5).unwrap();
    let (gx, gp) = tape_gradients(&dev, &pelu, &[&pelu.alpha], &[0.0], &[1.0]);
    assert_eq!((gx[0], gp[0]), (0.5, 0.0));
    let reblu = Reblu::with_alpha(&dev, 2.0).unwrap();
    let (gx, gp) = tape_gradients(&dev, &reblu, &[&reblu.alpha], &[0.0], &[1.0]);
    assert_eq!((gx[0], gp[0]), (0.0, 0.0));
    let pp = PreluPlus::new(&dev);
    let (gx, gp) = tape_gradients(&dev, &pp, &[&pp.alpha], &[0.0], &[1.0]);
    assert_eq!((gx[0], gp[0]), (0.0, 0.0));
    assert_eq!(
        ScalarActivation::new(ActivationKind::Pelu, 0.5, 0.0).derivative(0.0),
        0.5
    );
    assert_eq!(
        ScalarActivation::initial(ActivationKind::Elu).second_derivative(0.0),
        1.0
    );
}

// ---------------------------------------------------------------------------------------------
// Stability (docs/reproduction.md §7 "Softplus/PSoftplus stability").

#[test]
fn large_inputs_and_alphas_stay_finite() {
    let dev = Cpu::default();
    let xs = [-1e4, -1e3, -30.0, 30.0, 1e3, 1e4];
    let ws = [1.0; 6];
    let mut settings = vec![];
    for kind in ActivationKind::ALL {
        let (a0, b0) = kind.initial_params();
        settings.push((kind, a0, b0));
        if kind.num_params() > 0 {
            for a in [100.0, -100.0, 1e-3] {
                settings.push((kind, a, b0));
            }
        }
    }
    settings.extend([
        (K::Pssilu, 100.0, 0.9),
        (K::Pssilu, -100.0, -0.5),
        (K::PssiluFixed, 100.0, 0.42),
    ]);
    for case in settings {
        let (kind, a, b) = case;
        let s = ScalarActivation::new(kind, a, b);
        for &x in &xs {
            let d = s.parameter_derivatives(x);
            assert!(
                s.value(x).is_finite()
                    && s.derivative(x).is_finite()
                    && s.second_derivative(x).is_finite()
                    && d.iter().all(|v| v.is_finite()),
                "f64 {kind:?} α={a} β={b} x={x}"
            );
        }
        with_module!(&dev, case, |act, params| {
            let y = to_f64(&act.forward(vector(&dev, &xs)));
            let (gx, gp) = tape_gradients(&dev, &act, &params, &xs, &ws);
            assert!(
                y.iter().all(|v| v.is_finite()),
                "{kind:?} α={a} β={b}: {y:?}"
            );
            assert!(
                gx.iter().chain(&gp).all(|v| v.is_finite()),
                "{kind:?} α={a} β={b}: {gx:?} {gp:?}"
            );
        });
    }

    let y = to_f64(&Softplus::new(&dev).forward(vector(&dev, &[1e4, -1e4, 1e3, -1e3])));
    assert_eq!(y[0], 1e4);
    assert!(y[1] >= 0.0 && y[1] < 1e-30);
    assert_eq!(y[2], 1e3);
    assert!(y[3] >= 0.0 && y[3] < 1e-30);
    let psp = Psoftplus::with_alpha(&dev, 100.0).unwrap();
    let y = to_f64(&psp.forward(vector(&dev, &[1e4, -1e4])));
    assert_eq!(y[0], 1e4);
    assert!(y[1] >= 0.0 && y[1] < 1e-30);
}

// ---------------------------------------------------------------------------------------------
// One instance shared by many sites (docs/reproduction.md §1.1).

#[test]
fn shared_instance_sums_parameter_gradients_over_sites() {
    let dev = Cpu::default();
    let act = Pssilu::with_params(&dev, 1.3, 0.2).unwrap();
    let xs = [-2.0, -0.6, 0.4, 1.7];
    let ws = weights(xs.len(), 7);
    let x = vector(&dev, &xs);
    let w = vector(&dev, &ws);

    // Two branches, f(x) + f(2x), on one tape.
    let xt = x.leaky_trace();
    let y = act.forward(xt.with_empty_tape()) + act.forward(xt * 2.0);
    let g = (y * w.clone()).sum::<(), _>().backward();
    let (ga, gb) = (
        g.get(&act.alpha).as_vec()[0] as f64,
        g.get(&act.beta).as_vec()[0] as f64,
    );

    // ... equals the sum of the two sites taken separately.
    let twice: Vec<f64> = xs.iter().map(|x| 2.0 * x).collect();
    let (_, p1) = tape_gradients(&dev, &act, &[&act.alpha, &act.beta], &xs, &ws);
    let (_, p2) = tape_gradients(&dev, &act, &[&act.alpha, &act.beta], &twice, &ws);
    assert!(close(ga, p1[0] + p2[0], 1e-5) && close(gb, p1[1] + p2[1], 1e-5));
    assert!(
        p1[0].abs() > 1e-3 && p2[0].abs() > 1e-3,
        "both sites contribute"
    );

    // Nested f(f(x)): against f64 central differences of the composite.
    let grads = (act.forward(act.forward(x.leaky_trace())) * w.clone())
        .sum::<(), _>()
        .backward();
    let s = act.scalar();
    let composite = |s: &ScalarActivation| -> f64 {
        xs.iter()
            .zip(&ws)
            .map(|(&x, w)| w * s.value(s.value(x)))
            .sum()
    };
    for (i, p) in [s.alpha, s.beta].into_iter().enumerate() {
        let h = 1e-6;
        let fd = (composite(&with_param(&s, i, p + h)) - composite(&with_param(&s, i, p - h)))
            / (2.0 * h);
        let got = grads.get([&act.alpha, &act.beta][i]).as_vec()[0] as f64;
        assert!(close(got, fd, 1e-4), "param {i}: {got} vs {fd}");
    }

    // Changing α changes the output at every site.
    let mut act = act;
    act.set_parameter("alpha", 2.0).unwrap();
    let s2 = act.scalar();
    assert_eq!(s2.alpha, 2.0);
    let y1 = to_f64(&act.forward(x.clone()));
    let y2 = to_f64(&act.forward(vector(&dev, &twice)));
    for i in 0..xs.len() {
        assert!(close(y1[i], s2.value(xs[i]), 1e-6) && close(y2[i], s2.value(twice[i]), 1e-6));
        assert!((y1[i] - s.value(xs[i])).abs() > 1e-4);
    }
}

// ---------------------------------------------------------------------------------------------
// Freezing (docs/reproduction.md §1.4).

#[test]
fn frozen_alpha_gets_no_gradient_while_beta_still_learns() {
    let dev = Cpu::default();
    let mut act = Pssilu::new(&dev);
    act.freeze("alpha", 2.0).unwrap();
    assert_eq!(act.frozen(), vec![("alpha", 2.0)]);
    assert_eq!(act.alpha.as_vec(), vec![2.0]);

    let xs = [-2.0, -0.5, 0.5, 2.0];
    let x = vector(&dev, &xs);
    // Leaky gradients (every gradient kept) with α's and β's pre-allocated to zero, as a
    // training loop has them: α's must stay exactly zero.
    let mut grads: Gradients<f32, Cpu> = Gradients::leaky();
    grads.try_alloc_for(&act.alpha).unwrap();
    grads.try_alloc_for(&act.beta).unwrap();
    let g = act.forward(x.trace(grads)).exp().mean::<(), _>().backward();
    assert_eq!(
        g.get(&act.alpha).as_vec(),
        vec![0.0],
        "frozen α gets no gradient"
    );
    assert!(
        g.get(&act.beta).as_vec()[0].abs() > 1e-3,
        "β (not frozen) still gets one"
    );
    assert!(g.get(&x).as_vec().iter().all(|v| v.abs() > 1e-4));

    // The forward pass uses the frozen value, even if the tensor was overwritten.
    let want: Vec<f64> = xs
        .iter()
        .map(|&x| ScalarActivation::new(ActivationKind::Pssilu, 2.0, 1e-8).value(x))
        .collect();
    act.alpha.copy_from(&[5.0]);
    let y = to_f64(&act.forward(x.clone()));
    assert!(y.iter().zip(&want).all(|(y, w)| close(*y, *w, 1e-6)));
    assert_eq!(act.parameter("alpha").unwrap(), 2.0);
    act.restore_frozen();
    assert_eq!(act.alpha.as_vec(), vec![2.0]);

    // set_parameter on a frozen parameter moves the frozen value too.
    act.set_parameter("alpha", 3.0).unwrap();
    assert_eq!(act.frozen(), vec![("alpha", 3.0)]);
    act.alpha.copy_from(&[0.0]);
    act.restore_frozen();
    assert_eq!(act.alpha.as_vec(), vec![3.0]);

    // Unfrozen again: α's gradient flows.
    act.unfreeze("alpha").unwrap();
    assert!(act.frozen().is_empty());
    let g = act
        .forward(x.leaky_trace())
        .exp()
        .mean::<(), _>()
        .backward();
    assert!(g.get(&act.alpha).as_vec()[0].abs() > 1e-3);
}

#[test]
fn frozen_single_parameter_still_passes_input_gradients() {
    let dev = Cpu::default();
    for kind in ActivationKind::ALL
        .into_iter()
        .filter(|k| k.num_params() == 1)
    {
        let (a0, b0) = kind.initial_params();
        with_module!(&dev, (kind, a0, b0), |act, params| {
            let mut act = act.clone();
            act.freeze("alpha", 0.75).unwrap();
            let x = vector(&dev, &[-1.5, -0.5, 0.5, 1.5]);
            let mut grads: Gradients<f32, Cpu> = Gradients::leaky();
            grads.try_alloc_for(params[0]).unwrap();
            let g = act.forward(x.trace(grads)).exp().mean::<(), _>().backward();
            // The clone's α has the original's tensor id, so `params[0]` names it.
            assert_eq!(g.get(params[0]).as_vec(), vec![0.0], "{kind:?}");
            assert!(
                g.get(&x).as_vec().iter().any(|v| v.abs() > 1e-3),
                "{kind:?}"
            );
            assert_eq!(act.scalar().alpha, 0.75);
        });
    }
}

#[test]
fn invalid_parameters_are_errors_not_panics() {
    let dev = Cpu::default();
    let mut p = Pssilu::new(&dev);
    assert!(matches!(
        p.freeze("gamma", 1.0),
        Err(Error::UnknownParameter { .. })
    ));
    assert!(matches!(
        p.set_parameter("gamma", 1.0),
        Err(Error::UnknownParameter { .. })
    ));
    assert!(matches!(
        p.unfreeze("gamma"),
        Err(Error::UnknownParameter { .. })
    ));
    assert!(matches!(
        p.parameter("gamma"),
        Err(Error::UnknownParameter { .. })
    ));
    assert!(matches!(
        p.freeze("beta", 1.0),
        Err(Error::InvalidParameter { .. })
    ));
    assert!(matches!(
        p.freeze("beta", -1.5),
        Err(Error::InvalidParameter { .. })
    ));
    assert!(matches!(
        p.set_parameter("beta", 0.999_999_999),
        Err(Error::InvalidParameter { .. })
    ));
    assert!(matches!(
        p.set_parameter("alpha", f64::NAN),
        Err(Error::NonFinite { .. })
    ));
    assert!(matches!(
        p.set_parameter("alpha", 1e39),
        Err(Error::NonFinite { .. })
    ));
    assert!(p.frozen().is_empty(), "failed freezes leave nothing frozen");
    assert_eq!(
        p.parameters(),
        vec![("alpha", 1.0), ("beta", 1e-8f32 as f64)]
    );
    assert!(Pssilu::with_params(&dev, 1.0, 1.0).is_err());

    assert!(matches!(
        PssiluFixed::new(&dev, 1.0),
        Err(Error::InvalidParameter { .. })
    ));
    assert!(matches!(
        PssiluFixed::new(&dev, -0.1),
        Err(Error::InvalidParameter { .. })
    ));
    assert!(matches!(
        PssiluFixed::new(&dev, f64::NAN),
        Err(Error::NonFinite { .. })
    ));
    let mut f = PssiluFixed::new(&dev, 0.42).unwrap();
    assert_eq!(f.parameters(), vec![("alpha", 1.0), ("beta", 0.42)]);
    f.set_parameter("beta", 0.1).unwrap();
    assert_eq!(f.beta(), 0.1);
    assert!(f.set_parameter("beta", 1.2).is_err());

    assert!(matches!(
        Psoftplus::with_alpha(&dev, 0.0),
        Err(Error::InvalidParameter { .. })
    ));
    assert!(matches!(
        Prelu::new(&dev).freeze("beta", 0.1),
        Err(Error::UnknownParameter { .. })
    ));
    assert!(matches!(
        Relu::new(&dev).freeze("alpha", 0.1),
        Err(Error::UnknownParameter { .. })
    ));
    assert!(matches!(
        Silu::new(&dev).set_parameter("alpha", 0.1),
        Err(Error::UnknownParameter { .. })
    ));
}

#[test]
fn validate_checks_the_tensors() {
    let dev = Cpu::default();
    let mut p = Pssilu::new(&dev);
    assert!(p.validate().is_ok());
    p.beta.copy_from(&[1.5]);
    assert!(matches!(
        p.validate(),
        Err(Error::InvalidParameter { name: "beta", .. })
    ));
    p.beta.copy_from(&[-1.0]);
    assert!(matches!(
        p.validate(),
        Err(Error::InvalidParameter { name: "beta", .. })
    ));
    p.beta.copy_from(&[0.5]);
    p.alpha.copy_from(&[f32::NAN]);
    assert!(matches!(p.validate(), Err(Error::NonFinite { .. })));
    let mut q = Prelu::new(&dev);
    q.alpha.copy_from(&[f32::INFINITY]);
    assert!(matches!(q.validate(), Err(Error::NonFinite { .. })));
    let mut s = Psoftplus::new(&dev);
    s.alpha.copy_from(&[0.0]);
    assert!(matches!(
        s.validate(),
        Err(Error::InvalidParameter { name: "alpha", .. })
    ));
    assert!(Relu::new(&dev).validate().is_ok());
}

// ---------------------------------------------------------------------------------------------
// dfdx integration: names, building, resetting (docs/reproduction.md §1.1, §1.2).

struct Names(Vec<String>);

impl TensorVisitor<f32, Cpu> for Names {
    type Viewer = ViewTensorName;
    type Err = ();
    type E2 = f32;
    type D2 = Cpu;
    fn visit<S: Shape>(
        &mut self,
        _: TensorOptions<S, f32, Cpu>,
        name: String,
    ) -> Result<Option<Tensor<S, f32, Cpu>>, ()> {
        self.0.push(name);
        Ok(None)
    }
}

fn names<M: TensorCollection<f32, Cpu>>() -> Vec<String> {
    let mut n = Names(vec![]);
    M::iter_tensors(&mut RecursiveWalker {
        m: String::new(),
        f: &mut n,
    })
    .unwrap();
    n.0
}

#[test]
fn tensor_collections_use_pytorch_names_and_paper_init() {
    let dev = Cpu::default();
    assert_eq!(names::<Pssilu<Cpu>>(), ["alpha", "beta"]);
    assert_eq!(names::<PssiluFixed<Cpu>>(), ["alpha"]);
    assert_eq!(names::<Prelu<Cpu>>(), ["alpha"]);
    assert!(names::<Relu<Cpu>>().is_empty());

    let mut p = dev.build_module::<Pssilu<Cpu>, f32>();
    assert_eq!(p.num_trainable_params(), 2);
    assert_eq!(
        dev.build_module::<Psoftplus<Cpu>, f32>()
            .num_trainable_params(),
        1
    );
    let silu = dev.build_module::<Silu<Cpu>, f32>();
    assert_eq!(NumParams::<f32, Cpu>::num_trainable_params(&silu), 0);
    p.set_parameter("alpha", 3.0).unwrap();
    p.set_parameter("beta", -0.5).unwrap();
    p.reset_params();
    assert_eq!((p.alpha.as_vec(), p.beta.as_vec()), (vec![1.0], vec![1e-8]));

    let q = Prelu::<Cpu>::try_build(&dev).unwrap();
    assert_eq!(q.alpha.array(), [0.0]);
    assert_eq!(
        dev.build_module::<PssiluFixed<Cpu>, f32>().beta(),
        PSSILU_FIXED_BETA_DEFAULT
    );

    // new(&dev), dfdx building and ScalarActivation::initial agree for every activation.
    for kind in ActivationKind::ALL {
        let (a, b) = kind.initial_params();
        let s = with_module!(&dev, (kind, a, b), |act, _params| act.scalar());
        let init = ScalarActivation::initial(kind);
        assert_eq!(s.kind, kind);
        // β₀ = 1e-8 is stored in f32.
        assert!(
            close(s.alpha, init.alpha, 1e-7) && close(s.beta, init.beta, 1e-7),
            "{kind:?}"
        );
    }
    assert_eq!(
        Pssilu::new(&dev).scalar(),
        dev.build_module::<Pssilu<Cpu>, f32>().scalar()
    );
    assert_eq!(
        Reblu::new(&dev).scalar(),
        dev.build_module::<Reblu<Cpu>, f32>().scalar()
    );
}

#[test]
fn kinds_names_and_parameter_counts() {
    assert_eq!(ActivationKind::ALL.len(), 12);
    let names: Vec<_> = ActivationKind::ALL.iter().map(|k| k.name()).collect();
    assert_eq!(names[6], "PReLU+");
    assert_eq!(names[7], "ReBLU");
    assert_eq!(K::Pssilu.name(), "PSSiLU");
    let counts: Vec<_> = ActivationKind::ALL.iter().map(|k| k.num_params()).collect();
    assert_eq!(counts, [0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 2]);
    for k in ActivationKind::ALL {
        assert_eq!(ActivationKind::from_code_name(k.code_name()), Some(k));
        let json = serde_json::to_string(&k).unwrap();
        assert_eq!(serde_json::from_str::<ActivationKind>(&json).unwrap(), k);
    }
    assert_eq!(K::Pssilu.code_name(), "pssilu2");
    assert_eq!(K::PssiluFixed.code_name(), "pssilu");
    // serde names are the code's names (docs/reproduction.md §1.2): "pssilu" is the fixed-β one.
    assert_eq!(serde_json::to_string(&K::Pssilu).unwrap(), "\"pssilu2\"");
    assert_eq!(
        serde_json::to_string(&K::PssiluFixed).unwrap(),
        "\"pssilu\""
    );
    for k in ActivationKind::ALL {
        assert_eq!(
            serde_json::to_string(&k).unwrap(),
            format!("\"{}\"", k.code_name())
        );
    }

    // The modules report their kinds and names.
    let dev = Cpu::default();
    assert_eq!(PreluPlus::new(&dev).kind(), K::Pprelu);
    assert_eq!(PreluPlus::new(&dev).name(), "PReLU+");
    assert_eq!(Reblu::new(&dev).kind(), K::Pblu);
    assert_eq!(Relu::new(&dev).name(), K::Relu.name());
    assert_eq!(ScalarActivation::initial(K::Pssilu).name(), "PSSiLU");
    assert_eq!(ScalarActivation::initial(K::PssiluFixed).beta, 0.3);
    assert_eq!(ScalarActivation::initial(K::Prelu).alpha, 0.0);
    assert_eq!(ScalarActivation::initial(K::Pblu).alpha, 0.0);
    assert_eq!(ScalarActivation::initial(K::Pelu).alpha, 1.0);
}

// ---------------------------------------------------------------------------------------------
// Shape properties (docs/reproduction.md §1.3).

#[test]
fn silu_and_softplus_shape_at_zero() {
    let silu = ShapeProperties::of(&ScalarActivation::initial(ActivationKind::Silu));
    assert_eq!(silu.value_at_zero, 0.0);
    assert!((silu.slope_at_zero - 0.5).abs() < 1e-12);
    assert!((silu.curvature_at_zero - 0.5).abs() < 1e-12);
    assert!(!silu.positive_on_negative_inputs);
    assert!(!silu.kink_at_zero);

    // Softplus family: f''(0) = α/4; PSiLU: f''(0) = |α|/2.
    for a in [1.0, 2.0, 5.0] {
        let p = ShapeProperties::of(&ScalarActivation::new(ActivationKind::Psoftplus, a, 0.0));
        assert!((p.curvature_at_zero - a / 4.0).abs() < 1e-12, "α = {a}");
        let p = ShapeProperties::of(&ScalarActivation::new(ActivationKind::Psilu, -a, 0.0));
        assert!((p.curvature_at_zero - a / 2.0).abs() < 1e-12, "α = {a}");
    }
    let sp = ShapeProperties::of(&ScalarActivation::initial(ActivationKind::Softplus));
    assert!((sp.curvature_at_zero - 0.25).abs() < 1e-12);
    assert!(sp.positive_on_negative_inputs && sp.min_on_negative > 0.0);
}

#[test]
fn pssilu_shape_follows_closed_forms() {
    // docs/reproduction.md §1.3: f(0) = 0, f'(0) = (1/2 − β)/(1−β), f''(0) = α/(2(1−β)), slope
    // −β/(1−β) as x → −∞ — with |α|, |β| for raw negative values.
    for (a, b) in [
        (1.0, 1e-8),
        (1.0, 0.3),
        (2.0, 0.3),
        (-1.5, -0.2),
        (0.5, 0.6),
    ] {
        let (aa, bb) = (f64::abs(a), f64::abs(b));
        for kind in [ActivationKind::Pssilu, ActivationKind::PssiluFixed] {
            if kind == ActivationKind::PssiluFixed && b < 0.0 {
                continue;
            }
            let s = ScalarActivation::new(kind, a, b);
            let p = ShapeProperties::of(&s);
            assert_eq!(p.value_at_zero, 0.0);
            assert!(
                (p.slope_at_zero - (0.5 - bb) / (1.0 - bb)).abs() < 1e-12,
                "{a} {b}"
            );
            assert!(
                (p.curvature_at_zero - aa / (2.0 * (1.0 - bb))).abs() < 1e-12,
                "{a} {b}"
            );
            assert!(
                (p.slope_at_neg_inf - (-bb / (1.0 - bb))).abs() < 1e-12,
                "{a} {b}"
            );
            assert_eq!(p.slope_at_pos_inf, 1.0);
            // The closed-form limit agrees with the slope far out.
            assert!((s.derivative(-1e3) - p.slope_at_neg_inf).abs() < 1e-9);
            assert!((s.derivative(1e3) - p.slope_at_pos_inf).abs() < 1e-9);
            assert_eq!(p.positive_on_negative_inputs, bb > 1e-6, "{a} {b}");
        }
    }
    let p = ShapeProperties::of(&ScalarActivation::initial(ActivationKind::PssiluFixed));
    assert!(p.positive_on_negative_inputs && p.max_on_negative > 2.0);
    // ... but not on all negative inputs: negative just left of 0 (x > logit(0.3) ≈ −0.85).
    assert!(p.min_on_negative < 0.0);
    assert!(p.positive_fraction_on_negative > 0.8 && p.positive_fraction_on_negative < 0.9);
}

#[test]
fn positivity_on_negative_inputs() {
    let pos =
        |k, a, b| ShapeProperties::of(&ScalarActivation::new(k, a, b)).positive_on_negative_inputs;
    assert!(!pos(K::Relu, 0.0, 0.0));
    assert!(!pos(K::Prelu, 0.0, 0.0));
    assert!(!pos(K::Prelu, 0.25, 0.0));
    assert!(pos(K::Prelu, -0.25, 0.0));
    assert!(pos(K::PssiluFixed, 1.0, 0.3));
    assert!(pos(K::Pssilu, 1.0, 0.3));
    assert!(!pos(K::Silu, 0.0, 0.0));
    assert!(!pos(K::Elu, 0.0, 0.0));
    assert!(pos(K::Pelu, -1.0, 0.0));
    assert!(!pos(K::Pprelu, 1.0, 0.0));
    assert!(!pos(K::Psoftplus, -1.0, 0.0));
    let relu = ShapeProperties::of(&ScalarActivation::initial(K::Relu));
    assert_eq!((relu.min_on_negative, relu.max_on_negative), (0.0, 0.0));
    let prelu = ShapeProperties::of(&ScalarActivation::new(K::Prelu, -0.25, 0.0));
    assert_eq!(prelu.positive_fraction_on_negative, 1.0);
    assert_eq!(prelu.slope_at_neg_inf, -0.25);
    assert!((prelu.max_on_negative - 1.25).abs() < 1e-12);
}

#[test]
fn slopes_at_infinity_agree_with_far_out_derivatives() {
    for (kind, a, b) in cases() {
        let s = ScalarActivation::new(kind, a, b);
        let p = ShapeProperties::of(&s);
        assert!(
            (s.derivative(-1e3) - p.slope_at_neg_inf).abs() < 1e-6,
            "{kind:?} α={a} β={b}"
        );
        assert!(
            (s.derivative(1e3) - p.slope_at_pos_inf).abs() < 1e-2,
            "{kind:?} α={a} β={b}"
        );
    }
}

#[test]
fn kinks_and_curvature_on_the_grid() {
    let p = |k, a, b| ShapeProperties::of(&ScalarActivation::new(k, a, b));
    assert!(p(K::Relu, 0.0, 0.0).kink_at_zero);
    assert!(p(K::Prelu, -0.25, 0.0).kink_at_zero);
    assert!(!p(K::Prelu, 1.0, 0.0).kink_at_zero); // PReLU with α = 1 is the identity
    assert!(p(K::Pblu, 0.5, 0.0).kink_at_zero);
    assert!(!p(K::Elu, 0.0, 0.0).kink_at_zero);
    assert!(p(K::Pelu, 0.5, 0.0).kink_at_zero);
    // Higher α, higher finite curvature (docs/reproduction.md §1.3); the maximum of PSiLU's |f''|
    // is at 0.
    let c1 = p(K::Psilu, 1.0, 0.0);
    let c5 = p(K::Psilu, 5.0, 0.0);
    assert!(c5.max_abs_curvature_on_grid > 4.0 * c1.max_abs_curvature_on_grid);
    assert_eq!(c1.argmax_abs_curvature, 0.0);
    assert!((c1.max_abs_curvature_on_grid - 0.5).abs() < 1e-12);
    assert_eq!(p(K::Relu, 0.0, 0.0).max_abs_curvature_on_grid, 0.0);
}

#[test]
fn shape_grid_and_module_properties() {
    let dev = Cpu::default();
    let mut act = Pssilu::new(&dev);
    act.set_parameter("beta", 0.3).unwrap();
    let from_module = properties_of(&act);
    assert_eq!(from_module, ShapeProperties::of(&act.scalar()));
    assert!((from_module.beta - 0.3).abs() < 1e-7);

    let s = act.scalar();
    let g = ShapeGrid::evaluate(&s, -5.0, 5.0, 11);
    assert_eq!(g.x.len(), 11);
    assert_eq!((g.x[0], g.x[5], g.x[10]), (-5.0, 0.0, 5.0));
    for i in 0..11 {
        assert_eq!(g.f[i], s.value(g.x[i]));
        assert_eq!(g.df[i], s.derivative(g.x[i]));
        assert_eq!(g.d2f[i], s.second_derivative(g.x[i]));
    }
    assert!(ShapeGrid::evaluate(&s, 0.0, 1.0, 0).x.is_empty());

    // Serde round trips (results files, notebooks).
    let json = serde_json::to_string(&from_module).unwrap();
    assert_eq!(
        serde_json::from_str::<ShapeProperties>(&json).unwrap(),
        from_module
    );
    let json = serde_json::to_string(&g).unwrap();
    let back: ShapeGrid = serde_json::from_str(&json).unwrap();
    for (u, v) in [
        (&back.x, &g.x),
        (&back.f, &g.f),
        (&back.df, &g.df),
        (&back.d2f, &g.d2f),
    ] {
        // serde_json's float parsing may differ in the last bit.
        assert!(u.len() == v.len() && u.iter().zip(v).all(|(u, v)| close(*u, *v, 1e-15)));
    }
    let json = serde_json::to_string(&s).unwrap();
    assert_eq!(serde_json::from_str::<ScalarActivation>(&json).unwrap(), s);
}

/// `AnyActivation` as each kind computes the concrete module's numbers bit for bit (forward,
/// ∂/∂x, ∂/∂α, ∂/∂β) at the paper's init and off it, reports the same parameters, and binds no
/// tensor it lists as unused (those get no gradient).
#[test]
fn any_activation_is_each_concrete_activation() {
    let dev = Cpu::default();
    let ws = weights(XS.len(), 11);
    for kind in ActivationKind::ALL {
        let (a0, b0) = kind.initial_params();
        with_module!(&dev, (kind, a0, b0), |act, _params| {
            assert_eq!(
                AnyActivation::new(&dev, kind).parameters(),
                act.parameters(),
                "{kind:?} starts at the paper's init"
            );
        });
    }
    for case in cases() {
        let (kind, a, b) = case;
        let mut any = AnyActivation::new(&dev, kind);
        if kind.num_params() > 0 {
            any.set_parameter("alpha", a).unwrap();
        }
        if matches!(kind, K::Pssilu | K::PssiluFixed) {
            any.set_parameter("beta", b).unwrap();
        }
        let any_params: Vec<&Param> = match kind {
            K::Pssilu => vec![&any.alpha, &any.beta],
            k if k.num_params() > 0 => vec![&any.alpha],
            _ => vec![],
        };
        let got = tape_gradients(&dev, &any, &any_params, &XS, &ws);
        let y_any = any.forward(vector(&dev, &XS)).as_vec();
        with_module!(&dev, case, |act, params| {
            assert_eq!(
                got,
                tape_gradients(&dev, &act, &params, &XS, &ws),
                "{case:?}"
            );
            assert_eq!(y_any, act.forward(vector(&dev, &XS)).as_vec(), "{case:?}");
            assert_eq!(any.parameters(), act.parameters(), "{case:?}");
            assert_eq!((any.kind(), any.name()), (act.kind(), act.name()));
        });
        let bound = any.pointwise_fn().1;
        for (i, name) in ["alpha", "beta"].iter().enumerate() {
            assert_eq!(
                bound[i].is_none(),
                any.unused_tensors().contains(name),
                "{case:?}: `{name}` bound iff used"
            );
        }
    }
}

/// Only `AnyActivation` changes kind: it becomes the paper's init of the new kind (frozen flags
/// cleared), keeps everything for its own kind; a concrete module refuses another kind. dfdx's
/// build gives ReLU.
#[test]
fn any_activation_changes_kind_and_concrete_ones_refuse() {
    let dev = Cpu::default();
    let mut any = AnyActivation::new(&dev, K::Pssilu);
    any.set_parameter("beta", 0.25).unwrap();
    any.freeze("alpha", 2.0).unwrap();
    any.try_set_kind(K::Pssilu).unwrap();
    assert_eq!(any.parameters(), vec![("alpha", 2.0), ("beta", 0.25)]);
    assert_eq!(any.frozen(), vec![("alpha", 2.0)]);
    any.try_set_kind(K::Prelu).unwrap();
    assert_eq!(any.parameters(), vec![("alpha", 0.0)]);
    assert!(any.frozen().is_empty());
    assert!(matches!(
        any.set_parameter("beta", 0.1),
        Err(Error::UnknownParameter { .. })
    ));
    any.try_set_kind(K::PssiluFixed).unwrap();
    assert_eq!(
        any.parameters(),
        vec![("alpha", 1.0), ("beta", PSSILU_FIXED_BETA_DEFAULT)]
    );
    assert!(any.set_parameter("beta", 1.0).is_err(), "fixed β < 1");

    let mut relu = Relu::new(&dev);
    relu.try_set_kind(K::Relu).unwrap();
    let e = relu.try_set_kind(K::Pssilu).unwrap_err();
    assert!(matches!(e, Error::WrongActivation { .. }), "{e}");
    assert!(e.to_string().contains("ReLU") && e.to_string().contains("PSSiLU"));

    let built = dev.build_module::<AnyActivation<Cpu>, f32>();
    assert_eq!(built.kind(), K::Relu);
    assert_eq!(built.unused_tensors(), &["alpha", "beta"]);
    assert_eq!(names::<AnyActivation<Cpu>>(), vec!["alpha", "beta"]);
}
