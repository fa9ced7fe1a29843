//! Typed pooling: `K`×`K` average pooling with stride `K` (WRN's `avg_pool2d(8)`), max pooling
//! with kernel/stride/padding (the ImageNet stem's 3×3/2, pad 1), global average pooling, and
//! flatten of a 1×1 map.

use dfdx::shapes::HasShape;
use dfdx::shapes::{Const, Dim};
use dfdx::tensor::{Tape, Tensor};

use super::{Backend, ConvOut, Elem, PoolGeometry, PoolOut};
use dfdx::shapes::ConstDim;

/// `K`×`K` average pooling, stride `K`; `K` must divide the input size (else: no impl, compile error).
#[allow(clippy::type_complexity)]
pub fn try_avg_pool2d<
    const K: usize,
    B: Dim,
    Hd: ConstDim + PoolOut<K>,
    Wd: ConstDim + PoolOut<K>,
    const C: usize,
    D: Backend,
    T: Tape<Elem, D>,
>(
    x: Tensor<(B, Hd, Wd, Const<C>), Elem, D, T>,
) -> Result<
    Tensor<
        (
            B,
            <Hd as PoolOut<K>>::Out,
            <Wd as PoolOut<K>>::Out,
            Const<C>,
        ),
        Elem,
        D,
        T,
    >,
    D::Err,
> {
    let b = x.shape().0;
    let (h, w) = (Hd::SIZE, Wd::SIZE);
    let g = PoolGeometry {
        batch: b.size(),
        h,
        w,
        c: C,
        ho: h / K,
        wo: w / K,
        k: K,
        kw: K,
        stride: K,
        pad: 0,
    };
    D::pool2d_kernel(
        x,
        (b, Default::default(), Default::default(), Const::<C>),
        g,
        false,
    )
}

/// Infallible [`try_avg_pool2d`].
#[allow(clippy::type_complexity)]
pub fn avg_pool2d<
    const K: usize,
    B: Dim,
    Hd: ConstDim + PoolOut<K>,
    Wd: ConstDim + PoolOut<K>,
    const C: usize,
    D: Backend,
    T: Tape<Elem, D>,
>(
    x: Tensor<(B, Hd, Wd, Const<C>), Elem, D, T>,
) -> Tensor<
    (
        B,
        <Hd as PoolOut<K>>::Out,
        <Wd as PoolOut<K>>::Out,
        Const<C>,
    ),
    Elem,
    D,
    T,
> {
    try_avg_pool2d::<K, B, Hd, Wd, C, D, T>(x).unwrap()
}

/// `K`×`K` max pooling with stride `S` and padding `P` (padding never wins, as PyTorch's −∞).
#[allow(clippy::type_complexity)]
pub fn try_max_pool2d<
    const K: usize,
    const S: usize,
    const P: usize,
    B: Dim,
    Hd: ConstDim + ConvOut<K, S, P>,
    Wd: ConstDim + ConvOut<K, S, P>,
    const C: usize,
    D: Backend,
    T: Tape<Elem, D>,
>(
    x: Tensor<(B, Hd, Wd, Const<C>), Elem, D, T>,
) -> Result<
    Tensor<
        (
            B,
            <Hd as ConvOut<K, S, P>>::Out,
            <Wd as ConvOut<K, S, P>>::Out,
            Const<C>,
        ),
        Elem,
        D,
        T,
    >,
    D::Err,
> {
    let b = x.shape().0;
    let ho = <Hd as ConvOut<K, S, P>>::Out::default();
    let wo = <Wd as ConvOut<K, S, P>>::Out::default();
    let g = PoolGeometry {
        batch: b.size(),
        h: Hd::SIZE,
        w: Wd::SIZE,
        c: C,
        ho: ho.size(),
        wo: wo.size(),
        k: K,
        kw: K,
        stride: S,
        pad: P,
    };
    D::pool2d_kernel(x, (b, ho, wo, Const::<C>), g, true)
}

/// Infallible [`try_max_pool2d`].
#[allow(clippy::type_complexity)]
pub fn max_pool2d<
    const K: usize,
    const S: usize,
    const P: usize,
    B: Dim,
    Hd: ConstDim + ConvOut<K, S, P>,
    Wd: ConstDim + ConvOut<K, S, P>,
    const C: usize,
    D: Backend,
    T: Tape<Elem, D>,
>(
    x: Tensor<(B, Hd, Wd, Const<C>), Elem, D, T>,
) -> Tensor<
    (
        B,
        <Hd as ConvOut<K, S, P>>::Out,
        <Wd as ConvOut<K, S, P>>::Out,
        Const<C>,
    ),
    Elem,
    D,
    T,
> {
    try_max_pool2d::<K, S, P, B, Hd, Wd, C, D, T>(x).unwrap()
}

/// Global average pooling (PyTorch's `AdaptiveAvgPool2d(1)` followed by `flatten(1)`).
pub fn try_global_avg_pool2d<
    B: Dim,
    Hd: ConstDim,
    Wd: ConstDim,
    const C: usize,
    D: Backend,
    T: Tape<Elem, D>,
>(
    x: Tensor<(B, Hd, Wd, Const<C>), Elem, D, T>,
) -> Result<Tensor<(B, Const<C>), Elem, D, T>, D::Err> {
    let b = x.shape().0;
    let (h, w) = (Hd::SIZE, Wd::SIZE);
    let g = PoolGeometry {
        batch: b.size(),
        h,
        w,
        c: C,
        ho: 1,
        wo: 1,
        k: h,
        kw: w,
        stride: h.max(w),
        pad: 0,
    };
    D::pool2d_kernel(x, (b, Const::<C>), g, false)
}

/// Infallible [`try_global_avg_pool2d`].
pub fn global_avg_pool2d<
    B: Dim,
    Hd: ConstDim,
    Wd: ConstDim,
    const C: usize,
    D: Backend,
    T: Tape<Elem, D>,
>(
    x: Tensor<(B, Hd, Wd, Const<C>), Elem, D, T>,
) -> Tensor<(B, Const<C>), Elem, D, T> {
    try_global_avg_pool2d(x).unwrap()
}

/// Flattens a 1×1 feature map to `(batch, channels)`. Only 1×1 maps are accepted (at compile
/// time): for larger maps NHWC and PyTorch's NCHW flatten orders differ.
pub fn try_flatten<B: Dim, const C: usize, D: Backend, T: Tape<Elem, D>>(
    x: Tensor<(B, Const<1>, Const<1>, Const<C>), Elem, D, T>,
) -> Result<Tensor<(B, Const<C>), Elem, D, T>, D::Err> {
    try_global_avg_pool2d(x)
}

/// Infallible [`try_flatten`].
pub fn flatten<B: Dim, const C: usize, D: Backend, T: Tape<Elem, D>>(
    x: Tensor<(B, Const<1>, Const<1>, Const<C>), Elem, D, T>,
) -> Tensor<(B, Const<C>), Elem, D, T> {
    try_flatten(x).unwrap()
}
