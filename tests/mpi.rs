//! `robust-paf train` over MPI processes (feature `mpi`; docs/reproduction.md §3.8): 2 ranks
//! launched by `mpirun -n 2 --oversubscribe` on this machine, shared-memory transport only.
//! Needs Open MPI (Debian: `libopenmpi-dev openmpi-bin`, and `libclang-dev` to build rsmpi);
//! `.ci/run` installs them and runs `cargo test --features mpi --test mpi`.
//!
//! - 2 ranks with SyncBN train as one process does (per-epoch losses and accuracies, the weights
//!   running statistics and momentum buffers within 1e-5 after 12 steps), only rank 0 writes and prints;
//! - rank 1 killed (`kill -9`) mid-run: `mpirun` stops the job with a non-zero status and names
//!   the signal, `last.safetensors` is intact, and one process resumes the run to its end;
//! - a 1-process run killed mid-run resumes on 2 ranks to the uninterrupted run's numbers;
//! - an error of rank 0 (its run directory already holds a run) ends the whole job at once;
//! - a build without MPI launched by `mpirun` is refused (covered in `tests/cli.rs` through the
//!   launcher's environment).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use robust_paf::train::checkpoint::read_checkpoint;
use robust_paf::train::run::{read_metrics, read_summary, EpochRecord, LAST_FILE};

const BIN: &str = env!("CARGO_BIN_EXE_robust-paf");

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("robust-paf-mpi-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// The run: quick-standard on 96 Fashion-MNIST images, batch 16 (6 steps an epoch), SyncBN.
fn train_args(out: &Path, epochs: usize, every: usize) -> Vec<String> {
    let mut a: Vec<String> = ["train", "--preset", "quick-standard", "--quiet", "--out"]
        .map(String::from)
        .into();
    a.push(out.display().to_string());
    for s in [
        "data.train_subset=96".to_string(),
        "data.batch_size=16".into(),
        format!("optim.epochs={epochs}"),
        "eval.n_examples=32".into(),
        "eval.batch_size=16".into(),
        "eval.pgd_steps=2".into(),
        "trainer.sync_batch_norm=true".into(),
        format!("run.checkpoint_every_steps={every}"),
    ] {
        a.push("--set".into());
        a.push(s);
    }
    a
}

/// `mpirun -n <n>` on this machine only: shared memory (`vader`) and self, no binding (2 ranks on
/// 2 cores), one compute thread per rank, root allowed (CI containers).
fn mpirun(n: usize) -> Command {
    let mut c = Command::new("mpirun");
    c.args([
        "--oversubscribe",
        "--bind-to",
        "none",
        "--mca",
        "btl",
        "self,vader",
    ])
    .args(["-x", "RAYON_NUM_THREADS=1", "-n", &n.to_string()])
    .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
    .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    .env("OMPI_MCA_rmaps_base_oversubscribe", "1");
    c
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The metrics of two 2-epoch runs, checked to agree epoch by epoch: training loss to 1e-4, the
/// same clean test accuracy.
fn same_epochs(one: &Path, other: &Path) -> (Vec<EpochRecord>, Vec<EpochRecord>) {
    let (a, b) = (read_metrics(one).unwrap(), read_metrics(other).unwrap());
    assert_eq!(b.len(), 2);
    for (x, y) in a.iter().zip(&b) {
        assert!(
            (x.train_loss - y.train_loss).abs() < 1e-4,
            "epoch {}: {} vs {}",
            x.epoch,
            x.train_loss,
            y.train_loss
        );
        assert_eq!(x.test_clean_accuracy, y.test_clean_accuracy);
    }
    (a, b)
}

#[test]
fn two_ranks_train_as_one_process() {
    let (one, two) = (tmp("one"), tmp("two"));
    let o = Command::new(BIN)
        .args(train_args(&one, 2, 0))
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let o = mpirun(2)
        .arg(BIN)
        .args(train_args(&two, 2, 0))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        out.matches("finished").count(),
        1,
        "only rank 0 prints the result: {out}"
    );
    let (a, b) = same_epochs(&one, &two);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.test_pgd_accuracy, y.test_pgd_accuracy);
    }
    assert!(read_summary(&two).unwrap().is_some());
    // the same weights, running statistics and momentum buffers after 12 steps (4.5e-6
    // measured for the weights)
    let (ca, cb) = (
        read_checkpoint(&one.join(LAST_FILE)).unwrap(),
        read_checkpoint(&two.join(LAST_FILE)).unwrap(),
    );
    let mut worst = 0.0f32;
    for (name, (_, va)) in ca
        .tensors
        .iter()
        .filter(|(n, _)| !n.starts_with("momentum"))
    {
        let vb = &cb.tensors[name].1;
        for (x, y) in va.iter().zip(vb) {
            worst = worst.max((x - y).abs());
        }
    }
    assert!(
        worst < 1e-5,
        "2 ranks vs 1 process: weights differ by {worst:e}"
    );
    for d in [one, two] {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// The pid of rank `rank` of the job writing into `dir` (by its `OMPI_COMM_WORLD_RANK` and its
/// command line).
fn rank_pid(dir: &Path, rank: usize) -> Option<u32> {
    let want = format!("OMPI_COMM_WORLD_RANK={rank}");
    let dir = dir.display().to_string();
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if !String::from_utf8_lossy(&cmd).contains(&dir) {
            continue;
        }
        let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        if env.split(|&b| b == 0).any(|v| v == want.as_bytes()) {
            return Some(pid);
        }
    }
    None
}

