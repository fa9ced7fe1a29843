//! Typed pooling: `K`×`K` average pooling with stride `K` (WRN's `avg_pool2d(8)`), max pooling
//! with kernel/stride/padding (the ImageNet stem's 3×3/2, pad 1), global average pooling, and
//! flatten of a 1×1 map.

use dfdx::shapes::HasShape;
use dfdx::shapes::{Const, Dim};
use dfdx::tensor::{Tape, Tensor};

use super::{Backend, ConvOut, Elem, Image, PoolGeometry, PoolOut};

/// `K`×`K` average pooling, stride `K`; `K` must divide the input size (else: no impl, compile error).
#[allow(clippy::type_complexity)]
pub fn try_avg_pool2d<const K: usize, B: Dim, const H: usize, const W: usize, const C: usize, D: Backend, T: Tape<Elem, D>>(
    x: Image<B, H, W, C, D, T>,
) -> Result<Tensor<(B, <Const<H> as PoolOut<K>>::Out, <Const<W> as PoolOut<K>>::Out, Const<C>), Elem, D, T>, D::Err>
where
    Const<H>: PoolOut<K>,
    Const<W>: PoolOut<K>,
{
    let b = x.shape().0;
    let g = PoolGeometry { batch: b.size(), h: H, w: W, c: C, ho: H / K, wo: W / K, k: K, kw: K, stride: K, pad: 0 };
    D::pool2d_kernel(x, (b, Default::default(), Default::default(), Const::<C>), g, false)
}

/// Infallible [`try_avg_pool2d`].
#[allow(clippy::type_complexity)]
pub fn avg_pool2d<const K: usize, B: Dim, const H: usize, const W: usize, const C: usize, D: Backend, T: Tape<Elem, D>>(
    x: Image<B, H, W, C, D, T>,
) -> Tensor<(B, <Const<H> as PoolOut<K>>::Out, <Const<W> as PoolOut<K>>::Out, Const<C>), Elem, D, T>
where
    Const<H>: PoolOut<K>,
    Const<W>: PoolOut<K>,
{
    try_avg_pool2d::<K, B, H, W, C, D, T>(x).unwrap()
}

/// `K`×`K` max pooling with stride `S` and padding `P` (padding never wins, as PyTorch's −∞).
#[allow(clippy::type_complexity)]
pub fn try_max_pool2d<
    const K: usize,
    const S: usize,
    const P: usize,
    B: Dim,
    const H: usize,
    const W: usize,
    const C: usize,
    D: Backend,
    T: Tape<Elem, D>,
>(
    x: Image<B, H, W, C, D, T>,
) -> Result<Tensor<(B, <Const<H> as ConvOut<K, S, P>>::Out, <Const<W> as ConvOut<K, S, P>>::Out, Const<C>), Elem, D, T>, D::Err>
where
    Const<H>: ConvOut<K, S, P>,
    Const<W>: ConvOut<K, S, P>,
{
    let b = x.shape().0;
    let ho = <Const<H> as ConvOut<K, S, P>>::Out::default();
    let wo = <Const<W> as ConvOut<K, S, P>>::Out::default();
    let g = PoolGeometry { batch: b.size(), h: H, w: W, c: C, ho: ho.size(), wo: wo.size(), k: K, kw: K, stride: S, pad: P };
    D::pool2d_kernel(x, (b, ho, wo, Const::<C>), g, true)
}

/// Infallible [`try_max_pool2d`].
#[allow(clippy::type_complexity)]
pub fn max_pool2d<
    const K: usize,
    const S: usize,
    const P: usize,
    B: Dim,
    const H: usize,
    const W: usize,
    const C: usize,
    D: Backend,
    T: Tape<Elem, D>,
>(
    x: Image<B, H, W, C, D, T>,
) -> Tensor<(B, <Const<H> as ConvOut<K, S, P>>::Out, <Const<W> as ConvOut<K, S, P>>::Out, Const<C>), Elem, D, T>
where
    Const<H>: ConvOut<K, S, P>,
    Const<W>: ConvOut<K, S, P>,
{
    try_max_pool2d::<K, S, P, B, H, W, C, D, T>(x).unwrap()
}

/// Global average pooling (PyTorch's `AdaptiveAvgPool2d(1)` followed by `flatten(1)`).
pub fn try_global_avg_pool2d<B: Dim, const H: usize, const W: usize, const C: usize, D: Backend, T: Tape<Elem, D>>(
    x: Image<B, H, W, C, D, T>,
) -> Result<Tensor<(B, Const<C>), Elem, D, T>, D::Err> {
    let b = x.shape().0;
    let g = PoolGeometry { batch: b.size(), h: H, w: W, c: C, ho: 1, wo: 1, k: H, kw: W, stride: H.max(W), pad: 0 };
    D::pool2d_kernel(x, (b, Const::<C>), g, false)
}

/// Infallible [`try_global_avg_pool2d`].
pub fn global_avg_pool2d<B: Dim, const H: usize, const W: usize, const C: usize, D: Backend, T: Tape<Elem, D>>(
    x: Image<B, H, W, C, D, T>,
) -> Tensor<(B, Const<C>), Elem, D, T> {
    try_global_avg_pool2d(x).unwrap()
}

/// Flattens a 1×1 feature map to `(batch, channels)`. Only 1×1 maps are accepted (at compile
/// time): for larger maps NHWC and PyTorch's NCHW flatten orders differ.
pub fn try_flatten<B: Dim, const C: usize, D: Backend, T: Tape<Elem, D>>(
    x: Image<B, 1, 1, C, D, T>,
) -> Result<Tensor<(B, Const<C>), Elem, D, T>, D::Err> {
    try_global_avg_pool2d(x)
}

/// Infallible [`try_flatten`].
pub fn flatten<B: Dim, const C: usize, D: Backend, T: Tape<Elem, D>>(
    x: Image<B, 1, 1, C, D, T>,
) -> Tensor<(B, Const<C>), Elem, D, T> {
    try_flatten(x).unwrap()
}
