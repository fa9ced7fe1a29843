//! Synchronous data-parallel SGD over the ranks of a [`Collective`] (docs/reproduction.md §3.8),
//! the way the paper's WRN-28-10 runs used 4 GPUs through PyTorch `DataParallel`:
//!
//! - every rank holds the whole model and optimizer (rank 0's initial state is broadcast,
//!   [`broadcast_state`]) and takes a disjoint, contiguous shard of every global batch
//!   ([`crate::data::shard_range`]: the same global batches as one process, whatever the number of
//!   ranks, so a run resumes with another number of ranks);
//! - the attack runs locally on each shard (its start δ₀ the shard's rows of the global batch's);
//! - each rank's loss is scaled by `n_rank / n_global` before the backward pass, the gradients
//!   are summed over the ranks as one flat buffer ([`all_reduce_gradients`]): the gradient of the
//!   mean loss over the global batch; PSSiLU's β penalty, present in every rank's loss, is so
//!   counted once (Σ n_rank/n_global = 1), and β's gradient clip is applied once, to the sum;
//! - batch norm, as `DataParallel`: statistics per shard, the running statistics those of rank 0
//!   (its replica shares the module's buffers), which the others receive after every training-mode
//!   forward pass that an evaluation-mode pass follows ([`broadcast_buffers`]); or, with
//!   `trainer.sync_batch_norm`, `SyncBatchNorm`'s statistics over the global batch
//!   ([`crate::ops::sync`]), identical on every rank;
//! - the epoch's counts and losses are summed over the ranks; only rank 0 writes the run
//!   directory; the per-epoch evaluation is shared out by chunks.
//!
//! Not bit-identical to one process: sums over the ranks round differently from sums over one
//! batch (SyncBN: within 1e-5 after several steps, `tests/train_parallel.rs`), and the official
//! ℓ2 attack's zero-gradient noise is drawn per rank.

use std::collections::BTreeMap;
use std::rc::Rc;

use dfdx::nn::{RecursiveWalker, TensorOptions, TensorVisitor, ViewTensorRef};
use dfdx::shapes::{HasShape, Shape};
use dfdx::tensor::{Gradients, Tensor};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::collective::{BnSync, Collective, Single};
use crate::models::{assign_tensors, named_buffers, named_gradients, Classifier};
use crate::ops::{Backend, Elem};
use crate::Error;

/// How a step's batch is spread over ranks: the collective and the batch norm mode.
#[derive(Clone)]
pub struct Parallel {
    pub comm: Rc<dyn Collective>,
    /// `SyncBatchNorm` (statistics over the global batch) rather than per-rank statistics.
    pub sync_batch_norm: bool,
}

impl Default for Parallel {
    fn default() -> Self {
        Parallel::single()
    }
}

impl Parallel {
    /// One process.
    pub fn single() -> Self {
        Parallel {
            comm: Rc::new(Single),
            sync_batch_norm: false,
        }
    }

    /// `comm`'s ranks, with or without SyncBN.
    pub fn new(comm: Rc<dyn Collective>, sync_batch_norm: bool) -> Self {
        Parallel {
            comm,
            sync_batch_norm,
        }
    }

    /// More than one rank.
    pub fn is_parallel(&self) -> bool {
        self.comm.size() > 1
    }

    /// Rank 0 (the one that writes).
    pub fn is_root(&self) -> bool {
        self.comm.rank() == 0
    }

    /// The batch-norm synchronisation to install for a step (SyncBN on several ranks only).
    pub(crate) fn bn_sync(&self) -> Option<Rc<dyn crate::ops::sync::StatsSync>> {
        (self.sync_batch_norm && self.is_parallel())
            .then(|| Rc::new(BnSync(self.comm.clone())) as Rc<dyn crate::ops::sync::StatsSync>)
    }
}

/// Writes a flat host buffer back into the gradients of the trainable tensors, in visiting order.
struct WriteBack<'a, D: Backend> {
    grads: &'a mut Gradients<Elem, D>,
    flat: &'a [Elem],
    at: usize,
}

impl<D: Backend> TensorVisitor<Elem, D> for WriteBack<'_, D> {
    type Viewer = ViewTensorRef;
    type Err = D::Err;
    type E2 = Elem;
    type D2 = D;
    fn visit<S: Shape>(
        &mut self,
        opts: TensorOptions<S, Elem, D>,
        t: &Tensor<S, Elem, D>,
    ) -> Result<Option<Tensor<S, Elem, D>>, D::Err> {
        if opts.do_gradient_update {
            let n = t.shape().num_elements();
            D::write_gradient(self.grads, t, &self.flat[self.at..self.at + n])?;
            self.at += n;
        }
        Ok(None)
    }
}

