//! ResNet-18 (docs/reproduction.md §2.1 CIFAR stem; §2.3 ImageNet stem), torchvision-style
//! post-activation BasicBlocks `[2, 2, 2, 2]` at widths 64–512, one activation shared by all 17
//! sites. Tensor names follow the reference `state_dict`: `conv1`, `bn1`, `layer1.0.conv1`,
//! `layer2.0.downsample.0`, `layer2.0.downsample.1`, `fc`, `activation.alpha`.

use dfdx::nn::modules::Linear;
use dfdx::nn::{BuildModule, Module, ModuleVisitor, TensorCollection};
use dfdx::shapes::{Const, ConstDim, Dim, Dtype};
use dfdx::tensor::{Storage, Tape, Tensor, WithEmptyTape};
use dfdx::tensor_ops::Device;

use super::classifier::{Classifier, InputOf, LogitsOf};
use super::layers::{BatchNorm2d, BatchNormState, Conv2d, StatsRecorder};
use crate::activations::{Activation, BoundActivation};
use crate::ops::{try_global_avg_pool2d, try_max_pool2d, Backend, ConvOut, Elem};

/// Post-activation block with identity shortcut: `act(bn2(conv2(act(bn1(conv1(x))))) + x)`.
#[derive(Clone, Debug)]
pub struct BasicBlock<const C: usize, D: Storage<E>, E: Dtype = Elem> {
    pub conv1: Conv2d<C, C, 3, 1, 1, D, E>,
    pub bn1: BatchNorm2d<C, D, E>,
    pub conv2: Conv2d<C, C, 3, 1, 1, D, E>,
    pub bn2: BatchNorm2d<C, D, E>,
}

impl<const C: usize, E: Dtype, D: Device<E>> TensorCollection<E, D> for BasicBlock<C, D, E> {
    type To<E2: Dtype, D2: Device<E2>> = BasicBlock<C, D2, E2>;
    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::module("conv1", |s| &s.conv1, |s| &mut s.conv1),
                Self::module("bn1", |s| &s.bn1, |s| &mut s.bn1),
                Self::module("conv2", |s| &s.conv2, |s| &mut s.conv2),
                Self::module("bn2", |s| &s.bn2, |s| &mut s.bn2),
            ),
            |(conv1, bn1, conv2, bn2)| BasicBlock {
                conv1,
                bn1,
                conv2,
                bn2,
            },
        )
    }
}

impl<const C: usize, D: Backend> BasicBlock<C, D> {
    /// Forward pass with the shared activation `act`.
    pub fn try_forward<B: Dim, Hd, Wd, T: Tape<Elem, D>>(
        &self,
        x: Tensor<(B, Hd, Wd, Const<C>), Elem, D, T>,
        act: BoundActivation<'_, D>,
        rec: Option<&StatsRecorder>,
    ) -> Result<Tensor<(B, Hd, Wd, Const<C>), Elem, D, T>, D::Err>
    where
        Hd: ConstDim + ConvOut<3, 1, 1, Out = Hd>,
        Wd: ConstDim + ConvOut<3, 1, 1, Out = Wd>,
    {
        let identity = x.with_empty_tape();
        let out = self
            .bn1
            .try_forward_act(self.conv1.try_forward(x)?, None, act, rec)?;
        self.bn2
            .try_forward_act(self.conv2.try_forward(out)?, Some(identity), act, rec)
    }

    fn for_each_batch_norm(&mut self, f: &mut dyn FnMut(&mut dyn BatchNormState)) {
        f(&mut self.bn1);
        f(&mut self.bn2);
    }
}

