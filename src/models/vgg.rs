//! VGG-16 with batch norm for 32×32 inputs (docs/reproduction.md §2.4; configuration "D"): thirteen
//! conv3×3(bias) → BN → act layers with 2×2 max-pools, then Dropout → Linear(512, 512) → act →
//! Dropout → Linear(512, 512) → act → Linear(512, NC); one activation shared by all 15 sites.
//! Tensor names follow torchvision's `features.{i}` / `classifier.{i}` indices (the shared
//! activation sits at `features.2`, where the reference trainer reads β).
//!
//! Initialisation follows torchvision's VGG (conv kaiming-normal fan-out, bias 0; Linear
//! N(0, 0.01), bias 0); whether the paper's `models/vgg.py` used exactly this is UNCERTAIN.

use dfdx::nn::modules::Linear;
use dfdx::nn::{BuildModule, Module, ModuleVisitor, TensorCollection};
use dfdx::shapes::{Const, ConstDim, Dim, Dtype, HasShape};
use dfdx::tensor::{Storage, Tape, Tensor};
use dfdx::tensor_ops::Device;

use super::classifier::{Classifier, InputOf, LogitsOf};
use super::layers::{BatchNorm2d, BatchNormState, Conv2dBias, Mode, ScaledNormal, StatsRecorder};
use crate::activations::{Activation, BoundActivation};
use crate::ops::{try_flatten, try_max_pool2d, Backend, ConvOut, Elem};

/// conv3×3 (with bias) → BN: one `features` pair of VGG.
#[derive(Clone, Debug)]
pub struct ConvBn<const CI: usize, const CO: usize, D: Storage<E>, E: Dtype = Elem> {
    pub conv: Conv2dBias<CI, CO, 3, 1, 1, D, E>,
    pub bn: BatchNorm2d<CO, D, E>,
}

impl<const CI: usize, const CO: usize, D: Backend> ConvBn<CI, CO, D> {
    fn try_forward<B: Dim, Hd, Wd, T: Tape<Elem, D>>(
        &self,
        x: Tensor<(B, Hd, Wd, Const<CI>), Elem, D, T>,
        act: BoundActivation<'_, D>,
        rec: Option<&StatsRecorder>,
    ) -> Result<Tensor<(B, Hd, Wd, Const<CO>), Elem, D, T>, D::Err>
    where
        Hd: ConstDim + ConvOut<3, 1, 1, Out = Hd>,
        Wd: ConstDim + ConvOut<3, 1, 1, Out = Wd>,
    {
        self.bn
            .try_forward_act(self.conv.try_forward(x)?, None, act, rec)
    }
}

/// VGG-16-BN for 32×32×3 inputs and `NC` classes. `C1`–`C4` are the widths of the stages (the
/// fifth stage and the two hidden linear layers have `C4`): the paper's 64-128-256-512 by
/// default; narrower ones (4-8-16-32 for the parity fixtures) are **not models of the paper**.
#[derive(Clone, Debug)]
pub struct Vgg16Bn<
    A,
    D: Storage<E>,
    E: Dtype = Elem,
    const NC: usize = 10,
    const C1: usize = 64,
    const C2: usize = 128,
    const C3: usize = 256,
    const C4: usize = 512,
> {
    /// The activation shared by every site.
    pub activation: A,
    pub f0: ConvBn<3, C1, D, E>,
    pub f3: ConvBn<C1, C1, D, E>,
    pub f7: ConvBn<C1, C2, D, E>,
    pub f10: ConvBn<C2, C2, D, E>,
    pub f14: ConvBn<C2, C3, D, E>,
    pub f17: ConvBn<C3, C3, D, E>,
    pub f20: ConvBn<C3, C3, D, E>,
    pub f24: ConvBn<C3, C4, D, E>,
    pub f27: ConvBn<C4, C4, D, E>,
    pub f30: ConvBn<C4, C4, D, E>,
    pub f34: ConvBn<C4, C4, D, E>,
    pub f37: ConvBn<C4, C4, D, E>,
    pub f40: ConvBn<C4, C4, D, E>,
    pub fc1: Linear<C4, C4, E, D>,
    pub fc2: Linear<C4, C4, E, D>,
    pub fc3: Linear<C4, NC, E, D>,
}

