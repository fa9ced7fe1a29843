//! Tensor operations that dfdx 0.13 lacks on stable Rust: 2-D convolution, batch norm with a
//! run-time train/eval switch (eval mode passes gradients to its input, which attacks need),
//! average / max / global pooling, flatten, and a fused point-wise op with scalar parameters that
//! the activations of docs/reproduction.md §1.2 are built on.
//!
//! Every op records its backward pass on the dfdx tape of its input, comes as `try_*` (returning
//! the device error) plus an infallible form, and is generic over the device through
//! [`Backend`]: the CPU implementation (`cpu/`, multi-threaded im2col + `gemm`) is selected
//! for [`dfdx::tensor::Cpu`]; a CUDA implementation composed of dfdx's public ops plugs in behind
//! the same trait (issue 3) without changing callers.
//!
//! **Layout.** Images are channels-last (NHWC): `Tensor<(B, Const<H>, Const<W>, Const<C>)>`,
//! the layout im2col and gemm want (contiguous channels). Convolution weights are stored
//! `[C_out, K, K, C_in]` (OHWI); PyTorch's `[C_out, C_in, K, K]` is converted at the import
//! boundary ([`crate::models`]).
//!
//! **Compile-time shapes.** Output sizes are looked up through [`ConvOut`] / [`PoolOut`], traits
//! implemented for every size a model can meet, so a layer whose input does not fit has no
//! `Module` impl and a misfitting model does not compile. Each example below must fail with the
//! error code it names (rustdoc's `compile_fail,E…` doctests, run by `cargo test`); their
//! well-shaped counterparts compile and run in `tests/ops.rs`
//! (`well_shaped_layers_compile_and_chain`). A 3-input-channel convolution fed a 16-channel
//! image:
//!
//! ```compile_fail,E0308
//! use dfdx::nn::Module;
//! use dfdx::shapes::Rank4;
//! use dfdx::tensor::{Cpu, Tensor, ZerosTensor};
//! use robust_paf::models::layers::Conv2d;
//!
//! let dev = Cpu::default();
//! let conv: Conv2d<3, 64, 3, 1, 1, Cpu> = Conv2d { weight: dev.zeros() };
//! let x: Tensor<Rank4<1, 32, 32, 16>, f32, Cpu> = dev.zeros();
//! let _ = conv.forward(x);
//! ```
//!
//! A 128-channel batch norm after a convolution with 64 output channels:
//!
//! ```compile_fail,E0308
//! use dfdx::nn::Module;
//! use dfdx::shapes::Rank4;
//! use dfdx::tensor::{Cpu, Tensor, ZerosTensor};
//! use robust_paf::models::layers::{BatchNorm2d, Conv2d};
//!
//! let dev = Cpu::default();
//! let conv: Conv2d<3, 64, 3, 1, 1, Cpu> = Conv2d { weight: dev.zeros() };
//! let bn: BatchNorm2d<128, Cpu> = BatchNorm2d::try_new(&dev).unwrap();
//! let x: Tensor<Rank4<1, 32, 32, 3>, f32, Cpu> = dev.zeros();
//! let _ = bn.forward(conv.forward(x));
//! ```
//!
//! An 8×8 average pooling (stride 8) on a 12×12 map (8 does not divide 12: no [`PoolOut`] impl):
//!
//! ```compile_fail,E0277
//! use dfdx::shapes::Rank4;
//! use dfdx::tensor::{Cpu, Tensor, ZerosTensor};
//! use robust_paf::ops::*;
//!
//! let dev = Cpu::default();
//! let x: Tensor<Rank4<1, 12, 12, 4>, f32, Cpu> = dev.zeros();
//! let _ = try_avg_pool2d::<8, _, _, _, 4, _, _>(x);
//! ```
//!
//! A flatten of a 2×2 map (only 1×1 maps flatten: the NHWC and NCHW orders differ otherwise):
//!
//! ```compile_fail,E0308
//! use dfdx::shapes::Rank4;
//! use dfdx::tensor::{Cpu, Tensor, ZerosTensor};
//! use robust_paf::ops::*;
//!
//! let dev = Cpu::default();
//! let x: Tensor<Rank4<1, 2, 2, 4>, f32, Cpu> = dev.zeros();
//! let _ = try_flatten(x);
//! ```

