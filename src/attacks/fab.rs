//! FAB-T, the targeted Fast Adaptive Boundary attack (Croce & Hein 2020, "Minimally distorted
//! adversarial examples with a fast adaptive boundary attack"), ℓ∞ and ℓ2, as in AutoAttack's
//! standard version (docs/reproduction.md §4: 100 iterations, 1 restart, 9 target classes,
//! α_max = 0.1, η = 1.05, β = 0.9).
//!
//! FAB looks for the smallest perturbation that crosses the decision boundary between the true
//! class `y` and a target class `t`. At the iterate `x₁` the difference `f(z) = z_t(z) − z_y(z)`
//! is linearised: the hyperplane `π = {z : ∇f(x₁)·z = ∇f(x₁)·x₁ − f(x₁)}`. Both the iterate and
//! the clean image `x₀` are projected onto `π ∩ [0, 1]ⁿ` (minimal ℓ∞ / ℓ2 distance,
//! [`projection_linf`], [`projection_l2`]), giving `δ₁` and `δ₀`, and
//!
//! `x₁ ← clamp((x₁ + η δ₁)(1 − α) + (x₀ + η δ₀) α, 0, 1)`, `α = min(‖δ₁‖ / (‖δ₁‖ + ‖δ₀‖), α_max)`
//!
//! (the bias α towards `x₀` keeps the perturbation small). When `x₁` is misclassified it is
//! recorded if its distance to `x₀` is the smallest so far, and pulled back towards the clean
//! image: `x₁ ← x₀ + β (x₁ − x₀)`. Restarts after the first start at a random point at distance
//! `ε/2` from `x₀`.
//!
//! FAB-T as in AutoAttack: only correctly classified images are attacked; for each target rank
//! `2..=n_target_classes + 1` (the class with the k-th highest clean logit; at most the number of
//! classes) and each restart, FAB runs on the images still robust, and an image is broken when
//! the smallest misclassified point found lies within ε (ℓ∞, or ℓ2 per image) of `x₀`.
//!
//! The host does the arithmetic (projections are `O(n log n)` per image); per iteration the model
//! runs one forward and backward pass for `∇(z_t − z_y)` of the whole batch
//! ([`super::logits_loss_grad`]) and one forward pass for the misclassification check.

use dfdx::shapes::{ConstDim, HasShape};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal, Uniform};
use rayon::prelude::*;

use super::Norm;
use super::{
    argmax, check_budget, check_labels, in_eval_mode, logits_loss_grad, logits_of, AttackModel,
    Images,
};
use crate::ops::Backend;
use crate::Error;

/// Settings of [`fab_targeted`].
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FabConfig {
    pub norm: Norm,
    /// The threat model's budget: a point counts as broken only within ε; also the radius scale
    /// of the random restarts.
    pub eps: f64,
    /// Iterations per run (100).
    pub n_iter: usize,
    /// Runs per target class (1; the runs after the first start at a random point).
    pub n_restarts: usize,
    /// Target classes: the 2nd … (n+1)-th most likely classes of the clean image (9).
    pub n_target_classes: usize,
    /// Largest bias towards the clean image (0.1).
    pub alpha_max: f64,
    /// Overshoot of the projection step (1.05).
    pub eta: f64,
    /// Backward step after a successful iterate (0.9).
    pub beta: f64,
    pub seed: u64,
}

impl FabConfig {
    /// AutoAttack's FAB-T: 100 iterations, 1 restart, 9 target classes, α_max 0.1, η 1.05, β 0.9.
    pub fn targeted(norm: Norm, eps: f64) -> Self {
        FabConfig {
            norm,
            eps,
            n_iter: 100,
            n_restarts: 1,
            n_target_classes: 9,
            alpha_max: 0.1,
            eta: 1.05,
            beta: 0.9,
            seed: 0,
        }
    }

