//! The robustness metrics of the shape ablation (docs/reproduction.md §4, the paper's
//! `eval_std.py`): the average minimal adversarial radius by per-sample binary search with PGD, the
//! Square attack's success rate, and the empirical Lipschitz constant. All run the model in
//! evaluation mode, on host images (`n · H·W·C` values in `[0, 1]`, NHWC) in batches.

use dfdx::shapes::ConstDim;

use crate::attacks::pgd::{pgd, PgdConfig};
use crate::attacks::square::{square, SquareConfig};
use crate::attacks::{
    classified_correctly, host_images, in_eval_mode, logits_loss_grad, logits_of, AttackModel, Norm,
};
use crate::ops::Backend;
use crate::Error;

/// Settings of [`average_radius`].
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RadiusConfig {
    /// First ε tried (0.05).
    pub eps_init: f64,
    /// PGD step size of the first round (0.0078), halved every round in the paper's procedure.
    pub step_init: f64,
    /// PGD steps per trial (4), no random start.
    pub pgd_steps: usize,
    /// The search stops when `Σ |ε − ε_prev|` over the batch is below this (1e-7).
    pub tolerance: f64,
    /// The paper's step schedule (step halved every round). `false`: each trial uses
    /// `step = 2.5·ε / pgd_steps`, so PGD can always reach the ε-sphere (a tighter estimate).
    pub paper_step_schedule: bool,
    pub batch_size: usize,
}

impl RadiusConfig {
    /// The paper's `bin_rad_search` settings.
    pub fn paper() -> Self {
        RadiusConfig {
            eps_init: 0.05,
            step_init: 0.0078,
            pgd_steps: 4,
            tolerance: 1e-7,
            paper_step_schedule: true,
            batch_size: 128,
        }
    }
}

/// Cross-entropy and its logit gradient for one image.
fn ce(z: &[f32], y: usize) -> (f64, Vec<f32>) {
    let m = z.iter().fold(f32::MIN, |a, &b| a.max(b)) as f64;
    let s: f64 = z.iter().map(|&v| (v as f64 - m).exp()).sum();
    let mut g: Vec<f32> = z
        .iter()
        .map(|&v| ((v as f64 - m).exp() / s) as f32)
        .collect();
    g[y] -= 1.0;
    (m + s.ln() - z[y] as f64, g)
}

/// ℓ∞ PGD with a per-image ε and step, no random start; returns whether each image is still
/// classified correctly.
#[allow(clippy::too_many_arguments)]
fn still_correct<M: AttackModel<D>, D: Backend>(
    m: &M,
    dev: &D,
    x: &[f32],
    y: &[usize],
    eps: &[f64],
    step: &[f64],
    steps: usize,
) -> Result<Vec<bool>, Error> {
    let n = y.len();
    let f = x.len() / n.max(1);
    let mut adv = x.to_vec();
    for _ in 0..steps {
        let (_, _, g) = logits_loss_grad(m, dev, &adv, n, |i, z| ce(z, y[i]))?;
        for i in 0..n {
            let (e, s) = (eps[i] as f32, step[i] as f32);
            for j in i * f..(i + 1) * f {
                let d = if g[j] > 0.0 {
                    s
                } else if g[j] < 0.0 {
                    -s
                } else {
                    0.0
                };
                adv[j] = (adv[j] + d).clamp(x[j] - e, x[j] + e).clamp(0.0, 1.0);
            }
        }
    }
    classified_correctly(m, dev, &adv, y)
}

/// The per-image minimal radius found by the binary search, for the images classified correctly
/// (`None` for the others), and their average (docs/reproduction.md §4, metric 2): start at
/// ε = 0.05, ε_prev = 0; while `Σ|ε − ε_prev| > tol`: PGD at ε; still correct →
/// `ε += |ε_prev − ε|/2`, else `ε −= |ε_prev − ε|/2`; `ε_prev` ← the old ε; halve the PGD step.
pub fn average_radius<M: AttackModel<D>, D: Backend>(
    model: &mut M,
    dev: &D,
    images: &[f32],
    labels: &[usize],
    cfg: &RadiusConfig,
) -> Result<(f64, Vec<Option<f64>>), Error> {
    let f = M::Height::SIZE * M::Width::SIZE * M::Channels::SIZE;
    check(images, labels, f, cfg.batch_size)?;
    in_eval_mode(model, |m| {
        let mut radii = vec![None; labels.len()];
        for (c, y) in labels.chunks(cfg.batch_size).enumerate() {
            let start = c * cfg.batch_size;
            let x = &images[start * f..(start + y.len()) * f];
            let ok = classified_correctly(m, dev, x, y)?;
            let correct: Vec<usize> = (0..y.len()).filter(|&i| ok[i]).collect();
            if correct.is_empty() {
                continue;
            }
            let xs: Vec<f32> = correct
                .iter()
                .flat_map(|&i| x[i * f..(i + 1) * f].iter().copied())
                .collect();
            let ys: Vec<usize> = correct.iter().map(|&i| y[i]).collect();
            let n = ys.len();
            let mut eps = vec![cfg.eps_init; n];
            let mut prev = vec![0.0; n];
            let mut step = cfg.step_init;
            let mut rounds = 0;
            while eps
                .iter()
                .zip(&prev)
                .map(|(e, p)| (e - p).abs())
                .sum::<f64>()
                > cfg.tolerance
                && rounds < 200
            {
                let steps: Vec<f64> = if cfg.paper_step_schedule {
                    vec![step; n]
                } else {
                    eps.iter().map(|e| 2.5 * e / cfg.pgd_steps as f64).collect()
                };
                let ok = still_correct(m, dev, &xs, &ys, &eps, &steps, cfg.pgd_steps)?;
                for i in 0..n {
                    let d = (prev[i] - eps[i]).abs() / 2.0;
                    prev[i] = eps[i];
                    eps[i] = if ok[i] { eps[i] + d } else { eps[i] - d };
                }
                step /= 2.0;
                rounds += 1;
            }
            for (j, &i) in correct.iter().enumerate() {
                radii[start + i] = Some(eps[j]);
            }
        }
        let found: Vec<f64> = radii.iter().flatten().copied().collect();
        let avg = if found.is_empty() {
            0.0
        } else {
            found.iter().sum::<f64>() / found.len() as f64
        };
        Ok((avg, radii))
    })
}

