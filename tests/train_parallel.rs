//! Data-parallel training (docs/reproduction.md §3.8) on ranks that are threads
//! ([`LocalGroup`]: the same trainer code as over MPI, `tests/mpi.rs` runs the processes):
//!
//! - SyncBN on 2 ranks = one process on the same global batches (PGD-AT, learnable-β PSSiLU: its
//!   penalty and clip once), within 1e-5 after 4 steps; per-rank BN is measurably not;
//! - per-rank BN = two independent batch-norm passes on the shards, the gradients averaged,
//!   rank 0's running statistics, PyTorch's SGD written out;
//! - a whole run over 2 ranks, stopped, resumed on 1 rank = the 1-process run; only rank 0 writes;
//! - a rank that stops mid-run stops the others with a clear error, the checkpoint intact.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use common::tiny::Tiny8;
use dfdx::losses::cross_entropy_with_logits_loss;
use dfdx::nn::ZeroGrads;
use dfdx::prelude::*;
use robust_paf::activations::{Pssilu, Relu};
use robust_paf::attacks::one_hot;
use robust_paf::data::{shard_range, FashionMnist};
use robust_paf::models::{assign_tensors, named_gradients, named_tensors, Classifier, SmallCnn};
use robust_paf::progress::{Progress, Silent};
use robust_paf::train::checkpoint::read_checkpoint;
use robust_paf::train::config::TrainerKind;
use robust_paf::train::run::{read_metrics, RunMode, RunSummary, LAST_FILE};
use robust_paf::train::{
    train, train_parallel, train_step, train_step_parallel, Collective, CollectiveError,
    LocalGroup, Parallel, Sgd, SgdSettings, ShardOf, Start, StepSettings, TrainConfig, TrainData,
    TrainError, TrainerConfig,
};