pub mod composed;
mod cpu;
mod geometry;
mod pointwise;
pub mod profile;
mod shapes;
pub(crate) mod simd;
pub mod sync;

pub use geometry::{ConvGeometry, PoolGeometry};
pub use pointwise::{backward_loop, pointwise, try_pointwise, ScalarFn};
pub use shapes::{ConvOut, PoolOut};

mod conv;
mod norm;
mod pool;

pub use conv::{conv2d, try_conv2d, ConvOutput};
pub use norm::{
    batch_norm2d_eval, batch_norm2d_train, try_batch_norm2d_act, try_batch_norm2d_eval,
    try_batch_norm2d_train, update_running_stats, BatchStatistics, ChannelsLast, RunningStats,
};
pub use pool::{
    avg_pool2d, flatten, global_avg_pool2d, max_pool2d, try_avg_pool2d, try_flatten,
    try_global_avg_pool2d, try_max_pool2d,
};

use dfdx::shapes::{Rank1, Rank4, Shape};
use dfdx::tensor::{Tape, Tensor};

thread_local! {
    static PARAMETER_GRADIENTS: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
}

/// Runs `f` with the crate's CPU ops recording **no parameter gradients** (convolution weights
/// and biases, batch-norm γ and β, activation α and β) on the tapes of the ops it creates: only
/// the gradients that flow to the inputs. What an attack needs (PyTorch's
/// `torch.autograd.grad(loss, x)`): about a third less work in the backward pass. Ops keep the
/// setting they were created with; dfdx's own ops (the final linear layer) and the composed
/// CUDA ops still compute every gradient. Nested calls restore the outer setting.
pub fn without_parameter_gradients<R>(f: impl FnOnce() -> R) -> R {
    let previous = PARAMETER_GRADIENTS.with(|c| c.replace(false));
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            PARAMETER_GRADIENTS.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(previous);
    f()
}

/// How the CPU computes a convolution (issue 11; `BENCHMARKS.md` has the measurements).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvAlgorithm {
    /// im2col + gemm, except 3×3 stride-1 convolutions of at least 16 channels and 32 pixels wide,
    /// which run as nine shifted gemms on a padded copy of each image (no im2col).
    Auto,
    /// im2col + gemm everywhere (1×1 stride-1 convolutions skip im2col in every mode).
    Im2col,
    /// The shifted-gemm path for every 3×3 stride-1 padding-1 convolution, whatever its size.
    Implicit,
}

static CONV_ALGORITHM: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(u8::MAX);

/// Chooses the CPU convolution algorithm for the whole process (the results agree to float
/// rounding; the choice is about speed). The default is [`ConvAlgorithm::Auto`], or what the
/// environment variable `ROBUST_PAF_CONV` (`auto`, `im2col`, `implicit`) says when first read.
pub fn set_conv_algorithm(a: ConvAlgorithm) {
    CONV_ALGORITHM.store(a as u8, std::sync::atomic::Ordering::Relaxed);
}

/// The CPU convolution algorithm in effect (see [`set_conv_algorithm`]).
pub fn conv_algorithm() -> ConvAlgorithm {
    use std::sync::atomic::Ordering::Relaxed;
    let from = |v: u8| match v {
        1 => ConvAlgorithm::Im2col,
        2 => ConvAlgorithm::Implicit,
        _ => ConvAlgorithm::Auto,
    };
    match CONV_ALGORITHM.load(Relaxed) {
        u8::MAX => {
            let a = match std::env::var("ROBUST_PAF_CONV").as_deref().map(str::trim) {
                Ok("im2col") => ConvAlgorithm::Im2col,
                Ok("implicit") => ConvAlgorithm::Implicit,
                _ => ConvAlgorithm::Auto,
            };
            let _ = CONV_ALGORITHM.compare_exchange(u8::MAX, a as u8, Relaxed, Relaxed);
            from(CONV_ALGORITHM.load(Relaxed))
        }
        v => from(v),
    }
}

