//! Pre-activation WideResNet (docs/reproduction.md §2.2; identical to RobustBench's
//! `PAF_WideResNet`): depth `6·N + 4`, widths `[16, 16k, 32k, 64k]`, no dropout, one activation
//! shared by all sites (25 for WRN-28-10). Tensor names follow the reference `state_dict`: `conv1`,
//! `block1.layer.0.bn1`, `block1.layer.0.conv1`, `block1.layer.0.convShortcut`, `bn1`, `fc`.

use dfdx::nn::modules::Linear;
use dfdx::nn::{BuildModule, Module, ModuleVisitor, TensorCollection};
use dfdx::shapes::{Const, ConstDim, Dim, Dtype, HasShape};
use dfdx::tensor::{Storage, Tape, Tensor, WithEmptyTape};
use dfdx::tensor_ops::{Device, ReshapeTo, TryAdd};

use super::classifier::{Classifier, InputOf, LogitsOf};
use super::layers::{BatchNorm2d, BatchNormState, Conv2d, StatsRecorder};
use crate::activations::{Activation, BoundActivation};
use crate::ops::{try_avg_pool2d, try_flatten, Backend, ConvOut, Elem};

/// Pre-activation block whose width or resolution changes (`in ≠ out`): the shortcut is the 1×1
/// `convShortcut` applied to the **activated** input, as in the reference code.
#[derive(Clone, Debug)]
pub struct WideBlockShortcut<
    const CI: usize,
    const CO: usize,
    const S: usize,
    D: Storage<E>,
    E: Dtype = Elem,
> {
    pub bn1: BatchNorm2d<CI, D, E>,
    pub conv1: Conv2d<CI, CO, 3, S, 1, D, E>,
    pub bn2: BatchNorm2d<CO, D, E>,
    pub conv2: Conv2d<CO, CO, 3, 1, 1, D, E>,
    /// The 1×1 shortcut; `None` when the block keeps width and resolution (`CI == CO`, stride
    /// 1: the first block of WRN-16-1's first group), where the reference's `equalInOut`
    /// shortcut is the raw input.
    pub conv_shortcut: Option<Conv2d<CI, CO, 1, S, 0, D, E>>,
}

impl<const CI: usize, const CO: usize, const S: usize, E: Dtype, D: Device<E>>
    TensorCollection<E, D> for WideBlockShortcut<CI, CO, S, D, E>
{
    type To<E2: Dtype, D2: Device<E2>> = WideBlockShortcut<CI, CO, S, D2, E2>;
    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        if CI == CO && S == 1 {
            return visitor.visit_fields(
                (
                    Self::module("bn1", |s| &s.bn1, |s| &mut s.bn1),
                    Self::module("conv1", |s| &s.conv1, |s| &mut s.conv1),
                    Self::module("bn2", |s| &s.bn2, |s| &mut s.bn2),
                    Self::module("conv2", |s| &s.conv2, |s| &mut s.conv2),
                ),
                |(bn1, conv1, bn2, conv2)| WideBlockShortcut {
                    bn1,
                    conv1,
                    bn2,
                    conv2,
                    conv_shortcut: None,
                },
            );
        }
        visitor.visit_fields(
            (
                Self::module("bn1", |s| &s.bn1, |s| &mut s.bn1),
                Self::module("conv1", |s| &s.conv1, |s| &mut s.conv1),
                Self::module("bn2", |s| &s.bn2, |s| &mut s.bn2),
                Self::module("conv2", |s| &s.conv2, |s| &mut s.conv2),
                Self::module(
                    "convShortcut",
                    |s| {
                        s.conv_shortcut
                            .as_ref()
                            .expect("a width-changing block has a shortcut")
                    },
                    |s| {
                        s.conv_shortcut
                            .as_mut()
                            .expect("a width-changing block has a shortcut")
                    },
                ),
            ),
            |(bn1, conv1, bn2, conv2, conv_shortcut)| WideBlockShortcut {
                bn1,
                conv1,
                bn2,
                conv2,
                conv_shortcut: Some(conv_shortcut),
            },
        )
    }
}