type Dev = Cpu;
const B: usize = 8;
const F: usize = 8 * 8 * 3;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("robust-paf-par-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Global batch `t`: 8 images in [0, 1], labels 0..10.
fn batch(t: usize) -> (Vec<f32>, Vec<usize>) {
    let mut rng = common::rng(100 + t as u64);
    let x = common::uniform(&mut rng, B * F, 0.0, 1.0);
    let y = (0..B).map(|i| (3 * i + 7 * t) % 10).collect();
    (x, y)
}

/// `f(rank handle)` on `k` threads, the results in rank order.
fn on_ranks<R: Send>(k: usize, f: impl Fn(LocalGroup) -> R + Sync) -> Vec<R> {
    std::thread::scope(|s| {
        let hs: Vec<_> = LocalGroup::new(k)
            .into_iter()
            .map(|g| {
                let f = &f;
                s.spawn(move || f(g))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn max_diff(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)]) -> f64 {
    assert_eq!(a.len(), b.len());
    let mut m = 0.0f64;
    for ((na, va), (nb, vb)) in a.iter().zip(b) {
        assert_eq!(na, nb);
        for (x, y) in va.iter().zip(vb) {
            m = m.max((*x as f64 - *y as f64).abs());
        }
    }
    m
}

fn images(
    dev: &Dev,
    v: Vec<f32>,
    n: usize,
) -> Tensor<(usize, Const<8>, Const<8>, Const<3>), f32, Dev> {
    dev.tensor_from_vec(v, (n, Const, Const, Const))
}

fn pgd_cfg() -> TrainerConfig {
    TrainerConfig {
        steps: 3,
        ..TrainerConfig::paper(TrainerKind::PgdAt)
    }
}

/// 4 PGD-AT steps of learnable-β PSSiLU on `ranks` ranks (SyncBN or not): every rank's tensors
/// (weights and running statistics) and losses.
/// Every tensor of a model by name.
type Named = Vec<(String, Vec<f32>)>;

fn pgd_at_on_ranks(ranks: usize, sync: bool) -> Vec<(Named, Vec<f64>)> {
    on_ranks(ranks, |g| {
        let r = g.rank();
        let par = Parallel::new(Rc::new(g), sync);
        let dev = Dev::seed_from_u64(0);
        let mut m = Tiny8::<Pssilu<Dev>, Dev>::build(&dev);
        let mut opt = Sgd::<Dev>::new(SgdSettings::default()).unwrap();
        let mut losses = Vec::new();
        for t in 0..4 {
            let (x, y) = batch(t);
            let s = shard_range(B, r, ranks);
            let xs = images(&dev, x[s.start * F..s.end * F].to_vec(), s.len());
            let out = train_step_parallel(
                &pgd_cfg(),
                &StepSettings::default(),
                &mut m,
                &mut opt,
                &xs,
                &y[s.clone()],
                Start::Seeded(1000 + t as u64),
                &par,
                ShardOf {
                    offset: s.start,
                    global_len: B,
                },
            )
            .unwrap();
            assert_eq!(out.n, B, "the outcome is the global batch's");
            losses.push(out.loss);
        }
        (named_tensors(&m).unwrap(), losses)
    })
}

/// SyncBN over 2 ranks gives the weights, running statistics and losses of one process on the
/// same global batches, to 1e-5 after 4 PGD-AT steps (β penalty and clip counted once); per-rank
/// statistics (the default) differ measurably — what makes the comparison a test.
#[test]
fn sync_batch_norm_on_two_ranks_is_one_process() {
    let dev = Dev::seed_from_u64(0);
    let mut m = Tiny8::<Pssilu<Dev>, Dev>::build(&dev);
    let mut opt = Sgd::<Dev>::new(SgdSettings::default()).unwrap();
    let mut losses = Vec::new();
    for t in 0..4 {
        let (x, y) = batch(t);
        let out = train_step(
            &pgd_cfg(),
            &StepSettings::default(),
            &mut m,
            &mut opt,
            &images(&dev, x, B),
            &y,
            Start::Seeded(1000 + t as u64),
        )
        .unwrap();
        losses.push(out.loss);
    }
    let one = named_tensors(&m).unwrap();

    let ranks = pgd_at_on_ranks(2, true);
    assert_eq!(
        max_diff(&ranks[0].0, &ranks[1].0),
        0.0,
        "the replicas stay identical"
    );
    let d = max_diff(&ranks[0].0, &one);
    assert!(d < 1e-5, "SyncBN on 2 ranks vs one process: {d:e}");
    for (a, b) in ranks[0].1.iter().zip(&losses) {
        assert!((a - b).abs() < 1e-5, "loss {a} vs {b}");
    }

    let per_rank = pgd_at_on_ranks(2, false);
    let d = max_diff(&per_rank[0].0, &one);
    assert!(
        d > 1e-4,
        "per-rank batch norm should differ from one process, got {d:e}"
    );
}

/// Per-rank BN (`DataParallel`): each rank's step = batch norm on its shard alone; the update is
/// PyTorch's SGD (Nesterov 0.9, weight decay 5e-4, lr 0.1) of the shards' mean gradient; the
/// running statistics are rank 0's. The reference does it by hand: two replicas of the model, one
/// standard-training backward pass each, the formula of the update written out.
#[test]
fn per_rank_batch_norm_is_two_independent_passes() {
    type Net = Tiny8<Relu<Dev>, Dev>;
    let cfg = TrainerConfig::paper(TrainerKind::Standard);
    let dev = Dev::seed_from_u64(0);
    let mut m = Net::build(&dev);
    let mut buf: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let (lr, mu, wd) = (0.1f64, 0.9f64, 5e-4f64);
    for t in 0..2 {
        let (x, y) = batch(t);
        let mut grads = Vec::new();
        let mut replicas = Vec::new();
        for r in 0..2 {
            let s = shard_range(B, r, 2);
            let mut rep = m.clone();
            rep.train();
            let g = rep.try_alloc_grads().unwrap();
            let xs = images(&dev, x[s.start * F..s.end * F].to_vec(), s.len());
            let logits = rep.try_logits_mut(xs.traced(g)).unwrap();
            let yy = one_hot::<Const<10>, Dev>(&dev, &y[s]).unwrap();
            let mut g = cross_entropy_with_logits_loss(logits, yy).backward();
            grads.push(named_gradients(&rep, &mut g).unwrap());
            replicas.push(rep);
        }
        // new values: SGD on the mean gradient; running statistics: rank 0's replica
        let mut values: BTreeMap<String, Vec<f32>> =
            named_tensors(&replicas[0]).unwrap().into_iter().collect();
        let params: BTreeMap<String, Vec<f32>> = named_tensors(&m).unwrap().into_iter().collect();
        for ((name, ga), (_, gb)) in grads[0].iter().zip(&grads[1]) {
            let p = &params[name];
            let b = buf.entry(name.clone()).or_default();
            let first = b.is_empty();
            b.resize(p.len(), 0.0);
            let mut new = Vec::with_capacity(p.len());
            for i in 0..p.len() {
                let g = 0.5 * (ga[i] as f64 + gb[i] as f64);
                let d = g + wd * p[i] as f64;
                b[i] = if first { d } else { mu * b[i] + d };
                let step = d + mu * b[i];
                new.push((p[i] as f64 - lr * step) as f32);
            }
            values.insert(name.clone(), new);
        }
        assign_tensors(&mut m, &values).unwrap();
    }
    let expected = named_tensors(&m).unwrap();

    let ranks = on_ranks(2, |g| {
        let r = g.rank();
        let par = Parallel::new(Rc::new(g), false);
        let dev = Dev::seed_from_u64(0);
        let mut m = Net::build(&dev);
        let mut opt = Sgd::<Dev>::new(SgdSettings::default()).unwrap();
        for t in 0..2 {
            let (x, y) = batch(t);
            let s = shard_range(B, r, 2);
            let xs = images(&dev, x[s.start * F..s.end * F].to_vec(), s.len());
            let shard = ShardOf {
                offset: s.start,
                global_len: B,
            };
            let settings = StepSettings::default();
            let start = Start::Seeded(t as u64);
            train_step_parallel(
                &cfg, &settings, &mut m, &mut opt, &xs, &y[s], start, &par, shard,
            )
            .unwrap();
        }
        named_tensors(&m).unwrap()
    });
    for (r, got) in ranks.iter().enumerate() {
        let d = max_diff(got, &expected);
        assert!(d < 1e-6, "rank {r} vs two independent passes: {d:e}");
    }
}

fn fashion(train_images: usize, test_images: usize) -> TrainData {
    let f = FashionMnist::embedded().unwrap();
    let idx: Vec<usize> = (0..train_images).collect();
    let tidx: Vec<usize> = (0..test_images).collect();
    TrainData {
        train: Arc::new(f.train.select("train subset", &idx).unwrap()),
        synthetic: None,
        test: f.test.select("test subset", &tidx).unwrap(),
        description: "Fashion-MNIST subset".into(),
    }
}

fn quick(extra: &[&str]) -> TrainConfig {
    let mut set: Vec<String> = [
        "model.activation=\"pssilu2\"",
        "optim.epochs=2",
        "data.batch_size=16",
        "eval.n_examples=40",
        "eval.batch_size=16",
        "eval.pgd_steps=2",
        "trainer.sync_batch_norm=true",
    ]
    .map(String::from)
    .into();
    set.extend(extra.iter().map(|s| s.to_string()));
    TrainConfig::preset("quick-standard", &set).unwrap()
}

type Cnn = SmallCnn<Pssilu<Dev>, Dev>;

/// A fresh [`train_parallel`] of `cfg` into `dir` on 2 thread ranks, each rank's handle wrapped
/// by `comm`; rank 0's progress stops the run after `stop` steps (`usize::MAX`: never). Every
/// rank's summary and tensors, or its error.
fn train_on_two(
    cfg: &TrainConfig,
    d: &TrainData,
    dir: &Path,
    stop: usize,
    comm: impl Fn(LocalGroup) -> Rc<dyn Collective> + Sync,
) -> Vec<Result<(RunSummary, Named), TrainError>> {
    on_ranks(2, |g| {
        let dev = Dev::seed_from_u64(cfg.seed);
        let (model, mode) = (Cnn::new(&dev), RunMode::Fresh);
        train_parallel(
            cfg,
            model,
            &dev,
            d,
            dir,
            mode,
            &mut StopAfter(stop),
            comm(g),
        )
        .map(|run| (run.summary, named_tensors(&run.model).unwrap()))
    })
}

/// Stops (as Ctrl-C would) once `after` steps are done.
struct StopAfter(usize);

impl Progress for StopAfter {
    fn start(&mut self, _: &str, _: u64) {}
    fn advance(&mut self, n: u64) {
        self.0 = self.0.saturating_sub(n as usize);
    }
    fn message(&mut self, _: &str) {}
    fn finish(&mut self) {}
    fn cancelled(&self) -> bool {
        self.0 == 0
    }
}

/// A whole run over 2 ranks (SyncBN), interrupted on rank 0 in its second epoch and resumed by
/// one process, ends where the 1-process run ends: per-epoch training losses and test accuracies
/// (evaluation shared out by chunks), final weights to 1e-4. Only rank 0 wrote the run
/// directory; every rank returns the summary.
#[test]
fn a_run_over_two_ranks_resumes_on_one() {
    let d = fashion(64, 40);
    let cfg = quick(&[]);
    let one_dir = tmp("one");
    let dev = Dev::seed_from_u64(cfg.seed);
    let one = train(
        &cfg,
        Cnn::new(&dev),
        &dev,
        &d,
        &one_dir,
        RunMode::Fresh,
        &mut Silent,
    )
    .unwrap();

    let dir = tmp("two");
    // rank 0's progress stops the run after 6 of the 8 steps (4 per epoch)
    let results: Vec<Option<String>> = train_on_two(&cfg, &d, &dir, 6, |g| Rc::new(g))
        .into_iter()
        .map(|r| r.err().map(|e| e.to_string()))
        .collect();
    for (r, e) in results.iter().enumerate() {
        assert!(
            e.as_deref().is_some_and(|e| e.contains("interrupted")),
            "rank {r} stops with the interruption: {e:?}"
        );
    }
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.starts_with('.')),
        "no temporary files left: {names:?}"
    );
    let resumed = train(
        &cfg,
        Cnn::new(&dev),
        &dev,
        &d,
        &dir,
        RunMode::Resume,
        &mut Silent,
    )
    .unwrap();
    let (a, b) = (read_metrics(&one_dir).unwrap(), read_metrics(&dir).unwrap());
    assert_eq!(a.len(), 2);
    assert_eq!(b.len(), 2);
    for (x, y) in a.iter().zip(&b) {
        assert!(
            (x.train_loss - y.train_loss).abs() < 1e-4,
            "epoch {}: train loss {} vs {}",
            x.epoch,
            x.train_loss,
            y.train_loss
        );
        assert_eq!(x.train_examples, y.train_examples);
        assert_eq!(x.test_clean_accuracy, y.test_clean_accuracy);
    }
    let dw = max_diff(
        &named_tensors(&one.model).unwrap(),
        &named_tensors(&resumed.model).unwrap(),
    );
    assert!(dw < 1e-4, "final weights differ by {dw:e}");

    // a 2-rank run to the end: every rank returns rank 0's summary
    let dir2 = tmp("two-whole");
    let sums: Vec<(RunSummary, Named)> =
        train_on_two(&quick(&["optim.epochs=1"]), &d, &dir2, usize::MAX, |g| {
            Rc::new(g)
        })
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(sums[0].0, sums[1].0);
    assert_eq!(max_diff(&sums[0].1, &sums[1].1), 0.0);

    // rank 0's setup error (a fresh run into a directory that holds one) is every rank's
    let cfg1 = quick(&["optim.epochs=1"]);
    let errors: Vec<String> = train_on_two(&cfg1, &d, &dir2, usize::MAX, |g| Rc::new(g))
        .into_iter()
        .map(|r| r.err().map(|e| e.to_string()).unwrap_or_default())
        .collect();
    assert!(errors[0].contains("already holds a run"), "{}", errors[0]);
    assert!(
        errors[1].contains("rank 0 stopped") && errors[1].contains("already holds a run"),
        "{}",
        errors[1]
    );
    // a batch that cannot give every rank an image: an error on every rank, nothing written
    let dir3 = tmp("too-small");
    let cfg1 = quick(&["data.batch_size=63"]); // 64 images: a last batch of 1
    let errors: Vec<String> = train_on_two(&cfg1, &d, &dir3, usize::MAX, |g| Rc::new(g))
        .into_iter()
        .map(|r| r.err().map(|e| e.to_string()).unwrap_or_default())
        .collect();
    for e in &errors {
        assert!(
            e.contains("data.batch_size") && e.contains("fewer than the 2 ranks"),
            "{e}"
        );
    }
    assert!(!dir3.exists());
    for p in [&one_dir, &dir, &dir2] {
        let _ = std::fs::remove_dir_all(p);
    }
}

/// A collective whose rank stops (its thread ends) after `ops` operations, as a killed process.
struct Dies {
    inner: std::sync::Mutex<Option<LocalGroup>>,
    rank: usize,
    size: usize,
    left: std::sync::atomic::AtomicUsize,
}

impl Dies {
    fn op<R>(
        &self,
        f: impl FnOnce(&LocalGroup) -> Result<R, CollectiveError>,
    ) -> Result<R, CollectiveError> {
        use std::sync::atomic::Ordering::SeqCst;
        let mut g = self.inner.lock().unwrap();
        if self.left.fetch_sub(1, SeqCst) == 0 {
            drop(g.take()); // leaves the group: the others' waits fail
        }
        match g.as_ref() {
            Some(l) => f(l),
            None => Err(CollectiveError::PeerGone {
                rank: self.rank,
                size: self.size,
                what: "this rank was stopped by the test".into(),
            }),
        }
    }
}

impl Collective for Dies {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn all_reduce_f32(&self, v: &mut [f32]) -> Result<(), CollectiveError> {
        self.op(|g| g.all_reduce_f32(v))
    }
    fn all_reduce_f64(&self, v: &mut [f64]) -> Result<(), CollectiveError> {
        self.op(|g| g.all_reduce_f64(v))
    }
    fn broadcast_bytes(&self, v: &mut Vec<u8>, root: usize) -> Result<(), CollectiveError> {
        self.op(|g| g.broadcast_bytes(v, root))
    }
    fn barrier(&self) -> Result<(), CollectiveError> {
        self.op(|g| g.barrier())
    }
    fn describe(&self) -> String {
        "a rank that dies".into()
    }
}

/// Rank 1 stops in the middle of the run: rank 0 stops too (no hang) with an error naming the
/// data-parallel run and rank 1, and its last checkpoint (written every step) is intact and
/// resumes on one process.
#[test]
fn a_rank_that_stops_stops_the_run_with_the_checkpoint_intact() {
    let d = fashion(64, 40);
    let cfg = quick(&["run.checkpoint_every_steps=1", "optim.epochs=1"]);
    let dir = tmp("dies");
    let results = train_on_two(&cfg, &d, &dir, usize::MAX, |g| -> Rc<dyn Collective> {
        if g.rank() == 1 {
            Rc::new(Dies {
                inner: std::sync::Mutex::new(Some(g)),
                rank: 1,
                size: 2,
                // setup (2 broadcasts) and two steps of SyncBN, metrics and gradient sums
                left: std::sync::atomic::AtomicUsize::new(23),
            })
        } else {
            Rc::new(g)
        }
    });
    let e0 = results[0].as_ref().expect_err("rank 0 stops");
    assert!(
        matches!(e0, TrainError::Model(robust_paf::Error::Collective(_))),
        "{e0:?}"
    );
    let msg = e0.to_string();
    assert!(
        msg.contains("data-parallel run") && msg.contains("rank 1 stopped"),
        "{msg}"
    );
    let ckpt = read_checkpoint(&dir.join(LAST_FILE)).expect("an intact checkpoint");
    let done = ckpt.meta.position.unwrap().global_step;
    assert!((1..4).contains(&done), "stopped mid-epoch, at step {done}");
    let dev = Dev::seed_from_u64(cfg.seed);
    train(
        &cfg,
        Cnn::new(&dev),
        &dev,
        &d,
        &dir,
        RunMode::Resume,
        &mut Silent,
    )
    .expect("resumes on one process");
    let _ = std::fs::remove_dir_all(&dir);
}