/// Post-activation block that changes width and halves the resolution, with the 1×1 stride-2
/// conv + BN shortcut (`downsample.0`, `downsample.1`).
#[derive(Clone, Debug)]
pub struct DownBlock<const CI: usize, const CO: usize, D: Storage<E>, E: Dtype = Elem> {
    pub conv1: Conv2d<CI, CO, 3, 2, 1, D, E>,
    pub bn1: BatchNorm2d<CO, D, E>,
    pub conv2: Conv2d<CO, CO, 3, 1, 1, D, E>,
    pub bn2: BatchNorm2d<CO, D, E>,
    pub downsample: (Conv2d<CI, CO, 1, 2, 0, D, E>, BatchNorm2d<CO, D, E>),
}

impl<const CI: usize, const CO: usize, E: Dtype, D: Device<E>> TensorCollection<E, D>
    for DownBlock<CI, CO, D, E>
{
    type To<E2: Dtype, D2: Device<E2>> = DownBlock<CI, CO, D2, E2>;
    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::module("conv1", |s| &s.conv1, |s| &mut s.conv1),
                Self::module("bn1", |s| &s.bn1, |s| &mut s.bn1),
                Self::module("conv2", |s| &s.conv2, |s| &mut s.conv2),
                Self::module("bn2", |s| &s.bn2, |s| &mut s.bn2),
                Self::module("downsample", |s| &s.downsample, |s| &mut s.downsample),
            ),
            |(conv1, bn1, conv2, bn2, downsample)| DownBlock {
                conv1,
                bn1,
                conv2,
                bn2,
                downsample,
            },
        )
    }
}

impl<const CI: usize, const CO: usize, D: Backend> DownBlock<CI, CO, D> {
    /// Forward pass with the shared activation `act`; `Hd` → `Ho` (stride 2).
    #[allow(clippy::type_complexity)]
    pub fn try_forward<B: Dim, Hd, Wd, Ho, Wo, T: Tape<Elem, D>>(
        &self,
        x: Tensor<(B, Hd, Wd, Const<CI>), Elem, D, T>,
        act: BoundActivation<'_, D>,
        rec: Option<&StatsRecorder>,
    ) -> Result<Tensor<(B, Ho, Wo, Const<CO>), Elem, D, T>, D::Err>
    where
        Hd: ConstDim + ConvOut<3, 2, 1, Out = Ho> + ConvOut<1, 2, 0, Out = Ho>,
        Wd: ConstDim + ConvOut<3, 2, 1, Out = Wo> + ConvOut<1, 2, 0, Out = Wo>,
        Ho: ConstDim + ConvOut<3, 1, 1, Out = Ho>,
        Wo: ConstDim + ConvOut<3, 1, 1, Out = Wo>,
    {
        let shortcut = self
            .downsample
            .1
            .try_forward_rec(self.downsample.0.try_forward(x.with_empty_tape())?, rec)?;
        let out = self
            .bn1
            .try_forward_act(self.conv1.try_forward(x)?, None, act, rec)?;
        self.bn2
            .try_forward_act(self.conv2.try_forward(out)?, Some(shortcut), act, rec)
    }

    fn for_each_batch_norm(&mut self, f: &mut dyn FnMut(&mut dyn BatchNormState)) {
        f(&mut self.bn1);
        f(&mut self.bn2);
        f(&mut self.downsample.1);
    }
}

/// The four stages of ResNet-18: `[2, 2, 2, 2]` blocks at `C1`–`C4` channels (64, 128, 256,
/// 512 in the paper).
#[derive(Clone, Debug)]
pub struct Stages<
    const C1: usize,
    const C2: usize,
    const C3: usize,
    const C4: usize,
    D: Storage<E>,
    E: Dtype = Elem,
> {
    pub layer1: (BasicBlock<C1, D, E>, BasicBlock<C1, D, E>),
    pub layer2: (DownBlock<C1, C2, D, E>, BasicBlock<C2, D, E>),
    pub layer3: (DownBlock<C2, C3, D, E>, BasicBlock<C3, D, E>),
    pub layer4: (DownBlock<C3, C4, D, E>, BasicBlock<C4, D, E>),
}

