//! Projected gradient descent (docs/reproduction.md §3.3; torchattacks' `PGD` / `PGDL2`) and FGSM.
//!
//! ℓ∞: start `x + U(−ε, ε)`, then `steps` times `x ← x + α·sign(∇ₓ CE)`, `δ = clip(x − x₀, −ε, ε)`,
//! `x = clamp(x₀ + δ, 0, 1)`. ℓ2: start `x + r·ε·n/‖n‖` (n ~ N(0, I), r ~ U(0, 1) per image),
//! steps along `∇/‖∇‖₂`, projection by rescaling δ to ‖δ‖₂ ≤ ε, then `[0, 1]`. The loss is the
//! batch-mean cross-entropy. **The paper's quirk**: its random start is *not* clamped to `[0, 1]`
//! before the first gradient (`clip_start = false` in [`PgdConfig::paper`]); set
//! `clip_start = true` for torchattacks' behaviour. The model runs in evaluation mode; its mode is
//! restored afterwards. The output always lies in the ε-ball and in `[0, 1]`.
//!
//! `official_l2` switches the ℓ2 steps to the paper's `pgd_whitebox`: an image whose gradient is
//! exactly zero steps along `N(0, I)` (the code's `randn_like` fallback) instead of staying put.
//! The paper's ℓ2 start (U(−1, 1) renormed to ε) is drawn by the trainer
//! (`train::step::draw_start`) and given to [`pgd_from`].

use dfdx::shapes::{ConstDim, HasShape};
use dfdx::tensor_ops::{BroadcastTo, TryAdd, TryMul};

use super::{
    ascend, check_budget, check_labels, device_err, in_eval_mode, l2_normalise, one_hot,
    AttackModel, Images, Noise, Norm, OfficialL2,
};
use crate::ops::Backend;
use crate::Error;

/// Settings of [`pgd`].
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PgdConfig {
    pub norm: Norm,
    /// Radius of the threat model (the paper writes 0.031 for ℓ∞, not 8/255 = 0.0314).
    pub eps: f64,
    /// Step size α.
    pub step_size: f64,
    /// Gradient steps.
    pub steps: usize,
    /// Start from a random point of the ε-ball (else from `x`).
    pub random_start: bool,
    /// Clamp the random start to `[0, 1]` before the first step (the paper's code does not).
    pub clip_start: bool,
    /// Seed of the random start (and of the zero-gradient noise of `official_l2`).
    pub seed: u64,
    /// ℓ2 only, the paper's `pgd_whitebox`: an image whose gradient is exactly zero steps along
    /// `N(0, I)` instead of staying put (torchattacks, the default). The trainer turns it on
    /// (`trainer.official_l2`).
    #[serde(default)]
    pub official_l2: bool,
}

impl PgdConfig {
    /// The paper's PGD-10 ℓ∞ (§3.3): ε 0.031, step 0.0078, 10 steps, random start not clamped.
    pub fn paper() -> Self {
        PgdConfig {
            norm: Norm::Linf,
            eps: 0.031,
            step_size: 0.0078,
            steps: 10,
            random_start: true,
            clip_start: false,
            seed: 0,
            official_l2: false,
        }
    }
    /// The paper's ℓ2 settings (§3.7): ε 0.5, step 0.075, 10 steps; start clamped (torchattacks).
    pub fn paper_l2() -> Self {
        PgdConfig {
            norm: Norm::L2,
            eps: 0.5,
            step_size: 0.075,
            steps: 10,
            random_start: true,
            clip_start: true,
            seed: 0,
            official_l2: false,
        }
    }
    /// Errors on a negative or non-finite ε or step.
    pub fn validate(&self) -> Result<(), Error> {
        check_budget(self.eps, self.step_size)
    }
}