impl<
        A: TensorCollection<E, D>,
        E: Dtype + num_traits::Float + rand_distr::uniform::SampleUniform,
        D: Device<E>,
        const NC: usize,
        const C1: usize,
        const C2: usize,
        const C3: usize,
        const C4: usize,
    > TensorCollection<E, D> for Vgg16Bn<A, D, E, NC, C1, C2, C3, C4>
{
    type To<E2: Dtype, D2: Device<E2>> = Vgg16Bn<A::To<E2, D2>, D2, E2, NC, C1, C2, C3, C4>;
    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                (
                    Self::module("activation", |s| &s.activation, |s| &mut s.activation),
                    Self::module("classifier.1", |s| &s.fc1, |s| &mut s.fc1),
                    Self::module("classifier.4", |s| &s.fc2, |s| &mut s.fc2),
                    Self::module("classifier.6", |s| &s.fc3, |s| &mut s.fc3),
                ),
                (
                    (
                        Self::module("features.0", |s| &s.f0.conv, |s| &mut s.f0.conv),
                        Self::module("features.1", |s| &s.f0.bn, |s| &mut s.f0.bn),
                        Self::module("features.3", |s| &s.f3.conv, |s| &mut s.f3.conv),
                        Self::module("features.4", |s| &s.f3.bn, |s| &mut s.f3.bn),
                    ),
                    (
                        Self::module("features.7", |s| &s.f7.conv, |s| &mut s.f7.conv),
                        Self::module("features.8", |s| &s.f7.bn, |s| &mut s.f7.bn),
                        Self::module("features.10", |s| &s.f10.conv, |s| &mut s.f10.conv),
                        Self::module("features.11", |s| &s.f10.bn, |s| &mut s.f10.bn),
                    ),
                    (
                        Self::module("features.14", |s| &s.f14.conv, |s| &mut s.f14.conv),
                        Self::module("features.15", |s| &s.f14.bn, |s| &mut s.f14.bn),
                        Self::module("features.17", |s| &s.f17.conv, |s| &mut s.f17.conv),
                        Self::module("features.18", |s| &s.f17.bn, |s| &mut s.f17.bn),
                        Self::module("features.20", |s| &s.f20.conv, |s| &mut s.f20.conv),
                        Self::module("features.21", |s| &s.f20.bn, |s| &mut s.f20.bn),
                    ),
                    (
                        Self::module("features.24", |s| &s.f24.conv, |s| &mut s.f24.conv),
                        Self::module("features.25", |s| &s.f24.bn, |s| &mut s.f24.bn),
                        Self::module("features.27", |s| &s.f27.conv, |s| &mut s.f27.conv),
                        Self::module("features.28", |s| &s.f27.bn, |s| &mut s.f27.bn),
                        Self::module("features.30", |s| &s.f30.conv, |s| &mut s.f30.conv),
                        Self::module("features.31", |s| &s.f30.bn, |s| &mut s.f30.bn),
                    ),
                    (
                        Self::module("features.34", |s| &s.f34.conv, |s| &mut s.f34.conv),
                        Self::module("features.35", |s| &s.f34.bn, |s| &mut s.f34.bn),
                        Self::module("features.37", |s| &s.f37.conv, |s| &mut s.f37.conv),
                        Self::module("features.38", |s| &s.f37.bn, |s| &mut s.f37.bn),
                        Self::module("features.40", |s| &s.f40.conv, |s| &mut s.f40.conv),
                        Self::module("features.41", |s| &s.f40.bn, |s| &mut s.f40.bn),
                    ),
                ),
            ),
            |(
                (activation, fc1, fc2, fc3),
                (
                    (c0, b0, c3, b3),
                    (c7, b7, c10, b10),
                    (c14, b14, c17, b17, c20, b20),
                    (c24, b24, c27, b27, c30, b30),
                    (c34, b34, c37, b37, c40, b40),
                ),
            )| Vgg16Bn {
                activation,
                f0: ConvBn { conv: c0, bn: b0 },
                f3: ConvBn { conv: c3, bn: b3 },
                f7: ConvBn { conv: c7, bn: b7 },
                f10: ConvBn { conv: c10, bn: b10 },
                f14: ConvBn { conv: c14, bn: b14 },
                f17: ConvBn { conv: c17, bn: b17 },
                f20: ConvBn { conv: c20, bn: b20 },
                f24: ConvBn { conv: c24, bn: b24 },
                f27: ConvBn { conv: c27, bn: b27 },
                f30: ConvBn { conv: c30, bn: b30 },
                f34: ConvBn { conv: c34, bn: b34 },
                f37: ConvBn { conv: c37, bn: b37 },
                f40: ConvBn { conv: c40, bn: b40 },
                fc1,
                fc2,
                fc3,
            },
        )
    }
}

impl<
        A: Activation<D>,
        D: Backend,
        const NC: usize,
        const C1: usize,
        const C2: usize,
        const C3: usize,
        const C4: usize,
    > Vgg16Bn<A, D, Elem, NC, C1, C2, C3, C4>
where
    Self: BuildModule<D, Elem>,
{
    /// Builds the network with torchvision's VGG initialisation (see the module docs).
    pub fn try_new(dev: &D) -> Result<Self, D::Err> {
        let mut m = Self::try_build(dev)?;
        m.fc1.weight.try_fill_with_distr(ScaledNormal(0.01))?;
        m.fc2.weight.try_fill_with_distr(ScaledNormal(0.01))?;
        m.fc3.weight.try_fill_with_distr(ScaledNormal(0.01))?;
        m.fc1.bias.try_fill_with_zeros()?;
        m.fc2.bias.try_fill_with_zeros()?;
        m.fc3.bias.try_fill_with_zeros()?;
        Ok(m)
    }
    /// Infallible [`Self::try_new`].
    pub fn new(dev: &D) -> Self {
        Self::try_new(dev).unwrap()
    }
}

