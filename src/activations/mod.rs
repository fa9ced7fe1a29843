//! The activation functions of PAPER.md §1.2 — ReLU, ELU, Softplus, SiLU and the parametric
//! ones (PReLU, PELU, PReLU+, ReBLU, PSiLU, PSoftplus, PSSiLU with fixed β, PSSiLU with learnable
//! α and β) — with the official code's exact formulas, initial values and |α|/|β| conventions.
//!
//! As in the paper (§1.1), **one activation instance is shared by the whole network**: a model
//! owns it once and applies it at every site, so a PAF adds 1 or 2 parameters in total and the
//! gradient of α (β) is the sum over all sites. Any parameter can be **frozen** at a chosen value
//! (§1.4, the shape ablation's "fix-act"): it then gets no gradient and
//! [`Activation::restore_frozen`] pins it after an optimizer step.
//!
//! Each activation is a fused point-wise op ([`crate::ops::pointwise`]): one pass forward, one
//! pass backward, numerically stable for |x| up to 1e4.

pub mod shape;

use dfdx::nn::TensorCollection;
use dfdx::shapes::Shape;
use dfdx::tensor::{Tape, Tensor};

use crate::ops::{Backend, Elem};
use crate::Error;

/// Which of the paper's twelve activations (serde name = the official code's name).
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
    PssiluFixed,
    /// PSSiLU with learnable α and β (`pssilu2`), the paper's main PAF.
    Pssilu,
}

/// A (possibly parametric) activation function shared by a whole network.
pub trait Activation<D: Backend>: TensorCollection<Elem, D> + Clone + std::fmt::Debug {
    /// The paper's name ("PSSiLU", "PReLU+", ...).
    const NAME: &'static str;
    /// Which activation this is.
    const KIND: ActivationKind;

    /// Applies the activation element-wise; learnable, non-frozen parameters get their gradient
    /// (summed over every element) on `x`'s tape.
    fn try_forward<S: Shape, T: Tape<Elem, D>>(
        &self,
        x: Tensor<S, Elem, D, T>,
    ) -> Result<Tensor<S, Elem, D, T>, D::Err>;

    /// Infallible [`Activation::try_forward`].
    fn forward<S: Shape, T: Tape<Elem, D>>(&self, x: Tensor<S, Elem, D, T>) -> Tensor<S, Elem, D, T> {
        self.try_forward(x).unwrap()
    }

    /// Current values of the scalar parameters as `(name, value)`, raw (before any |·|):
    /// `[]` for ReLU, `[("alpha", 1.0)]` for PReLU+, `[("alpha", 1.0), ("beta", 1e-8)]` for
    /// PSSiLU. Fixed hyperparameters (fixed-β PSSiLU's β) are listed too.
    fn parameters(&self) -> Vec<(&'static str, f64)>;

    /// The scalar function with the current parameters, in f64, for shape analysis
    /// ([`shape::ShapeProperties`]) and plots.
    fn scalar(&self) -> ScalarActivation;

    /// Sets a learnable parameter (`"alpha"` / `"beta"`) to `value`; `Err` for an unknown name
    /// or an invalid value (e.g. |β| ≥ 1 for PSSiLU, a non-finite value).
    fn set_parameter(&mut self, name: &str, value: f64) -> Result<(), Error>;

    /// Freezes a learnable parameter at `value` (`--fix-act --fix-act-val`): from now on it gets
    /// no gradient and [`Activation::restore_frozen`] keeps it at `value`.
    fn freeze(&mut self, name: &str, value: f64) -> Result<(), Error>;

    /// The frozen parameters and their values.
    fn frozen(&self) -> Vec<(&'static str, f64)>;

    /// Writes the frozen values back into the parameter tensors (called after every optimizer
    /// step, so frozen parameters never move, weight decay and momentum included).
    fn restore_frozen(&mut self);

    /// Checks that every parameter is finite and in its valid range.
    fn validate(&self) -> Result<(), Error>;
}

/// The scalar function of an activation with bound parameters, in f64: value, first and second
/// derivatives in x, computed from closed forms (not finite differences).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScalarActivation {
    pub kind: ActivationKind,
    /// Raw α (0 when the activation has none).
    pub alpha: f64,
    /// Raw β (0 when the activation has none).
    pub beta: f64,
}
