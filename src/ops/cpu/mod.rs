//! The CPU implementation of [`super::Backend`]: custom ops on dfdx's tape through its public
//! API (`split_tape`, `Tape::add_backward_op`, `Gradients::get_or_alloc_mut`), multi-threaded with
//! rayon, convolutions as im2col + `gemm` on row blocks that stay in cache.

mod alloc;
mod conv;
mod conv3x3;
mod norm;
mod pointwise;
mod pool;

use dfdx::shapes::HasShape;
use dfdx::shapes::Shape;
use dfdx::tensor::{Cpu, Gradients, Tensor, TensorFromVec};
use rayon::prelude::*;

use super::Elem;

/// Copies a tensor's values out (a `memcpy`). The crate's ops read contiguous tensors, as every
/// dfdx op and constructor makes them (not `broadcast`/`permute` views).
pub(crate) fn read<S: Shape, T>(t: &Tensor<S, Elem, Cpu, T>) -> Vec<Elem> {
    let _t = crate::ops::profile::scope("  read (copy_into)");
    let mut v = vec![0.0; t.shape().num_elements()];
    t.copy_into(&mut v);
    v
}

/// Wraps a freshly computed buffer as a tensor (no copy).
pub(crate) fn wrap<S: Shape>(
    dev: &Cpu,
    data: Vec<Elem>,
    shape: S,
) -> Result<Tensor<S, Elem, Cpu>, <Cpu as dfdx::tensor::HasErr>::Err> {
    dev.try_tensor_from_vec(data, shape)
}

/// Takes the gradient of `t` out of `grads` (allocating zeros if absent); give it back with
/// [`put_grad`] so that later readers still see it.
pub(crate) fn take_grad<S: Shape>(
    grads: &mut Gradients<Elem, Cpu>,
    t: &Tensor<S, Elem, Cpu>,
) -> Result<Vec<Elem>, <Cpu as dfdx::tensor::HasErr>::Err> {
    let _t = crate::ops::profile::scope("  take_grad");
    let v: &mut Vec<Elem> = grads.get_or_alloc_mut(t)?;
    Ok(std::mem::take(v))
}

pub(crate) fn put_grad<S: Shape>(
    grads: &mut Gradients<Elem, Cpu>,
    t: &Tensor<S, Elem, Cpu>,
    g: Vec<Elem>,
) -> Result<(), <Cpu as dfdx::tensor::HasErr>::Err> {
    let v: &mut Vec<Elem> = grads.get_or_alloc_mut(t)?;
    *v = g;
    Ok(())
}

/// A vector of `n` elements written in parallel, `chunk` elements at a time, by
/// `fill(offset, chunk)`. Each chunk is zeroed by its worker just before `fill` (in cache)
/// rather than the whole vector by one thread up front (`vec![0.0; n]`), which cost a tenth of a
/// training step.
pub(crate) fn par_output(
    n: usize,
    chunk: usize,
    fill: impl Fn(usize, &mut [Elem]) + Sync + Send,
) -> Vec<Elem> {
    use std::mem::MaybeUninit;
    let mut v: Vec<Elem> = Vec::with_capacity(n);
    v.spare_capacity_mut()[..n]
        .par_chunks_mut(chunk.max(1))
        .enumerate()
        .for_each(|(i, c)| {
            c.iter_mut().for_each(|e| {
                e.write(0.0);
            });
            // SAFETY: every element of `c` was initialised just above; MaybeUninit<f32> and
            // f32 have the same layout.
            let c: &mut [Elem] = unsafe { &mut *(c as *mut [MaybeUninit<Elem>] as *mut [Elem]) };
            fill(i * chunk.max(1), c);
        });
    // SAFETY: the chunks cover `0..n` and each was initialised above.
    unsafe { v.set_len(n) };
    v
}

/// Rows per parallel task for element-wise loops.
pub(crate) const CHUNK: usize = 1 << 14;

