//! The SGD update ([`crate::ops::Backend::sgd_step`]) on the CPU in one multi-threaded pass.
//!
//! The composed form ([`crate::ops::composed::sgd_update`]) is dfdx's `axpy` once per line of
//! the update, each a single-threaded pass over every parameter, plus a copy of each gradient:
//! ≈ 55 ms of a 2.1 s ResNet-18 training step at B=32 on 2 cores (11 M parameters,
//! `BENCHMARKS.md`, issue 11). Here each element goes through all the lines at once, chunk by
//! chunk on every thread, with the very expressions dfdx's `axpy` evaluates
//! (`a·alpha + b·beta`, the scalars rounded to `f32`), so the results are bit-identical to the
//! composed form (tested below on every branch). The new values are written to a fresh buffer
//! and copied into the parameter with dfdx's `copy_from` (safe, and the tensor keeps its
//! identity, the key of its gradient); the momentum buffer is replaced by its new values.

use std::mem::MaybeUninit;

use dfdx::shapes::{HasShape, Shape};
use dfdx::tensor::{Cpu, CpuError, Gradients, Tensor};
use rayon::prelude::*;

use super::{hold, standard_layout, wrap, CHUNK};
use crate::ops::{Elem, SgdScalars};

pub(super) fn update<S: Shape>(
    p: &mut Tensor<S, Elem, Cpu>,
    grads: &mut Gradients<Elem, Cpu>,
    buf: &mut Option<Tensor<(usize,), Elem, Cpu>>,
    s: SgdScalars,
) -> Result<(), CpuError> {
    let n = p.shape().num_elements();
    // the gradient has as many elements as the parameter's buffer: equal to `n` means the buffer
    // holds exactly the values, in order (with the standard layout), so `copy_from` fits it
    let fits = n > 0 && standard_layout(p).is_some() && grads.get_or_alloc_mut(p)?.len() == n;
    if !fits {
        return crate::ops::composed::sgd_update(p, grads, buf, s);
    }
    let _t = crate::ops::profile::scope("  sgd update");
    let momentum = s.momentum != 0.0;
    let (scale, wd, mu, neg_lr) = (
        s.grad_scale as Elem,
        s.weight_decay as Elem,
        s.momentum as Elem,
        (-s.lr) as Elem,
    );
    let (decay, nesterov) = (s.grad_scale != 1.0 || s.weight_decay != 0.0, s.nesterov);
    let mut new_p: Vec<Elem> = Vec::with_capacity(n);
    let mut new_b: Vec<Elem> = Vec::with_capacity(if momentum { n } else { 0 });
    {
        let old_b = match buf.as_ref() {
            Some(b) if momentum && b.shape().0 == n => Some(hold(b)),
            _ => None,
        };
        let old_b: Option<&[Elem]> = old_b.as_deref();
        let pv = hold(p);
        let g: &[Elem] = grads.get_or_alloc_mut(p)?;
        // one chunk: the new parameter values into `op`, the new buffer into `ob` (momentum)
        let chunk =
            |i0: usize, op: &mut [MaybeUninit<Elem>], ob: Option<&mut [MaybeUninit<Elem>]>| {
                let r = i0..i0 + op.len();
                let (g, pv) = (&g[r.clone()], &pv[r.clone()]);
                match ob {
                    None => {
                        for ((o, &g), &p) in op.iter_mut().zip(g).zip(pv) {
                            let d = if decay { g * scale + p * wd } else { g };
                            o.write(p * 1.0 + d * neg_lr);
                        }
                    }
                    Some(ob) => {
                        for (j, ((o, b_out), (&g, &p))) in
                            op.iter_mut().zip(ob).zip(g.iter().zip(pv)).enumerate()
                        {
                            let d = if decay { g * scale + p * wd } else { g };
                            let b = match old_b {
                                Some(old) => old[r.start + j] * mu + d * 1.0,
                                None => 0.0 * 0.0 + d * 1.0,
                            };
                            b_out.write(b);
                            let d = if nesterov { d * 1.0 + b * mu } else { b };
                            o.write(p * 1.0 + d * neg_lr);
                        }
                    }
                }
            };
        let op = &mut new_p.spare_capacity_mut()[..n];
        if momentum {
            let ob = &mut new_b.spare_capacity_mut()[..n];
            op.par_chunks_mut(CHUNK)
                .zip(ob.par_chunks_mut(CHUNK))
                .enumerate()
                .for_each(|(c, (op, ob))| chunk(c * CHUNK, op, Some(ob)));
        } else {
            op.par_chunks_mut(CHUNK)
                .enumerate()
                .for_each(|(c, op)| chunk(c * CHUNK, op, None));
        }
    }
    // SAFETY: the chunks above cover `0..n` of each vector written, and wrote every element.
    unsafe {
        new_p.set_len(n);
        if momentum {
            new_b.set_len(n);
        }
    }
    // `p` is no longer held: `copy_from` writes its own buffer (no copy-on-write)
    p.copy_from(&new_p);
    if momentum {
        *buf = Some(wrap(p.device(), new_b, (n,))?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The fused update against the composed one (dfdx's `axpy` per line), bit for bit, on every
    //! branch: decay on / off, momentum 0, the first step (no buffer), a buffer of the wrong
    //! length, classical and Nesterov momentum, over several chunks.
    use super::*;
    use crate::ops::composed::sgd_update;
    use dfdx::shapes::{ConstShape, Rank2};
    use dfdx::tensor::{SampleTensor, TensorFromVec};

    fn case<S: ConstShape + Default>(s: SgdScalars, with_buf: Option<usize>, dev: &Cpu) {
        let p: Tensor<S, Elem, Cpu> = dev.sample_normal();
        let g: Tensor<S, Elem, Cpu> = dev.sample_normal();
        let n = p.shape().num_elements();
        let b0: Option<Tensor<(usize,), Elem, Cpu>> = with_buf.map(|len| {
            let v: Vec<Elem> = (0..len).map(|i| (i as Elem * 0.37).sin()).collect();
            dev.tensor_from_vec(v, (len,))
        });
        let run = |fused: bool| {
            // fresh tensors: each side owns its buffers
            let mut p = dev.tensor_from_vec(p.as_vec(), *p.shape());
            let mut grads = Gradients::leaky();
            grads
                .get_or_alloc_mut(&p)
                .unwrap()
                .copy_from_slice(&g.as_vec());
            let mut b = b0
                .as_ref()
                .map(|b| dev.tensor_from_vec(b.as_vec(), (b.shape().0,)));
            if fused {
                update(&mut p, &mut grads, &mut b, s).unwrap();
            } else {
                sgd_update(&mut p, &mut grads, &mut b, s).unwrap();
            }
            // the gradient is read, never changed
            assert_eq!(grads.get(&p).as_vec(), g.as_vec());
            (p.as_vec(), b.map(|b| b.as_vec()))
        };
        let (fp, fb) = run(true);
        let (cp, cb) = run(false);
        let bits = |v: &[Elem]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(
            bits(&fp),
            bits(&cp),
            "parameter, {s:?}, buffer {with_buf:?}"
        );
        assert_eq!(
            fb.as_deref().map(bits),
            cb.as_deref().map(bits),
            "momentum buffer, {s:?}, buffer {with_buf:?}"
        );
        assert_eq!(fp.len(), n);
        // the update did something
        assert_ne!(fp, p.as_vec());
    }

    #[test]
    fn fused_update_matches_axpy_per_line_bit_for_bit() {
        let dev = Cpu::seed_from_u64(7);
        // 3 × 17 000 = 51 000 elements: three whole chunks and a partial one
        type Big = Rank2<3, 17000>;
        for (scale, wd) in [(1.0, 0.0), (1.0, 5e-4), (0.37, 5e-4), (0.5, 0.0)] {
            for (momentum, nesterov) in [(0.0, false), (0.9, true), (0.9, false), (0.8, true)] {
                let s = SgdScalars {
                    grad_scale: scale,
                    weight_decay: wd,
                    momentum,
                    nesterov,
                    lr: 0.1,
                };
                let n = 3 * 17000;
                for with_buf in [None, Some(n), Some(5)] {
                    case::<Big>(s, with_buf, &dev);
                }
                case::<Rank2<4, 5>>(s, Some(20), &dev);
            }
        }
    }
}
