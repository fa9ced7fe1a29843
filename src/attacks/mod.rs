//! Adversarial attacks (docs/reproduction.md §3.3, §3.4, §4): PGD (ℓ∞, ℓ2) with the paper's
//! defaults and its random-start quirk, FGSM, TRADES' inner maximisation, and AutoAttack's APGD,
//! FAB-T and Square, on any model of the crate and any device. Attacks run the model in evaluation
//! mode and restore its mode afterwards.
//!
//! Every attack takes an [`AttackModel`] (every [`crate::models::Classifier`] is one; tests use
//! linear models, where the worst perturbation has a closed form), a clean batch `x` (pixels in
//! `[0, 1]`) and labels, and returns adversarial images inside the ε-ball around `x` and inside
//! `[0, 1]`.

pub mod apgd;
pub mod fab;
pub mod pgd;
pub mod square;
pub mod trades;

pub use apgd::{apgd, ApgdConfig, ApgdLoss};
pub use fab::{fab_targeted, FabConfig};
pub use pgd::{fgsm, pgd, pgd_from, PgdConfig};
pub use square::{square, SquareConfig};
pub use trades::{trades_adversary, trades_adversary_from, TradesConfig};

use dfdx::shapes::{Axes3, ConstDim, HasShape, Shape};
use dfdx::tensor::{Tape, Tensor};
use dfdx::tensor_ops::{
    BroadcastTo, ChooseFrom, SumTo, TryAdd, TryDiv, TryGt, TryLt, TryMul, TrySub,
};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal, Uniform};

use crate::models::{Classifier, Mode};
use crate::ops::{Backend, Elem};
use crate::Error;

/// The threat model's norm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Norm {
    /// ‖δ‖∞ ≤ ε: sign-gradient steps, clipping.
    #[serde(alias = "linf")]
    Linf,
    /// ‖δ‖₂ ≤ ε (per image): normalised-gradient steps, rescaling.
    #[serde(alias = "l2")]
    L2,
}

/// A batch of images for model `M`: `(batch, H, W, C)`, pixels in `[0, 1]`.
pub type Images<M, D> = Tensor<
    (
        usize,
        <M as AttackModel<D>>::Height,
        <M as AttackModel<D>>::Width,
        <M as AttackModel<D>>::Channels,
    ),
    Elem,
    D,
>;

/// What an attack needs from a model: logits with gradients to the input, and a way to put it
/// in evaluation mode for the attack.
pub trait AttackModel<D: Backend> {
    type Height: ConstDim;
    type Width: ConstDim;
    type Channels: ConstDim;
    type Classes: ConstDim;

    /// Logits `(batch, classes)` of `x`, recorded on `x`'s tape.
    #[allow(clippy::type_complexity)]
    fn attack_logits<T: Tape<Elem, D>>(
        &self,
        x: Tensor<(usize, Self::Height, Self::Width, Self::Channels), Elem, D, T>,
    ) -> Result<Tensor<(usize, Self::Classes), Elem, D, T>, D::Err>;

    /// Switches to evaluation mode and returns the mode to restore (`None`: no modes).
    fn enter_eval(&mut self) -> Option<Mode> {
        None
    }
    /// Restores what [`AttackModel::enter_eval`] returned.
    fn restore_mode(&mut self, _previous: Option<Mode>) {}
}

impl<M: Classifier<D>, D: Backend> AttackModel<D> for M {
    type Height = M::Height;
    type Width = M::Width;
    type Channels = M::Channels;
    type Classes = M::Classes;
    fn attack_logits<T: Tape<Elem, D>>(
        &self,
        x: Tensor<(usize, Self::Height, Self::Width, Self::Channels), Elem, D, T>,
    ) -> Result<Tensor<(usize, Self::Classes), Elem, D, T>, D::Err> {
        self.try_logits(x)
    }
    fn enter_eval(&mut self) -> Option<Mode> {
        let m = self.mode();
        self.eval();
        Some(m)
    }
    fn restore_mode(&mut self, previous: Option<Mode>) {
        if let Some(m) = previous {
            self.set_mode(m);
        }
    }
}

/// Runs `f` with `model` in evaluation mode and without parameter gradients (attacks need the
/// input gradient only, [`crate::ops::without_parameter_gradients`]), restoring its mode
/// afterwards (also on error).
pub fn in_eval_mode<M: AttackModel<D>, D: Backend, R>(model: &mut M, f: impl FnOnce(&M) -> R) -> R {
    let previous = model.enter_eval();
    let r = crate::ops::without_parameter_gradients(|| f(model));
    model.restore_mode(previous);
    r
}

