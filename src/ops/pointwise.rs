//! A fused element-wise op `y = f(x; p)` with up to two shared scalar parameters `p`.
//!
//! One forward pass computes `f`, one backward pass computes `∂f/∂x` for the input and sums
//! `g · ∂f/∂p` over every element for each parameter. Because the sum runs over every call of
//! the op, a parameter tensor used at many sites of a network (the paper's single shared
//! activation, PAPER.md §1.1) receives the sum of all their contributions.

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
