//! The paper's optimisation (docs/reproduction.md §3.1, §3.6, §1.4):
//! PyTorch's `torch.optim.SGD` (Nesterov momentum 0.9, weight decay 5e-4 on every parameter, α
//! and β included, one parameter group) with its momentum buffers kept by `state_dict` name so a
//! checkpoint can hold them, the per-iteration cosine schedule with the official code's optional
//! warm-up, and the gradient clipping PSSiLU's β gets.
//!
//! The update is PyTorch's, written out (`torch/optim/sgd.py`, `_single_tensor_sgd`, dampening 0):
//!
//! ```text
//! d = g + wd·p                       (g: the gradient, after any clipping)
//! buf = d                  on the first step of p,  buf = μ·buf + d  afterwards
//! d = d + μ·buf            (Nesterov)               d = buf          (classical)
//! p = p − lr·d
//! ```
//!
//! A parameter that is frozen (`--fix-act`: `requires_grad = False` in PyTorch, so its gradient
//! is `None` and SGD skips it) is not touched at all, and [`Activation::restore_frozen`] pins it
//! after the step. dfdx's own `Sgd` keeps its momentum buffers private, so it cannot be
//! checkpointed; this one updates every tensor in place (its gradient key stays valid) with the
//! device's [`Backend::sgd_step`]: dfdx's `axpy` once per line above on CUDA, one fused
//! multi-threaded pass on the CPU (the same roundings, bit-identical).

use std::collections::BTreeMap;

use dfdx::nn::{RecursiveWalker, TensorOptions, TensorVisitor, ViewTensorMut, ViewTensorName};
use dfdx::shapes::{HasShape, Shape};
use dfdx::tensor::{Gradients, Tensor};

use crate::activations::Activation;
use crate::models::Classifier;
use crate::ops::{Backend, Elem, SgdScalars};
use crate::Error;

/// SGD hyperparameters (docs/reproduction.md §3.1 defaults).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
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
/// closed form, stepped every iteration (docs/reproduction.md §7; `lr_min` = 0.001 in the paper).
pub fn cosine_lr(t: usize, total: usize, lr_max: f64, lr_min: f64) -> f64 {
    let frac = if total == 0 {
        1.0
    } else {
        (t.min(total) as f64) / total as f64
    };
    lr_min + 0.5 * (lr_max - lr_min) * (1.0 + (std::f64::consts::PI * frac).cos())
}

/// The learning rate and momentum of every iteration of a run: an optional warm-up of
/// `warmup_steps` iterations, then the per-iteration cosine over `main_steps` iterations.
///
/// The warm-up is the official `--warmup` (docs/reproduction.md §3.1): extra epochs *before*
/// the cosine schedule with PyTorch's `CyclicLR(base_lr = 0.005, max_lr = lr, step_size_up =
/// warmup steps)`, i.e. the learning rate rises linearly from 0.005 to `lr`, and — `CyclicLR`'s
/// default `cycle_momentum` — the momentum falls linearly from 0.9 to 0.8. The official code then
/// resets only the learning rate, so **the rest of the run keeps momentum 0.8**
/// (`warmup_keeps_momentum`, faithful by default; `false` restores the configured momentum).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LrSchedule {
    pub lr: f64,
    pub lr_min: f64,
    pub momentum: f64,
    pub warmup_steps: usize,
    pub main_steps: usize,
    pub warmup_keeps_momentum: bool,
}

/// `CyclicLR`'s `base_lr` in the official warm-up.
pub const WARMUP_BASE_LR: f64 = 0.005;
/// `CyclicLR`'s `base_momentum` (the momentum at the end of the warm-up).
pub const WARMUP_BASE_MOMENTUM: f64 = 0.8;
/// `CyclicLR`'s `max_momentum`.
pub const WARMUP_MAX_MOMENTUM: f64 = 0.9;

impl LrSchedule {
    /// Learning rate of iteration `t` (0-based, warm-up iterations first).
    pub fn lr_at(&self, t: usize) -> f64 {
        if t < self.warmup_steps {
            let x = t as f64 / self.warmup_steps as f64;
            WARMUP_BASE_LR + (self.lr - WARMUP_BASE_LR) * x
        } else {
            cosine_lr(t - self.warmup_steps, self.main_steps, self.lr, self.lr_min)
        }
    }

