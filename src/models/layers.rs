//! Layers of the paper's architectures (docs/reproduction.md §2): 2-D convolution (with and without
//! bias) and batch norm with a run-time train/eval [`Mode`], each a dfdx `TensorCollection` whose
//! tensor names follow PyTorch's `state_dict` (`weight`, `bias`, `running_mean`, `running_var`).
//!
//! Batch norm: in [`Mode::Train`] it normalises with the batch statistics; the running
//! statistics are updated only through `&mut` forwards (`forward_mut`), which record the batch
//! statistics in a [`StatsRecorder`] and apply them after the pass. In [`Mode::Eval`] it uses
//! the running statistics and still passes gradients to its input (what attacks need).

use crate::activations::BoundActivation;
use std::cell::RefCell;

use dfdx::nn::{Module, ModuleMut, ModuleVisitor, TensorCollection, TensorOptions};
use dfdx::shapes::Dtype;
use dfdx::tensor::Storage;
use dfdx::tensor_ops::Device;

use dfdx::shapes::{Const, ConstDim, Dim, Rank1, Rank4};
use dfdx::tensor::{Tape, Tensor};

use crate::ops::{
    try_batch_norm2d_eval, try_conv2d, update_running_stats, Backend, BatchStatistics, ConvOut,
    ConvOutput, Elem,
};

/// Training or evaluation behaviour of batch norm (and dropout), as PyTorch's `model.train()` /
/// `model.eval()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Mode {
    /// Batch statistics (running statistics updated by `forward_mut`), dropout active.
    #[default]
    Train,
    /// Running statistics, no dropout; gradients still flow to the input.
    Eval,
}

/// Batch statistics recorded during a forward pass, keyed by the batch-norm layer they belong to
/// (its address, stable for the duration of a `&mut` borrow of the model).
#[derive(Debug, Default)]
pub struct StatsRecorder {
    stats: RefCell<Vec<(usize, BatchStatistics)>>,
}

impl StatsRecorder {
    fn record(&self, key: usize, s: BatchStatistics) {
        self.stats.borrow_mut().push((key, s));
    }
    fn take(&self, key: usize) -> Vec<BatchStatistics> {
        let mut all = self.stats.borrow_mut();
        let mut out = Vec::new();
        let mut i = 0;
        while i < all.len() {
            if all[i].0 == key {
                out.push(all.remove(i).1);
            } else {
                i += 1;
            }
        }
        out
    }
    /// Number of recorded, not yet applied statistics.
    pub fn len(&self) -> usize {
        self.stats.borrow().len()
    }
    /// True when nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a model does with each of its batch-norm layers: switch mode, apply recorded statistics.
pub trait BatchNormState {
    /// Sets the mode.
    fn set_mode(&mut self, mode: Mode);
    /// The current mode.
    fn mode(&self) -> Mode;
    /// Applies (in order) every statistics record this layer left in `rec` to its running
    /// statistics: `r ← (1 − m)·r + m·s`, unbiased variance.
    fn apply_recorded(&mut self, rec: &StatsRecorder);
}

/// Conv weight init used by every architecture of the paper: N(0, sqrt(2 / (K·K·C_out))), i.e.
/// `kaiming_normal_(mode="fan_out", nonlinearity="relu")` (ResNet, VGG) and WRN's
/// `normal_(0, sqrt(2/n))`, `n = k·k·out_channels` (docs/reproduction.md §2.1, §2.2).
fn kaiming_fan_out<const CO: usize, const K: usize, const CI: usize, E: Dtype, D: Device<E>>(
    t: &mut Tensor<Rank4<CO, K, K, CI>, E, D>,
) -> Result<(), D::Err> {
    let std = E::from_f64((2.0 / (K * K * CO) as f64).sqrt()).unwrap();
    t.try_fill_with_distr(ScaledNormal(std))
}

/// N(0, σ²) for any dtype (sampled in f64); `ScaledNormal(σ)`.
pub struct ScaledNormal<E>(pub E);

impl<E: Dtype> rand_distr::Distribution<E> for ScaledNormal<E> {
    fn sample<R: rand::Rng + ?Sized>(&self, rng: &mut R) -> E {
        let z: f64 = rand_distr::StandardNormal.sample(rng);
        E::from_f64(z * self.0.to_f64().unwrap_or(0.0)).unwrap_or_default()
    }
}

/// 2-D convolution without bias: `CI` → `CO` channels, `K`×`K` kernel, stride `S`, padding `P`.
/// Weight stored OHWI `[CO, K, K, CI]` (PyTorch: `[CO, CI, K, K]`).
#[derive(Clone, Debug)]
pub struct Conv2d<
    const CI: usize,
    const CO: usize,
    const K: usize,
    const S: usize,
    const P: usize,
    D: Storage<E>,
    E: Dtype = Elem,
> {
    pub weight: Tensor<Rank4<CO, K, K, CI>, E, D>,
}

impl<
        const CI: usize,
        const CO: usize,
        const K: usize,
        const S: usize,
        const P: usize,
        E: Dtype,
        D: Device<E>,
    > TensorCollection<E, D> for Conv2d<CI, CO, K, S, P, D, E>
{
    type To<E2: Dtype, D2: Device<E2>> = Conv2d<CI, CO, K, S, P, D2, E2>;
    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            Self::tensor(
                "weight",
                |s| &s.weight,
                |s| &mut s.weight,
                TensorOptions::reset_with(kaiming_fan_out),
            ),
            |weight| Conv2d { weight },
        )
    }
}