#[test]
fn a_killed_rank_stops_the_job_and_the_checkpoint_resumes() {
    let dir = tmp("killed");
    let mut child = mpirun(2)
        .arg(BIN)
        .args(train_args(&dir, 2, 1))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // wait for a mid-run checkpoint, then kill rank 1
    let t0 = Instant::now();
    let last = dir.join(LAST_FILE);
    while !last.exists() {
        if child.try_wait().unwrap().is_some() {
            let o = child.wait_with_output().unwrap();
            panic!("the job ended before its first checkpoint: {}", text(&o));
        }
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "no checkpoint after 5 minutes"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = rank_pid(&dir, 1).expect("rank 1's process");
    let killed = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let t1 = Instant::now();
    let o = child.wait_with_output().unwrap();
    assert!(
        t1.elapsed() < Duration::from_secs(60),
        "the job took {:?} to stop",
        t1.elapsed()
    );
    assert!(!o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("signal 9") || err.contains("Killed"),
        "mpirun names the killed rank: {}",
        text(&o)
    );
    let ckpt = read_checkpoint(&last).expect("last.safetensors intact");
    let step = ckpt.meta.position.unwrap().global_step;
    assert!((1..12).contains(&step), "stopped mid-run at step {step}");
    let o = Command::new(BIN)
        .args(["train", "--quiet", "--resume"])
        .arg(&dir)
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(read_metrics(&dir).unwrap().len(), 2);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Rank 0 cannot start (its run directory already holds a run): the job ends at once with a
/// non-zero status and rank 0's reason, no rank left waiting for it.
#[test]
fn rank_0_errors_end_the_job() {
    let dir = tmp("exists");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.toml"), "name = \"x\"\n").unwrap();
    let t0 = Instant::now();
    let o = mpirun(2)
        .arg(BIN)
        .args(train_args(&dir, 1, 0))
        .output()
        .unwrap();
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        t0.elapsed() < Duration::from_secs(120),
        "{:?}",
        t0.elapsed()
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("error: rank 0 of 2") && err.contains("already holds a run"),
        "{}",
        text(&o)
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("config.toml")).unwrap(),
        "name = \"x\"\n",
        "nothing overwritten"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A 1-process run killed mid-run (`kill -9`) and resumed by 2 ranks ends as the uninterrupted
/// 1-process run does (per-epoch losses to 1e-4, accuracies equal): the global batches do not
/// depend on the number of ranks.
#[test]
fn a_one_process_run_resumes_on_two_ranks() {
    let (whole, dir) = (tmp("whole"), tmp("resumed"));
    let o = Command::new(BIN)
        .args(train_args(&whole, 2, 0))
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let mut child = Command::new(BIN)
        .args(train_args(&dir, 2, 1))
        .env("RAYON_NUM_THREADS", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let last = dir.join(LAST_FILE);
    let t0 = Instant::now();
    while !last.exists() && child.try_wait().unwrap().is_none() {
        assert!(t0.elapsed() < Duration::from_secs(300));
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    let _ = child.wait();
    let done = read_checkpoint(&last)
        .unwrap()
        .meta
        .position
        .unwrap()
        .global_step;
    assert!(done < 12, "killed before the end (step {done})");
    let o = mpirun(2)
        .arg(BIN)
        .args(["train", "--quiet", "--resume"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    same_epochs(&whole, &dir);
    for d in [whole, dir] {
        let _ = std::fs::remove_dir_all(d);
    }
}
