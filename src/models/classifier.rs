//! The interface every architecture of the crate implements: an image classifier with one shared
//! activation (docs/reproduction.md §1.1), batch norm switched between train and eval mode (§3.3),
//! and running statistics updated only by `&mut` forward passes.

use dfdx::nn::TensorCollection;
use dfdx::shapes::{ConstDim, Dim};
use dfdx::tensor::{Tape, Tensor};

use super::layers::{BatchNormState, Mode, StatsRecorder};
use crate::activations::Activation;
use crate::ops::{Backend, Elem};

/// The input batch of a classifier `M`: `(B, H, W, C)`, raw [0, 1] pixels
/// (docs/reproduction.md §2.5).
pub type InputOf<M, B, D, T> = Tensor<
    (
        B,
        <M as Classifier<D>>::Height,
        <M as Classifier<D>>::Width,
        <M as Classifier<D>>::Channels,
    ),
    Elem,
    D,
    T,
>;
/// The logits of a classifier `M`: `(B, classes)`.
pub type LogitsOf<M, B, D, T> = Tensor<(B, <M as Classifier<D>>::Classes), Elem, D, T>;

/// An image classifier of the paper (ResNet-18, WideResNet, VGG-16-BN).
pub trait Classifier<D: Backend>: TensorCollection<Elem, D> + Clone + std::fmt::Debug {
    /// The activation shared by every site of the network.
    type Act: Activation<D>;
    type Height: ConstDim;
    type Width: ConstDim;
    type Channels: ConstDim;
    type Classes: ConstDim;
    /// Architecture name ("ResNet-18", "WideResNet-28-10", ...).
    fn architecture(&self) -> String;

    /// Forward pass in the current mode; in training mode batch-norm statistics are recorded in
    /// `rec` when given.
    #[allow(clippy::type_complexity)]
    fn try_forward_rec<B: Dim, T: Tape<Elem, D>>(
        &self,
        x: InputOf<Self, B, D, T>,
        rec: Option<&StatsRecorder>,
    ) -> Result<LogitsOf<Self, B, D, T>, D::Err>;

    /// Calls `f` on every batch-norm layer.
    fn for_each_batch_norm(&mut self, f: &mut dyn FnMut(&mut dyn BatchNormState));

    /// The shared activation.
    fn activation(&self) -> &Self::Act;
    /// The shared activation, mutably (set or freeze α/β).
    fn activation_mut(&mut self) -> &mut Self::Act;

    /// The module paths at which the reference PyTorch architecture registers the shared
    /// activation (docs/reproduction.md §2), so its `state_dict` holds α/β once per site:
    /// `activation`, `layer1.0.activation`, ... The default, `["activation"]`, is the crate's own
    /// naming (for models without a PyTorch reference).
    fn torch_activation_sites(&self) -> Vec<String> {
        vec!["activation".to_string()]
    }

    /// Forward pass in the current mode, running statistics untouched (`&self`).
    #[allow(clippy::type_complexity)]
    fn try_logits<B: Dim, T: Tape<Elem, D>>(
        &self,
        x: InputOf<Self, B, D, T>,
    ) -> Result<LogitsOf<Self, B, D, T>, D::Err> {
        self.try_forward_rec(x, None)
    }
    /// Infallible [`Classifier::try_logits`].
    fn logits<B: Dim, T: Tape<Elem, D>>(
        &self,
        x: InputOf<Self, B, D, T>,
    ) -> LogitsOf<Self, B, D, T> {
        self.try_logits(x).unwrap()
    }
    /// Forward pass in the current mode; in [`Mode::Train`] also updates every batch norm's
    /// running statistics (PyTorch's `model.train(); model(x)`).
    #[allow(clippy::type_complexity)]
    fn try_logits_mut<B: Dim, T: Tape<Elem, D>>(
        &mut self,
        x: InputOf<Self, B, D, T>,
    ) -> Result<LogitsOf<Self, B, D, T>, D::Err> {
        let rec = StatsRecorder::default();
        let y = self.try_forward_rec(x, Some(&rec))?;
        if !rec.is_empty() {
            self.for_each_batch_norm(&mut |bn| bn.apply_recorded(&rec));
        }
        Ok(y)
    }
    /// Infallible [`Classifier::try_logits_mut`].
    fn logits_mut<B: Dim, T: Tape<Elem, D>>(
        &mut self,
        x: InputOf<Self, B, D, T>,
    ) -> LogitsOf<Self, B, D, T> {
        self.try_logits_mut(x).unwrap()
    }
    /// Sets what the reference initialisation sets beyond dfdx's per-layer defaults (WRN: `fc`
    /// bias 0); called by the models' `new` and by anything that builds a model through
    /// `BuildModule` (the CLI, the trainer's dispatch). The default does nothing.
    fn try_init_paper(&mut self) -> Result<(), D::Err> {
        Ok(())
    }

    /// Switches every batch norm (and dropout) to `mode`.
    fn set_mode(&mut self, mode: Mode) {
        self.for_each_batch_norm(&mut |bn| bn.set_mode(mode));
    }
    /// PyTorch's `model.train()`.
    fn train(&mut self) {
        self.set_mode(Mode::Train)
    }
    /// PyTorch's `model.eval()`.
    fn eval(&mut self) {
        self.set_mode(Mode::Eval)
    }
    /// The mode of the first batch-norm layer (all agree after [`Classifier::set_mode`]).
    fn mode(&mut self) -> Mode {
        let mut m = None;
        self.for_each_batch_norm(&mut |bn| {
            m.get_or_insert(bn.mode());
        });
        m.unwrap_or_default()
    }
}
