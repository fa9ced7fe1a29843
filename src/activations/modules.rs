//! The twelve activation modules of docs/reproduction.md §1.2 as dfdx 0.13 tensor collections.
//!
//! - [`Relu`], [`Elu`], [`Softplus`], [`Silu`]: no parameters (zero-sized dfdx
//!   zero-sized modules; a `PhantomData<D>` names the device).
//! - [`Prelu`] (α₀ = 0), [`Pelu`] (α₀ = 1), [`PreluPlus`] (PReLU+, code `pprelu`, α₀ = 1),
//!   [`Reblu`] (code `pblu`, α₀ = 0), [`Psilu`] (α₀ = 1, uses |α|), [`Psoftplus`] (α₀ = 1, raw α):
//!   one learnable scalar `pub alpha: Tensor<Rank1<1>>`.
//! - [`PssiluFixed`] (code `pssilu`): learnable α (|α|) and a fixed hyperparameter β, 0 ≤ β < 1.
//! - [`Pssilu`] (code `pssilu2`, the paper's PSSiLU): learnable α₀ = 1 and β₀ = 1e-8, both used
//!   through |·| (docs/reproduction.md §1.2, §7).
//!
//! The tensors are named `"alpha"` / `"beta"` in the [`TensorCollection`] (the PyTorch state-dict
//! names) and initialised to the paper's values, so `dev.build_module::<Pssilu<Cpu>, f32>()`,
//! `Pssilu::<Cpu>::build(&dev)` and `reset_params()` give the paper's init. The parameter
//! tensors have shape `[1]`, like the PyTorch `nn.Parameter`s (docs/reproduction.md §1.1).
//!
//! **Runtime state** — the frozen flags (§1.4) and fixed-β PSSiLU's β — lives in the struct,
//! outside the tensor collection: in-place visitors (optimizers, `zero_grads`, `reset_params`,
//! safetensors/npz loading) keep it, but dfdx's converting visitors (`to_device`, `to_dtype`)
//! rebuild the struct from its tensors and give the defaults (nothing frozen, β = 0.3); re-apply
//! [`Activation::freeze`] / [`PssiluFixed::new`] after such a conversion.
//!
//! The modules deliberately do **not** implement dfdx's `Module`: with both traits in scope
//! `act.forward(x)` would be ambiguous. Models own the shared instance and call
//! [`Activation::forward`] at every site (docs/reproduction.md §1.1).
//!
//! A frozen parameter's value takes precedence over its tensor in the forward pass and in
//! [`Activation::parameters`]; it gets no gradient (the op is given `None` for it), and
//! [`Activation::restore_frozen`] writes it back into the tensor.

use dfdx::nn::{BuildModule, BuildOnDevice, ModuleVisitor, TensorCollection, TensorOptions};
use dfdx::shapes::{Dtype, Rank1, Shape};
use dfdx::tensor::{Storage, Tape, Tensor, TensorFrom};
use dfdx::tensor_ops::Device;
use std::marker::PhantomData;

use super::functions::PafFn;
use super::{Activation, ActivationKind, BoundActivation, ScalarActivation};
use crate::ops::{try_pointwise, Backend, Elem};
use crate::Error;

/// The scalar parameter tensor type: shape `[1]`, like PyTorch's `nn.Parameter(torch.tensor([v]))`.
pub type Param<D, E = Elem> = Tensor<Rank1<1>, E, D>;

/// Fixed-β PSSiLU's default β: 0.3, the default of the official `train.py --pssilu-beta`
/// (docs/reproduction.md §1.2). See also [`PSSILU_FIXED_BETA_CLASS_DEFAULT`] and
/// [`PSSILU_FIXED_BETA_EVAL_DEFAULT`]; which values the paper used is UNCERTAIN.
pub const PSSILU_FIXED_BETA_DEFAULT: f64 = 0.3;
/// The `PSSiLU(beta=0.1)` class default of the official code (docs/reproduction.md §1.2).
pub const PSSILU_FIXED_BETA_CLASS_DEFAULT: f64 = 0.1;
/// The official `eval.py --pssilu-beta` default, 0.42 (docs/reproduction.md §1.2, §8).
pub const PSSILU_FIXED_BETA_EVAL_DEFAULT: f64 = 0.42;

