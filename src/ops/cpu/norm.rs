//! Batch normalisation over every axis but the last (channels-last), CPU, optionally fused with a
//! residual add and an element-wise activation: `y = f(x·a + b + r)` per channel.
//!
//! Training mode: `x̂ = (x − μ_B) / sqrt(σ²_B + ε)` with the biased batch variance (one pass of
//! f64 sums, shifted by the first row against cancellation); evaluation mode uses the running
//! statistics. `a = γ·s`, `b = β − μ·γ·s`, `s = 1/sqrt(σ² + ε)`.
//! Backward, with `g_z = g_y · f′(z)`, `z = x·a + b + r`: `g_r = g_z`, `dγ = Σ g_z·x̂`,
//! `dβ = Σ g_z`, and `dx = γ·s/N · (N·g_z − Σg_z − x̂·Σ(g_z·x̂))` in training mode,
//! `dx = g_z·a` in evaluation mode (the gradient attacks need).
//!
//! The backward pass makes as few passes over the activations as the formulas allow (issue 11):
//! evaluation mode (every attack step) is one pass per 256-row chunk — `z` recomputed, `g_z`
//! in a chunk-sized buffer, `dx` and `g_r` written from it, the channel sums only when γ and β
//! want gradients; training mode is two, since `dx` needs the sums over the whole batch: `g_z`
//! with its chunk's sums (the blocks and order of the forward statistics, so reproducible), then
//! `dx` and `g_r` together.

use std::sync::Arc;

use dfdx::shapes::HasShape;
use dfdx::shapes::{Rank1, Shape};
use dfdx::tensor::{Cpu, CpuError, PutTape, SplitTape, Tape, Tensor};
use rayon::prelude::*;

use super::{hold, par_output, put_grad, take_grad, wrap};
use crate::ops::{BatchStatistics, Elem, ScalarFn};

/// Rows (pixels) per parallel task.
const ROWS: usize = 256;

/// The identity, for batch norm without an activation.
#[derive(Clone, Copy)]
pub(super) struct Identity;

impl ScalarFn for Identity {
    fn value(&self, x: Elem) -> Elem {
        x
    }
    fn derivatives(&self, _: Elem) -> (Elem, [Elem; 2]) {
        (1.0, [0.0; 2])
    }
    fn apply(&self, x: &[Elem], y: &mut [Elem]) {
        y.copy_from_slice(x);
    }
    fn compose<S: Shape, D: dfdx::tensor_ops::Device<Elem>, T: Tape<Elem, D>>(
        &self,
        x: Tensor<S, Elem, D, T>,
        _: [Option<&Tensor<Rank1<1>, Elem, D>>; 2],
    ) -> Result<Tensor<S, Elem, D, T>, D::Err> {
        Ok(x)
    }
    fn backward(&self, _: &[Elem], g: &[Elem], gx: &mut [Elem], _: [bool; 2]) -> [f64; 2] {
        gx.iter_mut().zip(g).for_each(|(d, g)| *d += g);
        [0.0; 2]
    }
}

/// Per-channel sums over rows of `f(rows, acc)` (`acc` holds `W` sums per channel), in f64, in
/// parallel over blocks of [`ROWS`] rows. The block sums are added in block order, never in the
/// order rayon happens to join them, so the result is bit-identical from run to run (a resumed
/// training run repeats an uninterrupted one exactly).
fn channel_sums<const W: usize>(
    n_rows: usize,
    c: usize,
    f: impl Fn(std::ops::Range<usize>, &mut [f64]) + Sync,
) -> Vec<f64> {
    (0..n_rows.div_ceil(ROWS))
        .into_par_iter()
        .map(|t| {
            let mut s = vec![0.0f64; W * c];
            f(t * ROWS..((t + 1) * ROWS).min(n_rows), &mut s);
            s
        })
        .collect::<Vec<_>>()
        .into_iter()
        .fold(vec![0.0f64; W * c], |mut a, b| {
            a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
            a
        })
}

/// A SyncBN exchange that failed: its reason kept for the caller
/// ([`crate::ops::sync::take_sync_failure`]), the only error a kernel can return.
fn sync_failed(reason: String) -> CpuError {
    crate::ops::sync::record_failure(reason);
    CpuError::WrongNumElements
}

