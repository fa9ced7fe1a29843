//! Every tensor of a model by its `state_dict` name, copied to the host: the values
//! ([`named_tensors`]) or, for the trainable ones, their gradients ([`named_gradients`]). Used to
//! compare one model on two devices (CUDA against the CPU, `tests/gpu.rs`), and as the basis of
//! checkpoint import/export.

use dfdx::nn::{
    RecursiveWalker, TensorCollection, TensorOptions, TensorVisitor, ViewTensorName, ViewTensorRef,
};
use dfdx::shapes::{HasShape, Shape};
use dfdx::tensor::{Gradients, Tensor};
use dfdx::tensor_ops::Device;

use crate::ops::Elem;

/// A tensor copied to the host: its name, shape and values.
pub type NamedTensor = (String, Vec<usize>, Vec<Elem>);

struct Collect<'g, D: Device<Elem>> {
    grads: Option<&'g mut Gradients<Elem, D>>,
    /// Only the tensors no optimizer updates (running statistics).
    buffers_only: bool,
    out: Vec<NamedTensor>,
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
        let shape: Vec<usize> = t.shape().concrete().into();
        match self.grads.as_deref_mut() {
            None if self.buffers_only && opts.do_gradient_update => {}
            None => self.out.push((name, shape, t.as_vec())),
            Some(g) if opts.do_gradient_update => {
                g.try_alloc_for(t)?;
                self.out.push((name, shape, g.get(t).as_vec()))
            }
            Some(_) => {}
        }
        Ok(None)
    }
}

fn walk<M: TensorCollection<Elem, D>, D: Device<Elem>>(
    m: &M,
    grads: Option<&mut Gradients<Elem, D>>,
) -> Result<Vec<NamedTensor>, D::Err> {
    walk_with(m, grads, false)
}

fn walk_with<M: TensorCollection<Elem, D>, D: Device<Elem>>(
    m: &M,
    grads: Option<&mut Gradients<Elem, D>>,
    buffers_only: bool,
) -> Result<Vec<NamedTensor>, D::Err> {
    let mut c = Collect {
        grads,
        buffers_only,
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
    Ok(walk(m, None)?.into_iter().map(|(n, _, v)| (n, v)).collect())
}

/// `(name, values)` of the tensors of `m` no optimizer updates — the batch norms' running
/// statistics — in visiting order.
pub fn named_buffers<M: TensorCollection<Elem, D>, D: Device<Elem>>(
    m: &M,
) -> Result<Vec<(String, Vec<Elem>)>, D::Err> {
    Ok(walk_with(m, None, true)?
        .into_iter()
        .map(|(n, _, v)| (n, v))
        .collect())
}

/// `(name, shape, values)` of every tensor of `m`, in visiting order (what a checkpoint holds).
pub fn named_shaped_tensors<M: TensorCollection<Elem, D>, D: Device<Elem>>(
    m: &M,
) -> Result<Vec<NamedTensor>, D::Err> {
    walk(m, None)
}

/// `(name, gradient)` of every trainable tensor of `m` in `grads` (a gradient that was never
/// written is allocated as zeros).
pub fn named_gradients<M: TensorCollection<Elem, D>, D: Device<Elem>>(
    m: &M,
    grads: &mut Gradients<Elem, D>,
) -> Result<Vec<(String, Vec<Elem>)>, D::Err> {
    Ok(walk(m, Some(grads))?
        .into_iter()
        .map(|(n, _, v)| (n, v))
        .collect())
}

/// The `state_dict` prefix of the shared activation's tensors in every model of the crate.
pub const ACTIVATION_PREFIX: &str = "activation.";

/// What a checkpoint or a PyTorch `state_dict` of `model` holds: `(name, shape, values)` of every
/// tensor except the activation's [`Activation::unused_tensors`] (an
/// [`AnyActivation`](crate::activations::AnyActivation) as ReLU has no `activation.alpha`).
///
/// [`Activation::unused_tensors`]: crate::activations::Activation::unused_tensors
pub fn state_tensors<M: crate::models::Classifier<D>, D: crate::ops::Backend>(
    model: &M,
) -> Result<Vec<NamedTensor>, D::Err> {
    use crate::activations::Activation;
    let unused = model.activation().unused_tensors();
    let mut all = walk(model, None)?;
    all.retain(|(name, _, _)| {
        !name
            .strip_prefix(ACTIVATION_PREFIX)
            .is_some_and(|n| unused.contains(&n))
    });
    Ok(all)
}

struct Assign<'a> {
    values: &'a std::collections::BTreeMap<String, Vec<Elem>>,
}

impl<D: Device<Elem>> TensorVisitor<Elem, D> for Assign<'_> {
    type Viewer = (dfdx::nn::ViewTensorMut, ViewTensorName);
    type Err = D::Err;
    type E2 = Elem;
    type D2 = D;
    fn visit<S: Shape>(
        &mut self,
        _: TensorOptions<S, Elem, D>,
        (t, name): (&mut Tensor<S, Elem, D>, String),
    ) -> Result<Option<Tensor<S, Elem, D>>, D::Err> {
        if let Some(v) = self.values.get(&name) {
            t.copy_from(v);
        }
        Ok(None)
    }
}

/// Copies `values[name]` into every tensor of `m` named `name` (others untouched). The caller
/// checks names and lengths first (a checkpoint or `state_dict` loader).
pub fn assign_tensors<M: TensorCollection<Elem, D>, D: Device<Elem>>(
    m: &mut M,
    values: &std::collections::BTreeMap<String, Vec<Elem>>,
) -> Result<(), D::Err> {
    let mut a = Assign { values };
    M::iter_tensors(&mut RecursiveWalker {
        m: (m, String::new()),
        f: &mut a,
    })?;
    Ok(())
}