const NAMES: [&str; 2] = ["alpha", "beta"];

fn read(t: &Param<impl Backend>) -> f64 {
    t.as_vec()[0] as f64
}

fn unknown(kind: ActivationKind, name: &str) -> Error {
    Error::UnknownParameter {
        name: name.to_string(),
        activation: kind.name(),
    }
}

/// Checks a value for parameter slot `i` (0 = α, 1 = β) of `kind`.
fn check_value(kind: ActivationKind, i: usize, v: f64) -> Result<(), Error> {
    let name = NAMES[i];
    if !v.is_finite() || !(v as f32).is_finite() {
        return Err(Error::NonFinite {
            what: format!("{} parameter `{name}` = {v}", kind.name()),
        });
    }
    let v32 = v as f32;
    match (kind, i) {
        (ActivationKind::Psoftplus, 0) if v32 == 0.0 => Err(Error::InvalidParameter {
            name: "alpha",
            value: v,
            reason: "PSoftplus computes softplus(αx)/α: α must be non-zero",
        }),
        (ActivationKind::Pssilu, 1) if v32.abs() >= 1.0 => Err(Error::InvalidParameter {
            name: "beta",
            value: v,
            reason: "PSSiLU divides by 1 − |β|: |β| must be < 1",
        }),
        (ActivationKind::PssiluFixed, 1) if !(v >= 0.0 && v32 < 1.0) => {
            Err(Error::InvalidParameter {
                name: "beta",
                value: v,
                reason: "fixed-β PSSiLU needs 0 ≤ β < 1",
            })
        }
        _ => Ok(()),
    }
}

/// Uniform access to the parameter slots of the parametric modules (0 = α, 1 = β).
pub(super) trait Slots<D: Backend> {
    fn slot_kind(&self) -> ActivationKind;
    fn tensor(&self, i: usize) -> Option<&Param<D>>;
    fn tensor_mut(&mut self, i: usize) -> Option<&mut Param<D>>;
    fn frozen_slots(&self) -> &[Option<f64>; 2];
    fn frozen_slots_mut(&mut self) -> &mut [Option<f64>; 2];
    /// Fixed-β PSSiLU's β.
    fn fixed_beta(&self) -> Option<f64> {
        None
    }
    fn set_fixed_beta(&mut self, _beta: f64) {}
}

/// Number of slots (learnable parameters plus fixed-β PSSiLU's β).
fn num_slots(kind: ActivationKind) -> usize {
    match kind {
        ActivationKind::PssiluFixed => 2,
        k => k.num_params(),
    }
}

fn slot_index(kind: ActivationKind, name: &str) -> Result<usize, Error> {
    NAMES[..num_slots(kind)]
        .iter()
        .position(|n| *n == name)
        .ok_or_else(|| unknown(kind, name))
}

fn current<D: Backend, A: Slots<D>>(a: &A, i: usize) -> f64 {
    if let Some(v) = a.frozen_slots()[i] {
        v
    } else if let Some(t) = a.tensor(i) {
        read(t)
    } else {
        a.fixed_beta().unwrap_or(0.0)
    }
}

pub(super) fn scalar_impl<D: Backend, A: Slots<D>>(a: &A) -> ScalarActivation {
    let n = num_slots(a.slot_kind());
    let alpha = if n > 0 { current(a, 0) } else { 0.0 };
    let beta = if n > 1 { current(a, 1) } else { 0.0 };
    ScalarActivation {
        kind: a.slot_kind(),
        alpha,
        beta,
    }
}

