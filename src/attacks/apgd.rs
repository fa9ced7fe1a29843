//! Auto-PGD (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an ensemble
//! of diverse parameter-free attacks"): APGD-CE and APGD-T (targeted DLR loss), ℓ∞ and ℓ2, as
//! in AutoAttack's standard version (docs/reproduction.md §4: 100 iterations, 1 restart, ρ = 0.75,
//! 9 target classes).
//!
//! Per image: step size `η = 2ε`; a momentum step `x_{k+1} = P(x_k + α(z − x_k) + (1 − α)(x_k −
//! x_{k−1}))`, `z = P(x_k + η·sign(∇))` (ℓ2: `η·∇/‖∇‖₂`), α = 0.75 (1 at the first step). At the
//! checkpoints `w_j = ⌈p_j·N⌉`, `p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03,
//! 0.06)` ([`checkpoints`]), η is halved and the iterate reset to the best point when fewer than
//! `ρ·(w_j − w_{j−1})` of the steps since the last checkpoint raised the loss, or when η was not
//! halved at the last checkpoint and the best loss did not improve since. Losses per image:
//! cross-entropy; DLR `−(z_y − max_{i≠y} z_i)/(z_π1 − z_π3)`; targeted DLR
//! `−(z_y − z_t)/(z_π1 − (z_π3 + z_π4)/2)` (π: logits sorted in decreasing order).
//!
//! The arithmetic runs on the host (a few MB per step); the model's forward and backward passes
//! run on its device, once per iteration ([`super::logits_loss_grad`]): the same logits give
//! the loss, its gradient and the success check.

use dfdx::shapes::{ConstDim, HasShape};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal, Uniform};
use rayon::prelude::*;

use super::{
    argmax, check_budget, check_labels, classified_correctly, in_eval_mode, logits_loss_grad,
    logits_of, AttackModel, Images, Norm,
};
use crate::ops::Backend;
use crate::Error;

/// The loss APGD maximises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ApgdLoss {
    /// Cross-entropy (APGD-CE).
    Ce,
    /// Difference of logits ratio, untargeted.
    Dlr,
    /// Targeted DLR against each of the `n_target_classes` most likely wrong classes (APGD-T).
    DlrTargeted,
}

/// Settings of [`apgd`].
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ApgdConfig {
    pub norm: Norm,
    pub eps: f64,
    /// Iterations per run (100).
    pub n_iter: usize,
    /// Random restarts (1).
    pub n_restarts: usize,
    /// ρ of the step-size rule (0.75).
    pub rho: f64,
    pub loss: ApgdLoss,
    /// Target classes of APGD-T (9).
    pub n_target_classes: usize,
    pub seed: u64,
}

impl ApgdConfig {
    /// APGD-CE of AutoAttack's standard version.
    pub fn ce(norm: Norm, eps: f64) -> Self {
        ApgdConfig {
            norm,
            eps,
            n_iter: 100,
            n_restarts: 1,
            rho: 0.75,
            loss: ApgdLoss::Ce,
            n_target_classes: 9,
            seed: 0,
        }
    }
    /// APGD-T of AutoAttack's standard version (9 target classes).
    pub fn targeted(norm: Norm, eps: f64) -> Self {
        ApgdConfig {
            loss: ApgdLoss::DlrTargeted,
            ..Self::ce(norm, eps)
        }
    }
    /// Errors on invalid settings.
    pub fn validate(&self) -> Result<(), Error> {
        check_budget(self.eps, 0.0)?;
        if !(0.0..=1.0).contains(&self.rho) {
            return Err(Error::InvalidParameter {
                name: "rho",
                value: self.rho,
                reason: "must be in [0, 1]",
            });
        }
        if self.n_iter == 0 {
            return Err(Error::InvalidParameter {
                name: "n_iter",
                value: 0.0,
                reason: "must be at least 1",
            });
        }
        Ok(())
    }
}