impl<
        B: Dim,
        Hd,
        Wd,
        const CI: usize,
        const CO: usize,
        const K: usize,
        const S: usize,
        const P: usize,
        D: Backend,
        T: Tape<Elem, D>,
    > Module<Tensor<(B, Hd, Wd, Const<CI>), Elem, D, T>> for Conv2d<CI, CO, K, S, P, D, Elem>
where
    Hd: ConstDim + ConvOut<K, S, P>,
    Wd: ConstDim + ConvOut<K, S, P>,
{
    type Output = ConvOutput<B, Hd, Wd, CO, K, S, P, D, T>;
    type Error = D::Err;
    fn try_forward(
        &self,
        x: Tensor<(B, Hd, Wd, Const<CI>), Elem, D, T>,
    ) -> Result<Self::Output, D::Err> {
        try_conv2d::<S, P, B, Hd, Wd, CI, CO, K, D, T>(x, &self.weight, None)
    }
}

/// Same forward for `&self` and `&mut self`: gives `ModuleMut`, so a convolution composes with
/// batch norm's `forward_mut` in tuples and dfdx's `Residual` (as dfdx's `Linear`).
impl<
        const CI: usize,
        const CO: usize,
        const K: usize,
        const S: usize,
        const P: usize,
        D: Storage<E>,
        E: Dtype,
    > dfdx::nn::NonMutableModule for Conv2d<CI, CO, K, S, P, D, E>
{
}

/// 2-D convolution with bias (VGG). Bias initialised to 0 (torchvision VGG).
#[derive(Clone, Debug)]
pub struct Conv2dBias<
    const CI: usize,
    const CO: usize,
    const K: usize,
    const S: usize,
    const P: usize,
    D: Storage<E>,
    E: Dtype = Elem,
> {
    pub weight: Tensor<Rank4<CO, K, K, CI>, E, D>,
    pub bias: Tensor<Rank1<CO>, E, D>,
}

impl<
        const CI: usize,
        const CO: usize,
        const K: usize,
        const S: usize,
        const P: usize,
        E: Dtype,
        D: Device<E>,
    > TensorCollection<E, D> for Conv2dBias<CI, CO, K, S, P, D, E>
{
    type To<E2: Dtype, D2: Device<E2>> = Conv2dBias<CI, CO, K, S, P, D2, E2>;
    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::tensor(
                    "weight",
                    |s| &s.weight,
                    |s| &mut s.weight,
                    TensorOptions::reset_with(kaiming_fan_out),
                ),
                Self::tensor(
                    "bias",
                    |s| &s.bias,
                    |s| &mut s.bias,
                    TensorOptions::reset_to_zeros(),
                ),
            ),
            |(weight, bias)| Conv2dBias { weight, bias },
        )
    }
}

impl<
        B: Dim,
        Hd,
        Wd,
        const CI: usize,
        const CO: usize,
        const K: usize,
        const S: usize,
        const P: usize,
        D: Backend,
        T: Tape<Elem, D>,
    > Module<Tensor<(B, Hd, Wd, Const<CI>), Elem, D, T>> for Conv2dBias<CI, CO, K, S, P, D, Elem>