pub(super) fn forward_impl<D: Backend, A: Slots<D>, S: Shape, T: Tape<Elem, D>>(
    a: &A,
    x: Tensor<S, Elem, D, T>,
) -> Result<Tensor<S, Elem, D, T>, D::Err> {
    let (f, params) = pointwise_fn_impl(a);
    try_pointwise(x, f, params)
}

#[allow(clippy::type_complexity)]
pub(super) fn pointwise_fn_impl<D: Backend, A: Slots<D>>(
    a: &A,
) -> (PafFn, [Option<&Tensor<Rank1<1>, Elem, D>>; 2]) {
    let s = scalar_impl(a);
    let f = PafFn {
        kind: s.kind,
        alpha: s.alpha as f32,
        beta: s.beta as f32,
    };
    let frozen = a.frozen_slots();
    let p = |i: usize| {
        if frozen[i].is_some() {
            None
        } else {
            a.tensor(i)
        }
    };
    (f, [p(0), p(1)])
}

pub(super) fn parameters_impl<D: Backend, A: Slots<D>>(a: &A) -> Vec<(&'static str, f64)> {
    (0..num_slots(a.slot_kind()))
        .map(|i| (NAMES[i], current(a, i)))
        .collect()
}

fn write<D: Backend, A: Slots<D>>(a: &mut A, i: usize, v: f64) {
    if let Some(t) = a.tensor_mut(i) {
        t.copy_from(&[v as f32]);
    } else {
        a.set_fixed_beta(v);
    }
}

pub(super) fn set_parameter_impl<D: Backend, A: Slots<D>>(
    a: &mut A,
    name: &str,
    v: f64,
) -> Result<(), Error> {
    let i = slot_index(a.slot_kind(), name)?;
    check_value(a.slot_kind(), i, v)?;
    write(a, i, v);
    if a.frozen_slots()[i].is_some() {
        a.frozen_slots_mut()[i] = Some(v);
    }
    Ok(())
}

pub(super) fn freeze_impl<D: Backend, A: Slots<D>>(
    a: &mut A,
    name: &str,
    v: f64,
) -> Result<(), Error> {
    let i = slot_index(a.slot_kind(), name)?;
    check_value(a.slot_kind(), i, v)?;
    write(a, i, v);
    a.frozen_slots_mut()[i] = Some(v);
    Ok(())
}

pub(super) fn unfreeze_impl<D: Backend, A: Slots<D>>(a: &mut A, name: &str) -> Result<(), Error> {
    let i = slot_index(a.slot_kind(), name)?;
    a.frozen_slots_mut()[i] = None;
    Ok(())
}

pub(super) fn frozen_impl<D: Backend, A: Slots<D>>(a: &A) -> Vec<(&'static str, f64)> {
    let f = a.frozen_slots();
    (0..2).filter_map(|i| f[i].map(|v| (NAMES[i], v))).collect()
}

pub(super) fn restore_frozen_impl<D: Backend, A: Slots<D>>(a: &mut A) {
    let f = *a.frozen_slots();
    for (i, v) in f.iter().enumerate() {
        if let (Some(v), Some(t)) = (v, a.tensor_mut(i)) {
            t.copy_from(&[*v as f32]);
        }
    }
}

pub(super) fn validate_impl<D: Backend, A: Slots<D>>(a: &A) -> Result<(), Error> {
    for i in 0..num_slots(a.slot_kind()) {
        if let Some(t) = a.tensor(i) {
            check_value(a.slot_kind(), i, read(t))?;
        }
        if let Some(v) = a.frozen_slots()[i] {
            check_value(a.slot_kind(), i, v)?;
        }
    }
    if let Some(b) = a.fixed_beta() {
        check_value(a.slot_kind(), 1, b)?;
    }
    Ok(())
}

