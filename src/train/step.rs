//! One training step of each trainer, exactly as the official `trainers.py`
//! (docs/reproduction.md §3.3, §3.4, §3.6), on any model and device.
//!
//! - **Standard** (`baseline`): train mode, `CE(f(x), y)` (+ PSSiLU's penalty).
//! - **PGD-AT** (`madry`): (1) a clean forward in train mode — the official code only logs its
//!   accuracy, but as a side effect it **updates the BN running statistics with the clean
//!   batch** (`clean_pass_updates_bn`, on by default); (2) PGD in eval mode from
//!   `x + δ₀`, δ₀ ~ U(−ε, ε) **not clamped** to `[0, 1]` (`clip_start`, off by default; ℓ2: δ₀
//!   uniform in [−1, 1] renormed to ‖δ₀‖₂ ≤ ε as the official `pgd_whitebox`), 10 sign steps of
//!   0.0078, each projected to the ε-ball and `[0, 1]`; (3) train mode, `CE(f(x_adv), y)` (+
//!   penalty), which updates the BN statistics again.
//! - **TRADES** (`adv`): the adversary from `x + 0.001·N(0, I)` in eval mode; then in train mode
//!   `CE(f(x), y) + β_T·(1/B)·Σ KL(softmax f(x) ‖ softmax f(x_adv))`, β_T = 6, the softmax target
//!   **not detached** (gradients flow through both forward passes, as in the official code).
//!
//! ℓ2 (`trainer.official_l2`, on by default): the official attacks' steps — an image whose
//! gradient is exactly zero steps along `N(0, I)` instead of staying put, and TRADES projects
//! each step onto `[0, 1]` before the ε-ball (the official `clamp_` then `renorm_`); PGD-AT's
//! order (ball, then box) is the same as torchattacks'. The per-epoch evaluation PGD uses the
//! same start and steps (the official `pgd_whitebox`).
//!
//! Then, for learnable-β PSSiLU (`pssilu2`) only: the loss includes `pssilu_reg·|β|` (10), and
//! after the backward pass β's gradient is clipped to norm 0.01 (0.1 with TRADES), PyTorch's
//! `clip_grad_norm_`; finally the SGD step ([`super::Sgd`]). A non-finite loss stops before any
//! update.
//!
//! [`train_step`] takes an explicit δ₀ ([`Start::Given`]) so one step can be compared number for
//! number with another implementation; [`Start::Seeded`] draws it as the official code does.

use dfdx::losses::cross_entropy_with_logits_loss;
use dfdx::nn::ZeroGrads;
use dfdx::shapes::{Axis, ConstDim, HasShape, Rank0};
use dfdx::tensor::{OwnedTape, Trace};
use dfdx::tensor_ops::{Backward, SumTo, TryAdd, TryMul, TrySub};

use super::config::{TrainerConfig, TrainerKind};
use super::optim::{clip_coefficient, step_rules, Sgd};
use super::parallel::{all_reduce_gradients, broadcast_buffers, Parallel};
use crate::activations::{Activation, ActivationKind};
use crate::attacks::{
    argmax, device_err, one_hot, pgd_from, trades_adversary_from, Images, Noise, Norm, PgdConfig,
    TradesConfig,
};
use crate::models::Classifier;
use crate::ops::{Backend, Elem};
use crate::Error;

/// Where the attack of a step starts.
pub enum Start<'a, T> {
    /// Draw δ₀ as the official code does (PGD-AT ℓ∞: U(−ε, ε); ℓ2: U(−1, 1) renormed to ε;
    /// TRADES: 0.001·N(0, I)) from this seed.
    Seeded(u64),
    /// This δ₀ (one per image, the batch's shape).
    Given(&'a T),
}

/// What one step measured (accuracies of the train-mode forward passes, as the official logs).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StepOutcome {
    /// The minimised objective (penalty included).
    pub loss: f64,
    /// Images in the batch.
    pub n: usize,
    /// Correct predictions on the clean batch (train mode).
    pub clean_correct: usize,
    /// Correct predictions on the adversarial batch (train mode), adversarial trainers only.
    pub adv_correct: Option<usize>,
    /// β's gradient before clipping (learnable-β PSSiLU only).
    pub beta_grad: Option<f64>,
}

/// Switches of a step that are not the trainer's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepSettings {
    /// Weight decay on the activation's parameters (one parameter group, the official code).
    pub decay_activation: bool,
}

impl Default for StepSettings {
    fn default() -> Self {
        StepSettings {
            decay_activation: true,
        }
    }
}

