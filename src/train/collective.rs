//! The collective layer of data-parallel training (docs/reproduction.md §3.8): the few operations
//! one training run spread over several processes needs — a sum over the ranks (the gradients as
//! one flat buffer, the epoch's counts, SyncBN's statistics), a broadcast from one rank (the
//! initial weights and run position, rank 0's BN running statistics), a barrier.
//!
//! - [`Single`]: one process, the default (every operation is the identity);
//! - [`LocalGroup`]: K ranks as K threads of one process, through shared memory (the tests'
//!   stand-in for K processes, and a way to check a data-parallel setting on one machine);
//! - `MpiCollective` (feature `mpi`): MPI through rsmpi, for `mpirun`/`srun` launches over
//!   processes and machines; [`from_environment`] picks it when the process was launched so.
//!
//! Every rank calls the same operations in the same order (the trainer's steps are identical on
//! all ranks); a sum gives the same bits on every rank ([`LocalGroup`] adds in rank order; MPI's
//! `Allreduce` on 2 ranks is `a + b` on both, and the trainer re-broadcasts rank 0's weights at
//! every epoch end, so that a reduction that rounds differently per rank cannot make the replicas
//! drift).
//!
//! The gradients travel as one host buffer of `f32` ([`super::parallel::all_reduce_gradients`]
//! stages them out of and back into the device's gradient buffers). An NCCL implementation on
//! CUDA (cudarc 0.9 exposes it) will implement this trait for the host-side values and reduce the
//! device buffers in place — dfdx's `Gradients::get_or_alloc_mut` hands out the `CudaSlice` of
//! every parameter — behind the same `all_reduce_gradients`: the trainer does not change.

use std::rc::Rc;
use std::sync::{Arc, Condvar, Mutex};

/// A collective operation failed (a rank stopped, the transport broke).
#[derive(Debug, thiserror::Error)]
pub enum CollectiveError {
    /// Another rank left the group (it stopped with an error or was killed).
    #[error("rank {rank} of {size}: another rank left the run ({what})")]
    PeerGone {
        rank: usize,
        size: usize,
        what: String,
    },
    /// The ranks disagree (a buffer of another length, a broadcast from an absent rank).
    #[error("rank {rank} of {size}: {what}")]
    Mismatch {
        rank: usize,
        size: usize,
        what: String,
    },
}

impl From<CollectiveError> for crate::Error {
    fn from(e: CollectiveError) -> Self {
        crate::Error::Collective(e.to_string())
    }
}

impl From<CollectiveError> for super::TrainError {
    fn from(e: CollectiveError) -> Self {
        super::TrainError::Model(e.into())
    }
}

/// Sums, broadcasts and a barrier over the ranks of one run: see the module docs.
pub trait Collective {
    /// This process's rank, `0..size()`; rank 0 writes the run directory.
    fn rank(&self) -> usize;
    /// The number of ranks.
    fn size(&self) -> usize;
    /// `v ← Σ_ranks v`, in place, the same result on every rank.
    fn all_reduce_f32(&self, v: &mut [f32]) -> Result<(), CollectiveError>;
    /// `v ← Σ_ranks v` in `f64` (counts, sums of losses, batch statistics).
    fn all_reduce_f64(&self, v: &mut [f64]) -> Result<(), CollectiveError>;
    /// `v ← root's v` (any length: the other ranks' `v` is replaced).
    fn broadcast_bytes(&self, v: &mut Vec<u8>, root: usize) -> Result<(), CollectiveError>;
    /// Waits until every rank has reached it.
    fn barrier(&self) -> Result<(), CollectiveError>;
    /// Ends this process with `code` after an error and, over MPI, every other rank of the job
    /// (`MPI_Abort`: a rank that returned would wait in `MPI_Finalize` for ranks that wait for it).
    /// The default exits this process.
    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
    /// The transport, for the run's log (`"MPI (Open MPI v4.1.4)"`).
    fn describe(&self) -> String;
}

/// One process: every operation is the identity.
#[derive(Clone, Copy, Debug, Default)]
pub struct Single;

