//! The crate's ops composed of dfdx's public tensor ops, for any dfdx device: the implementation
//! behind [`super::Backend`] for CUDA, where dfdx 0.13 gives no public access to device memory
//! (its `Cuda` device keeps them private), so dfdx's own kernels and autograd do the work.
//!
//! - **Convolution**: im2col by `gather` (the fastest composed form measured on dfdx) — the input
//!   flattened to `(B·H·W, C_in)` with one zero row appended for the padding, gathered into the
//!   `(B·Ho·Wo, K·K·C_in)` column matrix, times the `(C_out, K·K·C_in)` weight transposed.
//! - **Batch norm**: `y = x·a + b` per channel (few full-tensor passes); training mode from the
//!   batch mean and biased variance through dfdx's reductions (so the gradient is dfdx's),
//!   evaluation mode with the running statistics as constants (the input still gets its gradient).
//! - **Pooling**: average pooling over non-overlapping windows by a reshape and a sum; max pooling by
//!   a `gather` of the windows (padding reads a row of −∞) and a max over the window axis.
//! - **Activations**: [`ScalarFn::compose`] (the paper's formulas in dfdx ops).
//!
//! Everything here also runs on the `Cpu` device, where `tests/composed.rs` checks it against the
//! crate's fast CPU kernels (values and every gradient), so the CUDA path is tested on every CI run.

use dfdx::shapes::{Axis, Const, HasShape, Rank1, Shape};
use dfdx::tensor::{Tape, Tensor};
use dfdx::tensor_ops::{
    BroadcastTo, Device, GatherTo, MaxTo, MeanTo, PermuteTo, ReshapeTo, SumTo, TryAdd,
    TryConcatAlong, TryDiv, TryMatMul, TryMul, TrySub,
};

use super::{BatchStatistics, ConvGeometry, Elem, PoolGeometry, ScalarFn};

/// For every window element of every output pixel, the flat input pixel it reads
/// (`b·H·W + ih·W + iw`), or `pad_row` where the window hangs over the border.
fn window_indices(
    batch: usize,
    (h, w): (usize, usize),
    (ho, wo): (usize, usize),
    (kh_n, kw_n): (usize, usize),
    stride: usize,
    pad: usize,
    pad_row: usize,
) -> Vec<usize> {
    let mut idx = Vec::with_capacity(batch * ho * wo * kh_n * kw_n);
    for b in 0..batch {
        for oh in 0..ho {
            for ow in 0..wo {
                for kh in 0..kh_n {
                    for kw in 0..kw_n {
                        let ih = (oh * stride + kh) as isize - pad as isize;
                        let iw = (ow * stride + kw) as isize - pad as isize;
                        idx.push(
                            if ih < 0 || iw < 0 || ih >= h as isize || iw >= w as isize {
                                pad_row
                            } else {
                                (b * h + ih as usize) * w + iw as usize
                            },
                        );
                    }
                }
            }
        }
    }
    idx
}

/// `y = conv(x, w) + b`, NHWC input and output, OHWI weight, composed of `gather` and `matmul`.
#[allow(clippy::type_complexity)]
pub fn conv2d<
    Si: Shape,
    So: Shape,
    const CO: usize,
    const K: usize,
    const CI: usize,
    D: Device<Elem>,
    T: Tape<Elem, D>,