/// One-hot `(batch, classes)` targets from class indices; an index ≥ classes is an error.
pub fn one_hot<C: ConstDim, D: Backend>(
    dev: &D,
    labels: &[usize],
) -> Result<Tensor<(usize, C), Elem, D>, Error> {
    let k = C::SIZE;
    let mut v = vec![0.0; labels.len() * k];
    for (i, &l) in labels.iter().enumerate() {
        if l >= k {
            return Err(Error::InvalidParameter {
                name: "label",
                value: l as f64,
                reason: "label outside the model's classes",
            });
        }
        v[i * k + l] = 1.0;
    }
    Ok(dev.tensor_from_vec(v, (labels.len(), C::default())))
}

/// Checks one label per image (`n` images) and every label below `classes`.
pub(crate) fn check_labels(labels: &[usize], n: usize, classes: usize) -> Result<(), Error> {
    if labels.len() != n {
        return Err(Error::InvalidParameter {
            name: "labels",
            value: labels.len() as f64,
            reason: "one label per image is needed",
        });
    }
    if let Some(&l) = labels.iter().find(|&&l| l >= classes) {
        return Err(Error::InvalidParameter {
            name: "label",
            value: l as f64,
            reason: "label outside the model's classes",
        });
    }
    Ok(())
}

pub(crate) fn device_err<E: std::fmt::Debug>(e: E) -> Error {
    // a synchronised batch norm that could not reach the other ranks fails with a device error
    // (all a kernel can return); its own reason is kept aside
    match crate::ops::sync::take_sync_failure() {
        Some(m) => Error::Collective(m),
        None => Error::Device(format!("{e:?}")),
    }
}

/// Checks `eps ≥ 0`, `step ≥ 0` and finiteness (an error names the offending value).
pub fn check_budget(eps: f64, step: f64) -> Result<(), Error> {
    for (name, v) in [("eps", eps), ("step_size", step)] {
        if !v.is_finite() || v < 0.0 {
            return Err(Error::InvalidParameter {
                name,
                value: v,
                reason: "must be finite and non-negative",
            });
        }
    }
    Ok(())
}

/// Host-side random tensors with a fixed seed, so an attack is reproducible on every device.
pub(crate) struct Noise(StdRng);

impl Noise {
    pub(crate) fn new(seed: u64) -> Self {
        Noise(StdRng::seed_from_u64(seed))
    }
    pub(crate) fn uniform<S: Shape, D: Backend>(
        &mut self,
        dev: &D,
        shape: S,
        lo: f32,
        hi: f32,
    ) -> Tensor<S, Elem, D> {
        let d = Uniform::new_inclusive(lo, hi);
        let v = (0..shape.num_elements())
            .map(|_| d.sample(&mut self.0))
            .collect();
        dev.tensor_from_vec(v, shape)
    }
    pub(crate) fn normal<S: Shape, D: Backend>(&mut self, dev: &D, shape: S) -> Tensor<S, Elem, D> {
        let v = (0..shape.num_elements())
            .map(|_| StandardNormal.sample(&mut self.0))
            .collect();
        dev.tensor_from_vec(v, shape)
    }
    pub(crate) fn unit_interval(&mut self, n: usize) -> Vec<f32> {
        let d = Uniform::new(0.0f32, 1.0);
        (0..n).map(|_| d.sample(&mut self.0)).collect()
    }
}

type Img<H, W, C, D> = Tensor<(usize, H, W, C), Elem, D>;

/// sign(g) ∈ {−1, 0, 1}, element-wise, from dfdx comparisons (works on every device).
pub(crate) fn sign<H: ConstDim, W: ConstDim, C: ConstDim, D: Backend>(
    g: Img<H, W, C, D>,
) -> Result<Img<H, W, C, D>, D::Err> {
    let pos = g.try_gt(0.0)?;
    let neg = g.try_lt(0.0)?;
    let dev = g.device().clone();
    let ones: Img<H, W, C, D> = dev.try_ones_like(g.shape())?;
    let zeros: Img<H, W, C, D> = dev.try_zeros_like(g.shape())?;
    pos.try_choose(ones.clone(), zeros.clone())?
        .try_sub(neg.try_choose(ones, zeros)?)
}

/// Per-image ℓ2 norms `(batch,)` of `x`.
pub(crate) fn l2_norms<H: ConstDim, W: ConstDim, C: ConstDim, D: Backend>(
    x: &Img<H, W, C, D>,
) -> Result<Tensor<(usize,), Elem, D>, D::Err> {
    x.clone()
        .try_square()?
        .try_sum::<(usize,), Axes3<1, 2, 3>>()?
        .try_sqrt()
}

