//! Synchronised batch norm (PyTorch's `SyncBatchNorm`): training-mode batch statistics taken over
//! the batches of every process of a data-parallel run, not over the local shard alone
//! (docs/reproduction.md §3.8, data-parallel training).
//!
//! The ops know nothing of processes: a run installs a [`StatsSync`] (what sums a few numbers
//! over the ranks) on the calling thread with [`with_synced_batch_norm`], and every
//! training-mode batch norm run inside it
//! - in the forward pass gathers each rank's `(count, mean, M2)` per channel (an exact all-gather:
//!   every rank fills its own slot of a zero vector, then one sum over the ranks) and combines them
//!   in rank order with Chan's formula — the same global mean and biased variance on every rank,
//!   whose `count` is the global one (so the running variance is unbiased with the global count,
//!   as `SyncBatchNorm`);
//! - in the backward pass sums `Σg` and `Σg·x̂` per channel over the ranks for the input's gradient
//!   `dx = γ·s/N·(N·g − Σg − x̂·Σg·x̂)` (N the global count), while γ's and β's own gradients stay
//!   local sums (the trainer's gradient all-reduce adds them once).
//!
//! The gradients summed over the ranks are then those of the loss over the global batch, as if
//! one process had seen it. Evaluation-mode batch norm (the attacks) never communicates.
//! Implemented by the CPU kernel ([`super::Backend::SYNC_BATCH_NORM`]); the composed kernels
//! (CUDA) refuse it with an error before a run starts.

use std::cell::RefCell;
use std::rc::Rc;

/// Sums over the ranks of a data-parallel run, for [`with_synced_batch_norm`].
pub trait StatsSync {
    /// This process's rank, `0..size()`.
    fn rank(&self) -> usize;
    /// The number of ranks.
    fn size(&self) -> usize;
    /// `v ← Σ_ranks v`, the same result on every rank.
    fn sum(&self, v: &mut [f64]) -> Result<(), String>;
}

thread_local! {
    static SYNC: RefCell<Option<Rc<dyn StatsSync>>> = const { RefCell::new(None) };
    static FAILURE: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Runs `f` with every training-mode batch norm on this thread synchronised through `sync`
/// (see the module docs); the backward passes of the tapes built inside `f` stay synchronised
/// whenever they run.
pub fn with_synced_batch_norm<R>(sync: Rc<dyn StatsSync>, f: impl FnOnce() -> R) -> R {
    let _scope = SyncScope::install(Some(sync));
    f()
}

/// The synchronisation of this thread's batch norms until the scope is dropped (then the one
/// before is restored); `None` installs none.
pub struct SyncScope {
    previous: Option<Rc<dyn StatsSync>>,
}

impl SyncScope {
    /// Installs `sync` on this thread.
    pub fn install(sync: Option<Rc<dyn StatsSync>>) -> SyncScope {
        let previous = SYNC.with(|s| std::mem::replace(&mut *s.borrow_mut(), sync));
        SyncScope { previous }
    }
}

impl Drop for SyncScope {
    fn drop(&mut self) {
        let prev = self.previous.take();
        SYNC.with(|s| *s.borrow_mut() = prev);
    }
}

/// The synchronisation installed on this thread, if any.
pub fn current_sync() -> Option<Rc<dyn StatsSync>> {
    SYNC.with(|s| s.borrow().clone())
}

/// Takes the message of the last failed synchronisation on this thread (a kernel can only
/// return its device's error type; the trainer reads the reason here).
pub fn take_sync_failure() -> Option<String> {
    FAILURE.with(|f| f.borrow_mut().take())
}

pub(crate) fn record_failure(message: String) {
    FAILURE.with(|f| *f.borrow_mut() = Some(message));
}

/// Global `(mean, biased variance, count)` per channel from this rank's `count`, `mean` and
/// `m2 = Σ(x − mean)²`: an exact all-gather (own slot, zeros elsewhere, one sum), then Chan's
/// combination in rank order, identical on every rank.
pub(crate) fn global_moments(
    sync: &dyn StatsSync,
    count: usize,
    mean: &[f64],
    m2: &[f64],
) -> Result<(Vec<f64>, Vec<f64>, usize), String> {
    let c = mean.len();
    let (k, r) = (sync.size(), sync.rank());
    let slot = 1 + 2 * c;
    let mut all = vec![0.0f64; k * slot];
    let mine = &mut all[r * slot..(r + 1) * slot];
    mine[0] = count as f64;
    mine[1..1 + c].copy_from_slice(mean);
    mine[1 + c..].copy_from_slice(m2);
    sync.sum(&mut all)?;
    let (mut n, mut mu, mut m2g) = (0.0f64, vec![0.0f64; c], vec![0.0f64; c]);
    for s in all.chunks_exact(slot) {
        let nb = s[0];
        if nb == 0.0 {
            continue;
        }
        let total = n + nb;
        for ch in 0..c {
            let d = s[1 + ch] - mu[ch];
            mu[ch] += d * nb / total;
            m2g[ch] += s[1 + c + ch] + d * d * n * nb / total;
        }
        n = total;
    }
    let var = m2g.iter().map(|m| m / n.max(1.0)).collect();
    Ok((mu, var, n as usize))
}
