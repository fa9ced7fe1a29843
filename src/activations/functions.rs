//! The scalar math of the twelve activations of docs/reproduction.md §1.2: value, first derivative
//! in `x`, derivatives with respect to the raw (stored) parameters, and second derivative in `x`,
//! written once, generic over `f32` (the tensor kernels) and `f64` (shape analysis, gradient
//! checks).
//!
//! Conventions (docs/reproduction.md §1.2, §7):
//! - `a`, `b` are the **raw** α, β. PSiLU / PSSiLU use `|α|` (and PSSiLU `|β|`); their parameter
//!   derivatives chain through `|·|` with `sign(·)`, `sign(0) = 0` as in torch. PSoftplus uses raw
//!   α (no abs, as the original code), and fixed-β PSSiLU uses its β as given (0 ≤ β < 1).
//! - Step-function PAFs follow the code's masks exactly: PReLU `(x>0)·x + (x<0)·α·x` (value and
//!   every derivative 0 at x = 0), PReLU+ `α·x` for x > 0 else 0, ReBLU 0 for x ≤ 0, PELU and ELU
//!   take the exponential branch for x ≤ 0. At a kink the derivatives are those of the branch the
//!   mask selects (e.g. ReLU′(0) = 0, PELU′(0) = α, ELU″(0) = 1).
//! - Numerics: the sigmoid never evaluates `exp` of a positive number, softplus is
//!   `max(z, 0) + log1p(exp(−|z|))`, `1 − σ(z)` is computed as `σ(−z)`, and products such as
//!   `x²·σ(z)σ(−z)` are ordered so that no intermediate overflows: every value and derivative is
//!   finite in `f32` for |x| ≤ 1e4 and |α| ≤ 100 (and far beyond). PSoftplus at α = 0 is
//!   undefined (division by zero) and yields non-finite values, as in PyTorch; the modules reject
//!   α = 0 in `set_parameter` / `validate`.
//! - NaN inputs propagate to NaN outputs and derivatives.

use std::ops::{Add, Div, Mul, Neg, Sub};

use dfdx::shapes::{Rank1, Shape};
use dfdx::tensor::{Tape, Tensor};
use dfdx::tensor_ops::{Device, TryAdd, TryMul, TrySub};

use super::ActivationKind;
use crate::ops::backward_loop;
use crate::ops::composed::Coef;
use crate::ops::simd::dispatch;

/// The float operations the activations need, implemented for `f32` and `f64`.
pub(crate) trait Real:
    Copy
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
{
    const ZERO: Self;
    const ONE: Self;
    const TWO: Self;
    const NAN: Self;
    fn exp(self) -> Self;
    /// `exp` inside the sigmoids: [`super::vexp::exp`] in `f32` (vectorisable, ≤ 2 ulp), the
    /// exact `exp` in `f64` (shape analysis, reference values).
    fn exp_sigmoid(self) -> Self;
    fn exp_m1(self) -> Self;
    fn ln_1p(self) -> Self;
    fn abs(self) -> Self;
    fn hypot1(self) -> Self;
    fn is_nan(self) -> bool;
    /// `sign(self)` with `sign(0) = 0` (torch's convention), NaN for NaN.
    fn sgn(self) -> Self {
        if self > Self::ZERO {
            Self::ONE
        } else if self < Self::ZERO {
            -Self::ONE
        } else if self.is_nan() {
            Self::NAN
        } else {
            Self::ZERO
        }
    }
}

macro_rules! impl_real {
    ($t:ty, $exp_sigmoid:path) => {
        impl Real for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const TWO: Self = 2.0;
            const NAN: Self = <$t>::NAN;
            #[inline(always)]
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            #[inline(always)]
            fn exp_sigmoid(self) -> Self {
                $exp_sigmoid(self)
            }
            #[inline(always)]
            fn exp_m1(self) -> Self {
                <$t>::exp_m1(self)
            }
            #[inline(always)]
            fn ln_1p(self) -> Self {
                <$t>::ln_1p(self)
            }
            #[inline(always)]
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            #[inline(always)]
            fn hypot1(self) -> Self {
                <$t>::hypot(self, 1.0)
            }
            #[inline(always)]
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
        }
    };
}
impl_real!(f32, super::vexp::exp);
impl_real!(f64, f64::exp);