/// False inside [`without_parameter_gradients`].
pub fn parameter_gradients_wanted() -> bool {
    PARAMETER_GRADIENTS.with(|c| c.get())
}

/// The element type of every tensor in the crate.
pub type Elem = f32;

/// A batch of images in the crate's layout: `(batch, height, width, channels)` (NHWC).
pub type Image<B, const H: usize, const W: usize, const C: usize, D, T> = Tensor<
    (
        B,
        dfdx::shapes::Const<H>,
        dfdx::shapes::Const<W>,
        dfdx::shapes::Const<C>,
    ),
    Elem,
    D,
    T,
>;

/// The kernels the crate needs from a device, on top of dfdx's own [`dfdx::tensor_ops::Device`].
///
/// Implemented for [`dfdx::tensor::Cpu`]. Shapes are carried through generically; the geometry
/// (batch, spatial sizes, kernel, stride, padding) arrives at run time, already checked at
/// compile time by the typed wrappers ([`conv2d`], [`batch_norm2d_train`], ...).
pub trait Backend: dfdx::tensor_ops::Device<Elem> {
    /// Whether the device's tensors live in the host's memory (the CPU: `true`, the default);
    /// the trainer checks its memory estimate against the host's free memory only then.
    const HOST_MEMORY: bool = true;
    /// Whether the training-mode batch norm kernels take part in a synchronised batch norm
    /// ([`sync::with_synced_batch_norm`]); `false` (the default): a data-parallel run with
    /// `trainer.sync_batch_norm` on this device stops with an error before it starts.
    const SYNC_BATCH_NORM: bool = false;
    /// `y = conv(x, w) + b`, NHWC input and output, OHWI weight.
    #[allow(clippy::type_complexity)]
    fn conv2d_kernel<Si: Shape, So: Shape, const CO: usize, const K: usize, const CI: usize, T>(
        x: Tensor<Si, Elem, Self, T>,
        w: &Tensor<Rank4<CO, K, K, CI>, Elem, Self>,
        b: Option<&Tensor<Rank1<CO>, Elem, Self>>,
        out_shape: So,
        g: ConvGeometry,
    ) -> Result<Tensor<So, Elem, Self, T>, Self::Err>
    where
        T: Tape<Elem, Self>;

    /// Batch norm over every axis but the last (channels), NHWC. In training mode the batch
    /// statistics are used and returned; in evaluation mode `running` (mean, var) is used.
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    fn batch_norm_kernel<S: Shape, const C: usize, T>(
        x: Tensor<S, Elem, Self, T>,
        weight: &Tensor<Rank1<C>, Elem, Self>,
        bias: &Tensor<Rank1<C>, Elem, Self>,
        running: Option<(&Tensor<Rank1<C>, Elem, Self>, &Tensor<Rank1<C>, Elem, Self>)>,
        eps: f64,
    ) -> Result<(Tensor<S, Elem, Self, T>, Option<BatchStatistics>), Self::Err>
    where
        T: Tape<Elem, Self>;

