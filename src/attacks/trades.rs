//! TRADES' inner maximisation (docs/reproduction.md §3.4; Zhang et al. 2019, the paper's
//! `trades_loss`): start at `x + 0.001·N(0, I)`, then `steps` sign-gradient steps (ℓ∞; ℓ2:
//! normalised-gradient steps of `2ε/steps`) on `KL(softmax(f(x)) ‖ softmax(f(x_adv)))`, projecting
//! onto the ε-ball and `[0, 1]` after each. The clean distribution is a constant during the attack,
//! so the soft-target cross-entropy `−Σ p_clean · log_softmax(f(x_adv))`, which differs from the KL
//! by the entropy of `p_clean`, has the same gradient and no `0·log 0`.
//!
//! `official_l2` switches the ℓ2 steps to the paper's `trades_loss`: zero-gradient images step
//! along `N(0, I)`, and each step is projected onto `[0, 1]` before the ε-ball (the code's
//! `clamp_` then `renorm_`; by default the ball comes first, then the box). The official step is
//! an SGD step on `−KL`, i.e. `δ + (2ε/steps)·∇KL/‖∇KL‖`, as here.

use dfdx::shapes::HasShape;
use dfdx::tensor_ops::{TryAdd, TryMul};

use super::{
    ascend, check_budget, device_err, in_eval_mode, AttackModel, Images, Noise, Norm, OfficialL2,
};
use crate::ops::Backend;
use crate::Error;

/// Settings of [`trades_adversary`] (and the TRADES loss weight, used by training).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TradesConfig {
    pub norm: Norm,
    pub eps: f64,
    /// Step size (ℓ∞). For ℓ2 the paper's code uses `2ε / steps`.
    pub step_size: f64,
    pub steps: usize,
    /// Standard deviation of the Gaussian start (0.001).
    pub start_std: f64,
    /// β of the TRADES loss `CE + β·KL` (6.0 in every config of the paper).
    pub beta: f64,
    /// Seed of the start (and of the zero-gradient noise of `official_l2`).
    pub seed: u64,
    /// ℓ2 only, the paper's `trades_loss`: zero-gradient images step along `N(0, I)`, and each
    /// step is projected onto `[0, 1]` before the ε-ball. Off by default; the trainer turns it on
    /// (`trainer.official_l2`).
    #[serde(default)]
    pub official_l2: bool,
}

impl TradesConfig {
    /// The paper's TRADES (§3.4): ε 0.031, step 0.0078, 10 steps, start 0.001·N, β = 6.
    pub fn paper() -> Self {
        TradesConfig {
            norm: Norm::Linf,
            eps: 0.031,
            step_size: 0.0078,
            steps: 10,
            start_std: 0.001,
            beta: 6.0,
            seed: 0,
            official_l2: false,
        }
    }
    /// Errors on negative or non-finite settings.
    pub fn validate(&self) -> Result<(), Error> {
        check_budget(self.eps, self.step_size)?;
        check_budget(self.start_std, self.beta)
    }
}

/// The TRADES adversarial examples for the clean batch `x`: see the module docs.
pub fn trades_adversary<M: AttackModel<D>, D: Backend>(
    model: &mut M,
    x: &Images<M, D>,
    cfg: &TradesConfig,
) -> Result<Images<M, D>, Error> {
    cfg.validate()?;
    let start = Noise::new(cfg.seed)
        .normal(x.device(), *x.shape())
        .try_mul(cfg.start_std as f32)
        .map_err(device_err)?;
    trades_adversary_from(model, x, &start, cfg)
}

/// [`trades_adversary`] from the explicit start `x + δ₀` (the trainer draws δ₀ =
/// `start_std`·N(0, I) itself, so a step can be compared with another implementation);
/// `cfg.start_std` and `cfg.seed` are not used.
pub fn trades_adversary_from<M: AttackModel<D>, D: Backend>(
    model: &mut M,
    x: &Images<M, D>,
    delta0: &Images<M, D>,
    cfg: &TradesConfig,
) -> Result<Images<M, D>, Error> {
    cfg.validate()?;
    if delta0.shape().0 != x.shape().0 {
        return Err(Error::InvalidParameter {
            name: "delta0",
            value: delta0.shape().0 as f64,
            reason: "the start perturbation needs one image per input image",
        });
    }
    let eps = cfg.eps as f32;
    let step = match cfg.norm {
        Norm::Linf => cfg.step_size as f32,
        Norm::L2 => (2.0 * cfg.eps / cfg.steps.max(1) as f64) as f32,
    };
    in_eval_mode(model, |m| -> Result<Images<M, D>, Error> {
        let p_clean = m
            .attack_logits(x.clone())
            .map_err(device_err)?
            .try_softmax::<dfdx::shapes::Axis<1>>()
            .map_err(device_err)?;
        let adv = x.clone().try_add(delta0.clone()).map_err(device_err)?;
        let official = cfg.official_l2.then_some(OfficialL2 {
            seed: cfg.seed,
            box_first: true,
        });
        ascend(
            m, x, adv, &p_clean, cfg.norm, step, eps, cfg.steps, official,
        )
    })
}