/// Square attack success rate (docs/reproduction.md §4, metric 3): among the images classified
/// correctly, the fraction Square (ℓ∞, `n_queries`, ε) misclassifies. Returns (rate, number
/// clean-correct).
pub fn square_success_rate<M: AttackModel<D>, D: Backend>(
    model: &mut M,
    dev: &D,
    images: &[f32],
    labels: &[usize],
    eps: f64,
    n_queries: usize,
    batch_size: usize,
) -> Result<(f64, usize), Error> {
    let f = M::Height::SIZE * M::Width::SIZE * M::Channels::SIZE;
    check(images, labels, f, batch_size)?;
    let cfg = SquareConfig {
        norm: Norm::Linf,
        eps,
        n_queries,
        p_init: 0.8,
        seed: 0,
    };
    let (mut correct, mut broken) = (0usize, 0usize);
    for (c, y) in labels.chunks(batch_size).enumerate() {
        let start = c * batch_size;
        let x = &images[start * f..(start + y.len()) * f];
        let clean = in_eval_mode(model, |m| classified_correctly(m, dev, x, y))?;
        let xt = host_images::<M, D>(dev, x.to_vec(), y.len());
        let (_, robust) = square(model, &xt, y, &cfg)?;
        correct += clean.iter().filter(|c| **c).count();
        broken += clean
            .iter()
            .zip(&robust)
            .filter(|(c, r)| **c && !**r)
            .count();
    }
    Ok((
        if correct == 0 {
            0.0
        } else {
            broken as f64 / correct as f64
        },
        correct,
    ))
}

/// Empirical Lipschitz constant (docs/reproduction.md §4, metric 4): per batch, `adv` = PGD-10
/// (ε 0.031, step 0.0078, no random start); `Σ_batches ‖f(x) − f(adv)‖₁ / ‖adv − x‖∞` (norms over
/// the whole batch tensor), divided by the number of images.
pub fn empirical_lipschitz<M: AttackModel<D>, D: Backend>(
    model: &mut M,
    dev: &D,
    images: &[f32],
    labels: &[usize],
    batch_size: usize,
) -> Result<f64, Error> {
    let f = M::Height::SIZE * M::Width::SIZE * M::Channels::SIZE;
    check(images, labels, f, batch_size)?;
    let cfg = PgdConfig {
        norm: Norm::Linf,
        eps: 0.031,
        step_size: 0.0078,
        steps: 10,
        random_start: false,
        clip_start: true,
        seed: 0,
        official_l2: false,
    };
    let mut total = 0.0;
    for (c, y) in labels.chunks(batch_size).enumerate() {
        let start = c * batch_size;
        let x = &images[start * f..(start + y.len()) * f];
        let xt = host_images::<M, D>(dev, x.to_vec(), y.len());
        let adv = pgd(model, &xt, y, &cfg)?.as_vec();
        let (lx, la) = in_eval_mode(model, |m| -> Result<_, Error> {
            Ok((
                logits_of(m, dev, x, y.len())?,
                logits_of(m, dev, &adv, y.len())?,
            ))
        })?;
        let num: f64 = lx.iter().zip(&la).map(|(a, b)| (a - b).abs() as f64).sum();
        let den = x
            .iter()
            .zip(&adv)
            .fold(0.0f64, |m, (a, b)| m.max((a - b).abs() as f64));
        if den > 0.0 {
            total += num / den;
        }
    }
    Ok(total / labels.len().max(1) as f64)
}

fn check(images: &[f32], labels: &[usize], f: usize, batch_size: usize) -> Result<(), Error> {
    if images.len() != labels.len() * f {
        return Err(Error::InvalidParameter {
            name: "images",
            value: images.len() as f64,
            reason: "expected labels.len() · H·W·C values",
        });
    }
    if batch_size == 0 {
        return Err(Error::InvalidParameter {
            name: "batch_size",
            value: 0.0,
            reason: "must be at least 1",
        });
    }
    Ok(())
}
