//! Typed 2-D convolution: the output size is computed at compile time through [`ConvOut`].

use dfdx::shapes::HasShape;
use dfdx::shapes::{Const, ConstDim, Dim, Rank1, Rank4};
use dfdx::tensor::{Tape, Tensor};

use super::{Backend, ConvGeometry, ConvOut, Elem};

/// Output of a `K`×`K` convolution with stride `S` and padding `P` on a `(B, Hd, Wd, ·)` batch.
pub type ConvOutput<
    B,
    Hd,
    Wd,
    const CO: usize,
    const K: usize,
    const S: usize,
    const P: usize,
    D,
    T,
> = Tensor<
    (
        B,
        <Hd as ConvOut<K, S, P>>::Out,
        <Wd as ConvOut<K, S, P>>::Out,
        Const<CO>,
    ),
    Elem,
    D,
    T,
>;

/// 2-D convolution of an NHWC batch with an OHWI weight `[CO, K, K, CI]` and an optional bias,
/// stride `S`, zero padding `P` (const generics, e.g. `try_conv2d::<2, 1, ..>`). The spatial
/// dims `Hd`, `Wd` are `Const<N>` types; the output dims come from [`ConvOut`].
#[allow(clippy::type_complexity)]
pub fn try_conv2d<
    const S: usize,
    const P: usize,
    B: Dim,
    Hd: ConstDim + ConvOut<K, S, P>,
    Wd: ConstDim + ConvOut<K, S, P>,
    const CI: usize,
    const CO: usize,
    const K: usize,
    D: Backend,
    T: Tape<Elem, D>,
>(
    x: Tensor<(B, Hd, Wd, Const<CI>), Elem, D, T>,
    weight: &Tensor<Rank4<CO, K, K, CI>, Elem, D>,
    bias: Option<&Tensor<Rank1<CO>, Elem, D>>,
) -> Result<ConvOutput<B, Hd, Wd, CO, K, S, P, D, T>, D::Err> {
    let batch = x.shape().0;
    let ho = <Hd as ConvOut<K, S, P>>::Out::default();
    let wo = <Wd as ConvOut<K, S, P>>::Out::default();
    let g = ConvGeometry {
        batch: batch.size(),
        h: Hd::SIZE,
        w: Wd::SIZE,
        c_in: CI,
        ho: ho.size(),
        wo: wo.size(),
        c_out: CO,
        k: K,
        stride: S,
        pad: P,
    };
    debug_assert_eq!(g.ho, ConvGeometry::out_size(g.h, K, S, P));
    debug_assert_eq!(g.wo, ConvGeometry::out_size(g.w, K, S, P));
    D::conv2d_kernel(x, weight, bias, (batch, ho, wo, Const::<CO>), g)
}

/// Infallible [`try_conv2d`].
#[allow(clippy::type_complexity)]
pub fn conv2d<
    const S: usize,
    const P: usize,
    B: Dim,
    Hd: ConstDim + ConvOut<K, S, P>,
    Wd: ConstDim + ConvOut<K, S, P>,
    const CI: usize,
    const CO: usize,
    const K: usize,
    D: Backend,
    T: Tape<Elem, D>,
>(
    x: Tensor<(B, Hd, Wd, Const<CI>), Elem, D, T>,
    weight: &Tensor<Rank4<CO, K, K, CI>, Elem, D>,
    bias: Option<&Tensor<Rank1<CO>, Elem, D>>,
) -> ConvOutput<B, Hd, Wd, CO, K, S, P, D, T> {
    try_conv2d::<S, P, B, Hd, Wd, CI, CO, K, D, T>(x, weight, bias).unwrap()
}