/// `x / max(‖x‖₂, tiny)` per image (a zero image stays zero).
pub(crate) fn l2_normalise<H: ConstDim, W: ConstDim, C: ConstDim, D: Backend>(
    x: Img<H, W, C, D>,
) -> Result<Img<H, W, C, D>, D::Err> {
    let n = l2_norms(&x)?.try_add(1e-12)?;
    let shape = *x.shape();
    x.try_div(n.try_broadcast_like(&shape)?)
}

/// Projects `x_adv` onto the ε-ball around `x` (per image for ℓ2) and onto `[0, 1]`.
pub(crate) fn project<H: ConstDim, W: ConstDim, C: ConstDim, D: Backend>(
    x: &Img<H, W, C, D>,
    x_adv: Img<H, W, C, D>,
    norm: Norm,
    eps: f32,
) -> Result<Img<H, W, C, D>, D::Err> {
    let delta = x_adv.try_sub(x.clone())?;
    let delta = match norm {
        Norm::Linf => delta.try_clamp(-eps, eps)?,
        Norm::L2 => {
            // δ · min(1, ε / ‖δ‖)
            let n = l2_norms(&delta)?.try_add(1e-12)?;
            let factor = n.try_recip()?.try_mul(eps)?.try_clamp(0.0, 1.0)?;
            let shape = *delta.shape();
            delta.try_mul(factor.try_broadcast_like(&shape)?)?
        }
    };
    x.clone().try_add(delta)?.try_clamp(0.0, 1.0)
}

/// One forward and backward pass on host images: the logits `(n × classes)`, the per-image loss
/// and `∂(Σᵢ Lᵢ)/∂x`, for any loss whose logit gradient `loss(i, logits_i) -> (Lᵢ, ∂Lᵢ/∂logits_i)`
/// is computed on the host. The backward pass runs `Σ logits ⊙ C` with `C = ∂L/∂logits`, so one
/// forward pass serves the loss, its gradient and the success check.
#[allow(clippy::type_complexity)]
pub fn logits_loss_grad<M: AttackModel<D>, D: Backend>(
    m: &M,
    dev: &D,
    x: &[f32],
    n: usize,
    loss: impl Fn(usize, &[f32]) -> (f64, Vec<f32>),
) -> Result<(Vec<f32>, Vec<f64>, Vec<f32>), Error> {
    use dfdx::shapes::Rank0;
    use dfdx::tensor::Trace;
    use dfdx::tensor_ops::Backward;
    let shape = (
        n,
        M::Height::default(),
        M::Width::default(),
        M::Channels::default(),
    );
    let xt: Tensor<_, Elem, D> = dev.tensor_from_vec(x.to_vec(), shape);
    let logits = m.attack_logits(xt.leaky_trace()).map_err(device_err)?;
    let lv = logits.as_vec();
    let k = M::Classes::SIZE;
    let mut losses = Vec::with_capacity(n);
    let mut c = Vec::with_capacity(n * k);
    for i in 0..n {
        let (l, g) = loss(i, &lv[i * k..(i + 1) * k]);
        losses.push(l);
        c.extend(g);
    }
    let ct = dev.tensor_from_vec(c, *logits.shape());
    let grads = logits
        .try_mul(ct)
        .map_err(device_err)?
        .try_sum::<Rank0, _>()
        .map_err(device_err)?
        .try_backward()
        .map_err(device_err)?;
    Ok((lv, losses, grads.get(&xt).as_vec()))
}

/// Logits of host images, no gradient.
pub fn logits_of<M: AttackModel<D>, D: Backend>(
    m: &M,
    dev: &D,
    x: &[f32],
    n: usize,
) -> Result<Vec<f32>, Error> {
    let shape = (
        n,
        M::Height::default(),
        M::Width::default(),
        M::Channels::default(),
    );
    let xt: Tensor<_, Elem, D> = dev.tensor_from_vec(x.to_vec(), shape);
    Ok(m.attack_logits(xt).map_err(device_err)?.as_vec())
}

/// The paper's ℓ2 steps (`utils_adv.py`, docs/reproduction.md §3.3/§3.4) where they differ from
/// torchattacks': an image whose gradient is exactly zero steps along `N(0, I)` (not normalised)
/// instead of staying put — `grad[norms == 0] = randn_like(...)` — and, for TRADES, the step is
/// projected onto `[0, 1]` before the ε-ball (`clamp_`, then `renorm_`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct OfficialL2 {
    /// Seed of the zero-gradient noise (mixed with the step index).
    pub seed: u64,
    /// Project onto `[0, 1]` before the ε-ball (TRADES) instead of after (PGD).
    pub box_first: bool,
}

