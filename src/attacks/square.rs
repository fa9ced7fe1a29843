//! Square Attack (Andriushchenko et al. 2020), ℓ∞: a score-based random search that uses only
//! the model's logits, never a gradient — AutoAttack's last attack (5,000 queries, `p_init` 0.8,
//! docs/reproduction.md §4) and the shape ablation's success-rate metric (§4, 1,000 queries).
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
use rayon::prelude::*;

use super::{
    check_budget, check_labels, classified_correctly, in_eval_mode, logits_of, AttackModel, Images,
    Norm,
};
use crate::ops::Backend;
use crate::Error;

/// Settings of [`square`].
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SquareConfig {
    /// ℓ∞ (stripes, ±2ε squares) or ℓ2 (the reference's windowed mass moves).
    pub norm: Norm,
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
            norm: Norm::Linf,
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
    let (h, w, c, k) = (
        M::Height::SIZE,
        M::Width::SIZE,
        M::Channels::SIZE,
        M::Classes::SIZE,
    );
    check_labels(labels, n, k)?;
    let f = h * w * c;
    let dev = x.device().clone();
    let xs = x.as_vec();
    in_eval_mode(model, |m| {
        let mut rng = StdRng::seed_from_u64(cfg.seed);
        let mut robust = classified_correctly(m, &dev, &xs, labels)?;
        let mut adv = xs.clone();
        let idx: Vec<usize> = (0..n).filter(|&i| robust[i]).collect();
        if idx.is_empty() || cfg.eps == 0.0 {
            return Ok((dev.tensor_from_vec(adv, shape), robust));
        }
        let sub_y: Vec<usize> = idx.iter().map(|&i| labels[i]).collect();
        let sub_x: Vec<f32> = idx
            .iter()
            .flat_map(|&i| xs[i * f..(i + 1) * f].iter().copied())
            .collect();
        let geo = Geo { h, w, c };
        let (best, margin) = match cfg.norm {
            Norm::Linf => run_linf(m, &dev, &sub_x, &sub_y, cfg, geo, k, &mut rng)?,
            Norm::L2 => run_l2(m, &dev, &sub_x, &sub_y, cfg, geo, k, &mut rng)?,
        };
        for (j, &i) in idx.iter().enumerate() {
            if margin[j] <= 0.0 {
                robust[i] = false;
                adv[i * f..(i + 1) * f].copy_from_slice(&best[j * f..(j + 1) * f]);
            }
        }
        Ok((dev.tensor_from_vec(adv, shape), robust))
    })
}

/// Scores the candidate images of the `active` images (one forward pass) and keeps each candidate
/// whose margin fell or became ≤ 0 (the reference's update rule).
#[allow(clippy::too_many_arguments)]
fn keep_improved<M: AttackModel<D>, D: Backend>(
    m: &M,
    dev: &D,
    cand: &[f32],
    active: &[usize],
    y: &[usize],
    k: usize,
    margin: &mut [f32],
    best: &mut [f32],
) -> Result<(), Error> {
    let f = cand.len() / active.len().max(1);
    let sub: Vec<usize> = active.iter().map(|&j| y[j]).collect();
    let new_margin = margins(&logits_of(m, dev, cand, active.len())?, &sub, k);
    for (a, &j) in active.iter().enumerate() {
        if new_margin[a] < margin[j] || new_margin[a] <= 0.0 {
            margin[j] = new_margin[a];
            best[j * f..(j + 1) * f].copy_from_slice(&cand[a * f..(a + 1) * f]);
        }
    }
    Ok(())
}

#[derive(Clone, Copy)]
struct Geo {
    h: usize,
    w: usize,
    c: usize,
}