impl<
        A: Activation<D>,
        D: Backend,
        const NC: usize,
        const C1: usize,
        const C2: usize,
        const C3: usize,
        const C4: usize,
    > Classifier<D> for Vgg16Bn<A, D, Elem, NC, C1, C2, C3, C4>
{
    type Act = A;
    type Height = Const<32>;
    type Width = Const<32>;
    type Channels = Const<3>;
    type Classes = Const<NC>;
    fn architecture(&self) -> String {
        if (C1, C2, C3, C4) == (64, 128, 256, 512) {
            format!("VGG-16-BN-{}", self.activation.name())
        } else {
            format!("VGG-16-BN[{C1}-{C2}-{C3}-{C4}]-{}", self.activation.name())
        }
    }
    /// The slot after each `features` batch norm and `classifier.2`, `classifier.5`, as in the
    /// reference `vgg.py` (`make_layers(cfg["D"], act, batch_norm=True)`); no top-level one.
    fn torch_activation_sites(&self) -> Vec<String> {
        // configuration "D"; 0 is a max-pool
        const D: [usize; 18] = [
            64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0,
        ];
        let mut v = Vec::new();
        let mut idx = 0;
        for c in D {
            if c == 0 {
                idx += 1;
            } else {
                v.push(format!("features.{}", idx + 2)); // conv, bn, act
                idx += 3;
            }
        }
        v.push("classifier.2".to_string());
        v.push("classifier.5".to_string());
        v
    }
    fn try_forward_rec<B: Dim, T: Tape<Elem, D>>(
        &self,
        x: InputOf<Self, B, D, T>,
        rec: Option<&StatsRecorder>,
    ) -> Result<LogitsOf<Self, B, D, T>, D::Err> {
        let a = self.activation.pointwise_fn();
        let x = self
            .f3
            .try_forward(self.f0.try_forward(x, a, rec)?, a, rec)?;
        let x = try_max_pool2d::<2, 2, 0, _, _, _, C1, D, T>(x)?;
        let x = self
            .f10
            .try_forward(self.f7.try_forward(x, a, rec)?, a, rec)?;
        let x = try_max_pool2d::<2, 2, 0, _, _, _, C2, D, T>(x)?;
        let x = self.f20.try_forward(
            self.f17
                .try_forward(self.f14.try_forward(x, a, rec)?, a, rec)?,
            a,
            rec,
        )?;
        let x = try_max_pool2d::<2, 2, 0, _, _, _, C3, D, T>(x)?;
        let x = self.f30.try_forward(
            self.f27
                .try_forward(self.f24.try_forward(x, a, rec)?, a, rec)?,
            a,
            rec,
        )?;
        let x = try_max_pool2d::<2, 2, 0, _, _, _, C4, D, T>(x)?;
        let x = self.f40.try_forward(
            self.f37
                .try_forward(self.f34.try_forward(x, a, rec)?, a, rec)?,
            a,
            rec,
        )?;
        let x = try_flatten(try_max_pool2d::<2, 2, 0, _, _, _, C4, D, T>(x)?)?;
        let train = self.f0.bn.mode == Mode::Train;
        let x = if train { x.try_dropout(0.5)? } else { x };
        let x = self.activation.try_forward(self.fc1.try_forward(x)?)?;
        let x = if train { x.try_dropout(0.5)? } else { x };
        let x = self.activation.try_forward(self.fc2.try_forward(x)?)?;
        debug_assert_eq!(x.shape().1.size(), C4);
        self.fc3.try_forward(x)
    }
    fn for_each_batch_norm(&mut self, f: &mut dyn FnMut(&mut dyn BatchNormState)) {
        f(&mut self.f0.bn);
        f(&mut self.f3.bn);
        f(&mut self.f7.bn);
        f(&mut self.f10.bn);
        f(&mut self.f14.bn);
        f(&mut self.f17.bn);
        f(&mut self.f20.bn);
        f(&mut self.f24.bn);
        f(&mut self.f27.bn);
        f(&mut self.f30.bn);
        f(&mut self.f34.bn);
        f(&mut self.f37.bn);
        f(&mut self.f40.bn);
    }
    fn activation(&self) -> &A {
        &self.activation
    }
    fn activation_mut(&mut self) -> &mut A {
        &mut self.activation
    }
}

/// VGG-16-BN at 1/16 of the paper's width (4-8-16-32, hidden 32): **not a model of the paper**,
/// small enough for the committed PyTorch parity fixtures (`tests/interop.rs`).
pub type Vgg16BnNarrow<A, D, const NC: usize = 10> = Vgg16Bn<A, D, Elem, NC, 4, 8, 16, 32>;
