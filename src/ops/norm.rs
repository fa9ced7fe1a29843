//! Typed batch normalisation over the channel (last) axis of an NHWC batch, in training mode
//! (batch statistics, running-statistics update as PyTorch: momentum 0.1, unbiased running
//! variance) or evaluation mode (running statistics; the input still gets its gradient, which
//! attacks need — dfdx's own BatchNorm2D cannot give it).

use dfdx::shapes::{Const, Dim, Rank1};
use dfdx::tensor::{Tape, Tensor};

use super::{Backend, Elem, ScalarFn};

/// Per-channel statistics of the batch a training-mode batch norm saw.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchStatistics {
    /// Batch mean per channel.
    pub mean: Vec<f64>,
    /// Biased batch variance per channel (the one used for normalising).
    pub var: Vec<f64>,
    /// Number of values per channel (`batch · height · width`).
    pub count: usize,
}

/// A batch with channels last, any batch and spatial dims.
pub type ChannelsLast<B, H, W, const C: usize, D, T> = Tensor<(B, H, W, Const<C>), Elem, D, T>;

/// Training-mode batch norm: normalises with the batch statistics and updates the running
/// statistics in place, `r ← (1 − m)·r + m·s`, with the unbiased batch variance
/// `σ²·n/(n − 1)` for `running_var` (PyTorch's rule).
#[allow(clippy::too_many_arguments)]
pub fn try_batch_norm2d_train<
    B: Dim,
    H: Dim,
    W: Dim,
    const C: usize,
    D: Backend,
    T: Tape<Elem, D>,
>(
    x: ChannelsLast<B, H, W, C, D, T>,
    weight: &Tensor<Rank1<C>, Elem, D>,
    bias: &Tensor<Rank1<C>, Elem, D>,
    running_mean: &mut Tensor<Rank1<C>, Elem, D>,
    running_var: &mut Tensor<Rank1<C>, Elem, D>,
    eps: f64,
    momentum: f64,
) -> Result<ChannelsLast<B, H, W, C, D, T>, D::Err> {
    let (y, stats) = D::batch_norm_kernel(x, weight, bias, None, eps)?;
    let stats = stats.expect("training-mode batch norm returns its statistics");
    update_running_stats(running_mean, running_var, &stats, momentum);
    Ok(y)
}

/// PyTorch's running-statistics update from one batch: `r ← (1 − m)·r + m·s`, with the
/// unbiased batch variance `σ²·n/(n − 1)` for `running_var`.
pub fn update_running_stats<const C: usize, D: Backend>(
    running_mean: &mut Tensor<Rank1<C>, Elem, D>,
    running_var: &mut Tensor<Rank1<C>, Elem, D>,
    stats: &BatchStatistics,
    momentum: f64,
) {
    let n = stats.count as f64;
    let unbias = if n > 1.0 { n / (n - 1.0) } else { 1.0 };
    let rm = running_mean.as_vec();
    let rv = running_var.as_vec();
    let new_rm: Vec<Elem> = (0..C)
        .map(|c| ((1.0 - momentum) * rm[c] as f64 + momentum * stats.mean[c]) as Elem)
        .collect();
    let new_rv: Vec<Elem> = (0..C)
        .map(|c| ((1.0 - momentum) * rv[c] as f64 + momentum * stats.var[c] * unbias) as Elem)
        .collect();
    running_mean.copy_from(&new_rm);
    running_var.copy_from(&new_rv);
}

/// Infallible [`try_batch_norm2d_train`].
#[allow(clippy::too_many_arguments)]
pub fn batch_norm2d_train<B: Dim, H: Dim, W: Dim, const C: usize, D: Backend, T: Tape<Elem, D>>(
    x: ChannelsLast<B, H, W, C, D, T>,
    weight: &Tensor<Rank1<C>, Elem, D>,
    bias: &Tensor<Rank1<C>, Elem, D>,
    running_mean: &mut Tensor<Rank1<C>, Elem, D>,
    running_var: &mut Tensor<Rank1<C>, Elem, D>,
    eps: f64,
    momentum: f64,
) -> ChannelsLast<B, H, W, C, D, T> {
    try_batch_norm2d_train(x, weight, bias, running_mean, running_var, eps, momentum).unwrap()
}

/// Evaluation-mode batch norm: `y = (x − μ_run)/sqrt(σ²_run + ε)·γ + β`, with gradients to the
/// input (and to γ, β) on any tape.
pub fn try_batch_norm2d_eval<
    B: Dim,
    H: Dim,
    W: Dim,
    const C: usize,
    D: Backend,
    T: Tape<Elem, D>,
>(
    x: ChannelsLast<B, H, W, C, D, T>,
    weight: &Tensor<Rank1<C>, Elem, D>,
    bias: &Tensor<Rank1<C>, Elem, D>,
    running_mean: &Tensor<Rank1<C>, Elem, D>,
    running_var: &Tensor<Rank1<C>, Elem, D>,
    eps: f64,
) -> Result<ChannelsLast<B, H, W, C, D, T>, D::Err> {
    Ok(D::batch_norm_kernel(x, weight, bias, Some((running_mean, running_var)), eps)?.0)
}

/// Infallible [`try_batch_norm2d_eval`].
pub fn batch_norm2d_eval<B: Dim, H: Dim, W: Dim, const C: usize, D: Backend, T: Tape<Elem, D>>(
    x: ChannelsLast<B, H, W, C, D, T>,
    weight: &Tensor<Rank1<C>, Elem, D>,
    bias: &Tensor<Rank1<C>, Elem, D>,
    running_mean: &Tensor<Rank1<C>, Elem, D>,
    running_var: &Tensor<Rank1<C>, Elem, D>,
    eps: f64,
) -> ChannelsLast<B, H, W, C, D, T> {
    try_batch_norm2d_eval(x, weight, bias, running_mean, running_var, eps).unwrap()
}

/// The running statistics `(mean, var)` of an evaluation-mode batch norm.
pub type RunningStats<'a, const C: usize, D> =
    (&'a Tensor<Rank1<C>, Elem, D>, &'a Tensor<Rank1<C>, Elem, D>);

/// `y = f(batch_norm(x) + residual)` as one op: batch norm in training mode (`running = None`,
/// batch statistics, returned for the running-statistics update) or evaluation mode
/// (`running = Some((mean, var))`), an optional residual added (a ResNet block's shortcut), then
/// the element-wise `f` — an activation from [`crate::activations::Activation::pointwise_fn`] —
/// whose parameters in `params` get their gradients. Same values and gradients as the three ops
/// one after the other, without the intermediate tensors.
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
pub fn try_batch_norm2d_act<
    B: Dim,
    H: Dim,
    W: Dim,
    const C: usize,
    D: Backend,
    T: Tape<Elem, D>,
    F: ScalarFn,
>(
    x: ChannelsLast<B, H, W, C, D, T>,
    residual: Option<ChannelsLast<B, H, W, C, D, T>>,
    weight: &Tensor<Rank1<C>, Elem, D>,
    bias: &Tensor<Rank1<C>, Elem, D>,
    running: Option<RunningStats<'_, C, D>>,
    eps: f64,
    f: F,
    params: [Option<&Tensor<Rank1<1>, Elem, D>>; 2],
) -> Result<(ChannelsLast<B, H, W, C, D, T>, Option<BatchStatistics>), D::Err> {
    D::batch_norm_act_kernel(x, residual, weight, bias, running, eps, f, params)
}