where
    Hd: ConstDim + ConvOut<K, S, P>,
    Wd: ConstDim + ConvOut<K, S, P>,
{
    type Output = ConvOutput<B, Hd, Wd, CO, K, S, P, D, T>;
    type Error = D::Err;
    fn try_forward(
        &self,
        x: Tensor<(B, Hd, Wd, Const<CI>), Elem, D, T>,
    ) -> Result<Self::Output, D::Err> {
        try_conv2d::<S, P, B, Hd, Wd, CI, CO, K, D, T>(x, &self.weight, Some(&self.bias))
    }
}

impl<
        const CI: usize,
        const CO: usize,
        const K: usize,
        const S: usize,
        const P: usize,
        D: Storage<E>,
        E: Dtype,
    > dfdx::nn::NonMutableModule for Conv2dBias<CI, CO, K, S, P, D, E>
{
}

/// Batch norm over the channels of an NHWC batch, PyTorch defaults: ε = 1e-5, momentum 0.1,
/// weight 1, bias 0, running mean 0, running var 1.
#[derive(Clone, Debug)]
pub struct BatchNorm2d<const C: usize, D: Storage<E>, E: Dtype = Elem> {
    /// γ (PyTorch `weight`).
    pub weight: Tensor<Rank1<C>, E, D>,
    /// β (PyTorch `bias`).
    pub bias: Tensor<Rank1<C>, E, D>,
    pub running_mean: Tensor<Rank1<C>, E, D>,
    pub running_var: Tensor<Rank1<C>, E, D>,
    pub eps: f64,
    pub momentum: f64,
    /// Train or eval behaviour (not saved; a freshly built layer is in [`Mode::Train`]).
    pub mode: Mode,
}

impl<const C: usize, E: Dtype, D: Device<E>> TensorCollection<E, D> for BatchNorm2d<C, D, E> {
    type To<E2: Dtype, D2: Device<E2>> = BatchNorm2d<C, D2, E2>;
    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::tensor(
                    "weight",
                    |s| &s.weight,
                    |s| &mut s.weight,
                    TensorOptions::reset_to_ones(),
                ),
                Self::tensor(
                    "bias",
                    |s| &s.bias,
                    |s| &mut s.bias,
                    TensorOptions::reset_to_zeros(),
                ),
                Self::tensor(
                    "running_mean",
                    |s| &s.running_mean,
                    |s| &mut s.running_mean,
                    TensorOptions::detached(|t| t.try_fill_with_zeros()),
                ),
                Self::tensor(
                    "running_var",
                    |s| &s.running_var,
                    |s| &mut s.running_var,
                    TensorOptions::detached(|t| t.try_fill_with_ones()),
                ),
                Self::scalar(
                    "eps",
                    |s| &s.eps,
                    |s| &mut s.eps,
                    dfdx::nn::ScalarOptions::from_default(1e-5),
                ),
                Self::scalar(
                    "momentum",
                    |s| &s.momentum,
                    |s| &mut s.momentum,
                    dfdx::nn::ScalarOptions::from_default(0.1),
                ),
            ),
            |(weight, bias, running_mean, running_var, eps, momentum)| BatchNorm2d {
                weight,
                bias,
                running_mean,
                running_var,
                eps,
                momentum,
                mode: Mode::Train,
            },
        )
    }
}

impl<const C: usize, D: Backend> BatchNorm2d<C, D, Elem> {
    /// A fresh layer with PyTorch's defaults, in [`Mode::Train`].
    pub fn try_new(dev: &D) -> Result<Self, D::Err> {
        Ok(Self {
            weight: dev.try_ones()?,
            bias: dev.try_zeros()?,
            running_mean: dev.try_zeros()?,
            running_var: dev.try_ones()?,
            eps: 1e-5,
            momentum: 0.1,
            mode: Mode::Train,
        })
    }