>(
    x: Tensor<Si, Elem, D, T>,
    w: &Tensor<dfdx::shapes::Rank4<CO, K, K, CI>, Elem, D>,
    b: Option<&Tensor<Rank1<CO>, Elem, D>>,
    out_shape: So,
    g: ConvGeometry,
) -> Result<Tensor<So, Elem, D, T>, D::Err> {
    let dev = x.device().clone();
    let pixels = g.batch * g.h * g.w;
    let rows = g.rows();
    let p = g.patch();
    let x = x.try_reshape_like(&(pixels, Const::<CI>))?;
    let zero_row: Tensor<(usize, Const<CI>), Elem, D> = dev.try_zeros_like(&(1, Const))?;
    let x = (x, zero_row).try_concat_along(Axis::<0>)?;
    let idx = window_indices(
        g.batch,
        (g.h, g.w),
        (g.ho, g.wo),
        (g.k, g.k),
        g.stride,
        g.pad,
        pixels,
    );
    let n_idx = idx.len();
    let idx = dev.try_tensor_from_vec(idx, (n_idx,))?;
    let cols: Tensor<(usize, Const<CI>), Elem, D, T> = x.try_gather(idx)?;
    let cols = cols.try_reshape_like(&(rows, p))?;
    let wt = w
        .retaped::<T>()
        .try_reshape_like(&(Const::<CO>, p))?
        .try_permute::<(usize, Const<CO>), _>()?;
    let y = cols.try_matmul(wt)?;
    let y = match b {
        Some(b) => {
            let shape = *y.shape();
            y.try_add(b.retaped::<T>().try_broadcast_like(&shape)?)?
        }
        None => y,
    };
    y.try_reshape_like(&out_shape)
}

/// Batch norm over every axis but the last, composed: see the module docs.
#[allow(clippy::type_complexity)]
pub fn batch_norm<S: Shape, const C: usize, D: Device<Elem>, T: Tape<Elem, D>>(
    x: Tensor<S, Elem, D, T>,
    weight: &Tensor<Rank1<C>, Elem, D>,
    bias: &Tensor<Rank1<C>, Elem, D>,
    running: Option<(&Tensor<Rank1<C>, Elem, D>, &Tensor<Rank1<C>, Elem, D>)>,
    eps: f64,
) -> Result<(Tensor<S, Elem, D, T>, Option<BatchStatistics>), D::Err> {
    let shape = *x.shape();
    let n = shape.num_elements() / C;
    let flat = (n, Const::<C>);
    let x = x.try_reshape_like(&flat)?;
    let gamma = weight.retaped::<T>();
    let beta = bias.retaped::<T>();
    let (y, stats) = match running {
        None => {
            let mean: Tensor<Rank1<C>, Elem, D, T> = x.retaped::<T>().try_mean::<_, Axis<0>>()?;
            let mean_values = mean.as_vec();
            // the mean keeps its tape: the gradient flows through it
            let centered = x.try_sub(mean.try_broadcast_like(&flat)?)?;
            let var: Tensor<Rank1<C>, Elem, D, T> = centered
                .retaped::<T>()
                .try_square()?
                .try_mean::<_, Axis<0>>()?;
            let stats = BatchStatistics {
                mean: mean_values.into_iter().map(|v| v as f64).collect(),
                var: var.as_vec().into_iter().map(|v| v as f64).collect(),
                count: n,
            };
            let a = var
                .try_add(eps as Elem)?
                .try_sqrt()?
                .try_recip()?
                .try_mul(gamma)?;
            let y = centered
                .try_mul(a.try_broadcast_like(&flat)?)?
                .try_add(beta.try_broadcast_like(&flat)?)?;
            (y, Some(stats))
        }
        Some((rm, rv)) => {
            // a = γ / sqrt(σ²_run + ε), b = β − μ_run·a: the running statistics are constants
            let inv = rv.clone().try_add(eps as Elem)?.try_sqrt()?.try_recip()?;
            let a = gamma.try_mul(inv)?;
            let b = beta.try_sub(a.retaped::<T>().try_mul(rm.clone())?)?;
            let y = x
                .try_mul(a.try_broadcast_like(&flat)?)?
                .try_add(b.try_broadcast_like(&flat)?)?;
            (y, None)
        }
    };
    Ok((y.try_reshape_like(&shape)?, stats))
}