/// The `Activation` methods every `Slots` type shares, for inside an `impl Activation` block
/// (the parametric modules here, `AnyActivation`).
macro_rules! slots_activation_methods {
    () => {
        fn try_forward<S: Shape, T: Tape<Elem, D>>(
            &self,
            x: Tensor<S, Elem, D, T>,
        ) -> Result<Tensor<S, Elem, D, T>, D::Err> {
            forward_impl(self, x)
        }
        fn pointwise_fn(&self) -> BoundActivation<'_, D> {
            pointwise_fn_impl(self)
        }
        fn parameters(&self) -> Vec<(&'static str, f64)> {
            parameters_impl(self)
        }
        fn scalar(&self) -> ScalarActivation {
            scalar_impl(self)
        }
        fn set_parameter(&mut self, name: &str, value: f64) -> Result<(), Error> {
            set_parameter_impl(self, name, value)
        }
        fn freeze(&mut self, name: &str, value: f64) -> Result<(), Error> {
            freeze_impl(self, name, value)
        }
        fn unfreeze(&mut self, name: &str) -> Result<(), Error> {
            unfreeze_impl(self, name)
        }
        fn frozen(&self) -> Vec<(&'static str, f64)> {
            frozen_impl(self)
        }
        fn restore_frozen(&mut self) {
            restore_frozen_impl(self)
        }
        fn validate(&self) -> Result<(), Error> {
            validate_impl(self)
        }
    };
}
pub(super) use slots_activation_methods;

/// Implements `Activation` for a parametric module through its `Slots`.
macro_rules! activation_via_slots {
    ($name:ident, $kind:ident, $paper:literal) => {
        impl<D: Backend> Activation<D> for $name<D> {
            fn kind(&self) -> ActivationKind {
                ActivationKind::$kind
            }
            slots_activation_methods!();
        }

        impl<E: Dtype, D: Device<E>> BuildOnDevice<D, E> for $name<D, E>
        where
            Self: BuildModule<D, E>,
        {
            type Built = Self;
        }
    };
}

// ---------------------------------------------------------------------------------------------
// No parameters.

macro_rules! plain_activation {
    ($(#[$doc:meta])* $name:ident, $kind:ident, $paper:literal) => {
        $(#[$doc])*
        ///
        /// Zero-sized; the device parameter only fixes `D` for [`Activation<D>`] (type inference).
        pub struct $name<D>(PhantomData<fn() -> D>);

        impl<D> $name<D> {
            /// The activation (it has no parameters; `dev` only fixes the device type).
            pub fn new(_dev: &D) -> Self {
                $name(PhantomData)
            }
        }

        impl<D> Default for $name<D> {
            fn default() -> Self {
                $name(PhantomData)
            }
        }
        impl<D> Clone for $name<D> {
            fn clone(&self) -> Self {
                *self
            }
        }
        impl<D> Copy for $name<D> {}
        impl<D> PartialEq for $name<D> {
            fn eq(&self, _: &Self) -> bool {
                true
            }
        }
        impl<D> Eq for $name<D> {}
        impl<D> std::fmt::Debug for $name<D> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(stringify!($name))
            }
        }

        // Like dfdx's `ZeroSizedModule`, but `to_device` changes the device parameter
        // (`Relu<Cpu>` → `Relu<Cuda>`), so a converted model's activation matches its device.
        impl<E: Dtype, D: Device<E>> TensorCollection<E, D> for $name<D> {
            type To<E2: Dtype, D2: Device<E2>> = $name<D2>;
            fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
                visitor: &mut V,
            ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
                visitor.visit_fields((), |_| $name(PhantomData))
            }
        }
        impl<E: Dtype, D: Device<E>> BuildOnDevice<D, E> for $name<D> {
            type Built = $name<D>;
        }

        impl<D: Backend> Activation<D> for $name<D> {
            fn kind(&self) -> ActivationKind {
                ActivationKind::$kind
            }

            fn try_forward<S: Shape, T: Tape<Elem, D>>(
                &self,
                x: Tensor<S, Elem, D, T>,
            ) -> Result<Tensor<S, Elem, D, T>, D::Err> {
                let f = PafFn { kind: ActivationKind::$kind, alpha: 0.0, beta: 0.0 };
                try_pointwise(x, f, [None, None])
            }
            fn pointwise_fn(&self) -> (PafFn, [Option<&Tensor<Rank1<1>, Elem, D>>; 2]) {
                (PafFn { kind: ActivationKind::$kind, alpha: 0.0, beta: 0.0 }, [None, None])
            }
            fn parameters(&self) -> Vec<(&'static str, f64)> {
                Vec::new()
            }
            fn scalar(&self) -> ScalarActivation {
                ScalarActivation::initial(ActivationKind::$kind)
            }
            fn set_parameter(&mut self, name: &str, _value: f64) -> Result<(), Error> {
                Err(unknown(ActivationKind::$kind, name))
            }
            fn freeze(&mut self, name: &str, _value: f64) -> Result<(), Error> {
                Err(unknown(ActivationKind::$kind, name))
            }
            fn unfreeze(&mut self, name: &str) -> Result<(), Error> {
                Err(unknown(ActivationKind::$kind, name))
            }
            fn frozen(&self) -> Vec<(&'static str, f64)> {
                Vec::new()
            }
            fn restore_frozen(&mut self) {}
            fn validate(&self) -> Result<(), Error> {
                Ok(())
            }
        }
    };
}