/// PGD on `model` from the clean batch `x` with true classes `labels`: see the module docs.
///
/// ```
/// use dfdx::prelude::*;
/// use robust_paf::activations::Relu;
/// use robust_paf::attacks::{host_images, pgd, PgdConfig};
/// use robust_paf::models::SmallCnn;
///
/// type Model = SmallCnn<Relu<Cpu>, Cpu>;
/// let dev = Cpu::seed_from_u64(0);
/// let mut model = Model::new(&dev);
/// let x: Vec<f32> = (0..2 * 32 * 32 * 3).map(|i| (i % 255) as f32 / 255.0).collect();
/// let cfg = PgdConfig::paper(); // ℓ∞, ε 0.031, step 0.0078, 10 steps, random start not clamped
/// let adv = pgd(&mut model, &host_images::<Model, Cpu>(&dev, x.clone(), 2), &[3, 7], &cfg)?;
/// for (a, x) in adv.as_vec().iter().zip(&x) {
///     assert!((a - x).abs() <= 0.031 + 1e-6 && (0.0..=1.0).contains(a));
/// }
/// # Ok::<(), robust_paf::Error>(())
/// ```
pub fn pgd<M: AttackModel<D>, D: Backend>(
    model: &mut M,
    x: &Images<M, D>,
    labels: &[usize],
    cfg: &PgdConfig,
) -> Result<Images<M, D>, Error> {
    cfg.validate()?;
    let dev = x.device().clone();
    let eps = cfg.eps as f32;
    let delta = if cfg.random_start && eps > 0.0 {
        let mut noise = Noise::new(cfg.seed);
        let shape = *x.shape();
        Some(match cfg.norm {
            Norm::Linf => noise.uniform(&dev, shape, -eps, eps),
            Norm::L2 => {
                let n = l2_normalise(noise.normal(&dev, shape)).map_err(device_err)?;
                let r: Vec<f32> = noise
                    .unit_interval(shape.0)
                    .into_iter()
                    .map(|r| r * eps)
                    .collect();
                let r = dev.tensor_from_vec(r, (shape.0,));
                n.try_mul(r.try_broadcast_like(&shape).map_err(device_err)?)
                    .map_err(device_err)?
            }
        })
    } else {
        None
    };
    pgd_from(model, x, labels, delta.as_ref(), cfg)
}

/// PGD from the explicit start `x + δ₀` (`delta0 = None`: from `x`), clamped to `[0, 1]` first
/// only if `cfg.clip_start`; `cfg.random_start` and `cfg.seed` are not used. With the same δ₀ a
/// step can be compared number for number with another implementation (the trainer draws δ₀ as
/// the paper's code does and calls this).
pub fn pgd_from<M: AttackModel<D>, D: Backend>(
    model: &mut M,
    x: &Images<M, D>,
    labels: &[usize],
    delta0: Option<&Images<M, D>>,
    cfg: &PgdConfig,
) -> Result<Images<M, D>, Error> {
    cfg.validate()?;
    check_labels(labels, x.shape().0, M::Classes::SIZE)?;
    if let Some(d) = delta0 {
        if d.shape().0 != x.shape().0 {
            return Err(Error::InvalidParameter {
                name: "delta0",
                value: d.shape().0 as f64,
                reason: "the start perturbation needs one image per input image",
            });
        }
    }
    let dev = x.device().clone();
    let y = one_hot::<M::Classes, D>(&dev, labels)?;
    let (eps, alpha) = (cfg.eps as f32, cfg.step_size as f32);
    let mut adv = x.clone();
    if let Some(d) = delta0 {
        adv = adv.try_add(d.clone()).map_err(device_err)?;
        if cfg.clip_start {
            adv = adv.try_clamp(0.0, 1.0).map_err(device_err)?;
        }
    }
    // a start that is never stepped is still projected: a valid adversarial example
    in_eval_mode(model, |m| {
        let official = cfg.official_l2.then_some(OfficialL2 {
            seed: cfg.seed,
            box_first: false,
        });
        ascend(m, x, adv, &y, cfg.norm, alpha, eps, cfg.steps, official)
    })
}

/// FGSM: one signed gradient step of size ε from `x` (ℓ∞), clamped to `[0, 1]`.
pub fn fgsm<M: AttackModel<D>, D: Backend>(
    model: &mut M,
    x: &Images<M, D>,
    labels: &[usize],
    eps: f64,
) -> Result<Images<M, D>, Error> {
    pgd(
        model,
        x,
        labels,
        &PgdConfig {
            norm: Norm::Linf,
            eps,
            step_size: eps,
            steps: 1,
            random_start: false,
            clip_start: true,
            seed: 0,
            official_l2: false,
        },
    )
}