fn correct(logits: &[f32], k: usize, labels: &[usize]) -> usize {
    labels
        .iter()
        .enumerate()
        .filter(|(i, &y)| argmax(&logits[i * k..(i + 1) * k]) == y)
        .count()
}

/// The official start δ₀ for `kind` and `norm` from `seed`.
pub fn draw_start<M: Classifier<D>, D: Backend>(
    cfg: &TrainerConfig,
    dev: &D,
    n: usize,
    seed: u64,
) -> Result<Images<M, D>, Error> {
    let shape = (
        n,
        M::Height::default(),
        M::Width::default(),
        M::Channels::default(),
    );
    let mut noise = Noise::new(seed);
    let eps = cfg.eps as f32;
    Ok(match (cfg.kind, cfg.norm) {
        (TrainerKind::Trades, _) => noise
            .normal(dev, shape)
            .try_mul(0.001f32)
            .map_err(device_err)?,
        (_, Norm::Linf) => noise.uniform(dev, shape, -eps, eps),
        (_, Norm::L2) => {
            // torch: uniform_(-1, 1), then renorm_(p=2, dim=0, maxnorm=ε) per image
            let mut v = noise.uniform(dev, shape, -1.0, 1.0).as_vec();
            let per = v.len() / n.max(1);
            for img in v.chunks_mut(per.max(1)) {
                let norm = img.iter().map(|a| (*a as f64).powi(2)).sum::<f64>().sqrt();
                if norm > eps as f64 {
                    let s = (eps as f64 / (norm + 1e-7)) as f32;
                    img.iter_mut().for_each(|a| *a *= s);
                }
            }
            dev.tensor_from_vec(v, shape)
        }
    })
}

/// One training step of `cfg.kind` on the batch `x` (pixels in `[0, 1]`) with classes `labels`:
/// see the module docs. The learning rate and momentum are `opt`'s current ones. The model is in
/// train mode afterwards.
///
/// ```
/// use dfdx::prelude::*;
/// use robust_paf::activations::Pssilu;
/// use robust_paf::attacks::host_images;
/// use robust_paf::models::SmallCnn;
/// use robust_paf::train::{train_step, Sgd, SgdSettings, Start, StepSettings, TrainerConfig, TrainerKind};
///
/// type Model = SmallCnn<Pssilu<Cpu>, Cpu>;
/// let dev = Cpu::seed_from_u64(0);
/// let mut model = Model::new(&dev);
/// // SGD Nesterov, lr 0.1, momentum 0.9, weight decay 5e-4 (§3.1)
/// let mut opt = Sgd::<Cpu>::new(SgdSettings::default())?;
/// // PGD-AT ℓ∞ as the paper's `madry` trainer: ε 0.031, step 0.0078, 10 steps (§3.3)
/// let cfg = TrainerConfig::paper(TrainerKind::PgdAt);
/// let x = host_images::<Model, Cpu>(&dev, vec![0.5; 4 * 32 * 32 * 3], 4);
/// let out = train_step(&cfg, &StepSettings::default(), &mut model, &mut opt, &x, &[0, 1, 2, 3], Start::Seeded(7))?;
/// assert_eq!(out.n, 4);
/// assert!(out.loss.is_finite() && out.adv_correct.is_some() && out.beta_grad.is_some());
/// # Ok::<(), robust_paf::Error>(())
/// ```
pub fn train_step<M: Classifier<D>, D: Backend>(
    cfg: &TrainerConfig,
    settings: &StepSettings,
    model: &mut M,
    opt: &mut Sgd<D>,
    x: &Images<M, D>,
    labels: &[usize],
    start: Start<'_, Images<M, D>>,
) -> Result<StepOutcome, Error> {
    let n = x.shape().0;
    let shard = ShardOf {
        offset: 0,
        global_len: n,
    };
    train_step_parallel(
        cfg,
        settings,
        model,
        opt,
        x,
        labels,
        start,
        &Parallel::single(),
        shard,
    )
}

/// Where a rank's images sit in the global batch of a data-parallel step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardOf {
    /// The position of the first image in the global batch.
    pub offset: usize,
    /// The size of the global batch.
    pub global_len: usize,
}

