//! A fused element-wise op `y = f(x; p)` with up to two shared scalar parameters `p`.
//!
//! One forward pass computes `f`, one backward pass computes `∂f/∂x` for the input and sums
//! `g · ∂f/∂p` over every element for each parameter. Because the sum runs over every call of
//! the op, a parameter tensor used at many sites of a network (the paper's single shared
//! activation, docs/reproduction.md §1.1) receives the sum of all their contributions.

use dfdx::shapes::{Rank1, Shape};
use dfdx::tensor::{Tape, Tensor};

use super::{Backend, Elem};

/// A scalar function of `x` with (up to two) scalar parameters already bound in `self`.
pub trait ScalarFn: Copy + Send + Sync + 'static {
    /// `f(x)`.
    fn value(&self, x: Elem) -> Elem;
    /// `(∂f/∂x, [∂f/∂p₀, ∂f/∂p₁])`, the parameter derivatives taken with respect to the raw
    /// (stored) parameters, reparameterisations such as `|α|` included.
    fn derivatives(&self, x: Elem) -> (Elem, [Elem; 2]);

    /// `y[i] = f(x[i])` over a slice. Override to move any dispatch out of the loop, so that
    /// the loop is specialised (and vectorised where `f` allows).
    #[inline]
    fn apply(&self, x: &[Elem], y: &mut [Elem]) {
        y.iter_mut().zip(x).for_each(|(y, &x)| *y = self.value(x));
    }

    /// The same function composed of dfdx's tensor ops on any device (the CUDA path, where the
    /// crate cannot run its own element loops; see [`crate::ops::composed`]); `params[i]` as in
    /// [`try_pointwise`] (a `None` parameter is used as the constant bound in `self`).
    fn compose<S: Shape, D: dfdx::tensor_ops::Device<Elem>, T: Tape<Elem, D>>(
        &self,
        x: Tensor<S, Elem, D, T>,
        params: [Option<&Tensor<Rank1<1>, Elem, D>>; 2],
    ) -> Result<Tensor<S, Elem, D, T>, D::Err>;

    /// `gx[i] += g[i] · ∂f/∂x(x[i])` over a slice; returns `Σ g[i] · ∂f/∂pⱼ(x[i])` for the
    /// parameters with `want[j]` (0 for the others). Override like [`ScalarFn::apply`].
    #[inline]
    fn backward(&self, x: &[Elem], g: &[Elem], gx: &mut [Elem], want: [bool; 2]) -> [f64; 2] {
        backward_loop(x, g, gx, want, |x| self.derivatives(x))
    }
}

/// The loop behind [`ScalarFn::backward`], for implementations that specialise `derivatives`.
///
/// The parameter gradients `Σ g·∂f/∂p` are summed in `f64` apart from the element loop: a block
/// of products is written out by the (vectorisable) loop over the elements, then added into
/// eight `f64` partial sums, lane `i mod 8`, combined at the end; the order is fixed, so the sums
/// are reproducible (a single running `f64` sum in the element loop kept it scalar).
#[inline(always)]
pub fn backward_loop(
    x: &[Elem],
    g: &[Elem],
    gx: &mut [Elem],
    want: [bool; 2],
    derivatives: impl Fn(Elem) -> (Elem, [Elem; 2]),
) -> [f64; 2] {
    if !want[0] && !want[1] {
        for ((gx, &x), &g) in gx.iter_mut().zip(x).zip(g) {
            *gx += g * derivatives(x).0;
        }
        return [0.0; 2];
    }
    const BLOCK: usize = 512;
    const LANES: usize = 8;
    let (mut t0, mut t1) = ([0.0 as Elem; BLOCK], [0.0 as Elem; BLOCK]);
    let (mut s0, mut s1) = ([0.0f64; LANES], [0.0f64; LANES]);
    for ((gx, x), g) in gx
        .chunks_mut(BLOCK)
        .zip(x.chunks(BLOCK))
        .zip(g.chunks(BLOCK))
    {
        let n = gx.len();
        let (t0, t1) = (&mut t0[..n], &mut t1[..n]);
        for ((((gx, &x), &g), t0), t1) in gx
            .iter_mut()
            .zip(x)
            .zip(g)
            .zip(t0.iter_mut())
            .zip(t1.iter_mut())
        {
            let (dx, dp) = derivatives(x);
            *gx += g * dx;
            *t0 = g * dp[0];
            *t1 = g * dp[1];
        }
        for (c0, c1) in t0.chunks(LANES).zip(t1.chunks(LANES)) {
            for (j, (&a, &b)) in c0.iter().zip(c1).enumerate() {
                s0[j] += a as f64;
                s1[j] += b as f64;
            }
        }
    }
    let total = |s: [f64; LANES]| s.iter().sum::<f64>();
    [
        if want[0] { total(s0) } else { 0.0 },
        if want[1] { total(s1) } else { 0.0 },
    ]
}

/// Applies `f` element-wise. `params[i]` is the tensor that receives the gradient of parameter
/// `i` (`None` when the function has no such parameter or it is frozen).
pub fn try_pointwise<S: Shape, D: Backend, T: Tape<Elem, D>, F: ScalarFn>(
    x: Tensor<S, Elem, D, T>,
    f: F,
    params: [Option<&Tensor<Rank1<1>, Elem, D>>; 2],
) -> Result<Tensor<S, Elem, D, T>, D::Err> {
    D::pointwise_kernel(x, f, params)
}

/// Infallible [`try_pointwise`].
pub fn pointwise<S: Shape, D: Backend, T: Tape<Elem, D>, F: ScalarFn>(
    x: Tensor<S, Elem, D, T>,
    f: F,
    params: [Option<&Tensor<Rank1<1>, Elem, D>>; 2],
) -> Tensor<S, Elem, D, T> {
    try_pointwise(x, f, params).unwrap()
}