/// The ℓ∞ search on the still-robust images `x` (host): the best points and their margins.
#[allow(clippy::too_many_arguments)]
fn run_linf<M: AttackModel<D>, D: Backend>(
    m: &M,
    dev: &D,
    x: &[f32],
    y: &[usize],
    cfg: &SquareConfig,
    Geo { h, w, c }: Geo,
    k: usize,
    rng: &mut StdRng,
) -> Result<(Vec<f32>, Vec<f32>), Error> {
    let f = h * w * c;
    let n = y.len();
    let eps = cfg.eps as f32;
    // vertical stripes: one sign per (image, channel, column)
    let mut best: Vec<f32> = Vec::with_capacity(n * f);
    for i in 0..n {
        let signs: Vec<f32> = (0..w * c)
            .map(|_| if rng.gen_bool(0.5) { eps } else { -eps })
            .collect();
        for yy in 0..h {
            for xw in 0..w {
                for ch in 0..c {
                    let p = (yy * w + xw) * c + ch;
                    best.push((x[i * f + p] + signs[xw * c + ch]).clamp(0.0, 1.0));
                }
            }
        }
    }
    let mut margin = margins(&logits_of(m, dev, &best, n)?, y, k);
    for it in 0..cfg.n_queries {
        let active: Vec<usize> = (0..n).filter(|&j| margin[j] > 0.0).collect();
        if active.is_empty() {
            break;
        }
        let p = p_selection(cfg.p_init, it, cfg.n_queries);
        let s =
            (((p * f as f64 / c as f64).sqrt()).round() as usize).clamp(1, (h.min(w) - 1).max(1));
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
        // each active image's candidate (independent: in parallel)
        let mut cand = vec![0.0f32; active.len() * f];
        cand.par_chunks_mut(f)
            .zip(active.par_iter())
            .for_each(|(cj, &j)| {
                let xb = &best[j * f..(j + 1) * f];
                let x0 = &x[j * f..(j + 1) * f];
                cj.copy_from_slice(xb);
                for yy in vh..vh + s {
                    for xw in vw..vw + s {
                        for (ch, d) in chan.iter().enumerate() {
                            let q = (yy * w + xw) * c + ch;
                            let v = (xb[q] + d).clamp(x0[q] - eps, x0[q] + eps);
                            cj[q] = v.clamp(0.0, 1.0);
                        }
                    }
                }
            });
        keep_improved(m, dev, &cand, &active, y, k, &mut margin, &mut best)?;
    }
    Ok((best, margin))
}

/// The reference's `eta_rectangles(x, y)`: nested rectangles of weight 1/(r+1)², unit ℓ2 norm.
fn eta_rectangles(x: usize, y: usize) -> Vec<f32> {
    let mut d = vec![0.0f32; x * y];
    let (xc, yc) = (x / 2 + 1, y / 2 + 1);
    let (mut c0, mut c1) = (xc as isize - 1, yc as isize - 1);
    for r in 0..xc.max(yc) {
        let (r0, r1) = (
            c0.max(0) as usize,
            ((c0 + 2 * r as isize + 1).min(x as isize)).max(0) as usize,
        );
        let (q0, q1) = (
            c1.max(0) as usize,
            ((c1 + 2 * r as isize + 1).min(y as isize)).max(0) as usize,
        );
        for i in r0..r1 {
            for j in q0..q1 {
                d[i * y + j] += 1.0 / ((r + 1) * (r + 1)) as f32;
            }
        }
        c0 -= 1;
        c1 -= 1;
    }
    let n = d.iter().map(|v| v * v).sum::<f32>().sqrt() + 1e-12;
    d.iter_mut().for_each(|v| *v /= n);
    d
}

/// The reference's `eta(s)`: +rectangles on the top half, −rectangles on the bottom half,
/// unit ℓ2 norm, transposed with probability ½. Row-major `s × s`.
fn eta(s: usize, rng: &mut StdRng) -> Vec<f32> {
    let mut d = vec![0.0f32; s * s];
    let top = eta_rectangles(s / 2, s);
    let bottom = eta_rectangles(s - s / 2, s);
    d[..top.len()].copy_from_slice(&top);
    for (i, v) in bottom.iter().enumerate() {
        d[top.len() + i] = -v;
    }
    let n = d.iter().map(|v| v * v).sum::<f32>().sqrt() + 1e-12;
    d.iter_mut().for_each(|v| *v /= n);
    if rng.gen::<f32>() > 0.5 {
        let mut t = vec![0.0f32; s * s];
        for i in 0..s {
            for j in 0..s {
                t[j * s + i] = d[i * s + j];
            }
        }
        d = t;
    }
    d
}

fn l2(v: &[f32]) -> f32 {
    v.iter().map(|a| a * a).sum::<f32>().sqrt()
}

/// `clamp(x + ε·δ/‖δ‖₂, 0, 1)` for one image.
fn from_delta(x: &[f32], delta: &[f32], eps: f32) -> Vec<f32> {
    let n = l2(delta) + 1e-12;
    x.iter()
        .zip(delta)
        .map(|(x, d)| (x + eps * d / n).clamp(0.0, 1.0))
        .collect()
}