plain_activation!(
    /// ReLU, `max(0, x)` (gradient 0 at x = 0, as torch). docs/reproduction.md §1.2.
    Relu,
    Relu,
    "ReLU"
);
plain_activation!(
    /// ELU with α_ELU = 1: x for x > 0, eˣ − 1 otherwise. docs/reproduction.md §1.2.
    Elu,
    Elu,
    "ELU"
);
plain_activation!(
    /// Softplus, `log(1 + eˣ)`, computed stably as `max(x, 0) + log1p(e^{−|x|})`.
    /// docs/reproduction.md §1.2.
    Softplus,
    Softplus,
    "Softplus"
);
plain_activation!(
    /// SiLU, `x·σ(x)`. docs/reproduction.md §1.2.
    Silu,
    Silu,
    "SiLU"
);

// ---------------------------------------------------------------------------------------------
// One learnable α.

macro_rules! alpha_activation {
    ($(#[$doc:meta])* $name:ident, $kind:ident, $paper:literal, alpha0 = $a0:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name<D: Storage<E>, E: Dtype = Elem> {
            /// Raw α, shape `[1]` (state-dict name `"alpha"`).
            pub alpha: Param<D, E>,
            frozen: [Option<f64>; 2],
        }

        impl<D: Backend> $name<D> {
            /// The paper's initial α.
            pub const ALPHA_INIT: f64 = $a0;

            /// The activation at the paper's initial α = `ALPHA_INIT`.
            pub fn new(dev: &D) -> Self {
                $name { alpha: dev.tensor([$a0 as Elem]), frozen: [None; 2] }
            }

            /// The activation with raw α = `alpha` (`Err` if invalid: non-finite, or 0 for
            /// PSoftplus).
            pub fn with_alpha(dev: &D, alpha: f64) -> Result<Self, Error> {
                let mut a = Self::new(dev);
                set_parameter_impl(&mut a, "alpha", alpha)?;
                Ok(a)
            }
        }

        impl<E: Dtype, D: Device<E>> TensorCollection<E, D> for $name<D, E> {
            type To<E2: Dtype, D2: Device<E2>> = $name<D2, E2>;

            fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
                visitor: &mut V,
            ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
                visitor.visit_fields(
                    Self::tensor(
                        "alpha",
                        |p| &p.alpha,
                        |p| &mut p.alpha,
                        TensorOptions::reset_with(|t| {
                            t.copy_from(&[E::from_f64($a0).unwrap()]);
                            Ok(())
                        }),
                    ),
                    |alpha| $name { alpha, frozen: [None; 2] },
                )
            }
        }

        impl<D: Backend> Slots<D> for $name<D> {
            fn slot_kind(&self) -> ActivationKind {
                ActivationKind::$kind
            }
            fn tensor(&self, i: usize) -> Option<&Param<D>> {
                (i == 0).then_some(&self.alpha)
            }
            fn tensor_mut(&mut self, i: usize) -> Option<&mut Param<D>> {
                (i == 0).then_some(&mut self.alpha)
            }
            fn frozen_slots(&self) -> &[Option<f64>; 2] {
                &self.frozen
            }
            fn frozen_slots_mut(&mut self) -> &mut [Option<f64>; 2] {
                &mut self.frozen
            }
        }

        activation_via_slots!($name, $kind, $paper);
    };
}

