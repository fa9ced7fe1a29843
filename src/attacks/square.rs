//! Square Attack (Andriushchenko et al. 2020), ℓ∞: a score-based random search that uses only
//! the model's logits, never a gradient — AutoAttack's last attack (5,000 queries, `p_init` 0.8,
//! PAPER.md §3.7) and the shape ablation's success-rate metric (§4, 1,000 queries).
//!
//! As in the reference implementation: start from vertical stripes `x + ε·s` (one random sign per
//! image, channel and column); at iteration `i` draw one square of side
//! `s = max(round(√(p(i)·n/c)), 1)` (`n` = pixels·channels, `c` = channels) at a random position
//! and one random sign per channel, shared by the batch, set the square to `±2ε` around the current
//! best point, project onto the ε-ball and `[0, 1]`, and keep the candidate for the images whose
//! margin loss `z_y − max_{j≠y} z_j` decreased or became ≤ 0. `p(i)` halves at iterations
//! 10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000 of a 10,000-query schedule rescaled to
//! `n_queries`. An image is done once misclassified.

use dfdx::shapes::{ConstDim, HasShape};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{argmax, check_budget, in_eval_mode, logits_of, AttackModel, Images};
use crate::ops::Backend;
use crate::Error;

/// Settings of [`square`].
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SquareConfig {
    pub eps: f64,
    /// Query budget per image (5,000 in AutoAttack).
    pub n_queries: usize,
    /// Initial fraction of pixels changed (0.8).
    pub p_init: f64,
    pub seed: u64,
}

impl SquareConfig {
    /// AutoAttack's standard Square: 5,000 queries, `p_init` 0.8.
    pub fn autoattack(eps: f64) -> Self {
        SquareConfig {
            eps,
            n_queries: 5000,
            p_init: 0.8,
            seed: 0,
        }
    }
    /// Errors on invalid settings.
    pub fn validate(&self) -> Result<(), Error> {
        check_budget(self.eps, 0.0)?;
        if !(self.p_init > 0.0 && self.p_init <= 1.0) {
            return Err(Error::InvalidParameter {
                name: "p_init",
                value: self.p_init,
                reason: "must be in (0, 1]",
            });
        }
        Ok(())
    }
}

/// The fraction of pixels changed at iteration `it` (the reference's schedule, rescaled from
/// 10,000 queries to `n_queries`).
pub fn p_selection(p_init: f64, it: usize, n_queries: usize) -> f64 {
    let it = (it as f64 / n_queries.max(1) as f64 * 10_000.0) as usize;
    let halvings = match it {
        0..=10 => 0,
        11..=50 => 1,
        51..=200 => 2,
        201..=500 => 3,
        501..=1000 => 4,
        1001..=2000 => 5,
        2001..=4000 => 6,
        4001..=6000 => 7,
        6001..=8000 => 8,
        _ => 9,
    };
    p_init / (1u32 << halvings) as f64
}

/// Margin `z_y − max_{j≠y} z_j` of every image.
fn margins(logits: &[f32], labels: &[usize], k: usize) -> Vec<f32> {
    labels
        .iter()
        .enumerate()
        .map(|(i, &y)| {
            let row = &logits[i * k..(i + 1) * k];
            let other = row
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != y)
                .fold(f32::NEG_INFINITY, |m, (_, v)| m.max(*v));
            row[y] - other
        })
        .collect()
}

