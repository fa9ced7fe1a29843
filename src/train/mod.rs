//! Training utilities (PAPER.md §3.1, §1.4): the paper's SGD (Nesterov momentum 0.9, weight
//! decay 5e-4 on every parameter, α and β included, one parameter group), the per-iteration
//! cosine schedule, and an optimizer step that keeps frozen activation parameters pinned
//! (`--fix-act`: in PyTorch they have `requires_grad=False` and never move).

use dfdx::optim::{Momentum, Optimizer, Sgd, SgdConfig, WeightDecay};
use dfdx::tensor::Gradients;

use crate::activations::Activation;
use crate::models::Classifier;
use crate::ops::{Backend, Elem};
use crate::Error;

/// SGD hyperparameters (PAPER.md §3.1 defaults).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SgdSettings {
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    pub nesterov: bool,
}

impl Default for SgdSettings {
    fn default() -> Self {
        Self {
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 5e-4,
            nesterov: true,
        }
    }
}

impl SgdSettings {
    /// Checks the ranges (lr > 0, 0 ≤ momentum < 1, weight decay ≥ 0, all finite).
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |name, value, reason| {
            Err(Error::InvalidParameter {
                name,
                value,
                reason,
            })
        };
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("lr", self.lr, "must be finite and > 0");
        }
        if !(self.momentum.is_finite() && (0.0..1.0).contains(&self.momentum)) {
            return bad("momentum", self.momentum, "must be in [0, 1)");
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad("weight_decay", self.weight_decay, "must be finite and >= 0");
        }
        Ok(())
    }
}

/// `lr(t) = lr_min + (lr_max − lr_min)·(1 + cos(π·t/T))/2`: PyTorch's `CosineAnnealingLR`
/// closed form, stepped every iteration (PAPER.md §7; `lr_min` = 0.001 in the paper).
pub fn cosine_lr(t: usize, total: usize, lr_max: f64, lr_min: f64) -> f64 {
    let frac = if total == 0 {
        1.0
    } else {
        (t.min(total) as f64) / total as f64
    };
    lr_min + 0.5 * (lr_max - lr_min) * (1.0 + (std::f64::consts::PI * frac).cos())
}

/// The paper's SGD over a whole classifier, keeping frozen activation parameters pinned.
pub struct PafSgd<M, D: Backend> {
    inner: Sgd<M, Elem, D>,
}

impl<M: Classifier<D>, D: Backend> PafSgd<M, D> {
    /// A new optimizer for `model` with `settings` (validated).
    pub fn new(model: &M, settings: SgdSettings) -> Result<Self, Error> {
        settings.validate()?;
        let m = settings.momentum;
        let momentum = if m == 0.0 {
            None
        } else if settings.nesterov {
            Some(Momentum::Nesterov(m))
        } else {
            Some(Momentum::Classic(m))
        };
        let weight_decay =
            (settings.weight_decay > 0.0).then_some(WeightDecay::L2(settings.weight_decay));
        Ok(Self {
            inner: Sgd::new(
                model,
                SgdConfig {
                    lr: settings.lr,
                    momentum,
                    weight_decay,
                },
            ),
        })
    }

    /// The current learning rate.
    pub fn lr(&self) -> f64 {
        self.inner.cfg.lr
    }

    /// Sets the learning rate (per-iteration schedules).
    pub fn set_lr(&mut self, lr: f64) {
        self.inner.cfg.lr = lr;
    }

    /// One SGD step on every parameter with a gradient in `grads`, then restores frozen
    /// activation parameters. Parameters without a gradient are left unchanged.
    pub fn step(&mut self, model: &mut M, grads: &Gradients<Elem, D>) -> Result<(), Error> {
        match self.inner.update(model, grads) {
            Ok(()) | Err(dfdx::optim::OptimizerUpdateError::UnusedParams(_)) => {}
            Err(dfdx::optim::OptimizerUpdateError::DeviceError(e)) => {
                return Err(Error::Device(format!("{e:?}")))
            }
        }
        model.activation_mut().restore_frozen();
        model.activation().validate()
    }
}
