//! Typed 2-D convolution: the output size is computed at compile time through [`ConvOut`].

use dfdx::shapes::HasShape;
use dfdx::shapes::{Const, ConstDim, Dim, Rank1, Rank4};
use dfdx::tensor::{Tape, Tensor};

use super::{Backend, ConvGeometry, ConvOut, Elem, Image};

/// Output image of a `K`×`K` convolution with stride `S` and padding `P`.
pub type ConvOutput<B, const H: usize, const W: usize, const CO: usize, const K: usize, const S: usize, const P: usize, D, T> = Tensor<
    (
        B,
        <Const<H> as ConvOut<K, S, P>>::Out,
        <Const<W> as ConvOut<K, S, P>>::Out,
        Const<CO>,
    ),
    Elem,
    D,
    T,
>;

/// 2-D convolution of an NHWC batch with an OHWI weight `[CO, K, K, CI]` and an optional bias,
/// stride `S`, zero padding `P` (both given as const generics, e.g. `try_conv2d::<1, 1, ..>`).
#[allow(clippy::type_complexity)]
pub fn try_conv2d<
    const S: usize,
    const P: usize,
    B: Dim,
    const H: usize,
    const W: usize,
    const CI: usize,
    const CO: usize,
    const K: usize,
    D: Backend,
    T: Tape<Elem, D>,
>(
    x: Image<B, H, W, CI, D, T>,
    weight: &Tensor<Rank4<CO, K, K, CI>, Elem, D>,
    bias: Option<&Tensor<Rank1<CO>, Elem, D>>,
) -> Result<ConvOutput<B, H, W, CO, K, S, P, D, T>, D::Err>
where
    Const<H>: ConvOut<K, S, P>,
    Const<W>: ConvOut<K, S, P>,
{
    let batch = x.shape().0;
    let ho = <Const<H> as ConvOut<K, S, P>>::Out::default();
    let wo = <Const<W> as ConvOut<K, S, P>>::Out::default();
    let g = ConvGeometry {
        batch: batch.size(),
        h: H,
        w: W,
        c_in: CI,
        ho: ho.size(),
        wo: wo.size(),
        c_out: CO,
        k: K,
        stride: S,
        pad: P,
    };
    debug_assert_eq!(g.ho, ConvGeometry::out_size(H, K, S, P));
    debug_assert_eq!(<<Const<H> as ConvOut<K, S, P>>::Out as ConstDim>::SIZE, g.ho);
    D::conv2d_kernel(x, weight, bias, (batch, ho, wo, Const::<CO>), g)
}

/// Infallible [`try_conv2d`].
#[allow(clippy::type_complexity)]
pub fn conv2d<
    const S: usize,
    const P: usize,
    B: Dim,
    const H: usize,
    const W: usize,
    const CI: usize,
    const CO: usize,
    const K: usize,
    D: Backend,
    T: Tape<Elem, D>,
>(
    x: Image<B, H, W, CI, D, T>,
    weight: &Tensor<Rank4<CO, K, K, CI>, Elem, D>,
    bias: Option<&Tensor<Rank1<CO>, Elem, D>>,
) -> ConvOutput<B, H, W, CO, K, S, P, D, T>
where
    Const<H>: ConvOut<K, S, P>,
    Const<W>: ConvOut<K, S, P>,
{
    try_conv2d::<S, P, B, H, W, CI, CO, K, D, T>(x, weight, bias).unwrap()
}
