//! 2-D convolution on the CPU: NHWC input, OHWI weight, im2col + `gemm`. The batch is split into
//! one run of whole images per thread; each thread walks its run in im2col blocks that fit its
//! L2 cache and calls a single-threaded gemm per block (see [`Blocking`]). im2col is recomputed in
//! the backward pass instead of kept. 1×1 stride-1 convolutions skip im2col; 3×3 stride-1
//! convolutions with enough channels take the implicit path of [`super::conv3x3`].

use dfdx::shapes::{Rank1, Rank4, Shape};
use dfdx::tensor::{Cpu, CpuError, PutTape, SplitTape, Tape, Tensor};
use gemm::Parallelism;
use rayon::prelude::*;

use super::{hold, put_grad, take_grad, wrap};
use crate::ops::{ConvGeometry, Elem};

/// Bytes of one im2col block: a block and its gemm operands stay in a core's L2 cache.
const BLOCK_BYTES: usize = 1 << 20;
/// Fewest rows per block (the gemm's `k` for the weight gradient; fewer makes the gemm write its
/// `c_out × patch` destination too often).
const MIN_BLOCK_ROWS: usize = 256;

/// How a convolution is split into work: `tasks` contiguous runs of whole images, one per thread,
/// each walked in blocks of at most `rows` im2col rows with a single-threaded gemm. Blocks never
/// straddle tasks, and a task owns its images, so the input-gradient scatter needs no locking.
/// With fewer images than threads the gemm itself runs multi-threaded.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Blocking {
    pub tasks: usize,
    pub rows: usize,
}

impl Blocking {
    pub(crate) fn for_geometry(g: &ConvGeometry) -> Self {
        let threads = rayon::current_num_threads().max(1);
        Blocking {
            tasks: threads.min(g.batch).max(1),
            rows: (BLOCK_BYTES / (4 * g.patch())).max(MIN_BLOCK_ROWS),
        }
    }
    /// Image range of task `t`.
    pub(super) fn images(&self, g: &ConvGeometry, t: usize) -> std::ops::Range<usize> {
        let (q, r) = (g.batch / self.tasks, g.batch % self.tasks);
        let start = t * q + t.min(r);
        start..start + q + usize::from(t < r)
    }
    /// `buf` (`per_img` values per image) cut into the tasks' image runs: `(first image, run)`.
    pub(super) fn split<'a>(
        &self,
        g: &ConvGeometry,
        per_img: usize,
        mut rest: &'a mut [Elem],
    ) -> Vec<(usize, &'a mut [Elem])> {
        let mut out = Vec::with_capacity(self.tasks);
        for t in 0..self.tasks {
            let imgs = self.images(g, t);
            let (head, tail) = rest.split_at_mut(imgs.len() * per_img);
            out.push((imgs.start, head));
            rest = tail;
        }
        out
    }
    /// The backward pass's tasks: `(first image, images, its run of gx if there is one)`.
    pub(super) fn backward_tasks<'a>(
        &self,
        g: &ConvGeometry,
        gx: Option<&'a mut [Elem]>,
    ) -> Vec<(usize, usize, Option<&'a mut [Elem]>)> {
        let in_img = g.h * g.w * g.c_in;
        match gx {
            Some(gx) => self
                .split(g, in_img, gx)
                .into_iter()
                .map(|(b0, run)| (b0, run.len() / in_img, Some(run)))
                .collect(),
            None => (0..self.tasks)
                .map(|t| {
                    let r = self.images(g, t);
                    (r.start, r.len(), None)
                })
                .collect(),
        }
    }
    pub(super) fn parallelism(&self) -> Parallelism {
        if self.tasks >= rayon::current_num_threads() {
            Parallelism::None
        } else {
            Parallelism::Rayon(0)
        }
    }
}