impl Collective for Single {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn all_reduce_f32(&self, _: &mut [f32]) -> Result<(), CollectiveError> {
        Ok(())
    }
    fn all_reduce_f64(&self, _: &mut [f64]) -> Result<(), CollectiveError> {
        Ok(())
    }
    fn broadcast_bytes(&self, _: &mut Vec<u8>, _: usize) -> Result<(), CollectiveError> {
        Ok(())
    }
    fn barrier(&self) -> Result<(), CollectiveError> {
        Ok(())
    }
    fn describe(&self) -> String {
        "one process".into()
    }
}

/// The ops' view of a collective, for synchronised batch norm.
pub(crate) struct BnSync(pub Rc<dyn Collective>);

impl crate::ops::sync::StatsSync for BnSync {
    fn rank(&self) -> usize {
        self.0.rank()
    }
    fn size(&self) -> usize {
        self.0.size()
    }
    fn sum(&self, v: &mut [f64]) -> Result<(), String> {
        self.0.all_reduce_f64(v).map_err(|e| e.to_string())
    }
}

/// What the ranks of a [`LocalGroup`] share: one slot per rank and a barrier that a rank
/// leaving the group breaks.
struct Shared {
    size: usize,
    slots: Vec<Mutex<Vec<u8>>>,
    /// (ranks arrived, generation, rank that left)
    state: Mutex<(usize, u64, Option<usize>)>,
    turn: Condvar,
}

impl Shared {
    /// Waits for every rank; an error once a rank has left (dropped its handle).
    fn wait(&self, rank: usize) -> Result<(), CollectiveError> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let gone = |r: usize| CollectiveError::PeerGone {
            rank,
            size: self.size,
            what: format!("rank {r} stopped"),
        };
        if let Some(r) = st.2 {
            return Err(gone(r));
        }
        let generation = st.1;
        st.0 += 1;
        if st.0 == self.size {
            st.0 = 0;
            st.1 += 1;
            self.turn.notify_all();
            return Ok(());
        }
        while st.1 == generation {
            if let Some(r) = st.2 {
                return Err(gone(r));
            }
            st = self.turn.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        Ok(())
    }
}

/// K ranks in one process, one per thread: [`LocalGroup::new`] returns the K handles, each to
/// move to its own thread. A rank dropped while the others still run (its thread stopped) makes
/// their next operation fail with [`CollectiveError::PeerGone`] rather than wait forever.
///
/// ```
/// use robust_paf::train::collective::{Collective, LocalGroup};
/// let ranks = LocalGroup::new(2);
/// let sums: Vec<Vec<f32>> = std::thread::scope(|s| {
///     let handles: Vec<_> = ranks
///         .into_iter()
///         .map(|r| s.spawn(move || {
///             let mut v = vec![r.rank() as f32 + 1.0; 3];
///             r.all_reduce_f32(&mut v).unwrap();
///             v
///         }))
///         .collect();
///     handles.into_iter().map(|h| h.join().unwrap()).collect()
/// });
/// assert_eq!(sums, vec![vec![3.0; 3], vec![3.0; 3]]);
/// ```
pub struct LocalGroup {
    rank: usize,
    shared: Arc<Shared>,
}

impl LocalGroup {
    /// The `size` ranks of a new group (`size` ≥ 1).
    pub fn new(size: usize) -> Vec<LocalGroup> {
        let size = size.max(1);
        let shared = Arc::new(Shared {
            size,
            slots: (0..size).map(|_| Mutex::new(Vec::new())).collect(),
            state: Mutex::new((0, 0, None)),
            turn: Condvar::new(),
        });
        (0..size)
            .map(|rank| LocalGroup {
                rank,
                shared: shared.clone(),
            })
            .collect()
    }

    /// Every rank puts `mine` in its slot; `read` sees all the slots (rank order); then the slots
    /// are free again.
    fn exchange<R>(
        &self,
        mine: Vec<u8>,
        read: impl FnOnce(&[Vec<u8>]) -> R,
    ) -> Result<R, CollectiveError> {
        *self.shared.slots[self.rank]
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = mine;
        self.shared.wait(self.rank)?;
        let all: Vec<Vec<u8>> = self
            .shared
            .slots
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .collect();
        let out = read(&all);
        self.shared.wait(self.rank)?;
        Ok(out)
    }

