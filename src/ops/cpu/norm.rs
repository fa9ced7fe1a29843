//! Batch normalisation over every axis but the last (channels-last), CPU.
//!
//! Training mode: `y = (x − μ_B) / sqrt(σ²_B + ε) · γ + β` with the biased batch variance;
//! backward `dx = γ·s/N · (N·g − Σg − x̂·Σ(g·x̂))`, `s = 1/sqrt(σ²_B + ε)`.
//! Evaluation mode: `y = (x − μ_run) · s + β`, `s = γ/sqrt(σ²_run + ε)`; backward `dx = g·s`
//! (the gradient attacks need), `dγ = Σ g·x̂`, `dβ = Σ g`.

use dfdx::shapes::HasShape;
use dfdx::shapes::{Rank1, Shape};
use dfdx::tensor::{Cpu, CpuError, PutTape, SplitTape, Tape, Tensor};
use rayon::prelude::*;

use super::{put_grad, read, take_grad, wrap};
use crate::ops::{BatchStatistics, Elem};

/// Rows (pixels) per parallel task.
const ROWS: usize = 512;

/// Per-channel sums of `f(row)` over every row, in f64.
fn channel_sums(data: &[Elem], c: usize, f: impl Fn(&[Elem], &mut [f64]) + Sync) -> Vec<f64> {
    data.par_chunks(c * ROWS)
        .map(|ch| {
            let mut s = vec![0.0f64; c];
            for row in ch.chunks(c) {
                f(row, &mut s);
            }
            s
        })
        .reduce(
            || vec![0.0f64; c],
            |mut a, b| {
                a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
                a
            },
        )
}

pub(super) fn forward<S: Shape, const C: usize, T: Tape<Elem, Cpu>>(
    x: Tensor<S, Elem, Cpu, T>,
    weight: &Tensor<Rank1<C>, Elem, Cpu>,
    bias: &Tensor<Rank1<C>, Elem, Cpu>,
    running: Option<(&Tensor<Rank1<C>, Elem, Cpu>, &Tensor<Rank1<C>, Elem, Cpu>)>,
    eps: f64,
) -> Result<(Tensor<S, Elem, Cpu, T>, Option<BatchStatistics>), CpuError> {
    let _t = crate::ops::profile::scope("bn fwd");
    let (x, mut tape) = x.split_tape();
    let xs = read(&x);
    let n = xs.len() / C;
    let gamma = read(weight);
    let beta = read(bias);
    let (mean, invstd, stats): (Vec<f64>, Vec<f64>, Option<BatchStatistics>) = match running {
        None => {
            let sum = channel_sums(&xs, C, |row, s| {
                s.iter_mut().zip(row).for_each(|(s, &v)| *s += v as f64)
            });
            let mean: Vec<f64> = sum.iter().map(|s| s / n as f64).collect();
            let sq = channel_sums(&xs, C, |row, s| {
                for ((s, &v), m) in s.iter_mut().zip(row).zip(&mean) {
                    let d = v as f64 - m;
                    *s += d * d;
                }
            });
            let var: Vec<f64> = sq.iter().map(|s| s / n as f64).collect();
            let invstd = var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
            let stats = BatchStatistics {
                mean: mean.clone(),
                var,
                count: n,
            };
            (mean, invstd, Some(stats))
        }
        Some((rm, rv)) => {
            let mean = read(rm).into_iter().map(|v| v as f64).collect();
            let invstd = read(rv)
                .into_iter()
                .map(|v| 1.0 / (v as f64 + eps).sqrt())
                .collect();
            (mean, invstd, None)
        }
    };
    // y = x·a + b per channel
    let a: Vec<Elem> = (0..C)
        .map(|c| (gamma[c] as f64 * invstd[c]) as Elem)
        .collect();
    let b: Vec<Elem> = (0..C)
        .map(|c| (beta[c] as f64 - mean[c] * gamma[c] as f64 * invstd[c]) as Elem)
        .collect();
    let mut ys = vec![0.0; xs.len()];
    ys.par_chunks_mut(C * ROWS)
        .zip(xs.par_chunks(C * ROWS))
        .for_each(|(y, x)| {
            for (yr, xr) in y.chunks_mut(C).zip(x.chunks(C)) {
                for c in 0..C {
                    yr[c] = xr[c] * a[c] + b[c];
                }
            }
        });
    let y = wrap(x.device(), ys, *x.shape())?;
    if T::OWNS_TAPE {
        let y_ghost = y.clone();
        let (weight, bias) = (weight.clone(), bias.clone());
        let training = running.is_none();
        tape.add_backward_op(move |grads| {
            let _t = crate::ops::profile::scope("bn bwd");
            let gy = take_grad(grads, &y_ghost)?;
            let mf: Vec<Elem> = mean.iter().map(|&m| m as Elem).collect();
            let sf: Vec<Elem> = invstd.iter().map(|&s| s as Elem).collect();
            // Σg and Σ g·x̂ per channel
            let sums = gy
                .par_chunks(C * ROWS)
                .zip(xs.par_chunks(C * ROWS))
                .map(|(g, x)| {
                    let mut s = vec![0.0f64; 2 * C];
                    for (gr, xr) in g.chunks(C).zip(x.chunks(C)) {
                        for c in 0..C {
                            s[c] += gr[c] as f64;
                            s[C + c] += (gr[c] * (xr[c] - mf[c]) * sf[c]) as f64;
                        }
                    }
                    s
                })
                .reduce(
                    || vec![0.0f64; 2 * C],
                    |mut a, b| {
                        a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
                        a
                    },
                );
            let (sum_g, sum_gx) = sums.split_at(C);
            {
                let gx: &mut Vec<Elem> = grads.get_or_alloc_mut(&x)?;
                if training {
                    let k1: Vec<Elem> = (0..C)
                        .map(|c| (gamma[c] as f64 * invstd[c]) as Elem)
                        .collect();
                    let mg: Vec<Elem> = (0..C).map(|c| (sum_g[c] / n as f64) as Elem).collect();
                    let mgx: Vec<Elem> = (0..C).map(|c| (sum_gx[c] / n as f64) as Elem).collect();
                    gx.par_chunks_mut(C * ROWS)
                        .zip(gy.par_chunks(C * ROWS).zip(xs.par_chunks(C * ROWS)))
                        .for_each(|(d, (g, x))| {
                            for ((dr, gr), xr) in d.chunks_mut(C).zip(g.chunks(C)).zip(x.chunks(C))
                            {
                                for c in 0..C {
                                    let xhat = (xr[c] - mf[c]) * sf[c];
                                    dr[c] += k1[c] * (gr[c] - mg[c] - xhat * mgx[c]);
                                }
                            }
                        });
                } else {
                    gx.par_chunks_mut(C * ROWS)
                        .zip(gy.par_chunks(C * ROWS))
                        .for_each(|(d, g)| {
                            for (dr, gr) in d.chunks_mut(C).zip(g.chunks(C)) {
                                for c in 0..C {
                                    dr[c] += gr[c] * a[c];
                                }
                            }
                        });
                }
            }
            let gw: &mut Vec<Elem> = grads.get_or_alloc_mut(&weight)?;
            gw.iter_mut()
                .zip(sum_gx)
                .for_each(|(g, s)| *g += *s as Elem);
            let gb: &mut Vec<Elem> = grads.get_or_alloc_mut(&bias)?;
            gb.iter_mut().zip(sum_g).for_each(|(g, s)| *g += *s as Elem);
            put_grad(grads, &y_ghost, gy)
        });
    }
    Ok((y.put_tape(tape), stats))
}