    /// `y = f(batch_norm(x) + residual)`: batch norm (as [`Backend::batch_norm_kernel`]), an
    /// optional residual added, then the element-wise `f` with its parameter gradients (as
    /// [`Backend::pointwise_kernel`]) — the `bn → (+ shortcut) → activation` of every ResNet
    /// block as one op. The default composes the three kernels; a device may fuse them (the CPU
    /// does: one read of `x`, no intermediate tensors).
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    fn batch_norm_act_kernel<S: Shape, const C: usize, T, F: ScalarFn>(
        x: Tensor<S, Elem, Self, T>,
        residual: Option<Tensor<S, Elem, Self, T>>,
        weight: &Tensor<Rank1<C>, Elem, Self>,
        bias: &Tensor<Rank1<C>, Elem, Self>,
        running: Option<(&Tensor<Rank1<C>, Elem, Self>, &Tensor<Rank1<C>, Elem, Self>)>,
        eps: f64,
        f: F,
        params: [Option<&Tensor<Rank1<1>, Elem, Self>>; 2],
    ) -> Result<(Tensor<S, Elem, Self, T>, Option<BatchStatistics>), Self::Err>
    where
        T: Tape<Elem, Self>,
    {
        use dfdx::tensor_ops::TryAdd;
        let (y, stats) = Self::batch_norm_kernel(x, weight, bias, running, eps)?;
        let y = match residual {
            Some(r) => y.try_add(r)?,
            None => y,
        };
        Ok((Self::pointwise_kernel(y, f, params)?, stats))
    }

    /// Average (`max = false`) or max pooling over k×k windows, NHWC.
    fn pool2d_kernel<Si: Shape, So: Shape, T>(
        x: Tensor<Si, Elem, Self, T>,
        out_shape: So,
        g: PoolGeometry,
        max: bool,
    ) -> Result<Tensor<So, Elem, Self, T>, Self::Err>
    where
        T: Tape<Elem, Self>;

    /// `y = f(x)` element-wise, with the gradient of up to two shared scalar parameters summed
    /// over every element (`params[i] = None`: parameter i is absent or frozen).
    fn pointwise_kernel<S: Shape, T, F: ScalarFn>(
        x: Tensor<S, Elem, Self, T>,
        f: F,
        params: [Option<&Tensor<Rank1<1>, Elem, Self>>; 2],
    ) -> Result<Tensor<S, Elem, Self, T>, Self::Err>
    where
        T: Tape<Elem, Self>;

    /// Overwrites the gradient of `t` in `grads` with `v` (host values, `t`'s length): the way
    /// back of a gradient summed over the ranks of a data-parallel run.
    fn write_gradient<S: Shape>(
        grads: &mut dfdx::tensor::Gradients<Elem, Self>,
        t: &Tensor<S, Elem, Self>,
        v: &[Elem],
    ) -> Result<(), Self::Err>;

    /// `a ← a·alpha + b·beta` element-wise, in place: `a` keeps its identity (the key of its
    /// gradient), as an optimizer update needs. dfdx's own `axpy` kernel, whose trait dfdx 0.13
    /// does not export (so generic code cannot name it); `a` and `b` need equal strides.
    fn axpy<S: Shape>(
        a: &mut Tensor<S, Elem, Self>,
        alpha: f64,
        b: &Tensor<S, Elem, Self>,
        beta: f64,
    ) -> Result<(), Self::Err>;

    /// One step of PyTorch's SGD on the parameter `p`, in place (its identity, the key of its
    /// gradient, kept), from its gradient in `grads` (zeros if absent) and its momentum buffer
    /// `buf` (`None` before its first update or with momentum 0; created or replaced here when
    /// momentum ≠ 0). Element-wise, in `f32` with the scalars rounded to `f32` as dfdx's `axpy`
    /// rounds them:
    ///
    /// ```text
    /// d = g·scale + p·wd           only when scale ≠ 1 or wd ≠ 0
    /// buf = buf·μ + d              (the first step: buf = d)      only when μ ≠ 0
    /// d = d + buf·μ (Nesterov)     d = buf (classical)            only when μ ≠ 0
    /// p = p + d·(−lr)
    /// ```
    ///
    /// The default is [`composed::sgd_update`], dfdx's `axpy` once per line (what CUDA runs); the
    /// CPU does all four lines in one multi-threaded pass with the same roundings (bit-identical).
    fn sgd_step<S: Shape>(
        p: &mut Tensor<S, Elem, Self>,
        grads: &mut dfdx::tensor::Gradients<Elem, Self>,
        buf: &mut Option<Tensor<(usize,), Elem, Self>>,
        s: SgdScalars,
    ) -> Result<(), Self::Err> {
        composed::sgd_update(p, grads, buf, s)
    }
}