    /// Momentum of iteration `t`.
    pub fn momentum_at(&self, t: usize) -> f64 {
        if self.warmup_steps == 0 {
            self.momentum
        } else if t < self.warmup_steps {
            let x = t as f64 / self.warmup_steps as f64;
            WARMUP_MAX_MOMENTUM - (WARMUP_MAX_MOMENTUM - WARMUP_BASE_MOMENTUM) * x
        } else if self.warmup_keeps_momentum {
            WARMUP_BASE_MOMENTUM
        } else {
            self.momentum
        }
    }
}

/// PyTorch's `clip_grad_norm_` coefficient for one tensor of norm `norm`: `max / (norm + 1e-6)`
/// when that is below 1, else 1 (docs/reproduction.md §3.6: β's gradient, `max` = 0.01 or 0.1).
pub fn clip_coefficient(norm: f64, max: f64) -> f64 {
    let c = max / (norm + 1e-6);
    if c < 1.0 {
        c
    } else {
        1.0
    }
}

/// What one [`Sgd::step`] does besides the plain update.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StepRules {
    /// Gradient multipliers by tensor name (clipping), applied before weight decay as
    /// `clip_grad_norm_` is in PyTorch.
    pub grad_scale: BTreeMap<String, f64>,
    /// Tensors that get no weight decay (the activation's, when the switch is off).
    pub no_weight_decay: Vec<String>,
    /// Tensors not updated at all (frozen: PyTorch's `requires_grad = False`).
    pub skip: Vec<String>,
}

/// PyTorch's SGD over a model, momentum buffers by tensor name: see the module docs.
#[derive(Clone, Debug)]
pub struct Sgd<D: Backend> {
    settings: SgdSettings,
    buffers: BTreeMap<String, Tensor<(usize,), Elem, D>>,
    /// Buffers read from a checkpoint, moved to the device at their tensor's next update.
    pending: BTreeMap<String, Vec<Elem>>,
}

struct Update<'a, D: Backend> {
    grads: &'a mut Gradients<Elem, D>,
    settings: SgdSettings,
    rules: &'a StepRules,
    buffers: &'a mut BTreeMap<String, Tensor<(usize,), Elem, D>>,
    pending: &'a mut BTreeMap<String, Vec<Elem>>,
}

impl<D: Backend> TensorVisitor<Elem, D> for Update<'_, D> {
    type Viewer = (ViewTensorMut, ViewTensorName);
    type Err = D::Err;
    type E2 = Elem;
    type D2 = D;

    fn visit<S: Shape>(
        &mut self,
        opts: TensorOptions<S, Elem, D>,
        (p, name): (&mut Tensor<S, Elem, D>, String),
    ) -> Result<Option<Tensor<S, Elem, D>>, D::Err> {
        if !opts.do_gradient_update || self.rules.skip.contains(&name) {
            return Ok(None);
        }
        let scale = self.rules.grad_scale.get(&name).copied().unwrap_or(1.0);
        let wd = if self.rules.no_weight_decay.contains(&name) {
            0.0
        } else {
            self.settings.weight_decay
        };
        let n = p.shape().num_elements();
        let m = self.settings.momentum;
        // the buffer (a checkpoint's first) leaves the map for the update (created or replaced
        // there) and comes back
        let mut buf = None;
        if m != 0.0 {
            let restored = self.pending.remove(&name).filter(|v| v.len() == n);
            buf = match restored {
                Some(v) => Some(p.device().tensor_from_vec(v, (n,))),
                None => self.buffers.remove(&name),
            };
        }
        let scalars = SgdScalars {
            grad_scale: scale,
            weight_decay: wd,
            momentum: m,
            nesterov: self.settings.nesterov,
            lr: self.settings.lr,
        };
        D::sgd_step(p, self.grads, &mut buf, scalars)?;
        if let Some(b) = buf {
            self.buffers.insert(name, b);
        }
        Ok(None)
    }
}