impl crate::ops::Backend for Cpu {
    fn conv2d_kernel<Si: Shape, So: Shape, const CO: usize, const K: usize, const CI: usize, T>(
        x: Tensor<Si, Elem, Self, T>,
        w: &Tensor<dfdx::shapes::Rank4<CO, K, K, CI>, Elem, Self>,
        b: Option<&Tensor<dfdx::shapes::Rank1<CO>, Elem, Self>>,
        out_shape: So,
        g: crate::ops::ConvGeometry,
    ) -> Result<Tensor<So, Elem, Self, T>, Self::Err>
    where
        T: dfdx::tensor::Tape<Elem, Self>,
    {
        alloc::tune_once();
        conv::forward(x, w, b, out_shape, g)
    }

    fn batch_norm_kernel<S: Shape, const C: usize, T>(
        x: Tensor<S, Elem, Self, T>,
        weight: &Tensor<dfdx::shapes::Rank1<C>, Elem, Self>,
        bias: &Tensor<dfdx::shapes::Rank1<C>, Elem, Self>,
        running: Option<(
            &Tensor<dfdx::shapes::Rank1<C>, Elem, Self>,
            &Tensor<dfdx::shapes::Rank1<C>, Elem, Self>,
        )>,
        eps: f64,
    ) -> Result<
        (
            Tensor<S, Elem, Self, T>,
            Option<crate::ops::BatchStatistics>,
        ),
        Self::Err,
    >
    where
        T: dfdx::tensor::Tape<Elem, Self>,
    {
        alloc::tune_once();
        norm::forward(
            x,
            None,
            weight,
            bias,
            running,
            eps,
            norm::Identity,
            [None, None],
        )
    }

    fn batch_norm_act_kernel<S: Shape, const C: usize, T, F: crate::ops::ScalarFn>(
        x: Tensor<S, Elem, Self, T>,
        residual: Option<Tensor<S, Elem, Self, T>>,
        weight: &Tensor<dfdx::shapes::Rank1<C>, Elem, Self>,
        bias: &Tensor<dfdx::shapes::Rank1<C>, Elem, Self>,
        running: Option<(
            &Tensor<dfdx::shapes::Rank1<C>, Elem, Self>,
            &Tensor<dfdx::shapes::Rank1<C>, Elem, Self>,
        )>,
        eps: f64,
        f: F,
        params: [Option<&Tensor<dfdx::shapes::Rank1<1>, Elem, Self>>; 2],
    ) -> Result<
        (
            Tensor<S, Elem, Self, T>,
            Option<crate::ops::BatchStatistics>,
        ),
        Self::Err,
    >
    where
        T: dfdx::tensor::Tape<Elem, Self>,
    {
        alloc::tune_once();
        norm::forward(x, residual, weight, bias, running, eps, f, params)
    }

    fn pool2d_kernel<Si: Shape, So: Shape, T>(
        x: Tensor<Si, Elem, Self, T>,
        out_shape: So,
        g: crate::ops::PoolGeometry,
        max: bool,
    ) -> Result<Tensor<So, Elem, Self, T>, Self::Err>
    where
        T: dfdx::tensor::Tape<Elem, Self>,
    {
        alloc::tune_once();
        pool::forward(x, out_shape, g, max)
    }

    fn pointwise_kernel<S: Shape, T, F: crate::ops::ScalarFn>(
        x: Tensor<S, Elem, Self, T>,
        f: F,
        params: [Option<&Tensor<dfdx::shapes::Rank1<1>, Elem, Self>>; 2],
    ) -> Result<Tensor<S, Elem, Self, T>, Self::Err>
    where
        T: dfdx::tensor::Tape<Elem, Self>,
    {
        alloc::tune_once();
        pointwise::forward(x, f, params)
    }

    fn axpy<S: Shape>(
        a: &mut Tensor<S, Elem, Self>,
        alpha: f64,
        b: &Tensor<S, Elem, Self>,
        beta: f64,
    ) -> Result<(), Self::Err> {
        a.try_axpy(alpha, b, beta)
    }
}
