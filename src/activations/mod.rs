//! The activation functions of docs/reproduction.md §1.2 — ReLU, ELU, Softplus, SiLU and the
//! parametric ones (PReLU, PELU, PReLU+, ReBLU, PSiLU, PSoftplus, PSSiLU with fixed β, PSSiLU with
//! learnable α and β) — with the official code's exact formulas, initial values and |α|/|β|
//! conventions.
//!
//! As in the paper (§1.1), **one activation instance is shared by the whole network**: a model
//! owns it once and applies it at every site, so a PAF adds 1 or 2 parameters in total and the
//! gradient of α (β) is the sum over all sites. Any parameter can be **frozen** at a chosen value
//! (§1.4, the shape ablation's "fix-act"): it then gets no gradient and
//! [`Activation::restore_frozen`] pins it after an optimizer step.
//!
//! Each activation is a fused point-wise op ([`crate::ops::pointwise`]): one pass forward, one
//! pass backward, numerically stable for |x| up to 1e4.
//!
//! Layout: `functions` holds the scalar math (f32 kernels and f64 analysis share it),
//! `modules` the twelve module structs ([`Relu`] ... [`Pssilu`]), `any` [`AnyActivation`] (any of
//! them, chosen at run time: one compiled model for all twelve), [`shape`] the shape analysis
//! of §1.3. Everything is re-exported here and in [`prelude`].

mod any;
mod functions;
mod modules;
pub mod shape;
mod vexp;

pub use any::AnyActivation;
pub use functions::PafFn;
pub use modules::{
    Elu, Pelu, Prelu, PreluPlus, Psilu, Psoftplus, Pssilu, PssiluFixed, Reblu, Relu, Silu,
    Softplus, PSSILU_FIXED_BETA_CLASS_DEFAULT, PSSILU_FIXED_BETA_DEFAULT,
    PSSILU_FIXED_BETA_EVAL_DEFAULT,
};

/// Everything needed to use the activations: the trait, the kinds, the twelve structs.
pub mod prelude {
    pub use super::shape::{properties_of, ShapeGrid, ShapeProperties};
    pub use super::{
        Activation, ActivationKind, AnyActivation, Elu, Pelu, Prelu, PreluPlus, Psilu, Psoftplus,
        Pssilu, PssiluFixed, Reblu, Relu, ScalarActivation, Silu, Softplus,
    };
}

use dfdx::nn::TensorCollection;
use dfdx::shapes::{Rank1, Shape};
use dfdx::tensor::{Tape, Tensor};

use crate::ops::{Backend, Elem};
use crate::Error;

/// Which of the paper's twelve activations (serde name = the official code's name, see
/// [`ActivationKind::code_name`]: note `"pssilu"` is the **fixed-β** PSSiLU and `"pssilu2"` the
/// paper's PSSiLU with learnable β, as in the code's `--activation` flag,
/// docs/reproduction.md §1.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActivationKind {
    Relu,
    Elu,
    Softplus,
    Silu,
    Prelu,
    Pelu,
    /// PReLU+ (`pprelu` in the code).
    Pprelu,
    /// ReBLU (`pblu` in the code).
    Pblu,
    Psilu,
    Psoftplus,
    /// PSSiLU with a fixed β hyperparameter (`pssilu`).
    #[serde(rename = "pssilu")]
    PssiluFixed,
    /// PSSiLU with learnable α and β (`pssilu2`), the paper's main PAF.
    #[serde(rename = "pssilu2")]
    Pssilu,
}

impl ActivationKind {
    /// All twelve, in the order of docs/reproduction.md §1.2.
    pub const ALL: [ActivationKind; 12] = [
        ActivationKind::Relu,
        ActivationKind::Elu,
        ActivationKind::Softplus,
        ActivationKind::Silu,
        ActivationKind::Prelu,
        ActivationKind::Pelu,
        ActivationKind::Pprelu,
        ActivationKind::Pblu,
        ActivationKind::Psilu,
        ActivationKind::Psoftplus,
        ActivationKind::PssiluFixed,
        ActivationKind::Pssilu,
    ];