/// The iterations (counted from 1) after which APGD checks its step size: `⌈p_j·N⌉` for
/// `p_1 = 0.22`, `p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06)`, in the integer form of the
/// reference code (first interval `⌊0.22N⌋`, each next one `⌊0.03N⌋` shorter, at least
/// `⌊0.06N⌋`; every interval at least 1).
pub fn checkpoints(n_iter: usize) -> Vec<usize> {
    let first = ((0.22 * n_iter as f64) as usize).max(1);
    let min = ((0.06 * n_iter as f64) as usize).max(1);
    let decr = ((0.03 * n_iter as f64) as usize).max(1);
    let mut out = Vec::new();
    let (mut at, mut k) = (first, first);
    while at <= n_iter {
        out.push(at);
        k = k.saturating_sub(decr).max(min);
        at += k;
    }
    out
}

/// Per-image loss and its gradient with respect to the logits.
fn loss_and_dlogits(loss: ApgdLoss, z: &[f32], y: usize, target: usize) -> (f64, Vec<f32>) {
    let k = z.len();
    let zd: Vec<f64> = z.iter().map(|&v| v as f64).collect();
    let mut g = vec![0.0f64; k];
    let l = match loss {
        ApgdLoss::Ce => {
            let m = zd.iter().cloned().fold(f64::MIN, f64::max);
            let s: f64 = zd.iter().map(|v| (v - m).exp()).sum();
            for (gi, v) in g.iter_mut().zip(&zd) {
                *gi = (v - m).exp() / s;
            }
            g[y] -= 1.0;
            m + s.ln() - zd[y]
        }
        ApgdLoss::Dlr | ApgdLoss::DlrTargeted => {
            let mut order: Vec<usize> = (0..k).collect();
            order.sort_by(|&a, &b| {
                zd[b]
                    .partial_cmp(&zd[a])
                    .unwrap_or(std::cmp::Ordering::Equal)
            });
            let (p1, p3) = (order[0], order[2.min(k - 1)]);
            let (other, den_parts): (usize, Vec<(usize, f64)>) = if loss == ApgdLoss::Dlr {
                let o = if p1 == y { order[1] } else { p1 };
                (o, vec![(p1, 1.0), (p3, -1.0)])
            } else {
                let p4 = order[3.min(k - 1)];
                (target, vec![(p1, 1.0), (p3, -0.5), (p4, -0.5)])
            };
            let num = zd[y] - zd[other];
            let den: f64 = den_parts.iter().map(|(i, w)| w * zd[*i]).sum::<f64>() + 1e-12;
            g[y] -= 1.0 / den;
            g[other] += 1.0 / den;
            for (i, w) in den_parts {
                g[i] += w * num / (den * den);
            }
            -num / den
        }
    };
    (l, g.into_iter().map(|v| v as f32).collect())
}

struct Run {
    /// Per image: found an adversarial example.
    fooled: Vec<bool>,
    /// The adversarial examples (for fooled images) or the best-loss points.
    adv: Vec<f32>,
}

fn project_one(norm: Norm, eps: f32, x: &[f32], v: &mut [f32]) {
    match norm {
        Norm::Linf => {
            for (v, x) in v.iter_mut().zip(x) {
                *v = v.clamp(x - eps, x + eps).clamp(0.0, 1.0);
            }
        }
        Norm::L2 => {
            let n: f32 = v
                .iter()
                .zip(x)
                .map(|(v, x)| (v - x) * (v - x))
                .sum::<f32>()
                .sqrt();
            let f = eps.min(n) / (n + 1e-12);
            for (v, x) in v.iter_mut().zip(x) {
                *v = (x + (*v - x) * f).clamp(0.0, 1.0);
            }
        }
    }
}