alpha_activation!(
    /// PReLU with one shared α: `(x>0)·x + (x<0)·α·x` (0 and zero gradients at x = 0); α₀ = 0,
    /// so it starts as ReLU. α < 0 gives positive outputs on negative inputs.
    /// docs/reproduction.md §1.2.
    Prelu,
    Prelu,
    "PReLU",
    alpha0 = 0.0
);
alpha_activation!(
    /// PELU: x for x > 0, α(eˣ − 1) for x ≤ 0; α₀ = 1 (starts as ELU). docs/reproduction.md §1.2.
    Pelu,
    Pelu,
    "PELU",
    alpha0 = 1.0
);
alpha_activation!(
    /// PReLU+ (code `pprelu`): α·x for x > 0, 0 otherwise; α₀ = 1 (starts as ReLU).
    /// docs/reproduction.md §1.2.
    PreluPlus,
    Pprelu,
    "PReLU+",
    alpha0 = 1.0
);
alpha_activation!(
    /// ReBLU (code `pblu`): 0 for x ≤ 0, α(√(x²+1) − 1) + x for x > 0; α₀ = 0 (starts as
    /// ReLU). docs/reproduction.md §1.2.
    Reblu,
    Pblu,
    "ReBLU",
    alpha0 = 0.0
);
alpha_activation!(
    /// PSiLU: x·σ(|α|·x); α₀ = 1 (starts as SiLU). docs/reproduction.md §1.2.
    Psilu,
    Psilu,
    "PSiLU",
    alpha0 = 1.0
);
alpha_activation!(
    /// PSoftplus: softplus(α·x)/α with the **raw** α (no abs, as the original code; the 2023
    /// re-upload switched to |α|, docs/reproduction.md §8); α₀ = 1 (starts as Softplus). α must
    /// stay ≠ 0. docs/reproduction.md §1.2, §7.
    Psoftplus,
    Psoftplus,
    "PSoftplus",
    alpha0 = 1.0
);

// ---------------------------------------------------------------------------------------------
// PSSiLU with a fixed β.

/// PSSiLU with a fixed β hyperparameter (code `pssilu`): x·(σ(|α|x) − β)/(1 − β), learnable α
/// (α₀ = 1, used through |α|), 0 ≤ β < 1 fixed. docs/reproduction.md §1.2.
///
/// β defaults to 0.3 ([`PSSILU_FIXED_BETA_DEFAULT`], the `train.py --pssilu-beta` default) when
/// built through dfdx ([`BuildModule`]); the official code also has the class default 0.1
/// ([`PSSILU_FIXED_BETA_CLASS_DEFAULT`]) and the `eval.py` default 0.42
/// ([`PSSILU_FIXED_BETA_EVAL_DEFAULT`]). β is not a tensor (the PyTorch module stores a Python
/// float, so it is not in the state dict); it is reported by [`Activation::parameters`] as
/// `"beta"` and can be changed with `set_parameter("beta", v)`.
#[derive(Debug, Clone)]
pub struct PssiluFixed<D: Storage<E>, E: Dtype = Elem> {
    /// Raw α, shape `[1]` (state-dict name `"alpha"`).
    pub alpha: Param<D, E>,
    beta: f64,
    frozen: [Option<f64>; 2],
}

impl<D: Backend> PssiluFixed<D> {
    /// The paper's initial α.
    pub const ALPHA_INIT: f64 = 1.0;