impl<const CI: usize, const CO: usize, const S: usize, D: Backend> WideBlockShortcut<CI, CO, S, D> {
    /// `x = act(bn1(x)); conv2(act(bn2(conv1(x)))) + convShortcut(x)`; without a shortcut conv
    /// (`CI == CO`, stride 1) the reference's `equalInOut` block: `+ x` with the raw input.
    #[allow(clippy::type_complexity)]
    pub fn try_forward<B: Dim, Hd, Wd, Ho, Wo, T: Tape<Elem, D>>(
        &self,
        x: Tensor<(B, Hd, Wd, Const<CI>), Elem, D, T>,
        act: BoundActivation<'_, D>,
        rec: Option<&StatsRecorder>,
    ) -> Result<Tensor<(B, Ho, Wo, Const<CO>), Elem, D, T>, D::Err>
    where
        Hd: ConstDim + ConvOut<3, S, 1, Out = Ho> + ConvOut<1, S, 0, Out = Ho>,
        Wd: ConstDim + ConvOut<3, S, 1, Out = Wo> + ConvOut<1, S, 0, Out = Wo>,
        Ho: ConstDim + ConvOut<3, 1, 1, Out = Ho>,
        Wo: ConstDim + ConvOut<3, 1, 1, Out = Wo>,
    {
        let raw = self.conv_shortcut.is_none().then(|| x.with_empty_tape());
        let x = self.bn1.try_forward_act(x, None, act, rec)?;
        let shortcut = match (&self.conv_shortcut, raw) {
            (Some(c), _) => c.try_forward(x.with_empty_tape())?,
            (None, Some(raw)) => {
                // CI == CO and stride 1, so the shapes agree; the types do not know it
                let (b, _, _, _) = *raw.shape();
                raw.try_reshape_like(&(b, Ho::default(), Wo::default(), Const::<CO>))?
            }
            (None, None) => unreachable!("`raw` is taken when there is no shortcut conv"),
        };
        let out = self
            .bn2
            .try_forward_act(self.conv1.try_forward(x)?, None, act, rec)?;
        self.conv2.try_forward(out)?.try_add(shortcut)
    }

    fn for_each_batch_norm(&mut self, f: &mut dyn FnMut(&mut dyn BatchNormState)) {
        f(&mut self.bn1);
        f(&mut self.bn2);
    }
}

/// Pre-activation block with identity shortcut (`in == out`): `conv2(act(bn2(conv1(act(bn1(x)))))) + x`.
#[derive(Clone, Debug)]
pub struct WideBlock<const C: usize, D: Storage<E>, E: Dtype = Elem> {
    pub bn1: BatchNorm2d<C, D, E>,
    pub conv1: Conv2d<C, C, 3, 1, 1, D, E>,
    pub bn2: BatchNorm2d<C, D, E>,
    pub conv2: Conv2d<C, C, 3, 1, 1, D, E>,
}

impl<const C: usize, E: Dtype, D: Device<E>> TensorCollection<E, D> for WideBlock<C, D, E> {
    type To<E2: Dtype, D2: Device<E2>> = WideBlock<C, D2, E2>;
    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::module("bn1", |s| &s.bn1, |s| &mut s.bn1),
                Self::module("conv1", |s| &s.conv1, |s| &mut s.conv1),
                Self::module("bn2", |s| &s.bn2, |s| &mut s.bn2),
                Self::module("conv2", |s| &s.conv2, |s| &mut s.conv2),
            ),
            |(bn1, conv1, bn2, conv2)| WideBlock {
                bn1,
                conv1,
                bn2,
                conv2,
            },
        )
    }
}

impl<const C: usize, D: Backend> WideBlock<C, D> {
    /// Forward pass with the shared activation.
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
        let o = self.bn1.try_forward_act(x, None, act, rec)?;
        let o = self
            .bn2
            .try_forward_act(self.conv1.try_forward(o)?, None, act, rec)?;
        self.conv2.try_forward(o)?.try_add(identity)
    }

    fn for_each_batch_norm(&mut self, f: &mut dyn FnMut(&mut dyn BatchNormState)) {
        f(&mut self.bn1);
        f(&mut self.bn2);
    }
}

/// One group of `N` blocks (`NetworkBlock` in the reference): `layer.0` changes width / stride,
/// `layer.1 ..= layer.{N-1}` keep it.
#[derive(Clone, Debug)]
pub struct WideGroup<
    const CI: usize,
    const CO: usize,
    const S: usize,
    const N: usize,
    D: Storage<E>,
    E: Dtype = Elem,
> {
    pub first: WideBlockShortcut<CI, CO, S, D, E>,
    pub rest: Vec<WideBlock<CO, D, E>>,
}