    /// Errors on invalid settings.
    pub fn validate(&self) -> Result<(), Error> {
        check_budget(self.eps, 0.0)?;
        for (name, v) in [
            ("n_iter", self.n_iter),
            ("n_restarts", self.n_restarts),
            ("n_target_classes", self.n_target_classes),
        ] {
            if v == 0 {
                return Err(Error::InvalidParameter {
                    name,
                    value: 0.0,
                    reason: "must be at least 1",
                });
            }
        }
        if !(0.0..=1.0).contains(&self.alpha_max) {
            return Err(Error::InvalidParameter {
                name: "alpha_max",
                value: self.alpha_max,
                reason: "must be in [0, 1]",
            });
        }
        if !(self.eta.is_finite() && self.eta >= 1.0) {
            return Err(Error::InvalidParameter {
                name: "eta",
                value: self.eta,
                reason: "must be finite and at least 1",
            });
        }
        if !(self.beta > 0.0 && self.beta <= 1.0) {
            return Err(Error::InvalidParameter {
                name: "beta",
                value: self.beta,
                reason: "must be in (0, 1]",
            });
        }
        Ok(())
    }
}

/// The hyperplane `w·z = b` seen from `t`, oriented so that `t` is on its non-negative side:
/// `c = |w·t − b|`, and per coordinate the direction `s_i ∈ {−1, 0, 1}` that lowers the
/// oriented `w·z`, the room `p_i ≥ 0` left in `[0, 1]` along it and `|w_i|`.
struct Oriented {
    c: f64,
    s: Vec<f64>,
    p: Vec<f64>,
    aw: Vec<f64>,
}

fn orient(t: &[f32], w: &[f32], b: f64) -> Result<Oriented, Error> {
    if t.len() != w.len() {
        return Err(Error::InvalidParameter {
            name: "w",
            value: w.len() as f64,
            reason: "the hyperplane's normal must have the point's dimension",
        });
    }
    if !b.is_finite() || t.iter().chain(w).any(|v| !v.is_finite()) {
        return Err(Error::NonFinite {
            what: "FAB projection input".into(),
        });
    }
    let c0: f64 = t
        .iter()
        .zip(w)
        .map(|(&t, &w)| t as f64 * w as f64)
        .sum::<f64>()
        - b;
    let flip = if c0 < 0.0 { -1.0 } else { 1.0 };
    let n = t.len();
    let (mut s, mut p, mut aw) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for (&ti, &wi) in t.iter().zip(w) {
        let (ti, wi) = (ti as f64, wi as f64 * flip);
        let (si, pi) = if wi > 0.0 {
            (-1.0, ti)
        } else if wi < 0.0 {
            (1.0, 1.0 - ti)
        } else {
            (0.0, 0.0)
        };
        s.push(si);
        p.push(pi.max(0.0));
        aw.push(wi.abs());
    }
    Ok(Oriented {
        c: c0 * flip,
        s,
        p,
        aw,
    })
}

/// Indices with `w_i ≠ 0`, sorted by `key` ascending (ties by index).
fn sorted_support(o: &Oriented, key: impl Fn(usize) -> f64) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..o.aw.len()).filter(|&i| o.aw[i] > 0.0).collect();
    idx.sort_by(|&a, &b| key(a).total_cmp(&key(b)).then(a.cmp(&b)));
    idx
}

