//! A small CNN for quick runs on a CPU — **not a model of the paper** (its models are in
//! [`super::resnet`], [`super::wide_resnet`], [`super::vgg`]). Three conv → BN → activation
//! stages (3→16 at 32×32, 16→32 and 32→32 with stride 2), a 2×2 average pool and a linear head
//! on the flattened 4×4×32 features; one activation shared by the three sites, as in the paper's
//! networks. About 2.2 M multiply-adds per image (WRN-16-1: 27 M, ResNet-18: 556 M), so PGD-AT
//! on the embedded Fashion-MNIST subset takes a minute on two cores (the `quick-*` presets).
//! Tensor names: `conv1`, `bn1`, `conv2`, `bn2`, `conv3`, `bn3`, `fc`, `activation.*`.

use dfdx::nn::modules::Linear;
use dfdx::nn::{BuildModule, Module, ModuleVisitor, TensorCollection};
use dfdx::shapes::{Const, Dim, Dtype, HasShape};
use dfdx::tensor::{Storage, Tape};
use dfdx::tensor_ops::{Device, ReshapeTo};

use super::classifier::{Classifier, InputOf, LogitsOf};
use super::layers::{BatchNorm2d, BatchNormState, Conv2d, StatsRecorder};
use crate::activations::Activation;
use crate::ops::{try_avg_pool2d, Backend, Elem};

/// The small CNN for 32×32×3 inputs and `NC` classes: see the module docs.
#[derive(Clone, Debug)]
pub struct SmallCnn<A, D: Storage<E>, E: Dtype = Elem, const NC: usize = 10> {
    /// The activation shared by the three sites.
    pub activation: A,
    pub conv1: Conv2d<3, 16, 3, 1, 1, D, E>,
    pub bn1: BatchNorm2d<16, D, E>,
    pub conv2: Conv2d<16, 32, 3, 2, 1, D, E>,
    pub bn2: BatchNorm2d<32, D, E>,
    pub conv3: Conv2d<32, 32, 3, 2, 1, D, E>,
    pub bn3: BatchNorm2d<32, D, E>,
    pub fc: Linear<512, NC, E, D>,
}

impl<
        A: TensorCollection<E, D>,
        E: Dtype + num_traits::Float + rand_distr::uniform::SampleUniform,
        D: Device<E>,
        const NC: usize,
    > TensorCollection<E, D> for SmallCnn<A, D, E, NC>
{
    type To<E2: Dtype, D2: Device<E2>> = SmallCnn<A::To<E2, D2>, D2, E2, NC>;
    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                (
                    Self::module("activation", |s| &s.activation, |s| &mut s.activation),
                    Self::module("conv1", |s| &s.conv1, |s| &mut s.conv1),
                    Self::module("bn1", |s| &s.bn1, |s| &mut s.bn1),
                    Self::module("conv2", |s| &s.conv2, |s| &mut s.conv2),
                ),
                (
                    Self::module("bn2", |s| &s.bn2, |s| &mut s.bn2),
                    Self::module("conv3", |s| &s.conv3, |s| &mut s.conv3),
                    Self::module("bn3", |s| &s.bn3, |s| &mut s.bn3),
                    Self::module("fc", |s| &s.fc, |s| &mut s.fc),
                ),
            ),
            |((activation, conv1, bn1, conv2), (bn2, conv3, bn3, fc))| SmallCnn {
                activation,
                conv1,
                bn1,
                conv2,
                bn2,
                conv3,
                bn3,
                fc,
            },
        )
    }
}

impl<A: Activation<D>, D: Backend, const NC: usize> SmallCnn<A, D, Elem, NC>
where
    Self: BuildModule<D, Elem>,
{
    /// Builds the network: convs N(0, sqrt(2/fan_out)) as the paper's models, BN weight 1 /
    /// bias 0, `fc` PyTorch's default, the activation at its paper initial values.
    pub fn try_new(dev: &D) -> Result<Self, D::Err> {
        Self::try_build(dev)
    }
    /// Infallible [`Self::try_new`].
    pub fn new(dev: &D) -> Self {
        Self::try_new(dev).unwrap()
    }
}

impl<A: Activation<D>, D: Backend, const NC: usize> Classifier<D> for SmallCnn<A, D, Elem, NC> {
    type Act = A;
    type Height = Const<32>;
    type Width = Const<32>;
    type Channels = Const<3>;
    type Classes = Const<NC>;
    fn architecture(&self) -> String {
        format!("SmallCNN-{}", self.activation.name())
    }
    fn try_forward_rec<B: Dim, T: Tape<Elem, D>>(
        &self,
        x: InputOf<Self, B, D, T>,
        rec: Option<&StatsRecorder>,
    ) -> Result<LogitsOf<Self, B, D, T>, D::Err> {
        let act = self.activation.pointwise_fn();
        let x = self
            .bn1
            .try_forward_act(self.conv1.try_forward(x)?, None, act, rec)?;
        let x = self
            .bn2
            .try_forward_act(self.conv2.try_forward(x)?, None, act, rec)?;
        let x = self
            .bn3
            .try_forward_act(self.conv3.try_forward(x)?, None, act, rec)?;
        let x = try_avg_pool2d::<2, _, _, _, 32, D, T>(x)?;
        let b = x.shape().0;
        self.fc.try_forward(x.try_reshape_like(&(b, Const::<512>))?)
    }
    fn for_each_batch_norm(&mut self, f: &mut dyn FnMut(&mut dyn BatchNormState)) {
        f(&mut self.bn1);
        f(&mut self.bn2);
        f(&mut self.bn3);
    }
    fn activation(&self) -> &A {
        &self.activation
    }
    fn activation_mut(&mut self) -> &mut A {
        &mut self.activation
    }
}