impl<const C1: usize, const C2: usize, const C3: usize, const C4: usize, D: Backend>
    Stages<C1, C2, C3, C4, D>
{
    #[allow(clippy::type_complexity)]
    fn try_forward<B: Dim, Hd, Wd, H2, W2, H3, W3, H4, W4, T: Tape<Elem, D>>(
        &self,
        x: Tensor<(B, Hd, Wd, Const<C1>), Elem, D, T>,
        act: BoundActivation<'_, D>,
        rec: Option<&StatsRecorder>,
    ) -> Result<Tensor<(B, H4, W4, Const<C4>), Elem, D, T>, D::Err>
    where
        Hd: ConstDim
            + ConvOut<3, 1, 1, Out = Hd>
            + ConvOut<3, 2, 1, Out = H2>
            + ConvOut<1, 2, 0, Out = H2>,
        Wd: ConstDim
            + ConvOut<3, 1, 1, Out = Wd>
            + ConvOut<3, 2, 1, Out = W2>
            + ConvOut<1, 2, 0, Out = W2>,
        H2: ConstDim
            + ConvOut<3, 1, 1, Out = H2>
            + ConvOut<3, 2, 1, Out = H3>
            + ConvOut<1, 2, 0, Out = H3>,
        W2: ConstDim
            + ConvOut<3, 1, 1, Out = W2>
            + ConvOut<3, 2, 1, Out = W3>
            + ConvOut<1, 2, 0, Out = W3>,
        H3: ConstDim
            + ConvOut<3, 1, 1, Out = H3>
            + ConvOut<3, 2, 1, Out = H4>
            + ConvOut<1, 2, 0, Out = H4>,
        W3: ConstDim
            + ConvOut<3, 1, 1, Out = W3>
            + ConvOut<3, 2, 1, Out = W4>
            + ConvOut<1, 2, 0, Out = W4>,
        H4: ConstDim + ConvOut<3, 1, 1, Out = H4>,
        W4: ConstDim + ConvOut<3, 1, 1, Out = W4>,
    {
        let x = self.layer1.0.try_forward(x, act, rec)?;
        let x = self.layer1.1.try_forward(x, act, rec)?;
        let x = self.layer2.0.try_forward(x, act, rec)?;
        let x = self.layer2.1.try_forward(x, act, rec)?;
        let x = self.layer3.0.try_forward(x, act, rec)?;
        let x = self.layer3.1.try_forward(x, act, rec)?;
        let x = self.layer4.0.try_forward(x, act, rec)?;
        self.layer4.1.try_forward(x, act, rec)
    }

    fn for_each_batch_norm(&mut self, f: &mut dyn FnMut(&mut dyn BatchNormState)) {
        self.layer1.0.for_each_batch_norm(f);
        self.layer1.1.for_each_batch_norm(f);
        self.layer2.0.for_each_batch_norm(f);
        self.layer2.1.for_each_batch_norm(f);
        self.layer3.0.for_each_batch_norm(f);
        self.layer3.1.for_each_batch_norm(f);
        self.layer4.0.for_each_batch_norm(f);
        self.layer4.1.for_each_batch_norm(f);
    }
}

