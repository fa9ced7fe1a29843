//! Data-parallel scaling (docs/reproduction.md §3.8): images/s of training steps over the ranks
//! of an MPI job on one global batch, and the share of a step spent in the gradient all-reduce.
//! Each rank trains on its shard of the same global batch ([`train_step_parallel`]), so 1 and K
//! ranks do the same work; compare their images/s.
//!
//! ```sh
//! cargo build --release --features mpi --example bench_parallel
//! export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1   # as root only
//! for k in 1 2; do
//!   mpirun -n $k --bind-to none --mca btl self,vader -x RAYON_NUM_THREADS=1 \
//!     target/release/examples/bench_parallel --arch resnet18 --trainer standard --batch 64 --steps 4
//! done
//! ```
//!
//! Flags: `--arch resnet18|cnn-small`, `--trainer standard|pgd-at`, `--batch` (global), `--steps`
//! (timed, after one warm-up step), `--sync-bn`.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Instant;

use dfdx::prelude::*;
use robust_paf::activations::Relu;
use robust_paf::attacks::host_images;
use robust_paf::data::shard_range;
use robust_paf::models::{Classifier, ResNet18, SmallCnn};
use robust_paf::train::collective::from_environment;
use robust_paf::train::config::TrainerKind;
use robust_paf::train::{
    train_step_parallel, Collective, CollectiveError, Parallel, Sgd, SgdSettings, ShardOf, Start,
    StepSettings, TrainerConfig,
};

type Dev = Cpu;

/// Times the collective's operations: the `f32` sums are the gradients', the rest (counts, BN
/// statistics and buffers) is "other".
struct Timed {
    inner: Rc<dyn Collective>,
    gradients: Cell<f64>,
    gradient_bytes: Cell<usize>,
    other: Cell<f64>,
}

impl Timed {
    fn time<R>(&self, slot: &Cell<f64>, f: impl FnOnce() -> R) -> R {
        let t = Instant::now();
        let r = f();
        slot.set(slot.get() + t.elapsed().as_secs_f64());
        r
    }
}

impl Collective for Timed {
    fn rank(&self) -> usize {
        self.inner.rank()
    }
    fn size(&self) -> usize {
        self.inner.size()
    }
    fn all_reduce_f32(&self, v: &mut [f32]) -> Result<(), CollectiveError> {
        self.gradient_bytes.set(4 * v.len());
        self.time(&self.gradients, || self.inner.all_reduce_f32(v))
    }
    fn all_reduce_f64(&self, v: &mut [f64]) -> Result<(), CollectiveError> {
        self.time(&self.other, || self.inner.all_reduce_f64(v))
    }
    fn broadcast_bytes(&self, v: &mut Vec<u8>, root: usize) -> Result<(), CollectiveError> {
        self.time(&self.other, || self.inner.broadcast_bytes(v, root))
    }
    fn barrier(&self) -> Result<(), CollectiveError> {
        self.time(&self.other, || self.inner.barrier())
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}

fn arg(args: &[String], flag: &str) -> Option<String> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn bench<M>(name: &str, kind: TrainerKind, batch: usize, steps: usize, sync_bn: bool)
where
    M: Classifier<Dev, Height = Const<32>, Width = Const<32>, Channels = Const<3>>
        + BuildModule<Dev, f32>,
{
    let comm = match from_environment() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let timed = Rc::new(Timed {
        inner: comm,
        gradients: Cell::new(0.0),
        gradient_bytes: Cell::new(0),
        other: Cell::new(0.0),
    });
    let (rank, ranks) = (timed.rank(), timed.size());
    let par = Parallel::new(timed.clone(), sync_bn);
    let dev = Dev::seed_from_u64(0);
    let mut model = M::build(&dev);
    let mut opt = Sgd::new(SgdSettings::default()).unwrap();
    let cfg = TrainerConfig::paper(kind);
    let settings = StepSettings::default();
    // one global batch of noise images, this rank's shard
    let s = shard_range(batch, rank, ranks);
    let mut x = 0x2545_F491u32;
    let mut pixels = Vec::with_capacity(s.len() * 3072);
    for _ in 0..s.len() * 3072 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        pixels.push((x % 256) as f32 / 255.0);
    }
    let labels: Vec<usize> = s.clone().map(|i| i % 10).collect();
    let xs = host_images::<M, Dev>(&dev, pixels, s.len());
    let shard = ShardOf {
        offset: s.start,
        global_len: batch,
    };
    let mut step = |t: u64| {
        train_step_parallel(
            &cfg,
            &settings,
            &mut model,
            &mut opt,
            &xs,
            &labels,
            Start::Seeded(t),
            &par,
            shard,
        )
        .unwrap()
    };
    step(0); // warm-up: allocator, thread pool
    timed.gradients.set(0.0);
    timed.other.set(0.0);
    let t0 = Instant::now();
    for t in 1..=steps as u64 {
        step(t);
    }
    let secs = t0.elapsed().as_secs_f64();
    if rank == 0 {
        let g = timed.gradients.get() / steps as f64;
        let o = timed.other.get() / steps as f64;
        let per = secs / steps as f64;
        println!(
            "{name} {} | {ranks} rank(s) over {} | global batch {batch} ({} per rank) | {:.2} img/s | step {:.3} s | gradient all-reduce {:.1} MB: {:.4} s ({:.2} %) | other collectives {:.4} s ({:.2} %)",
            cfg.kind.name(),
            timed.describe(),
            s.len(),
            (batch * steps) as f64 / secs,
            per,
            timed.gradient_bytes.get() as f64 / 1e6,
            g,
            100.0 * g / per,
            o,
            100.0 * o / per,
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let batch: usize = arg(&args, "--batch").map_or(64, |v| v.parse().unwrap());
    let steps: usize = arg(&args, "--steps").map_or(4, |v| v.parse().unwrap());
    let kind = match arg(&args, "--trainer").as_deref() {
        Some("pgd-at") => TrainerKind::PgdAt,
        _ => TrainerKind::Standard,
    };
    let sync = args.iter().any(|a| a == "--sync-bn");
    match arg(&args, "--arch").as_deref() {
        Some("cnn-small") => {
            bench::<SmallCnn<Relu<Dev>, Dev>>("cnn-small", kind, batch, steps, sync)
        }
        _ => bench::<ResNet18<Relu<Dev>, Dev>>("resnet18", kind, batch, steps, sync),
    }
}