/// The ℓ2 search (the reference's windowed version): see the reference for the scheme; one square
/// position per iteration for the batch, signs per image and channel.
#[allow(clippy::too_many_arguments)]
fn run_l2<M: AttackModel<D>, D: Backend>(
    m: &M,
    dev: &D,
    x: &[f32],
    y: &[usize],
    cfg: &SquareConfig,
    Geo { h, w, c }: Geo,
    k: usize,
    rng: &mut StdRng,
) -> Result<(Vec<f32>, Vec<f32>), Error> {
    let f = h * w * c;
    let n = y.len();
    let eps = cfg.eps as f32;
    let at = |yy: usize, xw: usize, ch: usize| (yy * w + xw) * c + ch;
    // init: a 5 × 5 grid of ±eta(s) windows, s = h/5
    let s0 = (h / 5).max(1);
    let sp = (h.saturating_sub(s0 * 5)) / 2;
    let mut best = Vec::with_capacity(n * f);
    for i in 0..n {
        let mut delta = vec![0.0f32; f];
        let mut vh = sp;
        for _ in 0..h / s0 {
            let mut vw = sp;
            for _ in 0..w / s0 {
                let e = eta(s0, rng);
                let signs: Vec<f32> = (0..c)
                    .map(|_| if rng.gen_bool(0.5) { 1.0 } else { -1.0 })
                    .collect();
                for a in 0..s0 {
                    for b in 0..s0 {
                        if vh + a < h && vw + b < w {
                            for (ch, sg) in signs.iter().enumerate() {
                                delta[at(vh + a, vw + b, ch)] += e[a * s0 + b] * sg;
                            }
                        }
                    }
                }
                vw += s0;
            }
            vh += s0;
        }
        best.extend(from_delta(&x[i * f..(i + 1) * f], &delta, eps));
    }
    let mut margin = margins(&logits_of(m, dev, &best, n)?, y, k);
    for it in 0..cfg.n_queries {
        let active: Vec<usize> = (0..n).filter(|&j| margin[j] > 0.0).collect();
        if active.is_empty() {
            break;
        }
        let p = p_selection(cfg.p_init, it, cfg.n_queries);
        let mut s = (((p * f as f64 / c as f64).sqrt()).round() as usize).max(3);
        if s % 2 == 0 {
            s += 1;
        }
        let s = s.min(h.min(w));
        let vh = rng.gen_range(0..(h - s).max(1));
        let vw = rng.gen_range(0..(w - s).max(1));
        let vh2 = rng.gen_range(0..(h - s).max(1));
        let vw2 = rng.gen_range(0..(w - s).max(1));
        let in1 = |yy: usize, xw: usize| yy >= vh && yy < vh + s && xw >= vw && xw < vw + s;
        let in2 = |yy: usize, xw: usize| yy >= vh2 && yy < vh2 + s && xw >= vw2 && xw < vw2 + s;
        let mut cand = Vec::with_capacity(active.len() * f);
        for &j in &active {
            let x0 = &x[j * f..(j + 1) * f];
            let mut delta: Vec<f32> = best[j * f..(j + 1) * f]
                .iter()
                .zip(x0)
                .map(|(b, x)| b - x)
                .collect();
            let norm_image = l2(&delta);
            let norm_windows = {
                let mut acc = 0.0f32;
                for yy in 0..h {
                    for xw in 0..w {
                        if in1(yy, xw) || in2(yy, xw) {
                            for ch in 0..c {
                                acc += delta[at(yy, xw, ch)].powi(2);
                            }
                        }
                    }
                }
                acc.sqrt()
            };
            let e = eta(s, rng);
            let mut new = vec![0.0f32; s * s * c];
            for ch in 0..c {
                let sign = if rng.gen_bool(0.5) { 1.0 } else { -1.0 };
                let old_norm = (0..s * s)
                    .map(|q| delta[at(vh + q / s, vw + q % s, ch)].powi(2))
                    .sum::<f32>()
                    .sqrt();
                for q in 0..s * s {
                    new[q * c + ch] =
                        e[q] * sign + delta[at(vh + q / s, vw + q % s, ch)] / (1e-12 + old_norm);
                }
                let nn = (0..s * s)
                    .map(|q| new[q * c + ch].powi(2))
                    .sum::<f32>()
                    .sqrt();
                let scale = ((eps * eps - norm_image * norm_image).max(0.0) / c as f32
                    + norm_windows * norm_windows)
                    .sqrt();
                for q in 0..s * s {
                    new[q * c + ch] = new[q * c + ch] / (1e-12 + nn) * scale;
                }
            }
            for yy in vh2..vh2 + s {
                for xw in vw2..vw2 + s {
                    for ch in 0..c {
                        delta[at(yy, xw, ch)] = 0.0;
                    }
                }
            }
            for q in 0..s * s {
                for ch in 0..c {
                    delta[at(vh + q / s, vw + q % s, ch)] = new[q * c + ch];
                }
            }
            cand.extend(from_delta(x0, &delta, eps));
        }
        keep_improved(m, dev, &cand, &active, y, k, &mut margin, &mut best)?;
    }
    Ok((best, margin))
}