macro_rules! resnet18_model {
    ($(#[$doc:meta])* $name:ident, $conv1:ty, $arch:literal, $side:literal, $stem:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug)]
        ///
        /// `W1`–`W4` are the stage widths: the paper's 64-128-256-512 by default; narrower
        /// widths (e.g. 4-8-16-32 for the PyTorch parity fixtures) are **not models of the
        /// paper**.
        pub struct $name<
            A,
            D: Storage<E>,
            E: Dtype = Elem,
            const NC: usize = 10,
            const W1: usize = 64,
            const W2: usize = 128,
            const W3: usize = 256,
            const W4: usize = 512,
        > {
            /// The activation shared by all 17 sites.
            pub activation: A,
            pub conv1: $conv1,
            pub bn1: BatchNorm2d<W1, D, E>,
            pub stages: Stages<W1, W2, W3, W4, D, E>,
            pub fc: Linear<W4, NC, E, D>,
        }

        impl<A: TensorCollection<E, D>, E: Dtype + num_traits::Float + rand_distr::uniform::SampleUniform, D: Device<E>, const NC: usize, const W1: usize, const W2: usize, const W3: usize, const W4: usize> TensorCollection<E, D> for $name<A, D, E, NC, W1, W2, W3, W4> {
            type To<E2: Dtype, D2: Device<E2>> = $name<A::To<E2, D2>, D2, E2, NC, W1, W2, W3, W4>;
            fn iter_tensors<V: ModuleVisitor<Self, E, D>>(visitor: &mut V) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
                visitor.visit_fields(
                    (
                        (
                            Self::module("activation", |s| &s.activation, |s| &mut s.activation),
                            Self::module("conv1", |s| &s.conv1, |s| &mut s.conv1),
                            Self::module("bn1", |s| &s.bn1, |s| &mut s.bn1),
                            Self::module("fc", |s| &s.fc, |s| &mut s.fc),
                        ),
                        (
                            Self::module("layer1", |s| &s.stages.layer1, |s| &mut s.stages.layer1),
                            Self::module("layer2", |s| &s.stages.layer2, |s| &mut s.stages.layer2),
                            Self::module("layer3", |s| &s.stages.layer3, |s| &mut s.stages.layer3),
                            Self::module("layer4", |s| &s.stages.layer4, |s| &mut s.stages.layer4),
                        ),
                    ),
                    |((activation, conv1, bn1, fc), (layer1, layer2, layer3, layer4))| $name {
                        activation,
                        conv1,
                        bn1,
                        stages: Stages { layer1, layer2, layer3, layer4 },
                        fc,
                    },
                )
            }
        }

        impl<A: Activation<D>, D: Backend, const NC: usize, const W1: usize, const W2: usize, const W3: usize, const W4: usize> $name<A, D, Elem, NC, W1, W2, W3, W4>
        where
            Self: BuildModule<D, Elem>,
        {
            /// Builds the network with the paper's initialisation (docs/reproduction.md §2): convs
            /// N(0, sqrt(2/fan_out)), BN weight 1 / bias 0, `fc` PyTorch's default uniform
            /// ±1/sqrt(512), the activation at its paper initial values.
            pub fn try_new(dev: &D) -> Result<Self, D::Err> {
                Self::try_build(dev)
            }
            /// Infallible [`Self::try_new`].
            pub fn new(dev: &D) -> Self {
                Self::try_new(dev).unwrap()
            }
        }

        impl<A: Activation<D>, D: Backend, const NC: usize, const W1: usize, const W2: usize, const W3: usize, const W4: usize> Classifier<D> for $name<A, D, Elem, NC, W1, W2, W3, W4> {
            type Act = A;
            type Height = Const<$side>;
            type Width = Const<$side>;
            type Channels = Const<3>;
            type Classes = Const<NC>;
            fn architecture(&self) -> String {
                if (W1, W2, W3, W4) == (64, 128, 256, 512) {
                    format!("{}-{}", $arch, self.activation.name())
                } else {
                    format!("{}[{W1}-{W2}-{W3}-{W4}]-{}", $arch, self.activation.name())
                }
            }
            /// The stem's `activation` and each BasicBlock's (`layer1.0.activation`, ...), as in
            /// the reference `resnet_cifar.py` / `ResNet.py`.
            fn torch_activation_sites(&self) -> Vec<String> {
                let mut v = vec!["activation".to_string()];
                for l in 1..=4 {
                    for b in 0..2 {
                        v.push(format!("layer{l}.{b}.activation"));
                    }
                }
                v
            }
            fn try_forward_rec<B: Dim, T: Tape<Elem, D>>(
                &self,
                x: InputOf<Self, B, D, T>,
                rec: Option<&StatsRecorder>,
            ) -> Result<LogitsOf<Self, B, D, T>, D::Err> {
                let x = $stem(self, x, rec)?;
                let x = self.stages.try_forward(x, self.activation.pointwise_fn(), rec)?;
                self.fc.try_forward(try_global_avg_pool2d(x)?)
            }
            fn for_each_batch_norm(&mut self, f: &mut dyn FnMut(&mut dyn BatchNormState)) {
                f(&mut self.bn1);
                self.stages.for_each_batch_norm(f);
            }
            fn activation(&self) -> &A {
                &self.activation
            }
            fn activation_mut(&mut self) -> &mut A {
                &mut self.activation
            }
        }
    };
}

