//! 2-D convolution on the CPU: NHWC input, OHWI weight, im2col + `gemm` over blocks of whole
//! images (so the im2col block stays in cache), recomputing im2col in the backward pass instead
//! of keeping it. 1×1 stride-1 convolutions skip im2col.

use dfdx::shapes::{Rank1, Rank4, Shape};
use dfdx::tensor::{Cpu, CpuError, PutTape, SplitTape, Tape, Tensor};
use gemm::Parallelism;
use rayon::prelude::*;

use super::{put_grad, read, take_grad, wrap};
use crate::ops::{ConvGeometry, Elem};

/// Target number of im2col rows per block.
const BLOCK_ROWS: usize = 4096;

fn images_per_block(g: &ConvGeometry) -> usize {
    (BLOCK_ROWS / (g.ho * g.wo)).clamp(1, g.batch.max(1))
}

/// `dst[m×n] = (read_dst ? dst : 0) + lhs[m×k] · rhs[k×n]`, every matrix given by (row, col) strides.
#[allow(clippy::too_many_arguments)]
fn matmul(
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
    // SAFETY: the callers pass slices at least as long as the strided views they describe
    // (checked below by the debug assertions); the three buffers are distinct allocations.
    debug_assert!(dst.len() > (m - 1) * dst_rs as usize + (n - 1) * dst_cs as usize);
    debug_assert!(k == 0 || lhs.len() > (m - 1) * lhs_rs as usize + (k - 1) * lhs_cs as usize);
    debug_assert!(k == 0 || rhs.len() > (k - 1) * rhs_rs as usize + (n - 1) * rhs_cs as usize);
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
            Parallelism::Rayon(0),
        )
    }
}

/// Fills `col` (rows = output pixels of images `b0..b0+nb`, columns = (kh, kw, c_in)).
fn im2col(g: &ConvGeometry, x: &[Elem], b0: usize, nb: usize, col: &mut [Elem]) {
    let (p, ci, k) = (g.patch(), g.c_in, g.k);
    col[..nb * g.ho * g.wo * p]
        .par_chunks_mut(p * g.wo)
        .enumerate()
        .for_each(|(r, row_block)| {
            let b = b0 + r / g.ho;
            let oh = r % g.ho;
            for ow in 0..g.wo {
                let dst = &mut row_block[ow * p..(ow + 1) * p];
                for kh in 0..k {
                    let ih = (oh * g.stride + kh) as isize - g.pad as isize;
                    for kw in 0..k {
                        let iw = (ow * g.stride + kw) as isize - g.pad as isize;
                        let d = &mut dst[(kh * k + kw) * ci..(kh * k + kw + 1) * ci];
                        if ih < 0 || iw < 0 || ih >= g.h as isize || iw >= g.w as isize {
                            d.fill(0.0);
                        } else {
                            let s = ((b * g.h + ih as usize) * g.w + iw as usize) * ci;
                            d.copy_from_slice(&x[s..s + ci]);
                        }
                    }
                }
            }
        });
}

/// Adds the column gradients of images `b0..b0+nb` back onto their input pixels. Written as a
/// gather over input rows (each task owns one input row), so no two tasks touch the same memory.
fn col2im_add(g: &ConvGeometry, dcol: &[Elem], b0: usize, nb: usize, gx: &mut [Elem]) {
    let (p, ci, k, s, pad) = (g.patch(), g.c_in, g.k, g.stride, g.pad);
    let row_len = g.w * ci;
    gx[b0 * g.h * row_len..(b0 + nb) * g.h * row_len]
        .par_chunks_mut(row_len)
        .enumerate()
        .for_each(|(r, gx_row)| {
            let bl = r / g.h;
            let ih = r % g.h;
            for kh in 0..k {
                // output rows oh with oh*s - pad + kh == ih
                let t = ih + pad;
                if t < kh || (t - kh) % s != 0 {
                    continue;
                }
                let oh = (t - kh) / s;
                if oh >= g.ho {
                    continue;
                }
                for ow in 0..g.wo {
                    for kw in 0..k {
                        let iw = (ow * s + kw) as isize - pad as isize;
                        if iw < 0 || iw >= g.w as isize {
                            continue;
                        }
                        let src = ((bl * g.ho + oh) * g.wo + ow) * p + (kh * k + kw) * ci;
                        let dst = &mut gx_row[iw as usize * ci..(iw as usize + 1) * ci];
                        for (d, v) in dst.iter_mut().zip(&dcol[src..src + ci]) {
                            *d += v;
                        }
                    }
                }
            }
        });
}