/// The logistic sigmoid σ(z), never computing `exp` of a positive number: with `e = exp(−|z|)`,
/// `1/(1 + e)` for `z ≥ 0` and `e/(1 + e)` otherwise (a select, no branch: the loops vectorise).
#[inline(always)]
pub(crate) fn sigmoid<R: Real>(z: R) -> R {
    let e = (-z.abs()).exp_sigmoid();
    if z >= R::ZERO {
        R::ONE / (R::ONE + e)
    } else {
        e / (R::ONE + e)
    }
}

/// `(σ(z), σ(−z))` from one `exp`: bit for bit what two [`sigmoid`] calls return (both use
/// `e = exp(−|z|)`: `1/(1 + e)` for the non-negative argument, `e/(1 + e)` for the other).
#[inline(always)]
pub(crate) fn sigmoid_pair<R: Real>(z: R) -> (R, R) {
    let nonneg = z >= R::ZERO;
    let e = (-z.abs()).exp_sigmoid();
    let (big, small) = (R::ONE / (R::ONE + e), e / (R::ONE + e));
    // σ(−z) of z = 0 (±0): −z ≥ 0 as well, so both are 1/(1 + 1) = ½ either way
    if nonneg {
        (big, if -z >= R::ZERO { big } else { small })
    } else {
        (small, big)
    }
}

/// softplus(z) = log(1 + eᶻ) = max(z, 0) + log1p(e^{−|z|}) = −logsigmoid(−z).
#[inline(always)]
pub(crate) fn softplus<R: Real>(z: R) -> R {
    let pos = if z > R::ZERO { z } else { R::ZERO };
    pos + (-z.abs()).exp().ln_1p()
}

/// z·σ(z) − softplus(z) without cancellation (the numerator of ∂PSoftplus/∂α).
#[inline(always)]
fn zsig_minus_softplus<R: Real>(z: R) -> R {
    if z >= R::ZERO {
        // z·σ(z) − z − log1p(e^{−z}) = −z·σ(−z) − log1p(e^{−z})
        -(z * sigmoid(-z)) - (-z).exp().ln_1p()
    } else {
        z * sigmoid(z) - z.exp().ln_1p()
    }
}

/// `f(x)` for activation `kind` with raw parameters `a` (α) and `b` (β).
#[inline(always)]
pub(crate) fn value<R: Real>(kind: ActivationKind, a: R, b: R, x: R) -> R {
    use ActivationKind::*;
    if x.is_nan() {
        return x;
    }
    let zero = R::ZERO;
    match kind {
        Relu => {
            if x > zero {
                x
            } else {
                zero
            }
        }
        Elu => {
            if x > zero {
                x
            } else {
                x.exp_m1()
            }
        }
        Softplus => softplus(x),
        Silu => x * sigmoid(x),
        Prelu => {
            if x > zero {
                x
            } else if x < zero {
                a * x
            } else {
                zero
            }
        }
        Pelu => {
            if x > zero {
                x
            } else {
                a * x.exp_m1()
            }
        }
        Pprelu => {
            if x > zero {
                a * x
            } else {
                zero
            }
        }
        Pblu => {
            if x > zero {
                // √(x²+1) − 1 = x · x/(√(x²+1) + 1): no cancellation, no overflow of x².
                a * (x * (x / (x.hypot1() + R::ONE))) + x
            } else {
                zero
            }
        }
        Psilu => x * sigmoid(a.abs() * x),
        Psoftplus => softplus(a * x) / a,
        PssiluFixed => x * (sigmoid(a.abs() * x) - b) / (R::ONE - b),
        Pssilu => {
            let bb = b.abs();
            x * (sigmoid(a.abs() * x) - bb) / (R::ONE - bb)
        }
    }
}