/// Square ℓ∞ on `model` from the clean batch `x`: the adversarial batch and, per image, whether it
/// is still classified correctly. Images misclassified from the start are not attacked.
/// Reproducible for a fixed seed; only forward passes (no gradient is ever computed).
pub fn square<M: AttackModel<D>, D: Backend>(
    model: &mut M,
    x: &Images<M, D>,
    labels: &[usize],
    cfg: &SquareConfig,
) -> Result<(Images<M, D>, Vec<bool>), Error> {
    cfg.validate()?;
    let shape = *x.shape();
    let n = shape.0;
    if labels.len() != n {
        return Err(Error::InvalidParameter {
            name: "labels",
            value: labels.len() as f64,
            reason: "one label per image is needed",
        });
    }
    let (h, w, c, k) = (
        M::Height::SIZE,
        M::Width::SIZE,
        M::Channels::SIZE,
        M::Classes::SIZE,
    );
    if let Some(&l) = labels.iter().find(|&&l| l >= k) {
        return Err(Error::InvalidParameter {
            name: "label",
            value: l as f64,
            reason: "label outside the model's classes",
        });
    }
    let f = h * w * c;
    let eps = cfg.eps as f32;
    let dev = x.device().clone();
    let xs = x.as_vec();
    in_eval_mode(model, |m| {
        let mut rng = StdRng::seed_from_u64(cfg.seed);
        let clean = logits_of(m, &dev, &xs, n)?;
        let mut robust: Vec<bool> = (0..n)
            .map(|i| argmax(&clean[i * k..(i + 1) * k]) == labels[i])
            .collect();
        let mut adv = xs.clone();
        let idx: Vec<usize> = (0..n).filter(|&i| robust[i]).collect();
        if idx.is_empty() || eps == 0.0 {
            return Ok((dev.tensor_from_vec(adv, shape), robust));
        }
        // vertical stripes: one sign per (image, channel, column)
        let mut best: Vec<f32> = Vec::with_capacity(idx.len() * f);
        for &i in &idx {
            let signs: Vec<f32> = (0..w * c)
                .map(|_| if rng.gen_bool(0.5) { eps } else { -eps })
                .collect();
            for y in 0..h {
                for xw in 0..w {
                    for ch in 0..c {
                        let p = (y * w + xw) * c + ch;
                        best.push((xs[i * f + p] + signs[xw * c + ch]).clamp(0.0, 1.0));
                    }
                }
            }
        }
        let sub_y: Vec<usize> = idx.iter().map(|&i| labels[i]).collect();
        let sub_x: Vec<f32> = idx
            .iter()
            .flat_map(|&i| xs[i * f..(i + 1) * f].iter().copied())
            .collect();
        let mut margin = margins(&logits_of(m, &dev, &best, idx.len())?, &sub_y, k);
        for it in 0..cfg.n_queries {
            let active: Vec<usize> = (0..idx.len()).filter(|&j| margin[j] > 0.0).collect();
            if active.is_empty() {
                break;
            }
            let p = p_selection(cfg.p_init, it, cfg.n_queries);
            let s = (((p * f as f64 / c as f64).sqrt()).round() as usize)
                .clamp(1, (h.min(w) - 1).max(1));
            // the reference draws the corner in [0, h − s) (never the last row of positions)
            let vh = rng.gen_range(0..(h - s).max(1));
            let vw = rng.gen_range(0..(w - s).max(1));
            let chan: Vec<f32> = (0..c)
                .map(|_| {
                    if rng.gen_bool(0.5) {
                        2.0 * eps
                    } else {
                        -2.0 * eps
                    }
                })
                .collect();
            let mut cand: Vec<f32> = Vec::with_capacity(active.len() * f);
            for &j in &active {
                let xb = &best[j * f..(j + 1) * f];
                let x0 = &sub_x[j * f..(j + 1) * f];
                let start = cand.len();
                cand.extend_from_slice(xb);
                for y in vh..vh + s {
                    for xw in vw..vw + s {
                        for (ch, d) in chan.iter().enumerate() {
                            let p = (y * w + xw) * c + ch;
                            let v = (xb[p] + d).clamp(x0[p] - eps, x0[p] + eps);
                            cand[start + p] = v.clamp(0.0, 1.0);
                        }
                    }
                }
            }
            let sub_labels: Vec<usize> = active.iter().map(|&j| sub_y[j]).collect();
            let new_margin = margins(&logits_of(m, &dev, &cand, active.len())?, &sub_labels, k);
            for (a, &j) in active.iter().enumerate() {
                if new_margin[a] < margin[j] || new_margin[a] <= 0.0 {
                    margin[j] = new_margin[a];
                    best[j * f..(j + 1) * f].copy_from_slice(&cand[a * f..(a + 1) * f]);
                }
            }
        }
        for (j, &i) in idx.iter().enumerate() {
            if margin[j] <= 0.0 {
                robust[i] = false;
                adv[i * f..(i + 1) * f].copy_from_slice(&best[j * f..(j + 1) * f]);
            }
        }
        Ok((dev.tensor_from_vec(adv, shape), robust))
    })
}