impl<const CI: usize, const CO: usize, const S: usize, const N: usize, E: Dtype, D: Device<E>>
    TensorCollection<E, D> for WideGroup<CI, CO, S, N, D, E>
{
    type To<E2: Dtype, D2: Device<E2>> = WideGroup<CI, CO, S, N, D2, E2>;
    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        let names: Vec<String> = (1..N).map(|i| format!("layer.{i}")).collect();
        visitor.visit_fields(
            (
                Self::module("layer.0", |s| &s.first, |s| &mut s.first),
                names
                    .iter()
                    .enumerate()
                    .map(|(i, name)| {
                        Self::module(name, move |s| &s.rest[i], move |s| &mut s.rest[i])
                    })
                    .collect::<Vec<_>>(),
            ),
            |(first, rest)| WideGroup { first, rest },
        )
    }
}

impl<const CI: usize, const CO: usize, const S: usize, const N: usize, D: Backend>
    WideGroup<CI, CO, S, N, D>
{
    #[allow(clippy::type_complexity)]
    fn try_forward<B: Dim, Hd, Wd, Ho, Wo, T: Tape<Elem, D>>(
        &self,
        x: Tensor<(B, Hd, Wd, Const<CI>), Elem, D, T>,
        act: BoundActivation<'_, D>,
        rec: Option<&StatsRecorder>,
    ) -> Result<Tensor<(B, Ho, Wo, Const<CO>), Elem, D, T>, D::Err>
    where
        Hd: ConstDim + ConvOut<3, S, 1, Out = Ho> + ConvOut<1, S, 0, Out = Ho>,
        Wd: ConstDim + ConvOut<3, S, 1, Out = Wo> + ConvOut<1, S, 0, Out = Wo>,
        Ho: ConstDim + ConvOut<3, 1, 1, Out = Ho>,
        Wo: ConstDim + ConvOut<3, 1, 1, Out = Wo>,
    {
        let mut x = self.first.try_forward(x, act, rec)?;
        for block in &self.rest {
            x = block.try_forward(x, act, rec)?;
        }
        Ok(x)
    }

    fn for_each_batch_norm(&mut self, f: &mut dyn FnMut(&mut dyn BatchNormState)) {
        self.first.for_each_batch_norm(f);
        for b in &mut self.rest {
            b.for_each_batch_norm(f);
        }
    }
}

/// Pre-activation WideResNet for 32×32×3 inputs: `N` blocks per group (depth = 6N + 4), group
/// widths `W1`, `W2`, `W3` (= 16k, 32k, 64k), `NC` classes. Use the aliases
/// [`WideResNet28x10`], [`WideResNet16x4`], [`WideResNet34x10`], [`WideResNet16x1`] (where the
/// first block keeps width 16 and has no shortcut conv, as in the reference).
#[derive(Clone, Debug)]
pub struct WideResNet<
    A,
    D: Storage<E>,
    E: Dtype,
    const N: usize,
    const W1: usize,
    const W2: usize,
    const W3: usize,
    const NC: usize,
> {
    /// The activation shared by every site.
    pub activation: A,
    pub conv1: Conv2d<3, 16, 3, 1, 1, D, E>,
    pub block1: WideGroup<16, W1, 1, N, D, E>,
    pub block2: WideGroup<W1, W2, 2, N, D, E>,
    pub block3: WideGroup<W2, W3, 2, N, D, E>,
    /// The final BN before the head (`bn1` in the reference).
    pub bn1: BatchNorm2d<W3, D, E>,
    pub fc: Linear<W3, NC, E, D>,
}

/// WRN-28-10 (docs/reproduction.md §2.2): 36,479,194 parameters plus the activation's.
pub type WideResNet28x10<A, D> = WideResNet<A, D, Elem, 4, 160, 320, 640, 10>;
/// WRN-16-4.
pub type WideResNet16x4<A, D> = WideResNet<A, D, Elem, 2, 64, 128, 256, 10>;
/// WRN-34-10.
pub type WideResNet34x10<A, D> = WideResNet<A, D, Elem, 5, 160, 320, 640, 10>;
/// WideResNet-16-1 (widths 16-32-64, 0.17 M parameters): **not a model of the paper**, a narrow
/// network for runs of minutes on a CPU and the PyTorch parity fixtures (`tests/interop.rs`).
pub type WideResNet16x1<A, D> = WideResNet<A, D, Elem, 2, 16, 32, 64, 10>;
/// WideResNet-16-2: **not a model of the paper**, a small WRN.
pub type WideResNet16x2<A, D> = WideResNet<A, D, Elem, 2, 32, 64, 128, 10>;
/// WideResNet-28-4: **not a model of the paper**, the headline depth at 0.4 of its width.
pub type WideResNet28x4<A, D> = WideResNet<A, D, Elem, 4, 64, 128, 256, 10>;
/// WideResNet-40-2 (from the WRN paper): **not a model of the paper**.
pub type WideResNet40x2<A, D> = WideResNet<A, D, Elem, 6, 32, 64, 128, 10>;