/// `dst[m×n] = (read_dst ? dst : 0) + lhs[m×k] · rhs[k×n]`, every matrix given by (row, col) strides.
#[allow(clippy::too_many_arguments)]
pub(super) fn matmul(
    par: Parallelism,
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [Elem],
    dst_rs: isize,
    dst_cs: isize,
    read_dst: bool,
    lhs: &[Elem],
    lhs_rs: isize,
    lhs_cs: isize,
    rhs: &[Elem],
    rhs_rs: isize,
    rhs_cs: isize,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(dst.len() > (m - 1) * dst_rs as usize + (n - 1) * dst_cs as usize);
    assert!(k == 0 || lhs.len() > (m - 1) * lhs_rs as usize + (k - 1) * lhs_cs as usize);
    assert!(k == 0 || rhs.len() > (k - 1) * rhs_rs as usize + (n - 1) * rhs_cs as usize);
    // SAFETY: the assertions above keep every strided access inside its slice; the three
    // buffers are distinct (`dst` is borrowed mutably).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            dst_cs,
            dst_rs,
            read_dst,
            lhs.as_ptr(),
            lhs_cs,
            lhs_rs,
            rhs.as_ptr(),
            rhs_cs,
            rhs_rs,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        )
    }
}

/// Fills `col` with the im2col rows `r0..r0 + n` (rows = output pixels over the whole batch,
/// columns = (kh, kw, c_in)). Each kernel row is one contiguous run of input pixels in NHWC.
fn im2col(g: &ConvGeometry, x: &[Elem], r0: usize, n: usize, col: &mut [Elem]) {
    let (p, ci, k) = (g.patch(), g.c_in, g.k);
    for (i, dst) in col[..n * p].chunks_exact_mut(p).enumerate() {
        let r = r0 + i;
        let (b, oh, ow) = (r / (g.ho * g.wo), (r / g.wo) % g.ho, r % g.wo);
        let w0 = (ow * g.stride) as isize - g.pad as isize;
        // valid kw range: 0 <= w0 + kw < w
        let kw_lo = (-w0).max(0) as usize;
        let kw_hi = ((g.w as isize - w0).min(k as isize)).max(kw_lo as isize) as usize;
        for kh in 0..k {
            let ih = (oh * g.stride + kh) as isize - g.pad as isize;
            let d = &mut dst[kh * k * ci..(kh + 1) * k * ci];
            if ih < 0 || ih >= g.h as isize || kw_lo >= kw_hi {
                d.fill(0.0);
                continue;
            }
            d[..kw_lo * ci].fill(0.0);
            d[kw_hi * ci..].fill(0.0);
            let s = ((b * g.h + ih as usize) * g.w) as isize + w0 + kw_lo as isize;
            let s = s as usize * ci;
            d[kw_lo * ci..kw_hi * ci].copy_from_slice(&x[s..s + (kw_hi - kw_lo) * ci]);
        }
    }
}

/// Adds the column gradients of im2col rows `r0..r0 + n` onto their input pixels in `gx`, which
/// starts at image `b_first` of the batch.
fn col2im_add(
    g: &ConvGeometry,
    dcol: &[Elem],
    r0: usize,
    n: usize,
    gx: &mut [Elem],
    b_first: usize,
) {
    let (p, ci, k) = (g.patch(), g.c_in, g.k);
    for (i, src) in dcol[..n * p].chunks_exact(p).enumerate() {
        let r = r0 + i;
        let (b, oh, ow) = (r / (g.ho * g.wo), (r / g.wo) % g.ho, r % g.wo);
        let w0 = (ow * g.stride) as isize - g.pad as isize;
        let kw_lo = (-w0).max(0) as usize;
        let kw_hi = ((g.w as isize - w0).min(k as isize)).max(kw_lo as isize) as usize;
        if kw_lo >= kw_hi {
            continue;
        }
        for kh in 0..k {
            let ih = (oh * g.stride + kh) as isize - g.pad as isize;
            if ih < 0 || ih >= g.h as isize {
                continue;
            }
            let d = (((b - b_first) * g.h + ih as usize) * g.w) as isize + w0 + kw_lo as isize;
            let d = d as usize * ci;
            let len = (kw_hi - kw_lo) * ci;
            let s = kh * k * ci + kw_lo * ci;
            gx[d..d + len]
                .iter_mut()
                .zip(&src[s..s + len])
                .for_each(|(a, v)| *a += v);
        }
    }
}