/// The smallest `δ` in ℓ∞ with `w·(t + δ) = b` and `t + δ ∈ [0, 1]ⁿ` (the point `t` itself in
/// `[0, 1]ⁿ`). When the hyperplane does not meet the box, the box corner closest to it (in `w·z`):
/// the reference's choice. Coordinates with `w_i = 0` never move.
///
/// With radius λ the largest decrease of the oriented `w·z` is `g(λ) = Σ |w_i| min(λ, p_i)`
/// (`p_i`: room in the box along `−sign(w_i)`), piecewise linear and increasing: λ solves
/// `g(λ) = c`, found on the sorted breakpoints `p_i`, and `δ_i = −sign(w_i) min(λ, p_i)`.
pub fn projection_linf(t: &[f32], w: &[f32], b: f64) -> Result<Vec<f64>, Error> {
    let o = orient(t, w, b)?;
    let total: f64 = o.aw.iter().zip(&o.p).map(|(a, p)| a * p).sum();
    let lambda = if o.c >= total {
        f64::INFINITY
    } else {
        let order = sorted_support(&o, |i| o.p[i]);
        // suffix sums of |w| over the coordinates not yet saturated
        let mut free: Vec<f64> = vec![0.0; order.len() + 1];
        for j in (0..order.len()).rev() {
            free[j] = free[j + 1] + o.aw[order[j]];
        }
        let mut fixed = 0.0;
        let mut lambda = order.last().map_or(0.0, |&i| o.p[i]);
        for (j, &i) in order.iter().enumerate() {
            let l = (o.c - fixed) / free[j];
            if l <= o.p[i] {
                lambda = l;
                break;
            }
            fixed += o.aw[i] * o.p[i];
        }
        lambda.max(0.0)
    };
    Ok((0..t.len()).map(|i| o.s[i] * lambda.min(o.p[i])).collect())
}

/// The smallest `δ` in ℓ2 with `w·(t + δ) = b` and `t + δ ∈ [0, 1]ⁿ` (the point `t` itself in
/// `[0, 1]ⁿ`); when the hyperplane does not meet the box, the box corner closest to it (in
/// `w·z`), as in the reference. Coordinates with `w_i = 0` never move.
///
/// By the KKT conditions `δ = clip(−a·w)` to the box for some `a ≥ 0`; the decrease
/// `h(a) = Σ |w_i| min(a|w_i|, p_i)` is piecewise linear and increasing in `a` with breakpoints
/// `p_i/|w_i|`: `a` solves `h(a) = c` on the sorted breakpoints.
pub fn projection_l2(t: &[f32], w: &[f32], b: f64) -> Result<Vec<f64>, Error> {
    let o = orient(t, w, b)?;
    let total: f64 = o.aw.iter().zip(&o.p).map(|(a, p)| a * p).sum();
    let a = if o.c >= total {
        f64::INFINITY
    } else {
        let r = |i: usize| o.p[i] / o.aw[i];
        let order = sorted_support(&o, r);
        let mut free: Vec<f64> = vec![0.0; order.len() + 1];
        for j in (0..order.len()).rev() {
            free[j] = free[j + 1] + o.aw[order[j]] * o.aw[order[j]];
        }
        let mut fixed = 0.0;
        let mut a = order.last().map_or(0.0, |&i| r(i));
        for (j, &i) in order.iter().enumerate() {
            let cand = (o.c - fixed) / free[j];
            if cand <= r(i) {
                a = cand;
                break;
            }
            fixed += o.aw[i] * o.p[i];
        }
        a.max(0.0)
    };
    Ok((0..t.len())
        .map(|i| {
            if o.aw[i] > 0.0 {
                o.s[i] * (a * o.aw[i]).min(o.p[i])
            } else {
                0.0
            }
        })
        .collect())
}

fn project(norm: Norm, t: &[f32], w: &[f32], b: f64) -> Result<Vec<f64>, Error> {
    match norm {
        Norm::Linf => projection_linf(t, w, b),
        Norm::L2 => projection_l2(t, w, b),
    }
}

fn norm_of(norm: Norm, d: impl Iterator<Item = f64>) -> f64 {
    match norm {
        Norm::Linf => d.fold(0.0, |m, v| m.max(v.abs())),
        Norm::L2 => d.map(|v| v * v).sum::<f64>().sqrt(),
    }
}

/// `‖a − b‖` (differences taken in `f32`, as the images are stored, then summed in `f64`).
fn dist(norm: Norm, a: &[f32], b: &[f32]) -> f64 {
    norm_of(norm, a.iter().zip(b).map(|(a, b)| (a - b) as f64))
}