/// `f(batch_norm(x) + residual)` composed: [`batch_norm`], dfdx's add, [`ScalarFn::compose`]
/// (what [`super::Backend::batch_norm_act_kernel`] does on CUDA).
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
pub fn batch_norm_act<S: Shape, const C: usize, D: Device<Elem>, T: Tape<Elem, D>, F: ScalarFn>(
    x: Tensor<S, Elem, D, T>,
    residual: Option<Tensor<S, Elem, D, T>>,
    weight: &Tensor<Rank1<C>, Elem, D>,
    bias: &Tensor<Rank1<C>, Elem, D>,
    running: Option<(&Tensor<Rank1<C>, Elem, D>, &Tensor<Rank1<C>, Elem, D>)>,
    eps: f64,
    f: F,
    params: [Option<&Tensor<Rank1<1>, Elem, D>>; 2],
) -> Result<(Tensor<S, Elem, D, T>, Option<BatchStatistics>), D::Err> {
    let (y, stats) = batch_norm(x, weight, bias, running, eps)?;
    let y = match residual {
        Some(r) => y.try_add(r)?,
        None => y,
    };
    Ok((f.compose(y, params)?, stats))
}

/// Average (`max = false`) or max pooling, NHWC, composed: see the module docs. Average pooling
/// needs non-overlapping, unpadded windows that tile the input (all the models use).
pub fn pool2d<Si: Shape, So: Shape, D: Device<Elem>, T: Tape<Elem, D>>(
    x: Tensor<Si, Elem, D, T>,
    out_shape: So,
    g: PoolGeometry,
    max: bool,
) -> Result<Tensor<So, Elem, D, T>, D::Err> {
    let dev = x.device().clone();
    if !max {
        assert!(
            g.pad == 0 && g.stride == g.k && g.h == g.ho * g.k && g.w == g.wo * g.kw,
            "composed average pooling needs non-overlapping windows that tile the input: {g:?}"
        );
        // (B·Ho, K, Wo, KW·C) → sum over the window rows and the window columns
        let x = x.try_reshape_like(&(g.batch * g.ho, g.k, g.wo, g.kw, g.c))?;
        let s: Tensor<(usize, usize, usize), Elem, D, T> =
            x.try_sum::<_, dfdx::shapes::Axes2<1, 3>>()?;
        let y = s.try_mul(1.0 / (g.k * g.kw) as Elem)?;
        return y.try_reshape_like(&out_shape);
    }
    let pixels = g.batch * g.h * g.w;
    let x = x.try_reshape_like(&(pixels, g.c))?;
    let ninf: Tensor<(usize, usize), Elem, D> =
        dev.try_ones_like(&(1, g.c))?.try_mul(Elem::NEG_INFINITY)?;
    let x = (x, ninf).try_concat_along(Axis::<0>)?;
    let idx = window_indices(
        g.batch,
        (g.h, g.w),
        (g.ho, g.wo),
        (g.k, g.kw),
        g.stride,
        g.pad,
        pixels,
    );
    let n_idx = idx.len();
    let idx = dev.try_tensor_from_vec(idx, (n_idx,))?;
    let win: Tensor<(usize, usize), Elem, D, T> = x.try_gather(idx)?;
    let win = win.try_reshape_like(&(g.batch * g.ho * g.wo, g.k * g.kw, g.c))?;
    let y: Tensor<(usize, usize), Elem, D, T> = win.try_max::<_, Axis<1>>()?;
    y.try_reshape_like(&out_shape)
}

/// `f(x)` element-wise through [`ScalarFn::compose`].
pub fn pointwise<S: Shape, D: Device<Elem>, T: Tape<Elem, D>, F: ScalarFn>(
    x: Tensor<S, Elem, D, T>,
    f: F,
    params: [Option<&Tensor<Rank1<1>, Elem, D>>; 2],
) -> Result<Tensor<S, Elem, D, T>, D::Err> {
    f.compose(x, params)
}

/// A scalar coefficient of a composed activation: a learnable parameter broadcast to the input's
/// shape on its tape (so it receives its gradient), or a constant (absent or frozen parameter).
pub enum Coef<S: Shape, D: Device<Elem>, T: Tape<Elem, D>> {
    Learned(Tensor<S, Elem, D, T>),
    Fixed(Elem),
}