fn step_direction(norm: Norm, g: &[f32]) -> Vec<f32> {
    match norm {
        Norm::Linf => g
            .iter()
            .map(|v| v.signum() * (*v != 0.0) as u8 as f32)
            .collect(),
        Norm::L2 => {
            let n = g.iter().map(|v| v * v).sum::<f32>().sqrt() + 1e-12;
            g.iter().map(|v| v / n).collect()
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn single_run<M: AttackModel<D>, D: Backend>(
    m: &M,
    dev: &D,
    x: &[f32],
    y: &[usize],
    targets: &[usize],
    cfg: &ApgdConfig,
    rng: &mut StdRng,
) -> Result<Run, Error> {
    let n = y.len();
    let f = x.len() / n.max(1);
    let eps = cfg.eps as f32;
    // random start in the ball
    let mut x_adv = x.to_vec();
    for i in 0..n {
        let t: Vec<f32> = match cfg.norm {
            Norm::Linf => {
                let u = Uniform::new(-1.0f32, 1.0);
                (0..f).map(|_| u.sample(rng)).collect()
            }
            Norm::L2 => (0..f).map(|_| StandardNormal.sample(rng)).collect(),
        };
        let scale = match cfg.norm {
            Norm::Linf => t.iter().fold(0.0f32, |a, b| a.max(b.abs())),
            Norm::L2 => t.iter().map(|v| v * v).sum::<f32>().sqrt(),
        } + 1e-12;
        for j in 0..f {
            x_adv[i * f + j] = (x[i * f + j] + eps * t[j] / scale).clamp(0.0, 1.0);
        }
    }
    let lossfn = |i: usize, z: &[f32]| loss_and_dlogits(cfg.loss, z, y[i], targets[i]);
    let (logits, losses, mut grad) = logits_loss_grad(m, dev, &x_adv, n, lossfn)?;
    let k = M::Classes::SIZE;
    let mut fooled: Vec<bool> = (0..n)
        .map(|i| argmax(&logits[i * k..(i + 1) * k]) != y[i])
        .collect();
    let mut x_best_adv = x_adv.clone();
    let mut x_best = x_adv.clone();
    let mut grad_best = grad.clone();
    let mut loss_best = losses.clone();
    let mut step = vec![2.0 * eps; n];
    let mut x_old = x_adv.clone();
    let mut loss_steps: Vec<Vec<f64>> = Vec::with_capacity(cfg.n_iter);
    let mut loss_best_last_check = loss_best.clone();
    let mut reduced_last_check = vec![true; n];
    let (mut k_len, mut counter) = (((0.22 * cfg.n_iter as f64) as usize).max(1), 0usize);
    let n_iter_min = ((0.06 * cfg.n_iter as f64) as usize).max(1);
    let size_decr = ((0.03 * cfg.n_iter as f64) as usize).max(1);
    for it in 0..cfg.n_iter {
        let a = if it > 0 { 0.75f32 } else { 1.0 };
        // the step with momentum, image by image (independent: in parallel, the same numbers)
        let c = f.max(1);
        x_adv
            .par_chunks_mut(c)
            .zip(x_old.par_chunks_mut(c))
            .zip(x.par_chunks(c).zip(grad.par_chunks(c)))
            .zip(step.par_iter())
            .for_each(|(((xa, xo), (xi, g)), &s)| {
                let dir = step_direction(cfg.norm, g);
                let mut z: Vec<f32> = xa.iter().zip(&dir).map(|(v, d)| v + s * d).collect();
                project_one(cfg.norm, eps, xi, &mut z);
                let mut next: Vec<f32> = (0..f)
                    .map(|j| {
                        let cur = xa[j];
                        cur + (z[j] - cur) * a + (cur - xo[j]) * (1.0 - a)
                    })
                    .collect();
                project_one(cfg.norm, eps, xi, &mut next);
                xo.copy_from_slice(xa);
                xa.copy_from_slice(&next);
            });
        let (logits, losses, g) = logits_loss_grad(m, dev, &x_adv, n, lossfn)?;
        grad = g;
        for i in 0..n {
            if argmax(&logits[i * k..(i + 1) * k]) != y[i] {
                fooled[i] = true;
                x_best_adv[i * f..(i + 1) * f].copy_from_slice(&x_adv[i * f..(i + 1) * f]);
            }
            if losses[i] > loss_best[i] {
                loss_best[i] = losses[i];
                x_best[i * f..(i + 1) * f].copy_from_slice(&x_adv[i * f..(i + 1) * f]);
                grad_best[i * f..(i + 1) * f].copy_from_slice(&grad[i * f..(i + 1) * f]);
            }
        }
        loss_steps.push(losses);
        counter += 1;
        if counter == k_len {
            for i in 0..n {
                // steps since the last checkpoint that raised the loss (the reference compares
                // the first one with a zero-initialised row: kept)
                let ups = (0..k_len)
                    .filter(|c| {
                        let j = it - c;
                        let prev = if j == 0 { 0.0 } else { loss_steps[j - 1][i] };
                        loss_steps[j][i] > prev
                    })
                    .count();
                let oscillation = (ups as f64) <= k_len as f64 * cfg.rho;
                let no_improvement =
                    !reduced_last_check[i] && loss_best_last_check[i] >= loss_best[i];
                let reduce = oscillation || no_improvement;
                reduced_last_check[i] = reduce;
                loss_best_last_check[i] = loss_best[i];
                if reduce {
                    step[i] /= 2.0;
                    let r = i * f..(i + 1) * f;
                    x_adv[r.clone()].copy_from_slice(&x_best[r.clone()]);
                    grad[r.clone()].copy_from_slice(&grad_best[r]);
                }
            }
            k_len = k_len.saturating_sub(size_decr).max(n_iter_min);
            counter = 0;
        }
    }
    Ok(Run {
        fooled,
        adv: x_best_adv,
    })
}

/// APGD on `model` from the clean batch `x`: returns the adversarial batch (images never fooled
/// are returned unchanged) and, per image, whether it is still classified correctly (`true`:
/// robust). Only images correctly classified at the start are attacked (AutoAttack's rule);
/// a misclassified clean image counts as not robust.
pub fn apgd<M: AttackModel<D>, D: Backend>(
    model: &mut M,
    x: &Images<M, D>,
    labels: &[usize],
    cfg: &ApgdConfig,
) -> Result<(Images<M, D>, Vec<bool>), Error> {
    cfg.validate()?;
    let n = x.shape().0;
    let k = M::Classes::SIZE;
    check_labels(labels, n, k)?;
    if cfg.loss == ApgdLoss::DlrTargeted && k < 4 {
        return Err(Error::InvalidParameter {
            name: "classes",
            value: k as f64,
            reason: "the targeted DLR loss needs at least 4 classes",
        });
    }
    let dev = x.device().clone();
    let shape = *x.shape();
    let xs = x.as_vec();
    let f = xs.len() / n.max(1);
    in_eval_mode(model, |m| {
        let mut robust = classified_correctly(m, &dev, &xs, labels)?;
        let mut adv = xs.clone();
        let mut rng = StdRng::seed_from_u64(cfg.seed);
        let rounds: Vec<Option<usize>> = match cfg.loss {
            ApgdLoss::DlrTargeted => (2..cfg.n_target_classes.min(k - 1) + 2).map(Some).collect(),
            _ => vec![None],
        };
        for round in rounds {
            for _ in 0..cfg.n_restarts {
                let idx: Vec<usize> = (0..n).filter(|&i| robust[i]).collect();
                if idx.is_empty() {
                    break;
                }
                let sub_x: Vec<f32> = idx
                    .iter()
                    .flat_map(|&i| xs[i * f..(i + 1) * f].iter().copied())
                    .collect();
                let sub_y: Vec<usize> = idx.iter().map(|&i| labels[i]).collect();
                let targets: Vec<usize> = match round {
                    Some(rank) => {
                        let l = logits_of(m, &dev, &sub_x, idx.len())?;
                        (0..idx.len())
                            .map(|j| {
                                let row = &l[j * k..(j + 1) * k];
                                let mut order: Vec<usize> = (0..k).collect();
                                order.sort_by(|&a, &b| {
                                    row[b]
                                        .partial_cmp(&row[a])
                                        .unwrap_or(std::cmp::Ordering::Equal)
                                });
                                order[rank - 1]
                            })
                            .collect()
                    }
                    None => vec![0; idx.len()],
                };
                let run = single_run(m, &dev, &sub_x, &sub_y, &targets, cfg, &mut rng)?;
                for (j, &i) in idx.iter().enumerate() {
                    if run.fooled[j] {
                        robust[i] = false;
                        adv[i * f..(i + 1) * f].copy_from_slice(&run.adv[j * f..(j + 1) * f]);
                    }
                }
            }
        }
        Ok((dev.tensor_from_vec(adv, shape), robust))
    })
}
