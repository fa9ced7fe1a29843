//! A tiny classifier for the training tests: `conv 3→W (3×3, s1) → BN → act → conv W→W (3×3,
//! s2) → BN → act → global average pool → Linear(W, 10)` on `S×S×3` inputs, one activation
//! shared by both sites — with W = 4, S = 8 the network of `scripts/reference_train_step.py`.

#![allow(dead_code)]

use dfdx::nn::modules::Linear;
use dfdx::nn::{Module, ModuleVisitor, TensorCollection};
use dfdx::prelude::*;
use robust_paf::activations::Activation;
use robust_paf::models::{
    BatchNorm2d, BatchNormState, Classifier, Conv2d, InputOf, LogitsOf, StatsRecorder,
};
use robust_paf::ops::{try_global_avg_pool2d, Backend, ConvOut, Elem};

#[derive(Clone, Debug)]
pub struct Tiny<A, D: Storage<E>, E: Dtype, const S: usize, const W: usize> {
    pub activation: A,
    pub conv1: Conv2d<3, W, 3, 1, 1, D, E>,
    pub bn1: BatchNorm2d<W, D, E>,
    pub conv2: Conv2d<W, W, 3, 2, 1, D, E>,
    pub bn2: BatchNorm2d<W, D, E>,
    pub fc: Linear<W, 10, E, D>,
}

/// The tiny network on 8×8 images (the PyTorch reference's).
pub type Tiny8<A, D> = Tiny<A, D, f32, 8, 4>;

impl<
        A: TensorCollection<E, D>,
        E: Dtype + num_traits::Float + rand_distr::uniform::SampleUniform,
        D: Device<E>,
        const S: usize,
        const W: usize,
    > TensorCollection<E, D> for Tiny<A, D, E, S, W>
{
    type To<E2: Dtype, D2: Device<E2>> = Tiny<A::To<E2, D2>, D2, E2, S, W>;
    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::module("activation", |s| &s.activation, |s| &mut s.activation),
                Self::module("conv1", |s| &s.conv1, |s| &mut s.conv1),
                Self::module("bn1", |s| &s.bn1, |s| &mut s.bn1),
                Self::module("conv2", |s| &s.conv2, |s| &mut s.conv2),
                Self::module("bn2", |s| &s.bn2, |s| &mut s.bn2),
                Self::module("fc", |s| &s.fc, |s| &mut s.fc),
            ),
            |(activation, conv1, bn1, conv2, bn2, fc)| Tiny {
                activation,
                conv1,
                bn1,
                conv2,
                bn2,
                fc,
            },
        )
    }
}

impl<A: Activation<D>, D: Backend, const S: usize, const W: usize> Classifier<D>
    for Tiny<A, D, Elem, S, W>
where
    Const<S>: ConvOut<3, 1, 1, Out = Const<S>> + ConvOut<3, 2, 1>,
{
    type Act = A;
    type Height = Const<S>;
    type Width = Const<S>;
    type Channels = Const<3>;
    type Classes = Const<10>;
    fn architecture(&self) -> String {
        format!("Tiny-{S}-{W}-{}", self.activation.name())
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
        self.fc.try_forward(try_global_avg_pool2d(x)?)
    }
    fn for_each_batch_norm(&mut self, f: &mut dyn FnMut(&mut dyn BatchNormState)) {
        f(&mut self.bn1);
        f(&mut self.bn2);
    }
    fn activation(&self) -> &A {
        &self.activation
    }
    fn activation_mut(&mut self) -> &mut A {
        &mut self.activation
    }
}
