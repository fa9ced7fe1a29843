//! [`AnyActivation`]: any of the twelve activations of docs/reproduction.md §1.2, chosen at run
//! time.
//!
//! A model's type names its activation (`ResNet18<Pssilu<Cpu>, Cpu>`), so a program that reads
//! the activation from a configuration would compile every model × activation pair. The block
//! code is already shared by all twelve (the models hand the blocks a [`BoundActivation`]), so
//! the activation's type only decides which parameters exist: `ResNet18<AnyActivation<Cpu>,
//! Cpu>` is one compiled model for all twelve, with the same numbers as the concrete type (the
//! same [`PafFn`] runs). The CLI and the trainer's dispatch use it; `cargo build` of the
//! `robust-paf` binary compiles each architecture once instead of twelve times.
//!
//! **Its tensors.** dfdx's tensor collections are static, so an `AnyActivation` always holds
//! two `[1]` tensors, `"alpha"` and `"beta"`. Those the current kind does not have (both for
//! ReLU, `"beta"` for PReLU and for fixed-β PSSiLU, whose β is a plain number as in PyTorch) are
//! listed by [`Activation::unused_tensors`]: they get no gradient, the trainer's optimizer skips
//! them, and checkpoints neither save nor expect them — a checkpoint of `ResNet18<Relu<Cpu>>` and
//! one of `ResNet18<AnyActivation<Cpu>>` as ReLU are the same file.
//!
//! **Its kind** is runtime state, like the frozen flags: a model built through dfdx
//! (`BuildModule`, `reset_params`) starts as ReLU with α = 1, β = 1e-8 in its tensors;
//! [`Activation::try_set_kind`] (or [`AnyActivation::new`]) makes it the paper's initial
//! activation of a kind, and [`crate::train`]'s checkpoint loading sets the kind the checkpoint
//! was trained with. dfdx's converting visitors (`to_device`, `to_dtype`) rebuild it as ReLU:
//! set the kind again after such a conversion.

use dfdx::nn::{BuildModule, BuildOnDevice, ModuleVisitor, TensorCollection, TensorOptions};
use dfdx::shapes::{Dtype, Shape};
use dfdx::tensor::{Storage, Tape, Tensor, TensorFrom};
use dfdx::tensor_ops::Device;

use super::modules::{
    forward_impl, freeze_impl, frozen_impl, parameters_impl, pointwise_fn_impl,
    restore_frozen_impl, scalar_impl, set_parameter_impl, slots_activation_methods, unfreeze_impl,
    validate_impl, Param, Slots, PSSILU_FIXED_BETA_DEFAULT,
};
use super::{Activation, ActivationKind, BoundActivation, ScalarActivation};
use crate::ops::{Backend, Elem};
use crate::Error;

/// The α stored in the tensor by dfdx's initialisation (the kind is ReLU then, so it is unused).
const ALPHA_RESET: f64 = 1.0;
/// The β stored in the tensor by dfdx's initialisation (PSSiLU's β₀).
const BETA_RESET: f64 = 1e-8;

/// Any of the twelve activations, its kind chosen at run time (see the module docs).
#[derive(Debug, Clone)]
pub struct AnyActivation<D: Storage<E>, E: Dtype = Elem> {
    /// Raw α, shape `[1]` (state-dict name `"alpha"`); unused by kinds without α.
    pub alpha: Param<D, E>,
    /// Raw β, shape `[1]` (state-dict name `"beta"`); used only by PSSiLU (learnable β).
    pub beta: Param<D, E>,
    kind: ActivationKind,
    /// Fixed-β PSSiLU's β.
    fixed_beta: f64,
    frozen: [Option<f64>; 2],
}

impl<D: Backend> AnyActivation<D> {
    /// The paper's initial `kind` (docs/reproduction.md §1.2; fixed-β PSSiLU with β = 0.3, the
    /// `train.py --pssilu-beta` default).
    pub fn new(dev: &D, kind: ActivationKind) -> Self {
        let (alpha, beta) = kind.initial_params();
        let mut a = AnyActivation {
            alpha: dev.tensor([ALPHA_RESET as Elem]),
            beta: dev.tensor([BETA_RESET as Elem]),
            kind,
            fixed_beta: PSSILU_FIXED_BETA_DEFAULT,
            frozen: [None; 2],
        };
        a.reset_to(kind, alpha, beta);
        a
    }

