//! The CPU implementation of [`super::Backend`]: custom ops on dfdx's tape through its public
//! API (`split_tape`, `Tape::add_backward_op`, `Gradients::get_or_alloc_mut`), multi-threaded with
//! rayon, convolutions as im2col + `gemm` on row blocks that stay in cache.

mod alloc;
mod conv;
mod conv3x3;
mod norm;
mod pointwise;
mod pool;
mod sgd;

use dfdx::shapes::HasShape;
use dfdx::shapes::Shape;
use dfdx::tensor::{Cpu, CpuError, Gradients, Tensor, TensorFromVec};
use rayon::prelude::*;

use super::Elem;

/// A CPU tensor's values as a slice, read in place: what every op here reads its inputs through.
///
/// dfdx 0.13 has no public slice of a CPU tensor's buffer, and its `copy_into` is one
/// single-threaded `memcpy` per op input: ≈ 11 % of a ResNet-18 training step (BENCHMARKS.md,
/// issue 11), and a second copy of every saved activation for the backward pass. Its public
/// `Index` does return a reference into the buffer, so `Held` takes the address of the first
/// element, checks per axis that the tensor is laid out with the standard (row-major) strides
/// — each unit step along an axis lands where the standard stride says, and the last element
/// at `n − 1`, which `Index` bounds-checks — and then reads `n` elements from there. A tensor
/// that fails the check (a `broadcast` or `permute` view) is copied element by element in its
/// logical order instead (`as_vec`), so either way the slice holds the tensor's values.
///
/// The slice stays valid because `Held` owns a clone of the tensor: while that `Arc` is held,
/// dfdx's copy-on-write (`Arc::make_mut`) never writes to this buffer. Reading a whole buffer
/// through the address of its first element is accepted by Rust's Tree Borrows model (Stacked
/// Borrows is stricter); set `ROBUST_PAF_COPY_INPUTS=1` to copy every input instead (the old
/// path, for comparison).
pub(crate) struct Held<S: Shape> {
    _tensor: Tensor<S, Elem, Cpu>,
    values: Values,
}

enum Values {
    InPlace { ptr: *const Elem, len: usize },
    Copied(Vec<Elem>),
}

// SAFETY: the pointer is into the buffer of the tensor `Held` owns, which nobody writes while it
// is held (see the type's doc); `Tensor<_, f32, Cpu>` itself is Send + Sync.
unsafe impl<S: Shape> Send for Held<S> {}
unsafe impl<S: Shape> Sync for Held<S> {}

impl<S: Shape> Held<S> {
    /// Whether the values are read in place (false: copied).
    #[cfg(test)]
    pub(crate) fn in_place(&self) -> bool {
        matches!(self.values, Values::InPlace { .. })
    }
}

impl<S: Shape> std::ops::Deref for Held<S> {
    type Target = [Elem];
    fn deref(&self) -> &[Elem] {
        match &self.values {
            // SAFETY: `ptr` is the start of `len` initialised elements of the owned tensor's
            // buffer (checked in `hold`), alive and unwritten while `self` is.
            Values::InPlace { ptr, len } => unsafe { std::slice::from_raw_parts(*ptr, *len) },
            Values::Copied(v) => v,
        }
    }
}

/// Whether `ROBUST_PAF_COPY_INPUTS` asks for copies instead of in-place reads (read once).
fn copy_inputs() -> bool {
    static COPY: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *COPY.get_or_init(|| {
        std::env::var("ROBUST_PAF_COPY_INPUTS")
            .map(|v| !matches!(v.trim(), "" | "0"))
            .unwrap_or(false)
    })
}

/// The address of `t`'s first element if `t` is laid out with the standard strides.
fn standard_layout<S: Shape>(t: &Tensor<S, Elem, Cpu>) -> Option<*const Elem> {
    let dims = t.shape().concrete();
    let strides = t.shape().strides();
    let zero = S::Concrete::default();
    let first: *const Elem = &t[zero];
    let mut last = zero;
    for d in 0..S::NUM_DIMS {
        if dims[d] > 1 {
            let mut i = zero;
            i[d] = 1;
            let at: *const Elem = &t[i];
            if (at as usize).wrapping_sub(first as usize)
                != strides[d] * std::mem::size_of::<Elem>()
            {
                return None;
            }
        }
        last[d] = dims[d] - 1;
    }
    // `Index` bounds-checks: the buffer holds at least `n` elements from `first`
    let end: *const Elem = &t[last];
    let n = t.shape().num_elements();
    ((end as usize).wrapping_sub(first as usize) == (n - 1) * std::mem::size_of::<Elem>())
        .then_some(first)
}