impl<D: Backend> Sgd<D> {
    /// A new optimizer with `settings` (validated) and no momentum buffers yet.
    pub fn new(settings: SgdSettings) -> Result<Self, Error> {
        settings.validate()?;
        Ok(Sgd {
            settings,
            buffers: BTreeMap::new(),
            pending: BTreeMap::new(),
        })
    }

    /// The settings (the learning rate and momentum of the current iteration).
    pub fn settings(&self) -> SgdSettings {
        self.settings
    }

    /// The current learning rate.
    pub fn lr(&self) -> f64 {
        self.settings.lr
    }

    /// Sets the learning rate (per-iteration schedules).
    pub fn set_lr(&mut self, lr: f64) {
        self.settings.lr = lr;
    }

    /// Sets the momentum (the warm-up's cycled momentum).
    pub fn set_momentum(&mut self, momentum: f64) {
        self.settings.momentum = momentum;
    }

    /// One update of every trainable tensor of `model` from `grads` (frozen activation
    /// parameters skipped, weight decay on everything): [`Sgd::step_with`] with
    /// [`step_rules`]`(model, true, None)`.
    pub fn step<M: Classifier<D>>(
        &mut self,
        model: &mut M,
        grads: &mut Gradients<Elem, D>,
    ) -> Result<(), Error> {
        let rules = step_rules(model, true, None);
        self.step_with(model, grads, &rules)
    }

    /// One update of every trainable tensor of `model` from `grads` following `rules` (see the
    /// module docs), then frozen activation parameters are pinned and the activation is checked
    /// (an error if, e.g., PSSiLU's |β| reached 1).
    pub fn step_with<M: Classifier<D>>(
        &mut self,
        model: &mut M,
        grads: &mut Gradients<Elem, D>,
        rules: &StepRules,
    ) -> Result<(), Error> {
        let mut visitor = Update {
            grads,
            settings: self.settings,
            rules,
            buffers: &mut self.buffers,
            pending: &mut self.pending,
        };
        M::iter_tensors(&mut RecursiveWalker {
            m: (model as &mut M, String::new()),
            f: &mut visitor,
        })
        .map_err(|e| Error::Device(format!("{e:?}")))?;
        model.activation_mut().restore_frozen();
        model.activation().validate()
    }

    /// The momentum buffers by tensor name, copied to the host (for checkpoints).
    pub fn buffers(&self) -> Vec<(String, Vec<Elem>)> {
        let mut all: BTreeMap<String, Vec<Elem>> = self.pending.clone();
        all.extend(self.buffers.iter().map(|(k, v)| (k.clone(), v.as_vec())));
        all.into_iter().collect()
    }

    /// Replaces the momentum buffers (from a checkpoint); each moves to its tensor's device at
    /// the tensor's next update.
    pub fn set_buffers(&mut self, buffers: Vec<(String, Vec<Elem>)>) {
        self.buffers.clear();
        self.pending = buffers.into_iter().collect();
    }
}

/// The rules of one training step for `model`: its frozen activation parameters skipped, the
/// activation's parameters without weight decay unless `decay_activation`, and β's gradient
/// scaled by `beta_scale` when given.
pub fn step_rules<M: Classifier<D>, D: Backend>(
    model: &M,
    decay_activation: bool,
    beta_scale: Option<f64>,
) -> StepRules {
    let act = model.activation();
    let mut rules = StepRules {
        skip: act
            .frozen()
            .into_iter()
            .map(|(n, _)| n)
            .chain(act.unused_tensors().iter().copied())
            .map(|n| format!("{ACTIVATION_PREFIX}{n}"))
            .collect(),
        ..Default::default()
    };
    if !decay_activation {
        rules.no_weight_decay = act
            .kind()
            .param_names()
            .iter()
            .map(|n| format!("{ACTIVATION_PREFIX}{n}"))
            .collect();
    }
    if let Some(c) = beta_scale {
        rules
            .grad_scale
            .insert(format!("{ACTIVATION_PREFIX}beta"), c);
    }
    rules
}

pub use crate::models::ACTIVATION_PREFIX;