    /// The paper's name ("PReLU+", "ReBLU", "PSSiLU", ...); fixed-β PSSiLU is "PSSiLU-fixed-β".
    pub fn name(self) -> &'static str {
        use ActivationKind::*;
        match self {
            Relu => "ReLU",
            Elu => "ELU",
            Softplus => "Softplus",
            Silu => "SiLU",
            Prelu => "PReLU",
            Pelu => "PELU",
            Pprelu => "PReLU+",
            Pblu => "ReBLU",
            Psilu => "PSiLU",
            Psoftplus => "PSoftplus",
            PssiluFixed => "PSSiLU-fixed-β",
            Pssilu => "PSSiLU",
        }
    }

    /// The official code's name (`models/activations.py`, docs/reproduction.md §1.2): `"pprelu"`,
    /// `"pblu"`, `"pssilu"` (fixed β), `"pssilu2"` (learnable β), ... It is also the serde name.
    pub fn code_name(self) -> &'static str {
        use ActivationKind::*;
        match self {
            Relu => "relu",
            Elu => "elu",
            Softplus => "softplus",
            Silu => "silu",
            Prelu => "prelu",
            Pelu => "pelu",
            Pprelu => "pprelu",
            Pblu => "pblu",
            Psilu => "psilu",
            Psoftplus => "psoftplus",
            PssiluFixed => "pssilu",
            Pssilu => "pssilu2",
        }
    }

    /// The kind for an official code name (the inverse of [`ActivationKind::code_name`]).
    pub fn from_code_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.code_name() == name)
    }

    /// Number of **learnable** scalar parameters: 0 (ReLU, ELU, Softplus, SiLU), 1 (α; also
    /// fixed-β PSSiLU, whose β is a hyperparameter) or 2 (PSSiLU: α, β). docs/reproduction.md §1.1.
    pub fn num_params(self) -> usize {
        use ActivationKind::*;
        match self {
            Relu | Elu | Softplus | Silu => 0,
            Prelu | Pelu | Pprelu | Pblu | Psilu | Psoftplus | PssiluFixed => 1,
            Pssilu => 2,
        }
    }

    /// Names of the learnable parameters (PyTorch state-dict names): `[]`, `["alpha"]` or
    /// `["alpha", "beta"]`.
    pub fn param_names(self) -> &'static [&'static str] {
        match self.num_params() {
            0 => &[],
            1 => &["alpha"],
            _ => &["alpha", "beta"],
        }
    }

    /// The paper's initial values of (α, β) (docs/reproduction.md §1.2): α₀ = 0 for PReLU and
    /// ReBLU, 1 for the other PAFs; β₀ = 1e-8 for PSSiLU and the train.py default 0.3 for fixed-β
    /// PSSiLU; 0 where there is no such parameter.
    pub fn initial_params(self) -> (f64, f64) {
        use ActivationKind::*;
        match self {
            Relu | Elu | Softplus | Silu => (0.0, 0.0),
            Prelu | Pblu => (0.0, 0.0),
            Pelu | Pprelu | Psilu | Psoftplus => (1.0, 0.0),
            PssiluFixed => (1.0, PSSILU_FIXED_BETA_DEFAULT),
            Pssilu => (1.0, 1e-8),
        }
    }
}

impl std::fmt::Display for ActivationKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// An activation with its current parameters bound: the element-wise function and the parameter
/// tensors that receive its gradient (`None` for absent or frozen parameters), as
/// [`Activation::pointwise_fn`] returns it. The models compute it once per forward pass and hand
/// it to every block, so the block code is not generic over the activation type (one compiled
/// copy serves all twelve).
pub type BoundActivation<'a, D> = (PafFn, [Option<&'a Tensor<Rank1<1>, Elem, D>>; 2]);

/// A (possibly parametric) activation function shared by a whole network.
pub trait Activation<D: Backend>: TensorCollection<Elem, D> + Clone + std::fmt::Debug {
    /// Which activation this is.
    fn kind(&self) -> ActivationKind;