/// One FAB run on the images `x0` (all correctly classified) with targets `t`: per image the
/// distance of the closest misclassified point found (`∞`: none) and the points.
#[allow(clippy::too_many_arguments)]
fn fab_run<M: AttackModel<D>, D: Backend>(
    m: &M,
    dev: &D,
    x0: &[f32],
    y: &[usize],
    t: &[usize],
    cfg: &FabConfig,
    random_start: bool,
    rng: &mut StdRng,
) -> Result<(Vec<f64>, Vec<f32>), Error> {
    let bs = y.len();
    let f = x0.len() / bs.max(1);
    let k = M::Classes::SIZE;
    let mut x1 = x0.to_vec();
    if random_start {
        // a random point at distance ε/2 (the reference's min(res, ε)/2 with res = ∞ at the start)
        let radius = 0.5 * cfg.eps;
        for j in 0..bs {
            let r: Vec<f64> = match cfg.norm {
                Norm::Linf => {
                    let u = Uniform::new_inclusive(-1.0f64, 1.0);
                    (0..f).map(|_| u.sample(rng)).collect()
                }
                Norm::L2 => (0..f).map(|_| StandardNormal.sample(rng)).collect(),
            };
            let scale = norm_of(cfg.norm, r.iter().copied()) + 1e-12;
            for (i, ri) in r.iter().enumerate() {
                let v = x0[j * f + i] as f64 + radius * ri / scale;
                x1[j * f + i] = v.clamp(0.0, 1.0) as f32;
            }
        }
    }
    let mut res = vec![f64::INFINITY; bs];
    let mut best = x0.to_vec();
    let diff = |i: usize, z: &[f32]| {
        let mut g = vec![0.0f32; z.len()];
        g[t[i]] += 1.0;
        g[y[i]] -= 1.0;
        (z[t[i]] as f64 - z[y[i]] as f64, g)
    };
    let (eta, alpha_max, beta) = (cfg.eta, cfg.alpha_max, cfg.beta);
    for _ in 0..cfg.n_iter {
        let (_, df, grad) = logits_loss_grad(m, dev, &x1, bs, diff)?;
        // image by image (independent: in parallel, the same numbers)
        let c = f.max(1);
        x1.par_chunks_mut(c)
            .zip(x0.par_chunks(c).zip(grad.par_chunks(c)))
            .zip(df.par_iter())
            .try_for_each(|((xj, (x0j, w)), &dfj)| -> Result<(), Error> {
                if !dfj.is_finite() || w.iter().any(|v| !v.is_finite()) {
                    // nothing to linearise: leave this image where it is
                    return Ok(());
                }
                // linearisation f(z) ≈ df + w·(z − x₁) = 0  ⇔  w·z = w·x₁ − df
                let b = w
                    .iter()
                    .zip(xj.iter())
                    .map(|(&w, &x)| w as f64 * x as f64)
                    .sum::<f64>()
                    - dfj;
                let d1 = project(cfg.norm, xj, w, b)?;
                let d0 = project(cfg.norm, x0j, w, b)?;
                let a1 = norm_of(cfg.norm, d1.iter().copied()).max(1e-8);
                let a0 = norm_of(cfg.norm, d0.iter().copied()).max(1e-8);
                let alpha = (a1 / (a1 + a0)).clamp(0.0, alpha_max);
                for (i, v) in xj.iter_mut().enumerate() {
                    let from_x1 = *v as f64 + eta * d1[i];
                    let from_x0 = x0j[i] as f64 + eta * d0[i];
                    *v = (from_x1 * (1.0 - alpha) + from_x0 * alpha).clamp(0.0, 1.0) as f32;
                }
                Ok(())
            })?;
        let logits = logits_of(m, dev, &x1, bs)?;
        for j in 0..bs {
            if argmax(&logits[j * k..(j + 1) * k]) == y[j] {
                continue;
            }
            let r = j * f..(j + 1) * f;
            let d = dist(cfg.norm, &x1[r.clone()], &x0[r.clone()]);
            if d < res[j] {
                res[j] = d;
                best[r.clone()].copy_from_slice(&x1[r.clone()]);
            }
            for (v, &o) in x1[r.clone()].iter_mut().zip(&x0[r]) {
                *v = (o as f64 + (*v as f64 - o as f64) * beta) as f32;
            }
        }
    }
    Ok((res, best))
}

