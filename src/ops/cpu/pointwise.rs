//! Fused element-wise op with shared scalar parameters (CPU).

use dfdx::shapes::HasShape;
use dfdx::shapes::{Rank1, Shape};
use dfdx::tensor::{Cpu, PutTape, SplitTape, Tape, Tensor};
use rayon::prelude::*;

use super::{hold, put_grad, take_grad, wrap, CHUNK};
use crate::ops::{Elem, ScalarFn};

pub(super) fn forward<S: Shape, T: Tape<Elem, Cpu>, F: ScalarFn>(
    x: Tensor<S, Elem, Cpu, T>,
    f: F,
    params: [Option<&Tensor<Rank1<1>, Elem, Cpu>>; 2],
) -> Result<Tensor<S, Elem, Cpu, T>, dfdx::tensor::CpuError> {
    let _t = crate::ops::profile::scope("act fwd");
    let (x, mut tape) = x.split_tape();
    let xs = hold(&x);
    let mut ys = vec![0.0; xs.len()];
    ys.par_chunks_mut(CHUNK)
        .zip(xs.par_chunks(CHUNK))
        .for_each(|(y, x)| f.apply(x, y));
    let y = wrap(x.device(), ys, *x.shape())?;
    if T::OWNS_TAPE {
        let y_ghost = y.clone();
        let params: [Option<Tensor<Rank1<1>, Elem, Cpu>>; 2] =
            [params[0].cloned(), params[1].cloned()];
        let wants_params = crate::ops::parameter_gradients_wanted();
        tape.add_backward_op(move |grads| {
            let _t = crate::ops::profile::scope("act bwd");
            let gy = take_grad(grads, &y_ghost)?;
            let want = [
                wants_params && params[0].is_some(),
                wants_params && params[1].is_some(),
            ];
            let gx: &mut Vec<Elem> = grads.get_or_alloc_mut(&x)?;
            let [p0, p1] = gx
                .par_chunks_mut(CHUNK)
                .zip(xs.par_chunks(CHUNK).zip(gy.par_chunks(CHUNK)))
                .map(|(gx, (x, gy))| f.backward(x, gy, gx, want))
                .collect::<Vec<_>>()
                .into_iter()
                // chunk order, not rayon's join order: the parameter gradient is reproducible
                .fold([0.0; 2], |a, b| [a[0] + b[0], a[1] + b[1]]);
            for (p, s) in params.iter().zip([p0, p1]) {
                if let (Some(p), true) = (p, wants_params) {
                    let gp: &mut Vec<Elem> = grads.get_or_alloc_mut(p)?;
                    gp[0] += s as Elem;
                }
            }
            put_grad(grads, &y_ghost, gy)
        });
    }
    Ok(y.put_tape(tape))
}