    fn sum<const N: usize, T: Copy + std::ops::AddAssign>(
        &self,
        v: &mut [T],
        to: fn(T) -> [u8; N],
        from: fn([u8; N]) -> T,
    ) -> Result<(), CollectiveError> {
        let bytes: Vec<u8> = v.iter().flat_map(|&x| to(x)).collect();
        let len = v.len();
        let (rank, size) = (self.rank, self.shared.size);
        self.exchange(bytes, |all| {
            if all.iter().any(|b| b.len() != len * N) {
                return Err(CollectiveError::Mismatch {
                    rank,
                    size,
                    what: "a sum over buffers of different lengths".into(),
                });
            }
            for (i, x) in v.iter_mut().enumerate() {
                let at = |b: &Vec<u8>| from(b[i * N..(i + 1) * N].try_into().expect("N bytes"));
                let mut acc = at(&all[0]);
                for b in &all[1..] {
                    acc += at(b);
                }
                *x = acc;
            }
            Ok(())
        })?
    }
}

impl Drop for LocalGroup {
    /// Leaving the group: the other ranks' waits (now and later) fail instead of hanging. The
    /// ranks of a finished run leave after their last operation, when no one waits any more.
    fn drop(&mut self) {
        let mut st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        st.2.get_or_insert(self.rank);
        self.shared.turn.notify_all();
    }
}

impl Collective for LocalGroup {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.shared.size
    }
    fn all_reduce_f32(&self, v: &mut [f32]) -> Result<(), CollectiveError> {
        self.sum(v, f32::to_le_bytes, f32::from_le_bytes)
    }
    fn all_reduce_f64(&self, v: &mut [f64]) -> Result<(), CollectiveError> {
        self.sum(v, f64::to_le_bytes, f64::from_le_bytes)
    }
    fn broadcast_bytes(&self, v: &mut Vec<u8>, root: usize) -> Result<(), CollectiveError> {
        if root >= self.shared.size {
            return Err(CollectiveError::Mismatch {
                rank: self.rank,
                size: self.shared.size,
                what: format!("a broadcast from rank {root}"),
            });
        }
        let mine = if self.rank == root {
            std::mem::take(v)
        } else {
            Vec::new()
        };
        *v = self.exchange(mine, |all| all[root].clone())?;
        Ok(())
    }
    fn barrier(&self) -> Result<(), CollectiveError> {
        self.exchange(Vec::new(), |_| ())
    }
    fn describe(&self) -> String {
        "threads of one process".into()
    }
}

/// The launcher's rank and size from the environment (Open MPI's `OMPI_COMM_WORLD_*`, MPICH and
/// Intel MPI's `PMI_*`, Slurm's `SLURM_PROCID`/`SLURM_STEP_NUM_TASKS` under `srun`), if the process was
/// launched as one of several.
pub fn launched_ranks() -> Option<(usize, usize)> {
    let get = |k: &str| std::env::var(k).ok()?.trim().parse::<usize>().ok();
    [
        ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
        ("PMI_RANK", "PMI_SIZE"),
        ("PMIX_RANK", "PMIX_SIZE"),
        // a job step's tasks (srun), not the batch script's allocation (SLURM_NTASKS)
        ("SLURM_PROCID", "SLURM_STEP_NUM_TASKS"),
    ]
    .into_iter()
    .find_map(|(r, s)| Some((get(r)?, get(s)?)))
    .filter(|&(_, size)| size > 1)
}