impl<S: Shape, D: Device<Elem>, T: Tape<Elem, D>> Coef<S, D, T> {
    /// `param` broadcast like `like`, or the constant `value` when `param` is `None`.
    pub fn new(
        like: &Tensor<S, Elem, D, T>,
        param: Option<&Tensor<Rank1<1>, Elem, D>>,
        value: Elem,
    ) -> Result<Self, D::Err> {
        Ok(match param {
            Some(p) => Coef::Learned(
                p.retaped::<T>()
                    .try_reshape_like(&())?
                    .try_broadcast_like(like.shape())?,
            ),
            None => Coef::Fixed(value),
        })
    }
    /// A second handle on the same coefficient (gradients from both uses add up).
    pub fn again(&self) -> Self {
        match self {
            Coef::Learned(t) => Coef::Learned(t.retaped::<T>()),
            Coef::Fixed(c) => Coef::Fixed(*c),
        }
    }
    /// `|c|`.
    pub fn abs(self) -> Result<Self, D::Err> {
        Ok(match self {
            Coef::Learned(t) => Coef::Learned(t.try_abs()?),
            Coef::Fixed(c) => Coef::Fixed(c.abs()),
        })
    }
    /// `x · c`.
    pub fn times(self, x: Tensor<S, Elem, D, T>) -> Result<Tensor<S, Elem, D, T>, D::Err> {
        match self {
            Coef::Learned(t) => x.try_mul(t),
            Coef::Fixed(c) => x.try_mul(c),
        }
    }
    /// `x / c`.
    pub fn divide(self, x: Tensor<S, Elem, D, T>) -> Result<Tensor<S, Elem, D, T>, D::Err> {
        match self {
            Coef::Learned(t) => x.try_div(t),
            Coef::Fixed(c) => x.try_div(c),
        }
    }
    /// `x − c`.
    pub fn subtract_from(self, x: Tensor<S, Elem, D, T>) -> Result<Tensor<S, Elem, D, T>, D::Err> {
        match self {
            Coef::Learned(t) => x.try_sub(t),
            Coef::Fixed(c) => x.try_sub(c),
        }
    }
    /// `1 − c`, as a coefficient.
    pub fn one_minus(self) -> Result<Self, D::Err> {
        Ok(match self {
            Coef::Learned(t) => Coef::Learned(t.try_negate()?.try_add(1.0)?),
            Coef::Fixed(c) => Coef::Fixed(1.0 - c),
        })
    }
}

/// [`super::Backend::sgd_step`] as dfdx's `axpy` once per line of its formula, for any device
/// (the CUDA path; the CPU's fused kernel is tested against it bit for bit).
pub fn sgd_update<D: super::Backend, S: Shape>(
    p: &mut Tensor<S, Elem, D>,
    grads: &mut dfdx::tensor::Gradients<Elem, D>,
    buf: &mut Option<Tensor<(usize,), Elem, D>>,
    s: super::SgdScalars,
) -> Result<(), D::Err> {
    grads.try_alloc_for(p)?;
    let mut d = grads.get(p);
    if s.grad_scale != 1.0 || s.weight_decay != 0.0 {
        D::axpy(&mut d, s.grad_scale, p, s.weight_decay)?;
    }
    if s.momentum != 0.0 {
        let n = p.shape().num_elements();
        let flat = d.clone().try_reshape_like(&(n,))?;
        let b = match buf {
            Some(b) if b.shape().0 == n => {
                D::axpy(b, s.momentum, &flat, 1.0)?;
                b.clone()
            }
            _ => {
                // a copy, not a view of the gradient: the buffer is updated in place later
                let mut fresh = flat.device().try_zeros_like(&(n,))?;
                D::axpy(&mut fresh, 0.0, &flat, 1.0)?;
                *buf = Some(fresh.clone());
                fresh
            }
        };
        let b = b.try_reshape_like(p.shape())?;
        if s.nesterov {
            D::axpy(&mut d, 1.0, &b, s.momentum)?;
        } else {
            d = b;
        }
    }
    D::axpy(p, 1.0, &d, -s.lr)
}