/// FAB-T on `model` from the clean batch `x`: the adversarial batch (images not fooled are
/// returned unchanged) and, per image, whether it is still classified correctly (`true`:
/// robust). Only correctly classified images are attacked; a misclassified clean image counts as
/// not robust. Every returned image lies within ε of `x` (ℓ∞, or ℓ2 per image) and in `[0, 1]`.
/// Reproducible for a fixed seed (the seed only matters with more than one restart).
pub fn fab_targeted<M: AttackModel<D>, D: Backend>(
    model: &mut M,
    x: &Images<M, D>,
    labels: &[usize],
    cfg: &FabConfig,
) -> Result<(Images<M, D>, Vec<bool>), Error> {
    cfg.validate()?;
    let shape = *x.shape();
    let n = shape.0;
    let k = M::Classes::SIZE;
    check_labels(labels, n, k)?;
    let dev = x.device().clone();
    let xs = x.as_vec();
    let f = xs.len() / n.max(1);
    in_eval_mode(model, |m| {
        let clean = logits_of(m, &dev, &xs, n)?;
        let mut robust: Vec<bool> = (0..n)
            .map(|i| argmax(&clean[i * k..(i + 1) * k]) == labels[i])
            .collect();
        let mut adv = xs.clone();
        if cfg.eps == 0.0 || k < 2 {
            return Ok((dev.tensor_from_vec(adv, shape), robust));
        }
        // classes by decreasing clean logit (ties by index, so rank 1 is `argmax`)
        let ranked: Vec<Vec<usize>> = (0..n)
            .map(|i| {
                let row = &clean[i * k..(i + 1) * k];
                let mut order: Vec<usize> = (0..k).collect();
                order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
                order
            })
            .collect();
        let mut rng = StdRng::seed_from_u64(cfg.seed);
        for rank in 2..=cfg.n_target_classes.min(k - 1) + 1 {
            for restart in 0..cfg.n_restarts {
                let idx: Vec<usize> = (0..n).filter(|&i| robust[i]).collect();
                if idx.is_empty() {
                    break;
                }
                let sub_x: Vec<f32> = idx
                    .iter()
                    .flat_map(|&i| xs[i * f..(i + 1) * f].iter().copied())
                    .collect();
                let sub_y: Vec<usize> = idx.iter().map(|&i| labels[i]).collect();
                let targets: Vec<usize> = idx.iter().map(|&i| ranked[i][rank - 1]).collect();
                let (res, found) = fab_run(
                    m,
                    &dev,
                    &sub_x,
                    &sub_y,
                    &targets,
                    cfg,
                    restart > 0,
                    &mut rng,
                )?;
                // a point is broken only within ε, and if it is misclassified (checked again)
                let check = logits_of(m, &dev, &found, idx.len())?;
                for (j, &i) in idx.iter().enumerate() {
                    let r = j * f..(j + 1) * f;
                    let fooled = argmax(&check[j * k..(j + 1) * k]) != labels[i];
                    let d = dist(cfg.norm, &found[r.clone()], &sub_x[r.clone()]);
                    if res[j].is_finite() && fooled && d <= cfg.eps {
                        robust[i] = false;
                        adv[i * f..(i + 1) * f].copy_from_slice(&found[r]);
                    }
                }
            }
        }
        Ok((dev.tensor_from_vec(adv, shape), robust))
    })
}