/// A zeroed vector of `n` elements for a convolution's output, zeroed by all threads.
fn output_buffer(n: usize) -> Vec<Elem> {
    super::par_output(n, 1 << 16, |_, _| ())
}

/// `y = conv(x, w) + b` (forward, no tape).
pub(crate) fn conv_forward(
    g: &ConvGeometry,
    x: &[Elem],
    w: &[Elem],
    b: Option<&[Elem]>,
    y: &mut [Elem],
) {
    conv_forward_blocked(g, Blocking::for_geometry(g), x, w, b, y)
}

pub(crate) fn conv_forward_blocked(
    g: &ConvGeometry,
    blk: Blocking,
    x: &[Elem],
    w: &[Elem],
    b: Option<&[Elem]>,
    y: &mut [Elem],
) {
    if super::conv3x3::use_implicit(g) {
        super::conv3x3::forward(g, blk, x, w, b, y)
    } else {
        conv_forward_blocked_im2col(g, blk, x, w, b, y)
    }
}

pub(crate) fn conv_forward_blocked_im2col(
    g: &ConvGeometry,
    blk: Blocking,
    x: &[Elem],
    w: &[Elem],
    b: Option<&[Elem]>,
    y: &mut [Elem],
) {
    let (p, co) = (g.patch(), g.c_out);
    let per_img = g.ho * g.wo;
    let par = blk.parallelism();
    let pointwise = g.is_pointwise();
    blk.split(g, per_img * co, y)
        .into_par_iter()
        .for_each(|(b_first, y_task)| {
            let task_rows = y_task.len() / co;
            let r_first = b_first * per_img;
            let mut col = if pointwise {
                Vec::new()
            } else {
                vec![0.0; blk.rows.min(task_rows) * p]
            };
            let mut done = 0;
            while done < task_rows {
                let n = blk.rows.min(task_rows - done);
                let r0 = r_first + done;
                let lhs: &[Elem] = if pointwise {
                    &x[r0 * p..(r0 + n) * p]
                } else {
                    im2col(g, x, r0, n, &mut col);
                    &col[..n * p]
                };
                let dst = &mut y_task[done * co..(done + n) * co];
                // y[n×co] = col[n×p] · wᵀ, w stored [co×p]
                matmul(
                    par,
                    n,
                    co,
                    p,
                    dst,
                    co as isize,
                    1,
                    false,
                    lhs,
                    p as isize,
                    1,
                    w,
                    1,
                    p as isize,
                );
                if let Some(b) = b {
                    for row in dst.chunks_exact_mut(co) {
                        row.iter_mut().zip(b).for_each(|(y, b)| *y += b);
                    }
                }
                done += n;
            }
        });
}

