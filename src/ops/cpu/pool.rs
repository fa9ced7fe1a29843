//! Average and max pooling over square windows, NHWC, CPU. Padding cells are skipped: they never
//! win a max (PyTorch pads with −∞) and average pooling here is only used unpadded.

use dfdx::shapes::Shape;
use dfdx::tensor::{Cpu, CpuError, PutTape, SplitTape, Tape, Tensor};
use rayon::prelude::*;

use super::{hold, put_grad, take_grad, wrap};
use crate::ops::{Elem, PoolGeometry};

pub(super) fn forward<Si: Shape, So: Shape, T: Tape<Elem, Cpu>>(
    x: Tensor<Si, Elem, Cpu, T>,
    out_shape: So,
    g: PoolGeometry,
    max: bool,
) -> Result<Tensor<So, Elem, Cpu, T>, CpuError> {
    let _t = crate::ops::profile::scope("pool fwd");
    let (x, mut tape) = x.split_tape();
    let xs = hold(&x);
    let c = g.c;
    let out_row = g.wo * c;
    let mut ys = vec![0.0; g.batch * g.ho * out_row];
    // argmax (flat input index) per output element, for max pooling
    let mut arg: Vec<u32> = if max { vec![0; ys.len()] } else { Vec::new() };
    let inv = 1.0 / (g.k * g.kw) as Elem;
    let window = |oh: usize, ow: usize| {
        let h0 = (oh * g.stride) as isize - g.pad as isize;
        let w0 = (ow * g.stride) as isize - g.pad as isize;
        let hs = h0.max(0) as usize..((h0 + g.k as isize).min(g.h as isize)) as usize;
        let ws = w0.max(0) as usize..((w0 + g.kw as isize).min(g.w as isize)) as usize;
        (hs, ws)
    };
    let fill = |r: usize, y: &mut [Elem], a: &mut [u32]| {
        let (b, oh) = (r / g.ho, r % g.ho);
        for ow in 0..g.wo {
            let (hs, ws) = window(oh, ow);
            let yo = &mut y[ow * c..(ow + 1) * c];
            if max {
                yo.fill(Elem::NEG_INFINITY);
            } else {
                yo.fill(0.0);
            }
            let mut first = true;
            for ih in hs {
                for iw in ws.clone() {
                    let base = ((b * g.h + ih) * g.w + iw) * c;
                    let xi = &xs[base..base + c];
                    if max {
                        for ch in 0..c {
                            // NaN propagates, as in PyTorch
                            if first || xi[ch] > yo[ch] || xi[ch].is_nan() {
                                yo[ch] = xi[ch];
                                a[ow * c + ch] = (base + ch) as u32;
                            }
                        }
                        first = false;
                    } else {
                        yo.iter_mut().zip(xi).for_each(|(y, x)| *y += x * inv);
                    }
                }
            }
        }
    };
    if max {
        ys.par_chunks_mut(out_row)
            .zip(arg.par_chunks_mut(out_row))
            .enumerate()
            .for_each(|(r, (y, a))| fill(r, y, a));
    } else {
        ys.par_chunks_mut(out_row)
            .enumerate()
            .for_each(|(r, y)| fill(r, y, &mut []));
    }
    let y = wrap(x.device(), ys, out_shape)?;
    if T::OWNS_TAPE {
        let y_ghost = y.clone();
        drop(xs);
        tape.add_backward_op(move |grads| {
            let _t = crate::ops::profile::scope("pool bwd");
            let gy = take_grad(grads, &y_ghost)?;
            {
                let gx: &mut Vec<Elem> = grads.get_or_alloc_mut(&x)?;
                if max {
                    // each output has exactly one source; sources can repeat across windows
                    for (gv, &ai) in gy.iter().zip(&arg) {
                        gx[ai as usize] += gv;
                    }
                } else {
                    let in_row = g.w * c;
                    gx.par_chunks_mut(in_row).enumerate().for_each(|(r, gxr)| {
                        let (b, ih) = (r / g.h, r % g.h);
                        for oh in 0..g.ho {
                            let h0 = (oh * g.stride) as isize - g.pad as isize;
                            if (ih as isize) < h0 || ih as isize >= h0 + g.k as isize {
                                continue;
                            }
                            for ow in 0..g.wo {
                                let w0 = (ow * g.stride) as isize - g.pad as isize;
                                let src = ((b * g.ho + oh) * g.wo + ow) * c;
                                let gs = &gy[src..src + c];
                                for iw in w0.max(0) as usize
                                    ..((w0 + g.kw as isize).min(g.w as isize)) as usize
                                {
                                    gxr[iw * c..(iw + 1) * c]
                                        .iter_mut()
                                        .zip(gs)
                                        .for_each(|(d, v)| *d += v * inv);
                                }
                            }
                        }
                    });
                }
            }
            put_grad(grads, &y_ghost, gy)
        });
    }
    Ok(y.put_tape(tape))
}