/// `(∂f/∂x, [∂f/∂a, ∂f/∂b])` with respect to the raw parameters (`0` for absent or fixed
/// parameters: fixed-β PSSiLU's β has no derivative here).
#[inline(always)]
pub(crate) fn derivatives<R: Real>(kind: ActivationKind, a: R, b: R, x: R) -> (R, [R; 2]) {
    use ActivationKind::*;
    let zero = R::ZERO;
    let one = R::ONE;
    if x.is_nan() {
        return (x, [x, x]);
    }
    match kind {
        Relu => (if x > zero { one } else { zero }, [zero; 2]),
        Elu => (if x > zero { one } else { x.exp() }, [zero; 2]),
        Softplus => (sigmoid(x), [zero; 2]),
        Silu => {
            let (s, sn) = (sigmoid(x), sigmoid(-x));
            (s + x * s * sn, [zero; 2])
        }
        Prelu => {
            if x > zero {
                (one, [zero; 2])
            } else if x < zero {
                (a, [x, zero])
            } else {
                (zero, [zero; 2])
            }
        }
        Pelu => {
            if x > zero {
                (one, [zero; 2])
            } else {
                (a * x.exp(), [x.exp_m1(), zero])
            }
        }
        Pprelu => {
            if x > zero {
                (a, [x, zero])
            } else {
                (zero, [zero; 2])
            }
        }
        Pblu => {
            if x > zero {
                let h = x.hypot1();
                (a * (x / h) + one, [x * (x / (h + one)), zero])
            } else {
                (zero, [zero; 2])
            }
        }
        Psilu => {
            let z = a.abs() * x;
            let (s, sn) = sigmoid_pair(z);
            (s + z * s * sn, [a.sgn() * (x * (x * s * sn)), zero])
        }
        Psoftplus => {
            let z = a * x;
            (sigmoid(z), [zsig_minus_softplus(z) / (a * a), zero])
        }
        PssiluFixed => {
            let z = a.abs() * x;
            let (s, sn) = sigmoid_pair(z);
            let c = one / (one - b);
            (
                (s - b + z * s * sn) * c,
                [a.sgn() * (x * (x * s * sn)) * c, zero],
            )
        }
        Pssilu => {
            let bb = b.abs();
            let z = a.abs() * x;
            let (s, sn) = sigmoid_pair(z);
            let c = one / (one - bb);
            (
                (s - bb + z * s * sn) * c,
                [
                    a.sgn() * (x * (x * s * sn)) * c,
                    // ∂f/∂|β| = x(σ − 1)/(1 − |β|)² = −x·σ(−z)/(1 − |β|)²
                    -(b.sgn() * (x * sn)) * c * c,
                ],
            )
        }
    }
}

/// `∂²f/∂x²` (closed form; at a kink, the value of the branch the code's mask selects, Dirac
/// deltas ignored).
#[inline(always)]
pub(crate) fn second_derivative<R: Real>(kind: ActivationKind, a: R, b: R, x: R) -> R {
    use ActivationKind::*;
    let zero = R::ZERO;
    let one = R::ONE;
    if x.is_nan() {
        return x;
    }
    // d²/dx² [x·σ(A x)] = A·σσ'·(2 + A x (1 − 2σ)), 1 − 2σ(z) = σ(−z) − σ(z).
    let gated = |aa: R| {
        let z = aa * x;
        let (s, sn) = sigmoid_pair(z);
        aa * s * sn * (R::TWO + z * (sn - s))
    };
    match kind {
        Relu | Prelu | Pprelu => zero,
        Elu => {
            if x > zero {
                zero
            } else {
                x.exp()
            }
        }
        Softplus => sigmoid(x) * sigmoid(-x),
        Silu => gated(one),
        Pelu => {
            if x > zero {
                zero
            } else {
                a * x.exp()
            }
        }
        Pblu => {
            if x > zero {
                let h = x.hypot1();
                a / (h * h * h)
            } else {
                zero
            }
        }
        Psilu => gated(a.abs()),
        Psoftplus => {
            let z = a * x;
            a * sigmoid(z) * sigmoid(-z)
        }
        PssiluFixed => gated(a.abs()) / (one - b),
        Pssilu => gated(a.abs()) / (one - b.abs()),
    }
}

/// The [`crate::ops::ScalarFn`] of an activation with its parameters bound (in `f32`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PafFn {
    pub kind: ActivationKind,
    /// Raw α.
    pub alpha: f32,
    /// Raw β (learnable for PSSiLU, the fixed hyperparameter for fixed-β PSSiLU).
    pub beta: f32,
}