    /// The paper's name ("PSSiLU", "PReLU+", ...).
    fn name(&self) -> &'static str {
        self.kind().name()
    }

    /// Makes this activation `kind`. A concrete type ([`Pssilu`], ...) is its own kind only: `Ok`
    /// (nothing changes) for it, [`Error::WrongActivation`] otherwise. [`AnyActivation`] becomes
    /// the paper's initial `kind`.
    fn try_set_kind(&mut self, kind: ActivationKind) -> Result<(), Error> {
        if kind == self.kind() {
            Ok(())
        } else {
            Err(Error::WrongActivation {
                expected: kind.name(),
                found: self.name(),
            })
        }
    }

    /// Names of this module's tensors the current kind does not use (they get no gradient; the
    /// trainer neither updates nor saves them): empty for the concrete types, see
    /// [`AnyActivation`].
    fn unused_tensors(&self) -> &'static [&'static str] {
        &[]
    }

    /// Applies the activation element-wise; learnable, non-frozen parameters get their gradient
    /// (summed over every element) on `x`'s tape.
    fn try_forward<S: Shape, T: Tape<Elem, D>>(
        &self,
        x: Tensor<S, Elem, D, T>,
    ) -> Result<Tensor<S, Elem, D, T>, D::Err>;

    /// The element-wise function with the current parameters bound, and the parameter tensors
    /// that receive its gradient (`None` for absent or frozen parameters): what
    /// [`Activation::try_forward`] applies, for ops that fuse the activation into another
    /// (batch norm + activation in the models).
    fn pointwise_fn(&self) -> BoundActivation<'_, D>;

    /// Infallible [`Activation::try_forward`].
    fn forward<S: Shape, T: Tape<Elem, D>>(
        &self,
        x: Tensor<S, Elem, D, T>,
    ) -> Tensor<S, Elem, D, T> {
        self.try_forward(x).unwrap()
    }

    /// Current values of the scalar parameters as `(name, value)`, raw (before any |·|):
    /// `[]` for ReLU, `[("alpha", 1.0)]` for PReLU+, `[("alpha", 1.0), ("beta", 1e-8)]` for
    /// PSSiLU. Fixed hyperparameters (fixed-β PSSiLU's β) are listed too.
    fn parameters(&self) -> Vec<(&'static str, f64)>;

    /// The scalar function with the current parameters, in f64, for shape analysis
    /// ([`shape::ShapeProperties`]) and plots.
    fn scalar(&self) -> ScalarActivation;

    /// The current value of one parameter (as in [`Activation::parameters`]); `Err` for an
    /// unknown name.
    fn parameter(&self, name: &str) -> Result<f64, Error> {
        self.parameters()
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
            .ok_or_else(|| Error::UnknownParameter {
                name: name.to_string(),
                activation: self.name(),
            })
    }

    /// Sets a learnable parameter (`"alpha"` / `"beta"`) to `value`; `Err` for an unknown name
    /// or an invalid value (e.g. |β| ≥ 1 for PSSiLU, a non-finite value).
    fn set_parameter(&mut self, name: &str, value: f64) -> Result<(), Error>;

    /// Freezes a learnable parameter at `value` (`--fix-act --fix-act-val`): from now on it gets
    /// no gradient and [`Activation::restore_frozen`] keeps it at `value`.
    fn freeze(&mut self, name: &str, value: f64) -> Result<(), Error>;

    /// The frozen parameters and their values.
    fn frozen(&self) -> Vec<(&'static str, f64)>;

    /// Unfreezes a parameter (a no-op if it was not frozen); `Err` for an unknown name.
    fn unfreeze(&mut self, name: &str) -> Result<(), Error>;

    /// Writes the frozen values back into the parameter tensors (called after every optimizer
    /// step, so frozen parameters never move, weight decay and momentum included).
    fn restore_frozen(&mut self);

    /// Checks that every parameter is finite and in its valid range.
    fn validate(&self) -> Result<(), Error>;
}

/// The scalar function of an activation with bound parameters, in f64: value, first and second
/// derivatives in x, computed from closed forms (not finite differences).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ScalarActivation {
    pub kind: ActivationKind,
    /// Raw α (0 when the activation has none).
    pub alpha: f64,
    /// Raw β (0 when the activation has none).
    pub beta: f64,
}

impl ScalarActivation {
    /// The activation at the paper's initial parameters (docs/reproduction.md §1.2); fixed-β PSSiLU
    /// gets β = 0.3, the `train.py --pssilu-beta` default.
    pub fn initial(kind: ActivationKind) -> Self {
        let (alpha, beta) = kind.initial_params();
        ScalarActivation { kind, alpha, beta }
    }

    /// The activation with the given raw parameters (ignored where the activation has none).
    pub fn new(kind: ActivationKind, alpha: f64, beta: f64) -> Self {
        ScalarActivation { kind, alpha, beta }
    }

    /// `f(x)`.
    pub fn value(&self, x: f64) -> f64 {
        functions::value(self.kind, self.alpha, self.beta, x)
    }

    /// `f'(x)` (closed form). At a kink: the branch selected by the code's mask (ReLU′(0) = 0,
    /// PReLU′(0) = 0, PReLU+′(0) = 0, ReBLU′(0) = 0, PELU′(0) = α, ELU′(0) = 1).
    pub fn derivative(&self, x: f64) -> f64 {
        functions::derivatives(self.kind, self.alpha, self.beta, x).0
    }

    /// `f''(x)` (closed form). At a kink: the branch selected by the code's mask, Dirac deltas
    /// ignored (ReLU″(0) = 0, ELU″(0) = 1, PELU″(0) = α, ReBLU″(0) = 0).
    pub fn second_derivative(&self, x: f64) -> f64 {
        functions::second_derivative(self.kind, self.alpha, self.beta, x)
    }

    /// `[∂f/∂α, ∂f/∂β]` with respect to the **raw** parameters (through |α|, |β| with
    /// sign(·), sign(0) = 0), `0` for absent parameters and for fixed-β PSSiLU's β.
    pub fn parameter_derivatives(&self, x: f64) -> [f64; 2] {
        functions::derivatives(self.kind, self.alpha, self.beta, x).1
    }

    /// The paper's name ([`ActivationKind::name`]).
    pub fn name(&self) -> &'static str {
        self.kind.name()
    }
}
