//! Every tensor of a model by its `state_dict` name, copied to the host: the values
//! ([`named_tensors`]) or, for the trainable ones, their gradients ([`named_gradients`]). Used to
//! compare one model on two devices (CUDA against the CPU, `tests/gpu.rs`), and as the basis of
//! checkpoint import/export.

use dfdx::nn::{
    RecursiveWalker, TensorCollection, TensorOptions, TensorVisitor, ViewTensorName, ViewTensorRef,
};
use dfdx::shapes::Shape;
use dfdx::tensor::{Gradients, Tensor};
use dfdx::tensor_ops::Device;

use crate::ops::Elem;

struct Collect<'g, D: Device<Elem>> {
    grads: Option<&'g mut Gradients<Elem, D>>,
    out: Vec<(String, Vec<Elem>)>,
}

impl<D: Device<Elem>> TensorVisitor<Elem, D> for Collect<'_, D> {
    type Viewer = (ViewTensorRef, ViewTensorName);
    type Err = D::Err;
    type E2 = Elem;
    type D2 = D;
    fn visit<S: Shape>(
        &mut self,
        opts: TensorOptions<S, Elem, D>,
        (t, name): (&Tensor<S, Elem, D>, String),
    ) -> Result<Option<Tensor<S, Elem, D>>, D::Err> {
        match self.grads.as_deref_mut() {
            None => self.out.push((name, t.as_vec())),
            Some(g) if opts.do_gradient_update => {
                g.try_alloc_for(t)?;
                self.out.push((name, g.get(t).as_vec()))
            }
            Some(_) => {}
        }
        Ok(None)
    }
}

fn walk<M: TensorCollection<Elem, D>, D: Device<Elem>>(
    m: &M,
    grads: Option<&mut Gradients<Elem, D>>,
) -> Result<Vec<(String, Vec<Elem>)>, D::Err> {
    let mut c = Collect {
        grads,
        out: Vec::new(),
    };
    M::iter_tensors(&mut RecursiveWalker {
        m: (m, String::new()),
        f: &mut c,
    })?;
    Ok(c.out)
}

/// `(name, values)` of every tensor of `m` (parameters, running statistics), in visiting order.
pub fn named_tensors<M: TensorCollection<Elem, D>, D: Device<Elem>>(
    m: &M,
) -> Result<Vec<(String, Vec<Elem>)>, D::Err> {
    walk(m, None)
}

/// `(name, gradient)` of every trainable tensor of `m` in `grads` (a gradient that was never
/// written is allocated as zeros).
pub fn named_gradients<M: TensorCollection<Elem, D>, D: Device<Elem>>(
    m: &M,
    grads: &mut Gradients<Elem, D>,
) -> Result<Vec<(String, Vec<Elem>)>, D::Err> {
    walk(m, Some(grads))
}