/// `buf` cut into `chunk`-sized pieces, or `n` times `None` without a buffer.
fn chunks_or_none(buf: Option<&mut [Elem]>, chunk: usize, n: usize) -> Vec<Option<&mut [Elem]>> {
    match buf {
        Some(b) => b.chunks_mut(chunk).map(Some).collect(),
        None => (0..n).map(|_| None).collect(),
    }
}

#[allow(clippy::too_many_arguments, clippy::type_complexity)]
pub(super) fn forward<S: Shape, const C: usize, T: Tape<Elem, Cpu>, F: ScalarFn>(
    x: Tensor<S, Elem, Cpu, T>,
    residual: Option<Tensor<S, Elem, Cpu, T>>,
    weight: &Tensor<Rank1<C>, Elem, Cpu>,
    bias: &Tensor<Rank1<C>, Elem, Cpu>,
    running: Option<(&Tensor<Rank1<C>, Elem, Cpu>, &Tensor<Rank1<C>, Elem, Cpu>)>,
    eps: f64,
    f: F,
    params: [Option<&Tensor<Rank1<1>, Elem, Cpu>>; 2],
) -> Result<(Tensor<S, Elem, Cpu, T>, Option<BatchStatistics>), CpuError> {
    let _t = crate::ops::profile::scope("bn(+act) fwd");
    let (x, mut tape) = x.split_tape();
    let res = match residual {
        Some(r) => {
            let (r, rt) = r.split_tape();
            tape = tape.merge(rt);
            Some(r)
        }
        None => None,
    };
    let xs = Arc::new(hold(&x));
    let rs = res.as_ref().map(|r| Arc::new(hold(r)));
    let total = xs.len();
    let n = total / C;
    let gamma = hold(weight);
    let beta = hold(bias);
    // SyncBN (training mode only): statistics and the backward's sums over every rank
    let sync = match running {
        None => crate::ops::sync::current_sync(),
        Some(_) => None,
    };
    let (mean, invstd, stats): (Vec<f64>, Vec<f64>, Option<BatchStatistics>) = match running {
        None => {
            let shift: Vec<f64> = (0..C)
                .map(|c| xs.get(c).map_or(0.0, |&v| v as f64))
                .collect();
            let sums = channel_sums::<2>(n, C, |rows, s| {
                for row in xs[rows.start * C..rows.end * C].chunks_exact(C) {
                    for c in 0..C {
                        let d = row[c] as f64 - shift[c];
                        s[c] += d;
                        s[C + c] += d * d;
                    }
                }
            });
            let m1: Vec<f64> = (0..C).map(|c| sums[c] / n as f64).collect();
            let mut mean: Vec<f64> = (0..C).map(|c| shift[c] + m1[c]).collect();
            let mut var: Vec<f64> = (0..C)
                .map(|c| (sums[C + c] / n as f64 - m1[c] * m1[c]).max(0.0))
                .collect();
            let mut count = n;
            if let Some(sync) = &sync {
                // SyncBN: the statistics of every rank's batch (crate::ops::sync)
                let m2: Vec<f64> = var.iter().map(|v| v * n as f64).collect();
                (mean, var, count) = crate::ops::sync::global_moments(&**sync, n, &mean, &m2)
                    .map_err(sync_failed)?;
            }
            let invstd = var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
            let stats = BatchStatistics {
                mean: mean.clone(),
                var,
                count,
            };
            (mean, invstd, Some(stats))
        }
        Some((rm, rv)) => {
            let mean = hold(rm).iter().map(|&v| v as f64).collect();
            let invstd = hold(rv)
                .iter()
                .map(|&v| 1.0 / (v as f64 + eps).sqrt())
                .collect();
            (mean, invstd, None)
        }
    };
    // z = x·a + b (+ r) per channel
    let a: Vec<Elem> = (0..C)
        .map(|c| (gamma[c] as f64 * invstd[c]) as Elem)
        .collect();
    let b: Vec<Elem> = (0..C)
        .map(|c| (beta[c] as f64 - mean[c] * gamma[c] as f64 * invstd[c]) as Elem)
        .collect();
    // fills `z` with the pre-activation of the elements `off..off + z.len()`
    let pre = {
        let (xs, rs, a, b) = (xs.clone(), rs.clone(), a.clone(), b.clone());
        move |off: usize, z: &mut [Elem]| {
            let xr = &xs[off..off + z.len()];
            for (zr, xr) in z.chunks_exact_mut(C).zip(xr.chunks_exact(C)) {
                for c in 0..C {
                    zr[c] = xr[c] * a[c] + b[c];
                }
            }
            if let Some(rs) = &rs {
                let len = z.len();
                z.iter_mut()
                    .zip(&rs[off..off + len])
                    .for_each(|(z, r)| *z += r);
            }
        }
    };
    let ys = par_output(total, C * ROWS, |off, y| {
        let mut z = vec![0.0; y.len()];
        pre(off, &mut z);
        f.apply(&z, y);
    });
    let y = wrap(x.device(), ys, *x.shape())?;
    if T::OWNS_TAPE {
        let y_ghost = y.clone();
        let (weight, bias) = (weight.clone(), bias.clone());
        let params: [Option<Tensor<Rank1<1>, Elem, Cpu>>; 2] =
            [params[0].cloned(), params[1].cloned()];
        let training = running.is_none();
        let n_global = stats.as_ref().map_or(n, |s| s.count);
        let wants_params = crate::ops::parameter_gradients_wanted();
        tape.add_backward_op(move |grads| {
            let _t = crate::ops::profile::scope("bn(+act) bwd");
            let gy = take_grad(grads, &y_ghost)?;
            let want = [
                wants_params && params[0].is_some(),
                wants_params && params[1].is_some(),
            ];
            let mf: Vec<Elem> = mean.iter().map(|&m| m as Elem).collect();
            let sf: Vec<Elem> = invstd.iter().map(|&s| s as Elem).collect();
            // Σg_z and Σg_z·x̂ per channel: for dx in training mode and for dγ, dβ
            let need_sums = training || wants_params;
            // The input's and the residual's gradients, taken out of `grads` so that one pass
            // can write both. The same tensor as input and residual: its one gradient gets both
            // contributions (`gr` is then `None`, `alias` true).
            let mut gx = take_grad(grads, &x)?;
            let (mut gr, alias) = match &res {
                Some(r) => {
                    let v = take_grad(grads, r)?;
                    if v.len() == total {
                        (Some(v), false)
                    } else {
                        (None, true)
                    }
                }
                None => (None, false),
            };
            let chunk = C * ROWS;
            let n_chunks = total.div_ceil(chunk);
            // pass 1, per chunk of ROWS rows: g_z = g_y·f′(z), the activation's parameter sums,
            // the chunk's channel sums (the blocks and order of `channel_sums`: bit-identical),
            // and in evaluation mode the input and residual gradients themselves (g_z·a, g_z):
            // g_z is then never stored whole. Sums are added in chunk order afterwards, never in
            // the order the threads finish (reproducible).
            type Partial = ([f64; 2], Vec<f64>);
            // one chunk (elements `off..off + gz.len()`): g_z into the zeroed `gz`, its sums,
            // and in evaluation mode the input and residual gradients
            let work = |off: usize,
                        gz: &mut [Elem],
                        gx_out: Option<&mut [Elem]>,
                        gr_out: Option<&mut [Elem]>|
             -> Partial {
                let len = gz.len();
                let mut z = vec![0.0; len];
                pre(off, &mut z);
                let p = f.backward(&z, &gy[off..off + len], gz, want);
                let mut s = Vec::new();
                if need_sums {
                    s = vec![0.0f64; 2 * C];
                    let xr = &xs[off..off + len];
                    for (gr, xr) in gz.chunks_exact(C).zip(xr.chunks_exact(C)) {
                        for c in 0..C {
                            s[c] += gr[c] as f64;
                            s[C + c] += (gr[c] * (xr[c] - mf[c]) * sf[c]) as f64;
                        }
                    }
                }
                if let Some(d) = gr_out {
                    d.iter_mut().zip(gz.iter()).for_each(|(d, g)| *d += g);
                }
                if let Some(d) = gx_out {
                    if alias {
                        d.iter_mut().zip(gz.iter()).for_each(|(d, g)| *d += g);
                    }
                    for (dr, gr) in d.chunks_exact_mut(C).zip(gz.chunks_exact(C)) {
                        for c in 0..C {
                            dr[c] += gr[c] * a[c];
                        }
                    }
                }
                (p, s)
            };
            let (gz_all, partials): (Vec<Elem>, Vec<Partial>) = if training {
                // g_z kept whole for pass 2, each chunk zeroed and filled by one worker
                let slots: Vec<std::sync::Mutex<Partial>> = (0..n_chunks)
                    .map(|_| std::sync::Mutex::new(([0.0; 2], Vec::new())))
                    .collect();
                let gz = par_output(total, chunk, |off, gz| {
                    let p = work(off, gz, None, None);
                    *slots[off / chunk].lock().unwrap_or_else(|e| e.into_inner()) = p;
                });
                let partials = slots
                    .into_iter()
                    .map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()))
                    .collect();
                (gz, partials)
            } else {
                let mut gr_chunks = chunks_or_none(gr.as_deref_mut(), chunk, n_chunks);
                let partials = gx
                    .par_chunks_mut(chunk)
                    .enumerate()
                    .zip(gr_chunks.par_iter_mut())
                    .map(|((i, d), r)| {
                        let mut gz = vec![0.0; d.len()];
                        work(i * chunk, &mut gz, Some(d), r.as_deref_mut())
                    })
                    .collect();
                (Vec::new(), partials)
            };
            let mut param_sums = [0.0f64; 2];
            let mut sums = vec![0.0f64; 2 * C];
            for (p, s) in &partials {
                if want[0] || want[1] {
                    param_sums = [param_sums[0] + p[0], param_sums[1] + p[1]];
                }
                sums.iter_mut().zip(s).for_each(|(a, b)| *a += b);
            }
            let (sum_g, sum_gx) = sums.split_at(C);
            // pass 2, training mode: dx from the sums (`a` = γ·s), and the residual's gradient;
            // SyncBN: the sums and count of every rank (γ's and β's gradients stay local)
            if training {
                let mut global = sums.clone();
                if let Some(sync) = &sync {
                    sync.sum(&mut global).map_err(sync_failed)?;
                }
                let (gsum_g, gsum_gx) = global.split_at(C);
                let nf = n_global as f64;
                let mg: Vec<Elem> = (0..C).map(|c| (gsum_g[c] / nf) as Elem).collect();
                let mgx: Vec<Elem> = (0..C).map(|c| (gsum_gx[c] / nf) as Elem).collect();
                let mut gr_chunks = chunks_or_none(gr.as_deref_mut(), chunk, n_chunks);
                gx.par_chunks_mut(chunk)
                    .zip(gz_all.par_chunks(chunk).zip(xs.par_chunks(chunk)))
                    .zip(gr_chunks.par_iter_mut())
                    .for_each(|((d, (g, x)), gr_out)| {
                        if let Some(r) = gr_out.as_deref_mut() {
                            r.iter_mut().zip(g).for_each(|(r, g)| *r += g);
                        }
                        if alias {
                            d.iter_mut().zip(g).for_each(|(d, g)| *d += g);
                        }
                        for ((dr, gr), xr) in d
                            .chunks_exact_mut(C)
                            .zip(g.chunks_exact(C))
                            .zip(x.chunks_exact(C))
                        {
                            for c in 0..C {
                                let xhat = (xr[c] - mf[c]) * sf[c];
                                dr[c] += a[c] * (gr[c] - mg[c] - xhat * mgx[c]);
                            }
                        }
                    });
            }
            put_grad(grads, &x, gx)?;
            if let (Some(r), Some(g)) = (&res, gr) {
                put_grad(grads, r, g)?;
            }
            if wants_params {
                let gw: &mut Vec<Elem> = grads.get_or_alloc_mut(&weight)?;
                gw.iter_mut()
                    .zip(sum_gx)
                    .for_each(|(g, s)| *g += *s as Elem);
                let gb: &mut Vec<Elem> = grads.get_or_alloc_mut(&bias)?;
                gb.iter_mut().zip(sum_g).for_each(|(g, s)| *g += *s as Elem);
            }
            for (p, s) in params.iter().zip(param_sums) {
                if let (Some(p), true) = (p, wants_params) {
                    let g: &mut Vec<Elem> = grads.get_or_alloc_mut(p)?;
                    g[0] += s as Elem;
                }
            }
            put_grad(grads, &y_ghost, gy)
        });
    }
    Ok((y.put_tape(tape), stats))
}