/// The collective of this process: MPI when it was launched by `mpirun`/`srun` as one of several
/// ranks (built with the `mpi` feature), [`Single`] otherwise. Launched as several ranks by a
/// build without MPI: an error (K independent runs would write over one run directory).
pub fn from_environment() -> Result<Rc<dyn Collective>, String> {
    #[cfg(feature = "mpi")]
    {
        if let Some((rank, size)) = launched_ranks() {
            let mpi = mpi_impl::MpiCollective::initialize()?;
            if mpi.size() != size {
                // e.g. srun without --mpi=pmix: K copies that would each train alone
                return Err(format!(
                    "launched as rank {rank} of {size}, but MPI sees {} rank(s): the launcher \
                     and the MPI library do not match (srun --mpi=pmix? mpirun of another MPI?)",
                    mpi.size()
                ));
            }
            return Ok(Rc::new(mpi));
        }
    }
    if let Some((rank, size)) = launched_ranks() {
        return Err(format!(
            "launched as rank {rank} of {size} (mpirun/srun), but this build has no MPI: rebuild \
             with `cargo build --release --features mpi` (README: data-parallel training)"
        ));
    }
    Ok(Rc::new(Single))
}

#[cfg(feature = "mpi")]
pub use mpi_impl::MpiCollective;

#[cfg(feature = "mpi")]
mod mpi_impl {
    //! MPI through rsmpi (the `mpi` crate): `MPI_Allreduce` with `MPI_SUM`, `MPI_Bcast`,
    //! `MPI_Barrier` on `MPI_COMM_WORLD`. MPI's default error handler ends every rank of the job
    //! when one fails or is killed (`mpirun` then names the rank and the signal), so these calls
    //! return no error of their own.
    use mpi::collective::{CommunicatorCollectives, Root, SystemOperation};
    use mpi::topology::{Communicator, SimpleCommunicator};

    use super::{Collective, CollectiveError};

    /// Buffers are sent in pieces of at most this many elements (MPI counts are `int`).
    const PIECE: usize = 1 << 26;

    /// `MPI_COMM_WORLD` of an initialised MPI (finalised when dropped).
    pub struct MpiCollective {
        world: SimpleCommunicator,
        _universe: mpi::environment::Universe,
    }

    impl MpiCollective {
        /// Initialises MPI (once per process).
        pub fn initialize() -> Result<Self, String> {
            let universe = mpi::initialize()
                .ok_or_else(|| "MPI could not be initialised (already initialised?)".to_string())?;
            Ok(MpiCollective {
                world: universe.world(),
                _universe: universe,
            })
        }
    }

    impl MpiCollective {
        /// `MPI_Allreduce(MPI_SUM)` of `v` in place, a piece at a time.
        fn sum<T: mpi::traits::Equivalence + Copy>(&self, v: &mut [T]) {
            for piece in v.chunks_mut(PIECE) {
                let send = piece.to_vec();
                self.world
                    .all_reduce_into(&send[..], piece, SystemOperation::sum());
            }
        }
    }

    impl Collective for MpiCollective {
        fn rank(&self) -> usize {
            self.world.rank() as usize
        }
        fn size(&self) -> usize {
            self.world.size() as usize
        }
        fn all_reduce_f32(&self, v: &mut [f32]) -> Result<(), CollectiveError> {
            self.sum(v);
            Ok(())
        }
        fn all_reduce_f64(&self, v: &mut [f64]) -> Result<(), CollectiveError> {
            self.sum(v);
            Ok(())
        }
        fn broadcast_bytes(&self, v: &mut Vec<u8>, root: usize) -> Result<(), CollectiveError> {
            if root >= self.size() {
                return Err(CollectiveError::Mismatch {
                    rank: self.rank(),
                    size: self.size(),
                    what: format!("a broadcast from rank {root}"),
                });
            }
            let from = self.world.process_at_rank(root as i32);
            let mut len = v.len() as u64;
            from.broadcast_into(&mut len);
            v.resize(len as usize, 0);
            for piece in v.chunks_mut(PIECE) {
                from.broadcast_into(piece);
            }
            Ok(())
        }
        fn barrier(&self) -> Result<(), CollectiveError> {
            self.world.barrier();
            Ok(())
        }
        fn abort(&self, code: i32) -> ! {
            self.world.abort(code)
        }
        fn describe(&self) -> String {
            // "Open MPI v4.1.4, package: ..." → "Open MPI v4.1.4"
            let version = mpi::environment::library_version().unwrap_or_default();
            let short = version.split([',', '\n']).next().unwrap_or("").trim();
            format!("MPI ({short})")
        }
    }
}