/// Sums the gradients of every trainable tensor of `model` over the ranks, in place: one flat
/// buffer (visiting order), one all-reduce. Nothing happens on one rank.
pub fn all_reduce_gradients<M: Classifier<D>, D: Backend>(
    comm: &dyn Collective,
    model: &M,
    grads: &mut Gradients<Elem, D>,
) -> Result<(), Error> {
    if comm.size() == 1 {
        return Ok(());
    }
    let de = |e: D::Err| Error::Device(format!("{e:?}"));
    let mut flat: Vec<Elem> = named_gradients(model, grads)
        .map_err(de)?
        .into_iter()
        .flat_map(|(_, v)| v)
        .collect();
    comm.all_reduce_f32(&mut flat)?;
    let mut w = WriteBack {
        grads,
        flat: &flat,
        at: 0,
    };
    M::iter_tensors(&mut RecursiveWalker {
        m: model,
        f: &mut w,
    })
    .map_err(de)?;
    Ok(())
}

fn f32_bytes(v: &[Elem]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Rank 0's batch-norm running statistics on every rank (what `DataParallel`'s replicas see: the
/// module's buffers, which the replica on the first device updates). Nothing on one rank.
pub fn broadcast_buffers<M: Classifier<D>, D: Backend>(
    comm: &dyn Collective,
    model: &mut M,
) -> Result<(), Error> {
    if comm.size() == 1 {
        return Ok(());
    }
    let de = |e: D::Err| Error::Device(format!("{e:?}"));
    let named = named_buffers(model).map_err(de)?;
    let mut bytes = if comm.rank() == 0 {
        named.iter().flat_map(|(_, v)| f32_bytes(v)).collect()
    } else {
        Vec::new()
    };
    comm.broadcast_bytes(&mut bytes, 0)?;
    if comm.rank() != 0 {
        let total: usize = named.iter().map(|(_, v)| v.len()).sum();
        if bytes.len() != 4 * total {
            return Err(Error::Collective(format!(
                "rank 0 sent {} bytes of batch-norm statistics, this model has {}",
                bytes.len(),
                4 * total
            )));
        }
        let mut values = BTreeMap::new();
        let mut at = 0;
        for (name, v) in named {
            let n = v.len();
            let vals = bytes[4 * at..4 * (at + n)]
                .chunks_exact(4)
                .map(|c| Elem::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            values.insert(name, vals);
            at += n;
        }
        assign_tensors(model, &values).map_err(de)?;
    }
    Ok(())
}

/// Rank 0's side of [`receive_from_root`]: sends the result of its part (setting up the run
/// directory, reading the configuration, the summary) to the other ranks, its error as a message.
/// Nothing on one rank.
pub fn send_to_ranks<T: Serialize, E: std::fmt::Display>(
    comm: &dyn Collective,
    result: &Result<T, E>,
) -> Result<(), Error> {
    if comm.size() == 1 {
        return Ok(());
    }
    let mut bytes = match result {
        Ok(v) => [&[0u8][..], &serde_json::to_vec(v).expect("serialisable")].concat(),
        Err(e) => [&[1u8][..], e.to_string().as_bytes()].concat(),
    };
    comm.broadcast_bytes(&mut bytes, 0)?;
    Ok(())
}

/// What rank 0 sent with [`send_to_ranks`], on a rank other than 0; rank 0's error as
/// `Error::Collective("rank 0 stopped: …")`.
pub fn receive_from_root<T: DeserializeOwned>(comm: &dyn Collective) -> Result<T, Error> {
    let mut bytes = Vec::new();
    comm.broadcast_bytes(&mut bytes, 0)?;
    match bytes.split_first() {
        Some((0, v)) => serde_json::from_slice(v)
            .map_err(|e| Error::Collective(format!("rank 0 sent an unreadable value: {e}"))),
        Some((_, m)) => Err(Error::Collective(format!(
            "rank 0 stopped: {}",
            String::from_utf8_lossy(m)
        ))),
        None => Err(Error::Collective("rank 0 sent nothing".into())),
    }
}

/// Rank 0's model, momentum buffers and run position on every rank, as the bytes of a
/// checkpoint ([`super::checkpoint::checkpoint_bytes`]), checked like a file (checksum) before
/// it is applied.
pub fn broadcast_state<M: Classifier<D>, D: Backend>(
    comm: &dyn Collective,
    model: &mut M,
    opt: &mut super::Sgd<D>,
    meta: &super::CheckpointMeta,
) -> Result<Option<super::checkpoint::RunPosition>, super::TrainError> {
    if comm.size() == 1 {
        return Ok(meta.position.clone());
    }
    let origin = std::path::Path::new("<rank 0's state>");
    let mut bytes = if comm.rank() == 0 {
        super::checkpoint::checkpoint_bytes(origin, model, Some(opt), meta)?
    } else {
        Vec::new()
    };
    comm.broadcast_bytes(&mut bytes, 0)?;
    if comm.rank() == 0 {
        return Ok(meta.position.clone());
    }
    let ckpt = super::checkpoint::parse_checkpoint(origin, &bytes)?;
    ckpt.apply(model, Some(opt))?;
    Ok(ckpt.meta.position)
}