/// [`train_step`] on this rank's shard `x` of a global batch, the ranks of `par` together
/// ([`super::parallel`]): the loss scaled by the shard's share, the gradients summed over the
/// ranks, β's clip applied to the sum, rank 0's batch-norm running statistics on every rank
/// after each training-mode pass (or SyncBN). [`Start::Seeded`] draws the global batch's δ₀ and
/// takes the shard's rows. The outcome is the global batch's (loss, counts, `n`), on every rank;
/// a non-finite loss on any rank stops every rank before the update.
#[allow(clippy::too_many_arguments)]
pub fn train_step_parallel<M: Classifier<D>, D: Backend>(
    cfg: &TrainerConfig,
    settings: &StepSettings,
    model: &mut M,
    opt: &mut Sgd<D>,
    x: &Images<M, D>,
    labels: &[usize],
    start: Start<'_, Images<M, D>>,
    par: &Parallel,
    shard: ShardOf,
) -> Result<StepOutcome, Error> {
    let n = x.shape().0;
    crate::attacks::check_labels(labels, n, M::Classes::SIZE)?;
    let parallel = par.is_parallel();
    if shard.offset + n > shard.global_len {
        return Err(Error::Device(format!(
            "shard {}..{} outside the global batch of {}",
            shard.offset,
            shard.offset + n,
            shard.global_len
        )));
    }
    let dev = x.device().clone();
    let k = M::Classes::SIZE;
    let y = one_hot::<M::Classes, D>(&dev, labels)?;
    let de = device_err;
    let comm = &*par.comm;
    // SyncBN: every training-mode batch norm of this step, forward and backward
    let _bn_sync = crate::ops::sync::SyncScope::install(par.bn_sync());
    let per_rank_bn = parallel && !par.sync_batch_norm;
    model.train();
    // the official ℓ2 steps' zero-gradient noise: from the step's seed (and the rank)
    let noise_seed = match start {
        Start::Seeded(seed) => seed ^ 0x005E_ED0F_2E50 ^ (comm.rank() as u64).rotate_left(40),
        Start::Given(_) => 0,
    };
    let drawn;
    let delta0 = match start {
        Start::Given(d) => d,
        Start::Seeded(seed) if shard.global_len != n => {
            // the global batch's δ₀, this shard's rows
            let all = draw_start::<M, D>(cfg, &dev, shard.global_len, seed)?.as_vec();
            let f = all.len() / shard.global_len.max(1);
            let rows = all[shard.offset * f..(shard.offset + n) * f].to_vec();
            drawn = dev.tensor_from_vec(rows, *x.shape());
            &drawn
        }
        Start::Seeded(seed) => {
            drawn = draw_start::<M, D>(cfg, &dev, n, seed)?;
            &drawn
        }
    };
    let grads = model.try_alloc_grads().map_err(de)?;
    let mut out = StepOutcome {
        n,
        ..Default::default()
    };
    let loss = match cfg.kind {
        TrainerKind::Standard => {
            let logits = model.try_logits_mut(x.clone().traced(grads)).map_err(de)?;
            out.clean_correct = correct(&logits.as_vec(), k, labels);
            cross_entropy_with_logits_loss(logits, y)
        }
        TrainerKind::PgdAt => {
            let clean = if cfg.clean_pass_updates_bn {
                model.try_logits_mut(x.clone())
            } else {
                model.try_logits(x.clone())
            }
            .map_err(de)?;
            out.clean_correct = correct(&clean.as_vec(), k, labels);
            if per_rank_bn && cfg.clean_pass_updates_bn {
                // the attack's replicas see the buffers rank 0's clean pass updated
                broadcast_buffers(comm, model)?;
            }
            let pgd = PgdConfig {
                norm: cfg.norm,
                eps: cfg.eps,
                step_size: cfg.step_size,
                steps: cfg.steps,
                random_start: true,
                clip_start: cfg.clip_start,
                seed: noise_seed,
                official_l2: cfg.official_l2,
            };
            let adv = pgd_from(model, x, labels, Some(delta0), &pgd)?;
            model.train();
            let logits = model.try_logits_mut(adv.traced(grads)).map_err(de)?;
            out.adv_correct = Some(correct(&logits.as_vec(), k, labels));
            cross_entropy_with_logits_loss(logits, y)
        }
        TrainerKind::Trades => {
            let trades = TradesConfig {
                norm: cfg.norm,
                eps: cfg.eps,
                step_size: cfg.step_size,
                steps: cfg.steps,
                start_std: 0.001,
                beta: cfg.trades_beta,
                seed: noise_seed,
                official_l2: cfg.official_l2,
            };
            let adv = trades_adversary_from(model, x, delta0, &trades)?;
            model.train();
            let logits = model.try_logits_mut(x.clone().traced(grads)).map_err(de)?;
            let logits_adv = model.try_logits_mut(adv.leaky_trace()).map_err(de)?;
            out.clean_correct = correct(&logits.as_vec(), k, labels);
            out.adv_correct = Some(correct(&logits_adv.as_vec(), k, labels));
            // KL(p ‖ q) summed = Σ p·(log p − log q), p = softmax f(x) (not detached)
            let p = logits
                .retaped::<OwnedTape<Elem, D>>()
                .try_softmax::<Axis<1>>();
            let log_p = logits
                .retaped::<OwnedTape<Elem, D>>()
                .try_log_softmax::<Axis<1>>();
            let log_q = logits_adv.try_log_softmax::<Axis<1>>();
            let kl = p
                .map_err(de)?
                .try_mul(log_p.map_err(de)?.try_sub(log_q.map_err(de)?).map_err(de)?)
                .map_err(de)?
                .try_sum::<Rank0, _>()
                .map_err(de)?
                .try_mul((cfg.trades_beta / n.max(1) as f64) as Elem)
                .map_err(de)?;
            // the clean forward's tape first: its ops run last in the backward pass, after every
            // use of f(x) (CE, p, log p) has added its gradient
            cross_entropy_with_logits_loss(logits, y)
                .try_add(kl)
                .map_err(de)?
        }
    };
    // PSSiLU (learnable β): + reg·|β| (official: `args.activation == 'pssilu2'`)
    let learnable_beta = model.activation().kind() == ActivationKind::Pssilu;
    let loss = match (learnable_beta, model.activation().pointwise_fn().1[1]) {
        (true, Some(beta)) if cfg.pssilu_reg != 0.0 => {
            let penalty = beta
                .clone()
                .retaped::<OwnedTape<Elem, D>>()
                .try_abs()
                .map_err(de)?
                .try_sum::<Rank0, _>()
                .map_err(de)?
                .try_mul(cfg.pssilu_reg as Elem)
                .map_err(de)?;
            loss.try_add(penalty).map_err(de)?
        }
        _ => loss,
    };
    out.loss = loss.as_vec()[0] as f64;
    let share = n as f64 / shard.global_len.max(1) as f64;
    let loss = if parallel {
        // the global batch's loss and counts on every rank, and one decision on a non-finite loss
        let finite = out.loss.is_finite();
        let mut v = [
            if finite { out.loss * share } else { 0.0 },
            if finite { 0.0 } else { 1.0 },
            out.clean_correct as f64,
            out.adv_correct.unwrap_or(0) as f64,
        ];
        comm.all_reduce_f64(&mut v)?;
        if v[1] > 0.0 {
            return Err(Error::NonFinite {
                what: format!(
                    "training loss ({} on rank {}, non-finite on {} of {} ranks)",
                    out.loss,
                    comm.rank(),
                    v[1],
                    comm.size()
                ),
            });
        }
        out.loss = v[0];
        out.n = shard.global_len;
        out.clean_correct = v[2].round() as usize;
        out.adv_correct = out.adv_correct.map(|_| v[3].round() as usize);
        loss.try_mul(share as Elem).map_err(de)?
    } else {
        loss
    };
    if !out.loss.is_finite() {
        return Err(Error::NonFinite {
            what: format!("training loss ({})", out.loss),
        });
    }
    let mut grads = loss.try_backward().map_err(de)?;
    all_reduce_gradients(comm, model, &mut grads)?;
    // clip β's gradient norm (a scalar: its absolute value)
    let mut beta_scale = None;
    if learnable_beta {
        if let Some(beta) = model.activation().pointwise_fn().1[1] {
            grads.try_alloc_for(beta).map_err(de)?;
            let g = grads.get(beta).as_vec()[0] as f64;
            out.beta_grad = Some(g);
            beta_scale = Some(clip_coefficient(g.abs(), cfg.beta_grad_clip()));
        }
    }
    let rules = step_rules(model, settings.decay_activation, beta_scale);
    opt.step_with(model, &mut grads, &rules)?;
    if per_rank_bn {
        broadcast_buffers(comm, model)?;
    }
    Ok(out)
}

/// Mean cross-entropy and the number of correct predictions of `model` (in its current mode, no
/// gradients) on the host batch `x`.
pub fn batch_loss<M: Classifier<D>, D: Backend>(
    model: &M,
    x: &Images<M, D>,
    labels: &[usize],
) -> Result<(f64, usize), Error> {
    let dev = x.device().clone();
    let y = one_hot::<M::Classes, D>(&dev, labels)?;
    let logits = model.try_logits(x.clone()).map_err(device_err)?;
    let c = correct(&logits.as_vec(), M::Classes::SIZE, labels);
    let l = cross_entropy_with_logits_loss(logits, y).as_vec()[0] as f64;
    Ok((l, c))
}