/// The ℓ2 step direction `∇/‖∇‖₂` per image; with `official`, images with `‖∇‖ = 0` get
/// `N(0, I)` noise instead of zero.
fn l2_direction<H: ConstDim, W: ConstDim, C: ConstDim, D: Backend>(
    g: Img<H, W, C, D>,
    official: Option<(u64, usize)>,
) -> Result<Img<H, W, C, D>, D::Err> {
    let Some((seed, k)) = official else {
        return l2_normalise(g);
    };
    let norms = l2_norms(&g)?.as_vec();
    let unit = l2_normalise(g)?;
    if norms.iter().all(|&v| v != 0.0) {
        return Ok(unit);
    }
    let shape = *unit.shape();
    let dev = unit.device().clone();
    let stream = 0x9E37_79B9_7F4A_7C15u64.wrapping_mul(k as u64 + 1);
    let noise = Noise::new(seed ^ stream).normal(&dev, shape);
    let mask: Vec<Elem> = norms
        .iter()
        .map(|&v| if v == 0.0 { 1.0 } else { 0.0 })
        .collect();
    let mask = dev.tensor_from_vec(mask, (shape.0,));
    unit.try_add(noise.try_mul(mask.try_broadcast_like(&shape)?)?)
}

/// `steps` ascent steps on the cross-entropy of `m(adv)` against `target` (one-hot labels, or the
/// clean softmax for TRADES), each followed by the projection onto the ε-ball around `x` and
/// `[0, 1]`: ℓ∞ steps along `sign(∇)`, ℓ2 along `∇/‖∇‖₂` (with `official`: see [`OfficialL2`]),
/// of length `step`. The result is projected even when `steps` is 0.
#[allow(clippy::too_many_arguments)]
pub(crate) fn ascend<M: AttackModel<D>, D: Backend>(
    m: &M,
    x: &Images<M, D>,
    mut adv: Images<M, D>,
    target: &Tensor<(usize, M::Classes), Elem, D>,
    norm: Norm,
    step: f32,
    eps: f32,
    steps: usize,
    official: Option<OfficialL2>,
) -> Result<Images<M, D>, Error> {
    use dfdx::losses::cross_entropy_with_logits_loss;
    use dfdx::tensor::Trace;
    use dfdx::tensor_ops::Backward;
    for k in 0..steps {
        let logits = m.attack_logits(adv.leaky_trace()).map_err(device_err)?;
        let grads = cross_entropy_with_logits_loss(logits, target.clone())
            .try_backward()
            .map_err(device_err)?;
        let g = grads.get(&adv);
        let stepped = match norm {
            Norm::Linf => sign(g).map_err(device_err)?,
            Norm::L2 => l2_direction(g, official.map(|o| (o.seed, k))).map_err(device_err)?,
        }
        .try_mul(step)
        .map_err(device_err)?;
        let mut moved = adv.try_add(stepped).map_err(device_err)?;
        if norm == Norm::L2 && official.is_some_and(|o| o.box_first) {
            // x + δ in [0, 1] first; scaling δ down towards 0 keeps it there
            moved = moved.try_clamp(0.0, 1.0).map_err(device_err)?;
        }
        adv = project(x, moved, norm, eps).map_err(device_err)?;
    }
    project(x, adv, norm, eps).map_err(device_err)
}

/// A batch of `n` host images (`n · H·W·C` values, NHWC) as model `M`'s input tensor on `dev`.
pub fn host_images<M: AttackModel<D>, D: Backend>(dev: &D, v: Vec<f32>, n: usize) -> Images<M, D> {
    dev.tensor_from_vec(
        v,
        (
            n,
            M::Height::default(),
            M::Width::default(),
            M::Channels::default(),
        ),
    )
}

/// Per image of the host batch `x`: whether `m` predicts its label (one forward pass).
pub fn classified_correctly<M: AttackModel<D>, D: Backend>(
    m: &M,
    dev: &D,
    x: &[f32],
    labels: &[usize],
) -> Result<Vec<bool>, Error> {
    let k = M::Classes::SIZE;
    let l = logits_of(m, dev, x, labels.len())?;
    Ok(labels
        .iter()
        .enumerate()
        .map(|(i, &y)| argmax(&l[i * k..(i + 1) * k]) == y)
        .collect())
}

/// Index of the largest value (the first on ties).
pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}