impl crate::ops::ScalarFn for PafFn {
    #[inline]
    fn value(&self, x: f32) -> f32 {
        value(self.kind, self.alpha, self.beta, x)
    }
    #[inline]
    fn derivatives(&self, x: f32) -> (f32, [f32; 2]) {
        derivatives(self.kind, self.alpha, self.beta, x)
    }
    fn compose<S: Shape, D: Device<f32>, T: Tape<f32, D>>(
        &self,
        x: Tensor<S, f32, D, T>,
        params: [Option<&Tensor<Rank1<1>, f32, D>>; 2],
    ) -> Result<Tensor<S, f32, D, T>, D::Err> {
        compose(self, x, params)
    }
    fn apply(&self, xs: &[f32], ys: &mut [f32]) {
        let (a, b) = (self.alpha, self.beta);
        // one loop per kind: `value` is inlined with a constant kind, the match folds away; the
        // loop is compiled for the CPU's widest vectors (`ops::simd`, the same numbers)
        macro_rules! per_kind {
            ($($k:ident),*) => {
                match self.kind {
                    $(ActivationKind::$k => dispatch(#[inline(always)] || ys
                        .iter_mut()
                        .zip(xs)
                        .for_each(move |(y, &x)| *y = value(ActivationKind::$k, a, b, x))),)*
                }
            };
        }
        per_kind!(
            Relu,
            Elu,
            Softplus,
            Silu,
            Prelu,
            Pelu,
            Pprelu,
            Pblu,
            Psilu,
            Psoftplus,
            PssiluFixed,
            Pssilu
        )
    }
    fn backward(&self, xs: &[f32], g: &[f32], gx: &mut [f32], want: [bool; 2]) -> [f64; 2] {
        let (a, b) = (self.alpha, self.beta);
        macro_rules! per_kind {
            ($($k:ident),*) => {
                match self.kind {
                    $(ActivationKind::$k => dispatch(#[inline(always)] || {
                        // `move`: α and β by value, not behind a reference the compiler must
                        // reload after every store to `gx` (which kept this loop scalar)
                        backward_loop(xs, g, gx, want, #[inline(always)] move |x| {
                            derivatives(ActivationKind::$k, a, b, x)
                        })
                    }),)*
                }
            };
        }
        per_kind!(
            Relu,
            Elu,
            Softplus,
            Silu,
            Prelu,
            Pelu,
            Pprelu,
            Pblu,
            Psilu,
            Psoftplus,
            PssiluFixed,
            Pssilu
        )
    }
}