    /// Forward pass following [`Self::mode`]; in training mode the batch statistics are
    /// recorded in `rec` (when given) for [`BatchNormState::apply_recorded`].
    pub fn try_forward_rec<B: Dim, Hd: Dim, Wd: Dim, T: Tape<Elem, D>>(
        &self,
        x: Tensor<(B, Hd, Wd, Const<C>), Elem, D, T>,
        rec: Option<&StatsRecorder>,
    ) -> Result<Tensor<(B, Hd, Wd, Const<C>), Elem, D, T>, D::Err> {
        match self.mode {
            Mode::Eval => try_batch_norm2d_eval(
                x,
                &self.weight,
                &self.bias,
                &self.running_mean,
                &self.running_var,
                self.eps,
            ),
            Mode::Train => {
                let (y, stats) = D::batch_norm_kernel(x, &self.weight, &self.bias, None, self.eps)?;
                if let (Some(rec), Some(stats)) = (rec, stats) {
                    rec.record(self as *const Self as usize, stats);
                }
                Ok(y)
            }
        }
    }

    /// `act(self(x) + residual)` as one fused op ([`crate::ops::try_batch_norm2d_act`]): the
    /// `bn → (+ shortcut) → activation` of a ResNet block, in [`Self::mode`], recording the batch
    /// statistics in `rec` in training mode like [`Self::try_forward_rec`].
    #[allow(clippy::type_complexity)]
    pub fn try_forward_act<B: Dim, Hd: Dim, Wd: Dim, T: Tape<Elem, D>>(
        &self,
        x: Tensor<(B, Hd, Wd, Const<C>), Elem, D, T>,
        residual: Option<Tensor<(B, Hd, Wd, Const<C>), Elem, D, T>>,
        act: BoundActivation<'_, D>,
        rec: Option<&StatsRecorder>,
    ) -> Result<Tensor<(B, Hd, Wd, Const<C>), Elem, D, T>, D::Err> {
        let (f, params) = act;
        let running = match self.mode {
            Mode::Eval => Some((&self.running_mean, &self.running_var)),
            Mode::Train => None,
        };
        let (y, stats) = crate::ops::try_batch_norm2d_act(
            x,
            residual,
            &self.weight,
            &self.bias,
            running,
            self.eps,
            f,
            params,
        )?;
        if let (Some(rec), Some(stats)) = (rec, stats) {
            rec.record(self as *const Self as usize, stats);
        }
        Ok(y)
    }

    fn update_running(&mut self, s: &BatchStatistics) {
        update_running_stats(
            &mut self.running_mean,
            &mut self.running_var,
            s,
            self.momentum,
        );
    }
}

impl<const C: usize, D: Backend> BatchNormState for BatchNorm2d<C, D, Elem> {
    fn set_mode(&mut self, mode: Mode) {
        self.mode = mode;
    }
    fn mode(&self) -> Mode {
        self.mode
    }
    fn apply_recorded(&mut self, rec: &StatsRecorder) {
        for s in rec.take(self as *const Self as usize) {
            self.update_running(&s);
        }
    }
}

impl<B: Dim, Hd: Dim, Wd: Dim, const C: usize, D: Backend, T: Tape<Elem, D>>
    Module<Tensor<(B, Hd, Wd, Const<C>), Elem, D, T>> for BatchNorm2d<C, D, Elem>
{
    type Output = Tensor<(B, Hd, Wd, Const<C>), Elem, D, T>;
    type Error = D::Err;
    /// Follows the mode; in training mode uses batch statistics without updating the running ones.
    fn try_forward(
        &self,
        x: Tensor<(B, Hd, Wd, Const<C>), Elem, D, T>,
    ) -> Result<Self::Output, D::Err> {
        self.try_forward_rec(x, None)
    }
}

impl<B: Dim, Hd: Dim, Wd: Dim, const C: usize, D: Backend, T: Tape<Elem, D>>
    ModuleMut<Tensor<(B, Hd, Wd, Const<C>), Elem, D, T>> for BatchNorm2d<C, D, Elem>
{
    type Output = Tensor<(B, Hd, Wd, Const<C>), Elem, D, T>;
    type Error = D::Err;
    /// Follows the mode; in training mode also updates the running statistics (PyTorch's rule).
    fn try_forward_mut(
        &mut self,
        x: Tensor<(B, Hd, Wd, Const<C>), Elem, D, T>,
    ) -> Result<Self::Output, D::Err> {
        let rec = StatsRecorder::default();
        let y = self.try_forward_rec(x, Some(&rec))?;
        self.apply_recorded(&rec);
        Ok(y)
    }
}