/// `y = conv(x, w) + b` (forward, no tape).
pub(crate) fn conv_forward(
    g: &ConvGeometry,
    x: &[Elem],
    w: &[Elem],
    b: Option<&[Elem]>,
    y: &mut [Elem],
) {
    let (p, co) = (g.patch(), g.c_out);
    let per_img = g.ho * g.wo;
    let ipb = images_per_block(g);
    let mut col = if g.is_pointwise() {
        Vec::new()
    } else {
        vec![0.0; ipb * per_img * p]
    };
    let mut b0 = 0;
    while b0 < g.batch {
        let nb = ipb.min(g.batch - b0);
        let rows = nb * per_img;
        let lhs: &[Elem] = if g.is_pointwise() {
            &x[b0 * per_img * p..(b0 + nb) * per_img * p]
        } else {
            im2col(g, x, b0, nb, &mut col);
            &col[..rows * p]
        };
        let dst = &mut y[b0 * per_img * co..(b0 + nb) * per_img * co];
        // y[rows×co] = col[rows×p] · wᵀ, w stored [co×p]
        matmul(
            rows,
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
        b0 += nb;
    }
    if let Some(b) = b {
        y.par_chunks_mut(co * 256).for_each(|ch| {
            for row in ch.chunks_mut(co) {
                row.iter_mut().zip(b).for_each(|(y, b)| *y += b);
            }
        });
    }
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
    let (p, co) = (g.patch(), g.c_out);
    let per_img = g.ho * g.wo;
    let ipb = images_per_block(g);
    let pointwise = g.is_pointwise();
    let mut col = if pointwise || gw.is_none() {
        Vec::new()
    } else {
        vec![0.0; ipb * per_img * p]
    };
    let mut dcol = if pointwise || gx.is_none() {
        Vec::new()
    } else {
        vec![0.0; ipb * per_img * p]
    };
    let mut gx = gx;
    let mut gw = gw;
    let mut b0 = 0;
    while b0 < g.batch {
        let nb = ipb.min(g.batch - b0);
        let rows = nb * per_img;
        let gy_blk = &gy[b0 * per_img * co..(b0 + nb) * per_img * co];
        if let Some(gw) = gw.as_deref_mut() {
            let lhs: &[Elem] = if pointwise {
                &x[b0 * per_img * p..(b0 + nb) * per_img * p]
            } else {
                im2col(g, x, b0, nb, &mut col);
                &col[..rows * p]
            };
            // gw[co×p] += gyᵀ[co×rows] · col[rows×p]
            matmul(
                co,
                p,
                rows,
                gw,
                p as isize,
                1,
                true,
                gy_blk,
                1,
                co as isize,
                lhs,
                p as isize,
                1,
            );
        }
        if let Some(gx) = gx.as_deref_mut() {
            if pointwise {
                let dst = &mut gx[b0 * per_img * p..(b0 + nb) * per_img * p];
                // gx[rows×p] += gy[rows×co] · w[co×p]
                matmul(
                    rows,
                    p,
                    co,
                    dst,
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
                let d = &mut dcol[..rows * p];
                matmul(
                    rows,
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
                col2im_add(g, d, b0, nb, gx);
            }
        }
        b0 += nb;
    }
    if let Some(gb) = gb {
        let sums = gy
            .par_chunks(co * 256)
            .map(|ch| {
                let mut s = vec![0.0f64; co];
                for row in ch.chunks(co) {
                    s.iter_mut().zip(row).for_each(|(s, v)| *s += *v as f64);
                }
                s
            })
            .reduce(
                || vec![0.0f64; co],
                |mut a, b| {
                    a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
                    a
                },
            );
        gb.iter_mut().zip(sums).for_each(|(g, s)| *g += s as Elem);
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
    let (x, mut tape) = x.split_tape();
    let xs = read(&x);
    let ws = read(w);
    let bs = b.map(read);
    let mut ys = vec![0.0; g.rows() * CO];
    conv_forward(&g, &xs, &ws, bs.as_deref(), &mut ys);
    let y = wrap(x.device(), ys, out_shape)?;
    if T::OWNS_TAPE {
        let y_ghost = y.clone();
        let w = w.clone();
        let b = b.cloned();
        tape.add_backward_op(move |grads| {
            let gy = take_grad(grads, &y_ghost)?;
            let mut gw = take_grad(grads, &w)?;
            let mut gb = match &b {
                Some(b) => Some(take_grad(grads, b)?),
                None => None,
            };
            {
                let gx: &mut Vec<Elem> = grads.get_or_alloc_mut(&x)?;
                conv_backward(
                    &g,
                    &xs,
                    &ws,
                    &gy,
                    Some(gx),
                    Some(&mut gw),
                    gb.as_deref_mut(),
                );
            }
            put_grad(grads, &w, gw)?;
            if let (Some(b), Some(gb)) = (&b, gb) {
                put_grad(grads, b, gb)?;
            }
            put_grad(grads, &y_ghost, gy)
        });
    }
    Ok(y.put_tape(tape))
}