#[allow(clippy::type_complexity)]
fn cifar_stem<
    A: Activation<D>,
    D: Backend,
    const NC: usize,
    const W1: usize,
    const W2: usize,
    const W3: usize,
    const W4: usize,
    B: Dim,
    T: Tape<Elem, D>,
>(
    m: &ResNet18<A, D, Elem, NC, W1, W2, W3, W4>,
    x: Tensor<(B, Const<32>, Const<32>, Const<3>), Elem, D, T>,
    rec: Option<&StatsRecorder>,
) -> Result<Tensor<(B, Const<32>, Const<32>, Const<W1>), Elem, D, T>, D::Err> {
    m.bn1.try_forward_act(
        m.conv1.try_forward(x)?,
        None,
        m.activation.pointwise_fn(),
        rec,
    )
}

#[allow(clippy::type_complexity)]
fn imagenet_stem<
    A: Activation<D>,
    D: Backend,
    const NC: usize,
    const W1: usize,
    const W2: usize,
    const W3: usize,
    const W4: usize,
    B: Dim,
    T: Tape<Elem, D>,
>(
    m: &ResNet18ImageNet<A, D, Elem, NC, W1, W2, W3, W4>,
    x: Tensor<(B, Const<224>, Const<224>, Const<3>), Elem, D, T>,
    rec: Option<&StatsRecorder>,
) -> Result<Tensor<(B, Const<56>, Const<56>, Const<W1>), Elem, D, T>, D::Err> {
    let x = m.bn1.try_forward_act(
        m.conv1.try_forward(x)?,
        None,
        m.activation.pointwise_fn(),
        rec,
    )?;
    try_max_pool2d::<3, 2, 1, _, _, _, W1, D, T>(x)
}

resnet18_model!(
    /// CIFAR ResNet-18 (docs/reproduction.md §2.1): 3×3 stem, no max-pool, 32×32×3 input;
    /// 11,173,962 parameters for 10 classes plus the activation's 0–2.
    ResNet18,
    Conv2d<3, W1, 3, 1, 1, D, E>,
    "ResNet-18",
    32,
    cifar_stem
);

resnet18_model!(
    /// ResNet-18 with the ImageNet stem (docs/reproduction.md §2.3, ImageNette): 7×7/2 conv, 3×3/2
    /// max-pool, 224×224×3 input; 11,181,642 parameters for 10 classes plus the activation's 0–2.
    ResNet18ImageNet,
    Conv2d<3, W1, 7, 2, 3, D, E>,
    "ResNet-18-ImageNet",
    224,
    imagenet_stem
);

/// CIFAR ResNet-18 at 1/16 of the paper's width (4-8-16-32, 44 k parameters): **not a model of
/// the paper**; its PyTorch twin is small enough for the committed parity fixtures
/// (`tests/interop.rs`), and it runs the same code as [`ResNet18`].
pub type ResNet18Narrow<A, D, const NC: usize = 10> = ResNet18<A, D, Elem, NC, 4, 8, 16, 32>;
/// [`ResNet18ImageNet`] at 1/16 of the paper's width (4-8-16-32): **not a model of the paper**,
/// for the parity fixtures.
pub type ResNet18ImageNetNarrow<A, D, const NC: usize = 10> =
    ResNet18ImageNet<A, D, Elem, NC, 4, 8, 16, 32>;