/// Reads `t`'s values (see [`Held`]); the tensor must carry no tape (ops split it off first).
pub(crate) fn hold<S: Shape>(t: &Tensor<S, Elem, Cpu>) -> Held<S> {
    let _t = crate::ops::profile::scope("  read inputs");
    let len = t.shape().num_elements();
    let values = match (len > 0).then(|| standard_layout(t)).flatten() {
        Some(ptr) if !copy_inputs() => Values::InPlace { ptr, len },
        Some(_) => {
            let mut v = vec![0.0; len];
            t.copy_into(&mut v);
            Values::Copied(v)
        }
        None => Values::Copied(t.as_vec()),
    };
    Held {
        _tensor: t.clone(),
        values,
    }
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
    const SYNC_BATCH_NORM: bool = true;
    fn write_gradient<S: Shape>(
        grads: &mut Gradients<Elem, Cpu>,
        t: &Tensor<S, Elem, Cpu>,
        v: &[Elem],
    ) -> Result<(), CpuError> {
        let g: &mut Vec<Elem> = grads.get_or_alloc_mut(t)?;
        if g.len() != v.len() {
            return Err(CpuError::WrongNumElements);
        }
        g.copy_from_slice(v);
        Ok(())
    }
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

    fn sgd_step<S: Shape>(
        p: &mut Tensor<S, Elem, Self>,
        grads: &mut Gradients<Elem, Self>,
        buf: &mut Option<Tensor<(usize,), Elem, Self>>,
        s: crate::ops::SgdScalars,
    ) -> Result<(), Self::Err> {
        sgd::update(p, grads, buf, s)
    }
}

#[cfg(test)]
mod tests {
    //! In-place reads against dfdx's own strided copy (`as_vec`), on contiguous tensors and on
    //! the views whose buffer does not hold the values in row-major order.
    use super::*;
    use dfdx::shapes::{Axes2, Rank2, Rank3};
    use dfdx::tensor::TensorFrom;
    use dfdx::tensor_ops::{BroadcastTo, PermuteTo};

    #[test]
    fn contiguous_tensors_are_read_in_place() {
        let dev = Cpu::default();
        let t: Tensor<Rank3<2, 3, 4>, Elem, Cpu> = dev.tensor_from_vec(
            (0..24).map(|i| i as Elem * 0.5).collect(),
            Default::default(),
        );
        let h = hold(&t);
        assert!(h.in_place() || copy_inputs());
        assert_eq!(&*h, t.as_vec().as_slice());
        // the slice outlives the caller's tensor: `Held` owns a clone
        drop(t);
        assert_eq!(h[23], 11.5);
    }

    #[test]
    fn views_are_copied_in_logical_order() {
        let dev = Cpu::default();
        let row = dev.tensor([1.0 as Elem, 2.0, 3.0]);
        let b: Tensor<Rank2<4, 3>, Elem, Cpu> = row.clone().broadcast();
        let h = hold(&b);
        assert!(!h.in_place());
        assert_eq!(&*h, b.as_vec().as_slice());
        assert_eq!(h.len(), 12);
        let m: Tensor<Rank2<2, 3>, Elem, Cpu> = dev.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]);
        let p: Tensor<Rank2<3, 2>, Elem, Cpu> = m.permute::<_, Axes2<1, 0>>();
        let h = hold(&p);
        assert!(!h.in_place());
        assert_eq!(&*h, &[1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    }

    #[test]
    fn a_written_copy_leaves_the_held_values_alone() {
        // dfdx's copy-on-write: writing to another clone of the tensor while it is held must
        // reallocate, never change what `Held` reads
        let dev = Cpu::default();
        let mut t: Tensor<Rank2<2, 2>, Elem, Cpu> = dev.tensor([[1.0, 2.0], [3.0, 4.0]]);
        let h = hold(&t);
        t[[0, 0]] = 9.0;
        assert_eq!(&*h, &[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(t.as_vec(), vec![9.0, 2.0, 3.0, 4.0]);
    }
}