    fn reset_to(&mut self, kind: ActivationKind, alpha: f64, beta: f64) {
        self.kind = kind;
        self.frozen = [None; 2];
        self.fixed_beta = PSSILU_FIXED_BETA_DEFAULT;
        if kind.num_params() > 0 {
            self.alpha.copy_from(&[alpha as Elem]);
        }
        if kind == ActivationKind::Pssilu {
            self.beta.copy_from(&[beta as Elem]);
        }
    }
}

impl<E: Dtype, D: Device<E>> TensorCollection<E, D> for AnyActivation<D, E> {
    type To<E2: Dtype, D2: Device<E2>> = AnyActivation<D2, E2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::tensor(
                    "alpha",
                    |p| &p.alpha,
                    |p| &mut p.alpha,
                    TensorOptions::reset_with(|t| {
                        t.copy_from(&[E::from_f64(ALPHA_RESET).unwrap()]);
                        Ok(())
                    }),
                ),
                Self::tensor(
                    "beta",
                    |p| &p.beta,
                    |p| &mut p.beta,
                    TensorOptions::reset_with(|t| {
                        t.copy_from(&[E::from_f64(BETA_RESET).unwrap()]);
                        Ok(())
                    }),
                ),
            ),
            |(alpha, beta)| AnyActivation {
                alpha,
                beta,
                kind: ActivationKind::Relu,
                fixed_beta: PSSILU_FIXED_BETA_DEFAULT,
                frozen: [None; 2],
            },
        )
    }
}

impl<E: Dtype, D: Device<E>> BuildOnDevice<D, E> for AnyActivation<D, E>
where
    Self: BuildModule<D, E>,
{
    type Built = Self;
}

impl<D: Backend> Slots<D> for AnyActivation<D> {
    fn slot_kind(&self) -> ActivationKind {
        self.kind
    }
    fn tensor(&self, i: usize) -> Option<&Param<D>> {
        match i {
            0 if self.kind.num_params() > 0 => Some(&self.alpha),
            1 if self.kind == ActivationKind::Pssilu => Some(&self.beta),
            _ => None,
        }
    }
    fn tensor_mut(&mut self, i: usize) -> Option<&mut Param<D>> {
        match i {
            0 if self.kind.num_params() > 0 => Some(&mut self.alpha),
            1 if self.kind == ActivationKind::Pssilu => Some(&mut self.beta),
            _ => None,
        }
    }
    fn frozen_slots(&self) -> &[Option<f64>; 2] {
        &self.frozen
    }
    fn frozen_slots_mut(&mut self) -> &mut [Option<f64>; 2] {
        &mut self.frozen
    }
    fn fixed_beta(&self) -> Option<f64> {
        (self.kind == ActivationKind::PssiluFixed).then_some(self.fixed_beta)
    }
    fn set_fixed_beta(&mut self, beta: f64) {
        self.fixed_beta = beta;
    }
}

impl<D: Backend> Activation<D> for AnyActivation<D> {
    fn kind(&self) -> ActivationKind {
        self.kind
    }
    fn unused_tensors(&self) -> &'static [&'static str] {
        match self.kind {
            ActivationKind::Pssilu => &[],
            k if k.num_params() > 0 => &["beta"],
            _ => &["alpha", "beta"],
        }
    }
    /// Becomes the paper's initial `kind` (frozen flags cleared) when `kind` differs from the
    /// current one; nothing changes when it is the same.
    fn try_set_kind(&mut self, kind: ActivationKind) -> Result<(), Error> {
        if kind != self.kind {
            let (alpha, beta) = kind.initial_params();
            self.reset_to(kind, alpha, beta);
        }
        Ok(())
    }
    slots_activation_methods!();
}