    /// α₀ = 1 and the given fixed β (`Err(InvalidParameter)` unless 0 ≤ β < 1).
    pub fn new(dev: &D, beta: f64) -> Result<Self, Error> {
        Self::with_params(dev, 1.0, beta)
    }

    /// The given raw α and fixed β (`Err` if α is non-finite or β is not in [0, 1)).
    pub fn with_params(dev: &D, alpha: f64, beta: f64) -> Result<Self, Error> {
        check_value(ActivationKind::PssiluFixed, 0, alpha)?;
        check_value(ActivationKind::PssiluFixed, 1, beta)?;
        Ok(PssiluFixed {
            alpha: dev.tensor([alpha as Elem]),
            beta,
            frozen: [None; 2],
        })
    }

    /// The fixed β.
    pub fn beta(&self) -> f64 {
        self.beta
    }
}

impl<E: Dtype, D: Device<E>> TensorCollection<E, D> for PssiluFixed<D, E> {
    type To<E2: Dtype, D2: Device<E2>> = PssiluFixed<D2, E2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            Self::tensor(
                "alpha",
                |p| &p.alpha,
                |p| &mut p.alpha,
                TensorOptions::reset_to_ones(),
            ),
            |alpha| PssiluFixed {
                alpha,
                beta: PSSILU_FIXED_BETA_DEFAULT,
                frozen: [None; 2],
            },
        )
    }
}

impl<D: Backend> Slots<D> for PssiluFixed<D> {
    fn slot_kind(&self) -> ActivationKind {
        ActivationKind::PssiluFixed
    }
    fn tensor(&self, i: usize) -> Option<&Param<D>> {
        (i == 0).then_some(&self.alpha)
    }
    fn tensor_mut(&mut self, i: usize) -> Option<&mut Param<D>> {
        (i == 0).then_some(&mut self.alpha)
    }
    fn frozen_slots(&self) -> &[Option<f64>; 2] {
        &self.frozen
    }
    fn frozen_slots_mut(&mut self) -> &mut [Option<f64>; 2] {
        &mut self.frozen
    }
    fn fixed_beta(&self) -> Option<f64> {
        Some(self.beta)
    }
    fn set_fixed_beta(&mut self, beta: f64) {
        self.beta = beta;
    }
}

activation_via_slots!(PssiluFixed, PssiluFixed, "PSSiLU-fixed-β");

// ---------------------------------------------------------------------------------------------
// PSSiLU with learnable α and β.

/// PSSiLU (code `pssilu2`, the paper's main PAF): x·(σ(|α|x) − |β|)/(1 − |β|), learnable α₀ = 1
/// and β₀ = 1e-8 (not 0, so d|β|/dβ = sign(β) ≠ 0). docs/reproduction.md §1.2, §7.
///
/// There is no clamp keeping |β| < 1 in the forward pass (as in the original); `set_parameter`,
/// `freeze` and `validate` reject |β| ≥ 1.
#[derive(Debug, Clone)]
pub struct Pssilu<D: Storage<E>, E: Dtype = Elem> {
    /// Raw α, shape `[1]` (state-dict name `"alpha"`).
    pub alpha: Param<D, E>,
    /// Raw β, shape `[1]` (state-dict name `"beta"`).
    pub beta: Param<D, E>,
    frozen: [Option<f64>; 2],
}

impl<D: Backend> Pssilu<D> {
    /// The paper's initial α.
    pub const ALPHA_INIT: f64 = 1.0;
    /// The paper's initial β.
    pub const BETA_INIT: f64 = 1e-8;

    /// The paper's init: α₀ = 1, β₀ = 1e-8.
    pub fn new(dev: &D) -> Self {
        Pssilu {
            alpha: dev.tensor([Self::ALPHA_INIT as Elem]),
            beta: dev.tensor([Self::BETA_INIT as Elem]),
            frozen: [None; 2],
        }
    }

    /// Raw α = `alpha`, β = β₀ = 1e-8 (`Err` if α is non-finite).
    pub fn with_alpha(dev: &D, alpha: f64) -> Result<Self, Error> {
        Self::with_params(dev, alpha, Self::BETA_INIT)
    }