/// The scalars of one SGD update ([`Backend::sgd_step`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdScalars {
    /// Multiplies the gradient (gradient clipping; 1 otherwise).
    pub grad_scale: f64,
    /// Weight decay (the `wd·p` added to the gradient).
    pub weight_decay: f64,
    /// Momentum μ (0: no buffer).
    pub momentum: f64,
    /// Nesterov momentum (PyTorch's `nesterov=True`) rather than classical.
    pub nesterov: bool,
    /// Learning rate.
    pub lr: f64,
}

/// CUDA: every kernel composed of dfdx's public ops ([`composed`]); the fused batch norm +
/// activation is the trait's default, which composes these kernels (= [`composed::batch_norm_act`]).
#[cfg(feature = "cuda")]
impl Backend for dfdx::tensor::Cuda {
    const HOST_MEMORY: bool = false;
    fn conv2d_kernel<Si: Shape, So: Shape, const CO: usize, const K: usize, const CI: usize, T>(
        x: Tensor<Si, Elem, Self, T>,
        w: &Tensor<Rank4<CO, K, K, CI>, Elem, Self>,
        b: Option<&Tensor<Rank1<CO>, Elem, Self>>,
        out_shape: So,
        g: ConvGeometry,
    ) -> Result<Tensor<So, Elem, Self, T>, Self::Err>
    where
        T: Tape<Elem, Self>,
    {
        composed::conv2d(x, w, b, out_shape, g)
    }

    fn batch_norm_kernel<S: Shape, const C: usize, T>(
        x: Tensor<S, Elem, Self, T>,
        weight: &Tensor<Rank1<C>, Elem, Self>,
        bias: &Tensor<Rank1<C>, Elem, Self>,
        running: Option<(&Tensor<Rank1<C>, Elem, Self>, &Tensor<Rank1<C>, Elem, Self>)>,
        eps: f64,
    ) -> Result<(Tensor<S, Elem, Self, T>, Option<BatchStatistics>), Self::Err>
    where
        T: Tape<Elem, Self>,
    {
        composed::batch_norm(x, weight, bias, running, eps)
    }

    fn pool2d_kernel<Si: Shape, So: Shape, T>(
        x: Tensor<Si, Elem, Self, T>,
        out_shape: So,
        g: PoolGeometry,
        max: bool,
    ) -> Result<Tensor<So, Elem, Self, T>, Self::Err>
    where
        T: Tape<Elem, Self>,
    {
        composed::pool2d(x, out_shape, g, max)
    }

    fn pointwise_kernel<S: Shape, T, F: ScalarFn>(
        x: Tensor<S, Elem, Self, T>,
        f: F,
        params: [Option<&Tensor<Rank1<1>, Elem, Self>>; 2],
    ) -> Result<Tensor<S, Elem, Self, T>, Self::Err>
    where
        T: Tape<Elem, Self>,
    {
        composed::pointwise(x, f, params)
    }

    fn axpy<S: Shape>(
        a: &mut Tensor<S, Elem, Self>,
        alpha: f64,
        b: &Tensor<S, Elem, Self>,
        beta: f64,
    ) -> Result<(), Self::Err> {
        a.try_axpy(alpha, b, beta)
    }

    fn write_gradient<S: Shape>(
        grads: &mut dfdx::tensor::Gradients<Elem, Self>,
        t: &Tensor<S, Elem, Self>,
        v: &[Elem],
    ) -> Result<(), Self::Err> {
        let g = grads.get_or_alloc_mut(t)?;
        let dev = g.device().clone();
        dev.htod_sync_copy_into(v, &mut **g)
            .map_err(dfdx::tensor::CudaError::Driver)
    }
}