impl<
        A: TensorCollection<E, D>,
        E: Dtype + num_traits::Float + rand_distr::uniform::SampleUniform,
        D: Device<E>,
        const N: usize,
        const W1: usize,
        const W2: usize,
        const W3: usize,
        const NC: usize,
    > TensorCollection<E, D> for WideResNet<A, D, E, N, W1, W2, W3, NC>
{
    type To<E2: Dtype, D2: Device<E2>> = WideResNet<A::To<E2, D2>, D2, E2, N, W1, W2, W3, NC>;
    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                (
                    Self::module("activation", |s| &s.activation, |s| &mut s.activation),
                    Self::module("conv1", |s| &s.conv1, |s| &mut s.conv1),
                    Self::module("block1", |s| &s.block1, |s| &mut s.block1),
                    Self::module("block2", |s| &s.block2, |s| &mut s.block2),
                ),
                (
                    Self::module("block3", |s| &s.block3, |s| &mut s.block3),
                    Self::module("bn1", |s| &s.bn1, |s| &mut s.bn1),
                    Self::module("fc", |s| &s.fc, |s| &mut s.fc),
                ),
            ),
            |((activation, conv1, block1, block2), (block3, bn1, fc))| WideResNet {
                activation,
                conv1,
                block1,
                block2,
                block3,
                bn1,
                fc,
            },
        )
    }
}

impl<
        A: Activation<D>,
        D: Backend,
        const N: usize,
        const W1: usize,
        const W2: usize,
        const W3: usize,
        const NC: usize,
    > WideResNet<A, D, Elem, N, W1, W2, W3, NC>
where
    Self: BuildModule<D, Elem>,
{
    /// Builds the network with the reference initialisation (docs/reproduction.md §2.2): convs
    /// N(0, sqrt(2/(k·k·out))), BN weight 1 / bias 0, `fc` bias 0 and weight PyTorch's default.
    pub fn try_new(dev: &D) -> Result<Self, D::Err> {
        let mut m = Self::try_build(dev)?;
        m.try_init_paper()?;
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
        const N: usize,
        const W1: usize,
        const W2: usize,
        const W3: usize,
        const NC: usize,
    > Classifier<D> for WideResNet<A, D, Elem, N, W1, W2, W3, NC>
{
    type Act = A;
    type Height = Const<32>;
    type Width = Const<32>;
    type Channels = Const<3>;
    type Classes = Const<NC>;
    fn architecture(&self) -> String {
        format!(
            "WideResNet-{}-{}-{}",
            6 * N + 4,
            W1 / 16,
            self.activation.name()
        )
    }
    /// Each block's `activation` (`block1.layer.0.activation`, ...) and the head's, as in the
    /// reference `wide_resnet.py` (RobustBench's `PAF_WideResNet`).
    fn torch_activation_sites(&self) -> Vec<String> {
        let mut v = vec!["activation".to_string()];
        for b in 1..=3 {
            for i in 0..N {
                v.push(format!("block{b}.layer.{i}.activation"));
            }
        }
        v
    }
    fn try_init_paper(&mut self) -> Result<(), D::Err> {
        self.fc.bias.try_fill_with_zeros()
    }
    fn try_forward_rec<B: Dim, T: Tape<Elem, D>>(
        &self,
        x: InputOf<Self, B, D, T>,
        rec: Option<&StatsRecorder>,
    ) -> Result<LogitsOf<Self, B, D, T>, D::Err> {
        let act = self.activation.pointwise_fn();
        let x = self.conv1.try_forward(x)?;
        let x = self.block1.try_forward(x, act, rec)?;
        let x = self.block2.try_forward(x, act, rec)?;
        let x = self.block3.try_forward(x, act, rec)?;
        let x = self.bn1.try_forward_act(x, None, act, rec)?;
        let x = try_flatten(try_avg_pool2d::<8, _, _, _, W3, D, T>(x)?)?;
        self.fc.try_forward(x)
    }
    fn for_each_batch_norm(&mut self, f: &mut dyn FnMut(&mut dyn BatchNormState)) {
        self.block1.for_each_batch_norm(f);
        self.block2.for_each_batch_norm(f);
        self.block3.for_each_batch_norm(f);
        f(&mut self.bn1);
    }
    fn activation(&self) -> &A {
        &self.activation
    }
    fn activation_mut(&mut self) -> &mut A {
        &mut self.activation
    }
}