    /// Raw α and β (`Err` if non-finite or |β| ≥ 1).
    pub fn with_params(dev: &D, alpha: f64, beta: f64) -> Result<Self, Error> {
        let mut a = Self::new(dev);
        set_parameter_impl(&mut a, "alpha", alpha)?;
        set_parameter_impl(&mut a, "beta", beta)?;
        Ok(a)
    }
}

impl<E: Dtype, D: Device<E>> TensorCollection<E, D> for Pssilu<D, E> {
    type To<E2: Dtype, D2: Device<E2>> = Pssilu<D2, E2>;

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
                        t.copy_from(&[E::from_f64(1.0).unwrap()]);
                        Ok(())
                    }),
                ),
                Self::tensor(
                    "beta",
                    |p| &p.beta,
                    |p| &mut p.beta,
                    TensorOptions::reset_with(|t| {
                        t.copy_from(&[E::from_f64(1e-8).unwrap()]);
                        Ok(())
                    }),
                ),
            ),
            |(alpha, beta)| Pssilu {
                alpha,
                beta,
                frozen: [None; 2],
            },
        )
    }
}

impl<D: Backend> Slots<D> for Pssilu<D> {
    fn slot_kind(&self) -> ActivationKind {
        ActivationKind::Pssilu
    }
    fn tensor(&self, i: usize) -> Option<&Param<D>> {
        match i {
            0 => Some(&self.alpha),
            1 => Some(&self.beta),
            _ => None,
        }
    }
    fn tensor_mut(&mut self, i: usize) -> Option<&mut Param<D>> {
        match i {
            0 => Some(&mut self.alpha),
            1 => Some(&mut self.beta),
            _ => None,
        }
    }
    fn frozen_slots(&self) -> &[Option<f64>; 2] {
        &self.frozen
    }
    fn frozen_slots_mut(&mut self) -> &mut [Option<f64>; 2] {
        &mut self.frozen
    }
}

activation_via_slots!(Pssilu, Pssilu, "PSSiLU");

#[cfg(test)]
mod tests {
    use super::*;
    use dfdx::nn::DeviceBuildExt;
    use dfdx::tensor::Cpu;

    #[test]
    fn build_module_gives_paper_init() {
        let dev = Cpu::default();
        let p = dev.build_module::<Pssilu<Cpu>, f32>();
        assert_eq!(p.alpha.as_vec(), vec![1.0]);
        assert_eq!(p.beta.as_vec(), vec![1e-8]);
        let p = Prelu::<Cpu>::build(&dev);
        assert_eq!(p.alpha.as_vec(), vec![0.0]);
        let p = dev.build_module::<Reblu<Cpu>, f32>();
        assert_eq!(p.alpha.as_vec(), vec![0.0]);
        for a in [
            dev.build_module::<Pelu<Cpu>, f32>().alpha,
            dev.build_module::<PreluPlus<Cpu>, f32>().alpha,
            dev.build_module::<Psilu<Cpu>, f32>().alpha,
            dev.build_module::<Psoftplus<Cpu>, f32>().alpha,
            dev.build_module::<PssiluFixed<Cpu>, f32>().alpha,
        ] {
            assert_eq!(a.as_vec(), vec![1.0]);
        }
        assert_eq!(dev.build_module::<PssiluFixed<Cpu>, f32>().beta(), 0.3);
        let _relu: Relu<Cpu> = dev.build_module::<Relu<Cpu>, f32>();
    }

    #[test]
    fn slot_names() {
        assert_eq!(slot_index(ActivationKind::Pssilu, "beta").unwrap(), 1);
        assert_eq!(slot_index(ActivationKind::PssiluFixed, "beta").unwrap(), 1);
        assert!(slot_index(ActivationKind::Prelu, "beta").is_err());
        assert!(slot_index(ActivationKind::Relu, "alpha").is_err());
    }
}