/// The formulas of [`value`] in dfdx ops (for [`crate::ops::composed`]): `relu(x)` and
/// `min(x, 0) = −relu(−x)` split the piecewise definitions so that every branch is smooth where
/// it is used, and softplus is the stable `relu(z) + ln(1 + e^{−|z|})`.
fn compose<S: Shape, D: Device<f32>, T: Tape<f32, D>>(
    f: &PafFn,
    x: Tensor<S, f32, D, T>,
    params: [Option<&Tensor<Rank1<1>, f32, D>>; 2],
) -> Result<Tensor<S, f32, D, T>, D::Err> {
    use ActivationKind::*;
    let alpha = |x: &Tensor<S, f32, D, T>| Coef::new(x, params[0], f.alpha);
    let beta = |x: &Tensor<S, f32, D, T>| Coef::new(x, params[1], f.beta);
    // e^{min(x,0)} − 1
    let expm1_neg = |x: Tensor<S, f32, D, T>| -> Result<Tensor<S, f32, D, T>, D::Err> {
        x.try_negate()?
            .try_relu()?
            .try_negate()?
            .try_exp()?
            .try_sub(1.0)
    };
    let softplus = |z: Tensor<S, f32, D, T>| -> Result<Tensor<S, f32, D, T>, D::Err> {
        let tail = z
            .retaped::<T>()
            .try_abs()?
            .try_negate()?
            .try_exp()?
            .try_add(1.0)?
            .try_ln()?;
        z.try_relu()?.try_add(tail)
    };
    match f.kind {
        Relu => x.try_relu(),
        Elu => {
            let neg = expm1_neg(x.retaped::<T>())?;
            x.try_relu()?.try_add(neg)
        }
        Softplus => softplus(x),
        Silu => {
            let s = x.retaped::<T>().try_sigmoid()?;
            x.try_mul(s)
        }
        Prelu => {
            let a = alpha(&x)?;
            let neg = a.times(x.retaped::<T>().try_negate()?.try_relu()?)?;
            x.try_relu()?.try_sub(neg)
        }
        Pelu => {
            let a = alpha(&x)?;
            let neg = a.times(expm1_neg(x.retaped::<T>())?)?;
            x.try_relu()?.try_add(neg)
        }
        Pprelu => alpha(&x)?.times(x.try_relu()?),
        Pblu => {
            // r = relu(x): a·(√(r² + 1) − 1) + r
            let a = alpha(&x)?;
            let r = x.try_relu()?;
            let bump = r
                .retaped::<T>()
                .try_square()?
                .try_add(1.0)?
                .try_sqrt()?
                .try_sub(1.0)?;
            a.times(bump)?.try_add(r)
        }
        Psilu => {
            let s = alpha(&x)?.abs()?.times(x.retaped::<T>())?.try_sigmoid()?;
            x.try_mul(s)
        }
        Psoftplus => {
            let a = alpha(&x)?;
            let sp = softplus(a.again().times(x)?)?;
            a.divide(sp)
        }
        PssiluFixed | Pssilu => {
            let b = match f.kind {
                Pssilu => beta(&x)?.abs()?,
                _ => Coef::Fixed(f.beta),
            };
            let s = alpha(&x)?.abs()?.times(x.retaped::<T>())?.try_sigmoid()?;
            let num = x.try_mul(b.again().subtract_from(s)?)?;
            b.one_minus()?.divide(num)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigmoid_pair_is_two_sigmoids_bit_for_bit() {
        let mut zs = vec![
            0.0f32,
            -0.0,
            1e-30,
            -1e-30,
            88.0,
            -88.0,
            104.0,
            -104.0,
            f32::MAX,
        ];
        zs.extend((-2000..=2000).map(|i| i as f32 * 0.01371));
        for z in zs.into_iter().flat_map(|z| [z, -z]) {
            let (s, sn) = sigmoid_pair(z);
            assert_eq!(s.to_bits(), sigmoid(z).to_bits(), "σ({z})");
            assert_eq!(sn.to_bits(), sigmoid(-z).to_bits(), "σ(−{z})");
        }
        let (s, sn) = sigmoid_pair(f32::NAN);
        assert!(s.is_nan() && sn.is_nan());
    }

    #[test]
    fn sigmoid_and_softplus_are_stable() {
        for z in [-1e30f32, -1e4, -100.0, 0.0, 100.0, 1e4, 1e30] {
            assert!(sigmoid(z).is_finite() && softplus(z).is_finite(), "z = {z}");
        }
        assert_eq!(softplus(1e4f32), 1e4);
        assert_eq!(softplus(-1e4f32), 0.0);
        assert_eq!(sigmoid(0.0f64), 0.5);
        // log(1 + e) = 1.3132616875182228
        assert!((softplus(1.0f64) - 1.3132616875182228).abs() < 1e-15);
    }

    #[test]
    fn sign_follows_torch() {
        assert_eq!(0.0f32.sgn(), 0.0);
        assert_eq!((-0.0f32).sgn(), 0.0);
        assert_eq!((-2.0f64).sgn(), -1.0);
        assert!(f64::NAN.sgn().is_nan());
    }

    #[test]
    fn psoftplus_alpha_derivative_has_no_cancellation() {
        // For large z, z·σ(z) − softplus(z) = −zσ(−z) − log1p(e^{−z}) ≈ −(z+1)e^{−z}.
        let z = 30.0f64;
        let exact = -(z + 1.0) * (-z).exp();
        assert!((zsig_minus_softplus(z) / exact - 1.0).abs() < 1e-9);
        assert!((zsig_minus_softplus(30.0f32) as f64 / exact - 1.0).abs() < 1e-4);
    }

    #[test]
    fn nan_propagates() {
        for kind in ActivationKind::ALL {
            assert!(value(kind, 1.0f32, 0.1, f32::NAN).is_nan(), "{kind:?}");
            assert!(
                derivatives(kind, 1.0f32, 0.1, f32::NAN).0.is_nan(),
                "{kind:?}"
            );
        }
    }
}
