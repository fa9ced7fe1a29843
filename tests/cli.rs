//! The `robust-paf` command line, run as a process: a training run killed with SIGKILL in the
//! middle of an epoch and resumed writes the same `metrics.jsonl` as an uninterrupted run;
//! errors are one line and a non-zero exit; sweep shards, skipping finished runs, Slurm's
//! variables; `collect`; `eval`; `presets`.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use robust_paf::train::checkpoint::read_checkpoint;

const BIN: &str = env!("CARGO_BIN_EXE_robust-paf");

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("robust-paf-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A small PGD-AT run: 300 images in 6 steps per epoch, 2 epochs, a checkpoint every step.
const SMALL: &[&str] = &[
    "--preset",
    "quick-pgd-at",
    "--set",
    "data.train_subset=300",
    "--set",
    "optim.epochs=2",
    "--set",
    "trainer.steps=3",
    "--set",
    "eval.n_examples=60",
    "--set",
    "run.checkpoint_every_steps=1",
    "--set",
    "run.log_every_steps=2",
    "--quiet",
];

#[test]
fn a_run_killed_mid_epoch_resumes_to_the_same_metrics() {
    let whole = tmp("whole");
    let w = whole.to_str().unwrap();
    let o = run(&[&["train"], SMALL, &["--out", w]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("finished quick-pgd-at"),
        "{}",
        stdout(&o)
    );

    let cut = tmp("cut");
    let c = cut.to_str().unwrap();
    let mut child = Command::new(BIN)
        .args([&["train"], SMALL, &["--out", c]].concat())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // kill -9 once a checkpoint inside the second epoch exists
    let started = Instant::now();
    loop {
        let pos = read_checkpoint(&cut.join("last.safetensors"))
            .ok()
            .and_then(|c| c.meta.position);
        if let Some(p) = pos {
            if p.epochs_done == 1 && p.step_in_epoch >= 2 {
                break;
            }
            assert!(p.epochs_done < 2, "the run ended before it could be killed");
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "no checkpoint in time"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(!cut.join("summary.json").exists(), "killed before the end");
    let o = run(&["train", "--resume", c, "--quiet"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        common::untimed_metrics(&whole),
        common::untimed_metrics(&cut),
        "metrics.jsonl of the killed-and-resumed run (timings aside)"
    );
    let (a, b) = (
        read_checkpoint(&whole.join("last.safetensors")).unwrap(),
        read_checkpoint(&cut.join("last.safetensors")).unwrap(),
    );
    assert_eq!(a.tensors, b.tensors, "final weights and momentum buffers");
    // a fresh run into a run directory is refused, nothing is touched
    let before = std::fs::read(cut.join("metrics.jsonl")).unwrap();
    let o = run(&[&["train"], SMALL, &["--out", c]].concat());
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--resume"), "{}", stderr(&o));
    assert_eq!(std::fs::read(cut.join("metrics.jsonl")).unwrap(), before);

    // eval on the best checkpoint writes a report
    let report = cut.join("report.json");
    let o = run(&[
        "eval",
        "--checkpoint",
        cut.join("best.safetensors").to_str().unwrap(),
        "--n-examples",
        "40",
        "--pgd-steps",
        "2",
        "--eps",
        "8/255",
        "--out",
        report.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(r["n_examples"], 40);
    assert_eq!(r["eps_text"], "8/255");
    assert!(r["clean_accuracy"].as_f64().unwrap() >= r["pgd_accuracy"].as_f64().unwrap());
    let _ = std::fs::remove_dir_all(&whole);
    let _ = std::fs::remove_dir_all(&cut);
}

/// Every error: one line on stderr starting with `error:`, exit status 1.
#[test]
fn errors_are_one_line_and_a_non_zero_exit() {
    let dir = tmp("errors");
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.safetensors");
    std::fs::write(&bad, b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":").unwrap();
    let cfg = dir.join("c.toml");
    std::fs::write(
        &cfg,
        "name = \"c\"\n[model]\narch = \"resnet18\"\nactivation = \"relu\"\n",
    )
    .unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["train", "--preset", "nope"], "unknown preset"),
        (
            vec![
                "train",
                "--preset",
                "quick-pgd-at",
                "--set",
                "trainer.eps=-1",
            ],
            "`trainer.eps` = -1",
        ),
        (
            vec!["train", "--preset", "quick-pgd-at", "--set", "optim.lr=0"],
            "`optim.lr` = 0",
        ),
        (
            vec![
                "train",
                "--preset",
                "quick-pgd-at",
                "--set",
                "optim.epochz=2",
            ],
            "unknown field `epochz`",
        ),
        (
            vec!["train", "--config", "/nonexistent/c.toml"],
            "No such file",
        ),
        (
            vec!["train", "--config", cfg.to_str().unwrap()],
            "missing field",
        ),
        (
            vec!["train", "--resume", dir.to_str().unwrap()],
            "no config.toml",
        ),
        (
            vec!["eval", "--checkpoint", bad.to_str().unwrap()],
            "truncated or corrupted",
        ),
        (vec!["presets", "--show", "nope"], "unknown preset"),
        (vec!["collect", dir.to_str().unwrap()], "no finished runs"),
        (
            vec!["shape-metrics", dir.to_str().unwrap()],
            "neither a run (best.safetensors) nor a folder of finished runs",
        ),
        (
            vec!["shape-metrics", dir.to_str().unwrap(), "--queries", "0"],
            "square_queries",
        ),
        (
            vec!["sweep", "--config", cfg.to_str().unwrap(), "--shard", "2/2"],
            "",
        ),
    ];
    for (args, want) in cases {
        let o = run(&args);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {e}");
        assert_eq!(e.lines().count(), 1, "{args:?}: one line, got {e:?}");
        assert!(
            e.starts_with("error: ") && e.contains(want),
            "{args:?}: {e}"
        );
        assert!(!e.contains("panicked"), "{e}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sweep_shards_run_once_skip_finished_runs_and_collect() {
    let dir = tmp("sweep");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("sweep.toml");
    std::fs::write(
        &file,
        r#"name = "mini"
base = "quick-standard"
set = ["data.train_subset=100", "optim.epochs=1", "eval.n_examples=20", "eval.pgd=false"]
activations = ["relu", "prelu"]
fix_alpha = [0.25]
"#,
    )
    .unwrap();
    let out = dir.join("out");
    let (f, o) = (file.to_str().unwrap(), out.to_str().unwrap());
    let dry = run(&["sweep", "--config", f, "--out", o, "--dry-run"]);
    assert!(stdout(&dry).contains("2 runs"), "{}", stdout(&dry));
    for shard in ["0/2", "1/2"] {
        let r = run(&[
            "sweep", "--config", f, "--out", o, "--shard", shard, "--quiet",
        ]);
        assert!(r.status.success(), "{}", stderr(&r));
    }
    let relu = out.join("mini/relu_standard_seed12345");
    let prelu = out.join("mini/prelu_alpha0.25_standard_seed12345");
    assert!(relu.join("summary.json").exists() && prelu.join("summary.json").exists());
    // again, with Slurm's variables for shard 1 of 2: the finished run is skipped, untouched
    let before = std::fs::metadata(prelu.join("metrics.jsonl"))
        .unwrap()
        .modified()
        .unwrap();
    let r = Command::new(BIN)
        .args(["sweep", "--config", f, "--out", o, "--quiet"])
        .env("SLURM_ARRAY_TASK_ID", "1")
        .env("SLURM_ARRAY_TASK_COUNT", "2")
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", stderr(&r));
    let s = stdout(&r);
    assert!(
        s.contains("shard 1/2: 1 runs") && s.contains("finished, skipped"),
        "{s}"
    );
    assert_eq!(
        std::fs::metadata(prelu.join("metrics.jsonl"))
            .unwrap()
            .modified()
            .unwrap(),
        before
    );
    let r = run(&["collect", o]);
    assert!(r.status.success(), "{}", stderr(&r));
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "header + 2 runs: {csv}");
    assert!(csv.contains("prelu") && csv.contains("0.25"), "{csv}");
    assert!(std::fs::read_to_string(out.join("results.md"))
        .unwrap()
        .starts_with("| run |"));
    // the shape metrics of every run of the sweep's folder, stored in each run
    let r = run(&[
        "shape-metrics",
        out.join("mini").to_str().unwrap(),
        "--n-examples",
        "10",
        "--queries",
        "5",
    ]);
    assert!(r.status.success(), "{}", stderr(&r));
    assert_eq!(stdout(&r).matches("| radius ").count(), 2, "{}", stdout(&r));
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(prelu.join("shape_metrics.json")).unwrap())
            .unwrap();
    assert_eq!(m["n_examples"], 10);
    assert_eq!(m["config"]["square_queries"], 5);
    assert!(m["average_radius"].as_f64().unwrap() >= 0.0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn presets_lists_every_preset() {
    let o = run(&["presets"]);
    assert!(o.status.success());
    let s = stdout(&o);
    for name in [
        "cifar10-linf-resnet18",
        "cifar10-linf-wrn-28-10-ddpm",
        "cifar10-l2-resnet18",
        "cifar100-linf-wrn-28-10",
        "cifar10-standard-resnet18",
        "quick-pgd-at",
    ] {
        assert!(s.contains(name), "{name} missing from {s}");
    }
    let o = run(&["presets", "--show", "quick-pgd-at"]);
    assert!(stdout(&o).contains("[trainer]"));
}

/// `robust-paf import` of the official checkpoint layout, `export` back to PyTorch's keys (the
/// values those of the PyTorch file), and one-line errors for a bad file or a mismatched model.
#[test]
fn import_and_export_pytorch_checkpoints() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torch");
    // RobustBench's layout (a bare state_dict of `PAF_WideResNet`), as `Dai2021Parameterizing.pt`
    let official = fixtures.join("wrn16_1_pssilu2.pt");
    let dir = tmp("import");
    let out = dir.to_str().unwrap();
    let o = run(&[
        "import",
        "--from",
        official.to_str().unwrap(),
        "--arch",
        "wrn-16-1",
        "--activation",
        "pssilu2",
        "--out",
        out,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("wrn16_1_pssilu2.pt"), "{}", stdout(&o));
    let ckpt = dir.join("model.safetensors");
    let exported = dir.join("torch.safetensors");
    let o = run(&[
        "export",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--out",
        exported.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // `eval` runs on the imported model unchanged (a generated CIFAR-10 folder of 8 images)
    let cifar = dir.join("cifar-10-batches-bin");
    std::fs::create_dir_all(&cifar).unwrap();
    let record = |i: usize| -> Vec<u8> {
        let mut r = vec![(i % 10) as u8];
        r.extend((0..3072).map(|p| ((i * 37 + p * 11) % 256) as u8));
        r
    };
    for f in [
        "data_batch_1.bin",
        "data_batch_2.bin",
        "data_batch_3.bin",
        "data_batch_4.bin",
        "data_batch_5.bin",
        "test_batch.bin",
    ] {
        std::fs::write(cifar.join(f), (0..8).flat_map(record).collect::<Vec<u8>>()).unwrap();
    }
    let report = dir.join("report.json");
    let o = run(&[
        "eval",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--data-dir",
        cifar.to_str().unwrap(),
        "--pgd-steps",
        "2",
        "--eps",
        "8/255",
        "--out",
        report.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(r["n_examples"], 8);
    assert!(r["clean_accuracy"].as_f64().unwrap() >= r["pgd_accuracy"].as_f64().unwrap());

    let back = robust_paf::interop::read_torch_state_dict(&exported).unwrap();
    let bare =
        robust_paf::interop::read_torch_state_dict(&fixtures.join("wrn16_1_pssilu2.pt")).unwrap();
    assert_eq!(back.tensors, bare.tensors, "the PyTorch file again");

    for args in [
        vec![
            "import",
            "--from",
            "/nonexistent.pt",
            "--arch",
            "wrn-16-1",
            "--activation",
            "relu",
            "--out",
            out,
        ],
        vec![
            "import",
            "--from",
            official.to_str().unwrap(),
            "--arch",
            "wrn-16-1",
            "--activation",
            "relu",
            "--out",
            out,
        ],
        vec![
            "import",
            "--from",
            official.to_str().unwrap(),
            "--arch",
            "wrn-16-2",
            "--activation",
            "pssilu2",
            "--out",
            out,
        ],
        vec![
            "import",
            "--from",
            official.to_str().unwrap(),
            "--arch",
            "wrn-22-3",
            "--activation",
            "pssilu2",
            "--out",
            out,
        ],
    ] {
        let o = run(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let e = stderr(&o);
        assert!(
            e.starts_with("error: ") && e.trim_end().lines().count() == 1,
            "{e}"
        );
        if args[4] == "wrn-16-2" {
            // a built architecture: the error is about the keys' shapes
            assert!(e.contains("block1.layer.0.conv1.weight"), "{e}");
        }
        if args[4] == "wrn-22-3" {
            // not built: the error names the architectures that are
            assert!(e.contains("wrn-16-2") && e.contains("wrn-40-2"), "{e}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Launched by `mpirun`/`srun` as one of several ranks (their environment), a build without the
/// `mpi` feature refuses in one line instead of running K copies into one directory.
#[cfg(not(feature = "mpi"))]
#[test]
fn a_build_without_mpi_refuses_an_mpi_launch() {
    let dir = tmp("no-mpi");
    for (rank, size) in [
        ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
        ("SLURM_PROCID", "SLURM_STEP_NUM_TASKS"),
    ] {
        let o = Command::new(BIN)
            .args(["train", "--preset", "quick-standard", "--out"])
            .arg(&dir)
            .env(rank, "1")
            .env(size, "2")
            .output()
            .unwrap();
        assert!(!o.status.success());
        let e = stderr(&o);
        assert!(
            e.contains("rank 1 of 2") && e.contains("--features mpi"),
            "{e}"
        );
        assert_eq!(e.trim().lines().count(), 1, "{e}");
        assert!(!dir.exists(), "nothing written");
    }
}