/// Accumulates the input, weight and bias gradients of a convolution.
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv_backward(
    g: &ConvGeometry,
    x: &[Elem],
    w: &[Elem],
    gy: &[Elem],
    gx: Option<&mut [Elem]>,
    gw: Option<&mut [Elem]>,
    gb: Option<&mut [Elem]>,
) {
    conv_backward_blocked(g, Blocking::for_geometry(g), x, w, gy, gx, gw, gb)
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn conv_backward_blocked(
    g: &ConvGeometry,
    blk: Blocking,
    x: &[Elem],
    w: &[Elem],
    gy: &[Elem],
    gx: Option<&mut [Elem]>,
    gw: Option<&mut [Elem]>,
    gb: Option<&mut [Elem]>,
) {
    if super::conv3x3::use_implicit(g) {
        super::conv3x3::backward(g, blk, x, w, gy, gx, gw, gb)
    } else {
        conv_backward_blocked_im2col(g, blk, x, w, gy, gx, gw, gb)
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn conv_backward_blocked_im2col(
    g: &ConvGeometry,
    blk: Blocking,
    x: &[Elem],
    w: &[Elem],
    gy: &[Elem],
    gx: Option<&mut [Elem]>,
    gw: Option<&mut [Elem]>,
    gb: Option<&mut [Elem]>,
) {
    let (p, co) = (g.patch(), g.c_out);
    let per_img = g.ho * g.wo;
    let par = blk.parallelism();
    let pointwise = g.is_pointwise();
    let want_gw = gw.is_some();
    let want_gb = gb.is_some();
    let tasks = blk.backward_tasks(g, gx);
    // per task: its share of the weight and bias gradients
    let partial: Vec<(Vec<Elem>, Vec<f64>)> = tasks
        .into_par_iter()
        .map(|(b_first, nimg, mut gx_task)| {
            let task_rows = nimg * per_img;
            let r_first = b_first * per_img;
            let blk_rows = blk.rows.min(task_rows.max(1));
            let mut gw_task = if want_gw {
                vec![0.0; co * p]
            } else {
                Vec::new()
            };
            let mut gb_task = if want_gb {
                vec![0.0f64; co]
            } else {
                Vec::new()
            };
            let mut col = if pointwise || !want_gw {
                Vec::new()
            } else {
                vec![0.0; blk_rows * p]
            };
            let mut dcol = if pointwise || gx_task.is_none() {
                Vec::new()
            } else {
                vec![0.0; blk_rows * p]
            };
            let mut done = 0;
            while done < task_rows {
                let n = blk_rows.min(task_rows - done);
                let r0 = r_first + done;
                let gy_blk = &gy[r0 * co..(r0 + n) * co];
                if want_gw {
                    let lhs: &[Elem] = if pointwise {
                        &x[r0 * p..(r0 + n) * p]
                    } else {
                        im2col(g, x, r0, n, &mut col);
                        &col[..n * p]
                    };
                    // gw[co×p] += gyᵀ[co×n] · col[n×p]
                    matmul(
                        par,
                        co,
                        p,
                        n,
                        &mut gw_task,
                        p as isize,
                        1,
                        done > 0,
                        gy_blk,
                        1,
                        co as isize,
                        lhs,
                        p as isize,
                        1,
                    );
                }
                if want_gb {
                    for row in gy_blk.chunks_exact(co) {
                        gb_task
                            .iter_mut()
                            .zip(row)
                            .for_each(|(s, v)| *s += *v as f64);
                    }
                }
                if let Some(gx_task) = gx_task.as_deref_mut() {
                    if pointwise {
                        let l0 = done * p;
                        // gx[n×p] += gy[n×co] · w[co×p]
                        matmul(
                            par,
                            n,
                            p,
                            co,
                            &mut gx_task[l0..l0 + n * p],
                            p as isize,
                            1,
                            true,
                            gy_blk,
                            co as isize,
                            1,
                            w,
                            p as isize,
                            1,
                        );
                    } else {
                        let d = &mut dcol[..n * p];
                        matmul(
                            par,
                            n,
                            p,
                            co,
                            d,
                            p as isize,
                            1,
                            false,
                            gy_blk,
                            co as isize,
                            1,
                            w,
                            p as isize,
                            1,
                        );
                        col2im_add(g, d, r0, n, gx_task, b_first);
                    }
                }
                done += n;
            }
            (gw_task, gb_task)
        })
        .collect();
    add_partials(gw, gb, &partial);
}

/// Adds the tasks' shares of the weight gradient (in parallel chunks) and of the bias gradient
/// (summed in f64) onto `gw` and `gb`.
pub(super) fn add_partials(
    gw: Option<&mut [Elem]>,
    gb: Option<&mut [Elem]>,
    partial: &[(Vec<Elem>, Vec<f64>)],
) {
    if let Some(gw) = gw {
        gw.par_chunks_mut(4096).enumerate().for_each(|(i, d)| {
            for (part, _) in partial {
                let src = &part[i * 4096..i * 4096 + d.len()];
                d.iter_mut().zip(src).for_each(|(d, s)| *d += s);
            }
        });
    }
    if let Some(gb) = gb {
        for (_, part) in partial {
            gb.iter_mut().zip(part).for_each(|(g, s)| *g += *s as Elem);
        }
    }
}

pub(super) fn forward<Si: Shape, So: Shape, const CO: usize, const K: usize, const CI: usize, T>(
    x: Tensor<Si, Elem, Cpu, T>,
    w: &Tensor<Rank4<CO, K, K, CI>, Elem, Cpu>,
    b: Option<&Tensor<Rank1<CO>, Elem, Cpu>>,
    out_shape: So,
    g: ConvGeometry,
) -> Result<Tensor<So, Elem, Cpu, T>, CpuError>
where
    T: Tape<Elem, Cpu>,
{
    let _t = crate::ops::profile::scope("conv fwd");
    let (x, mut tape) = x.split_tape();
    let xs = hold(&x);
    let ws = hold(w);
    let bs = b.map(hold);
    let mut ys = output_buffer(g.rows() * CO);
    conv_forward(&g, &xs, &ws, bs.as_deref(), &mut ys);
    let y = wrap(x.device(), ys, out_shape)?;
    if T::OWNS_TAPE {
        let y_ghost = y.clone();
        let w = w.clone();
        let b = b.cloned();
        let params = crate::ops::parameter_gradients_wanted();
        tape.add_backward_op(move |grads| {
            let _t = crate::ops::profile::scope("conv bwd");
            let gy = take_grad(grads, &y_ghost)?;
            let mut gw = if params {
                Some(take_grad(grads, &w)?)
            } else {
                None
            };
            let mut gb = match (&b, params) {
                (Some(b), true) => Some(take_grad(grads, b)?),
                _ => None,
            };
            {
                let gx: &mut Vec<Elem> = grads.get_or_alloc_mut(&x)?;
                conv_backward(
                    &g,
                    &xs,
                    &ws,
                    &gy,
                    Some(gx),
                    gw.as_deref_mut(),
                    gb.as_deref_mut(),
                );
            }
            if let Some(gw) = gw {
                put_grad(grads, &w, gw)?;
            }
            if let (Some(b), Some(gb)) = (&b, gb) {
                put_grad(grads, b, gb)?;
            }
            put_grad(grads, &y_ghost, gy)
        });
    }
    Ok(y.put_tape(tape))
}

#[cfg(test)]
mod tests {
    //! The blocked kernels against a direct f64 convolution, for every way of cutting the work
    //! (tasks × block rows), including blocks that end inside an image and single-row blocks.
    use super::*;
    use rand::{Rng, SeedableRng};

    fn reference(g: &ConvGeometry, x: &[Elem], w: &[Elem], gy: &[Elem]) -> [Vec<f64>; 4] {
        let (ci, co, k) = (g.c_in, g.c_out, g.k);
        let mut y = vec![0.0; g.rows() * co];
        let mut gx = vec![0.0; x.len()];
        let mut gw = vec![0.0; w.len()];
        let mut gb = vec![0.0; co];
        for b in 0..g.batch {
            for oh in 0..g.ho {
                for ow in 0..g.wo {
                    let r = (b * g.ho + oh) * g.wo + ow;
                    for o in 0..co {
                        gb[o] += gy[r * co + o] as f64;
                    }
                    for kh in 0..k {
                        for kw in 0..k {
                            let ih = (oh * g.stride + kh) as isize - g.pad as isize;
                            let iw = (ow * g.stride + kw) as isize - g.pad as isize;
                            if ih < 0 || iw < 0 || ih >= g.h as isize || iw >= g.w as isize {
                                continue;
                            }
                            let xi = ((b * g.h + ih as usize) * g.w + iw as usize) * ci;
                            for o in 0..co {
                                let wi = ((o * k + kh) * k + kw) * ci;
                                let go = gy[r * co + o] as f64;
                                for c in 0..ci {
                                    y[r * co + o] += x[xi + c] as f64 * w[wi + c] as f64;
                                    gx[xi + c] += go * w[wi + c] as f64;
                                    gw[wi + c] += go * x[xi + c] as f64;
                                }
                            }
                        }
                    }
                }
            }
        }
        [y, gx, gw, gb]
    }

    fn close(name: &str, got: &[Elem], want: &[f64]) {
        assert_eq!(got.len(), want.len(), "{name}");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (*g as f64 - w).abs() <= 1e-4 * (1.0 + w.abs()),
                "{name}[{i}]: {g} vs {w}"
            );
        }
    }

    #[test]
    fn every_blocking_matches_the_direct_convolution() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        // (batch, h, w, c_in, c_out, k, stride, pad)
        let cases = [
            (5, 6, 5, 3, 4, 3, 1, 1),
            (4, 7, 7, 2, 3, 3, 2, 1),
            (3, 8, 8, 4, 2, 3, 2, 1),
            (3, 5, 5, 3, 5, 1, 1, 0),
            (4, 6, 6, 3, 2, 1, 2, 0),
            (2, 9, 9, 3, 4, 7, 2, 3),
            // the implicit 3×3 path (conv3x3.rs: 3×3, stride 1, ≥ 16 channels, ≥ 32 wide)
            (3, 3, 32, 16, 16, 3, 1, 1),
        ];
        for (batch, h, w, ci, co, k, stride, pad) in cases {
            let g = ConvGeometry {
                batch,
                h,
                w,
                c_in: ci,
                ho: ConvGeometry::out_size(h, k, stride, pad),
                wo: ConvGeometry::out_size(w, k, stride, pad),
                c_out: co,
                k,
                stride,
                pad,
            };
            let x: Vec<Elem> = (0..batch * h * w * ci)
                .map(|_| rng.gen_range(-1.0..1.0))
                .collect();
            let wt: Vec<Elem> = (0..co * k * k * ci)
                .map(|_| rng.gen_range(-1.0..1.0))
                .collect();
            let bias: Vec<Elem> = (0..co).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let gy: Vec<Elem> = (0..g.rows() * co)
                .map(|_| rng.gen_range(-1.0..1.0))
                .collect();
            let [y_ref, gx_ref, gw_ref, gb_ref] = reference(&g, &x, &wt, &gy);
            if (ci, w) == (16, 32)
                && crate::ops::conv_algorithm() == crate::ops::ConvAlgorithm::Auto
            {
                assert!(super::super::conv3x3::use_implicit(&g), "{g:?}");
            }
            for tasks in 1..=batch.min(3) {
                for rows in [1, 7, g.ho * g.wo + 1, 100_000] {
                    let blk = Blocking { tasks, rows };
                    let what = format!("{g:?} {blk:?}");
                    let mut y = vec![0.0; g.rows() * co];
                    conv_forward_blocked(&g, blk, &x, &wt, Some(&bias), &mut y);
                    let y_want: Vec<f64> = y_ref
                        .iter()
                        .enumerate()
                        .map(|(i, v)| v + bias[i % co] as f64)
                        .collect();
                    close(&format!("y {what}"), &y, &y_want);
                    // gradients accumulate onto what is already there (start from 1)
                    let mut gx = vec![1.0; x.len()];
                    let mut gw = vec![1.0; wt.len()];
                    let mut gb = vec![1.0; co];
                    conv_backward_blocked(
                        &g,
                        blk,
                        &x,
                        &wt,
                        &gy,
                        Some(&mut gx),
                        Some(&mut gw),
                        Some(&mut gb),
                    );
                    let plus1 = |v: &[f64]| v.iter().map(|v| v + 1.0).collect::<Vec<_>>();
                    close(&format!("gx {what}"), &gx, &plus1(&gx_ref));
                    close(&format!("gw {what}"), &gw, &plus1(&gw_ref));
                    close(&format!("gb {what}"), &gb, &plus1(&gb_ref));
                    // input gradient only (as in an attack)
                    let mut gx2 = vec![0.0; x.len()];
                    conv_backward_blocked(&g, blk, &x, &wt, &gy, Some(&mut gx2), None, None);
                    close(&format!("gx only {what}"), &gx2, &gx_ref);
                }
            }
        }
    }
}
