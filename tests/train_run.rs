//! Training runs through `train::train` on the embedded Fashion-MNIST subset with a small
//! network (`models::SmallCnn`, the quick presets' model): PGD-AT learns robustness its standard-trained twin lacks;
//! frozen parameters stay put; a run interrupted mid-epoch and resumed repeats the uninterrupted
//! one exactly; a diverging run stops with a clear error and an intact checkpoint; bad
//! checkpoints and configurations are typed errors that change nothing.

use crate::common;

use std::path::PathBuf;
use std::sync::Arc;

use dfdx::prelude::*;
use robust_paf::activations::{Activation, ActivationKind, AnyActivation, Prelu, Pssilu, Relu};
use robust_paf::data::FashionMnist;
use robust_paf::models::{named_tensors, state_tensors, Classifier, SmallCnn, WideResNet16x1};
use robust_paf::progress::{Progress, Silent};
use robust_paf::train::checkpoint::{read_checkpoint, save_checkpoint, CheckpointMeta};
use robust_paf::train::config::PRESETS;
use robust_paf::train::run::{read_metrics, RunMode, LAST_FILE};
use robust_paf::train::sweep::{Shard, SweepConfig};
use robust_paf::train::{train, TrainConfig, TrainData, TrainError};

type Dev = Cpu;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("robust-paf-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn data(train_images: usize) -> TrainData {
    let f = FashionMnist::embedded().unwrap();
    let idx: Vec<usize> = (0..train_images).collect();
    TrainData {
        train: Arc::new(f.train.select("train subset", &idx).unwrap()),
        synthetic: None,
        test: f.test,
        description: "Fashion-MNIST subset".into(),
    }
}

/// A quick preset (the small CNN) with another activation and overrides.
fn config(preset: &str, activation: &str, extra: &[&str]) -> TrainConfig {
    let mut set = vec![format!("model.activation=\"{activation}\"")];
    set.extend(extra.iter().map(|s| s.to_string()));
    TrainConfig::preset(preset, &set).unwrap()
}

fn tiny<A: Activation<Dev>>(seed: u64) -> (SmallCnn<A, Dev>, Dev)
where
    SmallCnn<A, Dev>: BuildModule<Dev, f32>,
{
    let dev = Dev::seed_from_u64(seed);
    (SmallCnn::<A, Dev>::new(&dev), dev)
}

/// A quick PGD-AT run reaches a higher PGD-10 accuracy (ε 0.031) than the same run with
/// standard training: the robustness comes from the adversarial training. Measured (seed
/// 12345): standard 72.0 % clean / 46.7 % PGD, PGD-AT 70.7 % / 61.3 %; the test asks for a
/// 10-point PGD margin.
#[test]
fn pgd_at_is_more_robust_than_its_standard_twin() {
    let d = data(1000);
    let common = [
        "optim.epochs=3",
        "data.batch_size=50",
        "eval.n_examples=300",
        "eval.batch_size=150",
    ];
    let mut accs = Vec::new();
    for preset in ["quick-standard", "quick-pgd-at"] {
        let cfg = config(preset, "pssilu2", &common);
        let (m, dev) = tiny::<Pssilu<Dev>>(cfg.seed);
        let dir = tmp(preset);
        let run = train(&cfg, m, &dev, &d, &dir, RunMode::Fresh, &mut Silent).unwrap();
        let s = run.summary;
        accs.push((
            s.final_clean_accuracy.unwrap(),
            s.final_pgd_accuracy.unwrap(),
        ));
        let records = read_metrics(&dir).unwrap();
        assert_eq!(records.len(), 3, "one metrics line per epoch");
        assert!(
            records[2].train_loss < records[0].train_loss,
            "{preset}: the training loss falls: {records:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
    let ((std_clean, std_pgd), (at_clean, at_pgd)) = (accs[0], accs[1]);
    eprintln!("standard: clean {std_clean} PGD {std_pgd}; PGD-AT: clean {at_clean} PGD {at_pgd}");
    assert!(
        std_clean > 0.45,
        "standard training learns: clean {std_clean}"
    );
    assert!(
        at_pgd > std_pgd + 0.10,
        "PGD-AT's PGD accuracy {at_pgd} must beat standard training's {std_pgd} by 10 points"
    );
}

/// `fix_alpha` / `fix_beta` (`--fix-act`): the frozen values survive a whole run (weight decay,
/// momentum and gradients included); the other parameter still learns.
#[test]
fn frozen_parameters_do_not_move_over_a_run() {
    let d = data(200);
    let cfg = config(
        "quick-standard",
        "prelu",
        &[
            "optim.epochs=1",
            "data.batch_size=50",
            "eval.n_examples=50",
            "model.fix_alpha=-0.25",
        ],
    );
    let (m, dev) = tiny::<Prelu<Dev>>(cfg.seed);
    let dir = tmp("frozen-prelu");
    let run = train(&cfg, m, &dev, &d, &dir, RunMode::Fresh, &mut Silent).unwrap();
    assert_eq!(run.model.activation.alpha.as_vec(), vec![-0.25]);
    assert_eq!(run.summary.activation_parameters["alpha"], -0.25);
    let _ = std::fs::remove_dir_all(&dir);

    let cfg = config(
        "quick-pgd-at",
        "pssilu2",
        &[
            "optim.epochs=1",
            "data.batch_size=50",
            "eval.n_examples=50",
            "trainer.steps=2",
            "model.fix_beta=0.2",
        ],
    );
    let (m, dev) = tiny::<Pssilu<Dev>>(cfg.seed);
    let dir = tmp("frozen-pssilu");
    let run = train(&cfg, m, &dev, &d, &dir, RunMode::Fresh, &mut Silent).unwrap();
    assert_eq!(run.model.activation.beta.as_vec(), vec![0.2]);
    assert_ne!(
        run.model.activation.alpha.as_vec(),
        vec![1.0],
        "α still learns"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Stops (as Ctrl-C would) after `after` steps.
struct StopAfter {
    left: usize,
}

impl Progress for StopAfter {
    fn start(&mut self, _: &str, _: u64) {}
    fn advance(&mut self, n: u64) {
        self.left = self.left.saturating_sub(n as usize);
    }
    fn message(&mut self, _: &str) {}
    fn finish(&mut self) {}
    fn cancelled(&self) -> bool {
        self.left == 0
    }
}

/// A run stopped in the middle of an epoch (after a mid-epoch checkpoint) and resumed gives the
/// same per-epoch losses, accuracies and α/β as the uninterrupted run — bit for bit on the CPU —
/// and the same final weights.
#[test]
fn a_resumed_run_repeats_the_uninterrupted_one() {
    let d = data(300);
    let cfg = config(
        "quick-pgd-at",
        "pssilu2",
        &[
            "optim.epochs=2",
            "data.batch_size=50",
            "eval.n_examples=60",
            "eval.batch_size=30",
            "trainer.steps=3",
            "run.checkpoint_every_steps=2",
            "run.log_every_steps=1",
        ],
    );
    let whole = tmp("whole");
    let (m, dev) = tiny::<Pssilu<Dev>>(cfg.seed);
    let a = train(&cfg, m, &dev, &d, &whole, RunMode::Fresh, &mut Silent).unwrap();

    let cut = tmp("cut");
    let (m, dev) = tiny::<Pssilu<Dev>>(cfg.seed);
    let err = train(
        &cfg,
        m,
        &dev,
        &d,
        &cut,
        RunMode::Fresh,
        &mut StopAfter { left: 9 },
    );
    assert!(matches!(
        err,
        Err(TrainError::Model(robust_paf::Error::Interrupted(_)))
    ));
    let pos = read_checkpoint(&cut.join(LAST_FILE))
        .unwrap()
        .meta
        .position
        .unwrap();
    assert_eq!(pos.epochs_done, 1, "stopped in epoch 2");
    assert!(
        (1..6).contains(&pos.step_in_epoch),
        "inside the epoch: {pos:?}"
    );
    // a fresh start in the same directory is refused; resuming continues
    let (m, dev) = tiny::<Pssilu<Dev>>(cfg.seed);
    assert!(matches!(
        train(&cfg, m, &dev, &d, &cut, RunMode::Fresh, &mut Silent),
        Err(TrainError::RunDir { .. })
    ));
    let (m, dev) = tiny::<Pssilu<Dev>>(cfg.seed ^ 99); // init overwritten by the checkpoint
    let b = train(&cfg, m, &dev, &d, &cut, RunMode::Resume, &mut Silent).unwrap();

    assert_eq!(
        common::untimed_metrics(&whole),
        common::untimed_metrics(&cut),
        "metrics.jsonl, timings aside"
    );
    assert_eq!(
        named_tensors(&a.model).unwrap(),
        named_tensors(&b.model).unwrap(),
        "final weights"
    );
    let (sa, sb) = (a.summary, b.summary);
    assert_eq!(
        (
            sa.best_epoch,
            sa.final_pgd_accuracy,
            sa.activation_parameters
        ),
        (
            sb.best_epoch,
            sb.final_pgd_accuracy,
            sb.activation_parameters
        )
    );
    // resuming a finished run changes nothing
    let (m, dev) = tiny::<Pssilu<Dev>>(cfg.seed);
    let before = std::fs::read(cut.join("metrics.jsonl")).unwrap();
    train(&cfg, m, &dev, &d, &cut, RunMode::Resume, &mut Silent).unwrap();
    assert_eq!(std::fs::read(cut.join("metrics.jsonl")).unwrap(), before);
    // another configuration cannot resume it
    let other = config("quick-pgd-at", "pssilu2", &["optim.epochs=3"]);
    let (m, dev) = tiny::<Pssilu<Dev>>(cfg.seed);
    assert!(matches!(
        train(&other, m, &dev, &d, &cut, RunMode::Resume, &mut Silent),
        Err(TrainError::RunDir { .. })
    ));
    let _ = std::fs::remove_dir_all(&whole);
    let _ = std::fs::remove_dir_all(&cut);
}

/// A diverging run (lr 1e6) stops at the first non-finite loss with an error naming the step;
/// the last checkpoint on disk is the one before and still loads.
#[test]
fn a_non_finite_loss_stops_the_run_and_keeps_the_checkpoint() {
    let d = data(300);
    let cfg = config(
        "quick-standard",
        "relu",
        &[
            "optim.lr=1000000.0",
            "optim.lr_min=0.0",
            "data.batch_size=25",
            "eval.n_examples=25",
            "run.checkpoint_every_steps=1",
        ],
    );
    let (m, dev) = tiny::<Relu<Dev>>(cfg.seed);
    let dir = tmp("nan");
    let err = train(&cfg, m, &dev, &d, &dir, RunMode::Fresh, &mut Silent)
        .err()
        .expect("the run diverges");
    let TrainError::NonFiniteLoss {
        global_step, step, ..
    } = &err
    else {
        panic!("expected NonFiniteLoss, got {err}");
    };
    assert!(*global_step >= 1, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("step {step}")) && msg.contains("non-finite"),
        "{msg}"
    );
    let ckpt = read_checkpoint(&dir.join(LAST_FILE)).unwrap();
    assert_eq!(
        ckpt.meta.position.as_ref().unwrap().global_step,
        *global_step
    );
    let (mut m, _) = tiny::<Relu<Dev>>(1);
    ckpt.apply(&mut m, None).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Truncated, corrupted and foreign checkpoints are errors that name the problem, and a failed
/// load leaves the model as it was.
#[test]
fn bad_checkpoints_are_typed_errors_and_change_nothing() {
    let dir = tmp("ckpt");
    std::fs::create_dir_all(&dir).unwrap();
    let (m, _) = tiny::<Pssilu<Dev>>(3);
    let path = dir.join("m.safetensors");
    save_checkpoint(&path, &m, None, &CheckpointMeta::describe(&m)).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let (mut target, _) = tiny::<Pssilu<Dev>>(4);
    let before = named_tensors(&target).unwrap();

    let truncated = dir.join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() - 100]).unwrap();
    let e = read_checkpoint(&truncated).unwrap_err();
    assert!(
        matches!(e, TrainError::Checkpoint { .. }) && e.to_string().contains("truncated"),
        "{e}"
    );

    let flipped = dir.join("flipped.safetensors");
    let mut b = bytes.clone();
    let n = b.len();
    b[n - 10] ^= 0x40;
    std::fs::write(&flipped, &b).unwrap();
    let e = read_checkpoint(&flipped).unwrap_err();
    assert!(e.to_string().contains("checksum"), "{e}");

    let e = read_checkpoint(&dir.join("missing.safetensors")).unwrap_err();
    assert!(matches!(e, TrainError::Io { .. }), "{e}");

    let junk = dir.join("junk.safetensors");
    std::fs::write(&junk, b"not a checkpoint at all").unwrap();
    assert!(matches!(
        read_checkpoint(&junk),
        Err(TrainError::Checkpoint { .. })
    ));

    // another activation, another architecture
    let c = read_checkpoint(&path).unwrap();
    let (mut relu, _) = tiny::<Relu<Dev>>(5);
    let e = c.apply(&mut relu, None).unwrap_err();
    assert!(
        matches!(e, TrainError::CheckpointMismatch { .. }) && e.to_string().contains("pssilu2"),
        "{e}"
    );
    let dev = Dev::default();
    let mut wrn = WideResNet16x1::<Pssilu<Dev>, Dev>::new(&dev);
    let wrn_before = named_tensors(&wrn).unwrap();
    let e = c.apply(&mut wrn, None).unwrap_err();
    assert!(e.to_string().contains("WideResNet-16-1"), "{e}");
    assert_eq!(named_tensors(&wrn).unwrap(), wrn_before, "nothing loaded");
    // the good file loads, bit for bit
    c.apply(&mut target, None).unwrap();
    assert_ne!(named_tensors(&target).unwrap(), before);
    assert_eq!(named_tensors(&target).unwrap(), named_tensors(&m).unwrap());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Invalid configurations: errors that name the field and the value.
#[test]
fn invalid_configurations_name_the_problem() {
    let e = TrainConfig::preset("quick-pgd-at", &["trainer.eps=-0.1".into()]).unwrap_err();
    assert!(e.to_string().contains("`trainer.eps` = -0.1"), "{e}");
    let e = TrainConfig::preset("quick-pgd-at", &["optim.lr=0".into()]).unwrap_err();
    assert!(e.to_string().contains("`optim.lr` = 0"), "{e}");
    let e = TrainConfig::preset("no-such-preset", &[]).unwrap_err();
    assert!(
        matches!(e, TrainError::UnknownPreset { .. }) && e.to_string().contains("quick-pgd-at")
    );
    let e = TrainConfig::preset("quick-pgd-at", &["optim.epochz=3".into()]).unwrap_err();
    assert!(
        e.to_string().contains("optim.epochz") && e.to_string().contains("unknown field"),
        "{e}"
    );
    let e =
        TrainConfig::preset("quick-pgd-at", &["model.activation=\"swish\"".into()]).unwrap_err();
    assert!(e.to_string().contains("model.activation"), "{e}");
    let e = TrainConfig::preset("quick-pgd-at", &["no-equals-sign".into()]).unwrap_err();
    assert!(matches!(e, TrainError::Override { .. }), "{e}");
    let e = TrainConfig::preset(
        "quick-pgd-at",
        &[
            "model.fix_alpha=0.5".into(),
            "model.activation=\"relu\"".into(),
        ],
    )
    .unwrap_err();
    assert!(e.to_string().contains("model.fix_alpha"), "{e}");
    let e =
        TrainConfig::from_toml("name = \"x\"\n[model]\narch = \"resnet18\"", "inline").unwrap_err();
    assert!(
        e.to_string().contains("inline") && e.to_string().contains("missing field"),
        "{e}"
    );
}

/// Every preset parses, validates and survives a TOML round trip (what config.toml holds).
#[test]
fn presets_are_valid_and_round_trip() {
    assert!(PRESETS.len() >= 12);
    for (name, _) in PRESETS {
        let cfg = TrainConfig::preset(name, &[]).unwrap();
        assert_eq!(&cfg.name, name);
        let back = TrainConfig::from_toml(&cfg.to_toml(), "round trip").unwrap();
        assert_eq!(back, cfg, "{name}");
        if !name.starts_with("quick") {
            assert_eq!(cfg.optim.epochs, 200, "{name}: the paper's 200 epochs");
            assert_eq!(cfg.optim.lr, 0.1);
            assert_eq!(cfg.optim.weight_decay, 5e-4);
            assert!(cfg.optim.nesterov);
            // the paper's batch: 256 real images, 128 for ImageNette (docs/reproduction.md §3.1)
            let batch = if cfg.data.dataset.name() == "imagenette" {
                128
            } else {
                256
            };
            assert_eq!(cfg.data.batch_size, batch, "{name}");
        }
    }
    let ddpm = TrainConfig::preset("cifar10-linf-wrn-28-10-ddpm", &[]).unwrap();
    assert_eq!(
        ddpm.data.synthetic.unwrap().per_batch,
        256,
        "1:1 real + synthetic"
    );
}

/// N shards cover the grid exactly once, whatever N; activations without α collapse the α axis.
#[test]
fn sweep_shards_cover_the_grid_exactly_once() {
    let dir = tmp("sweep");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("sweep.toml");
    std::fs::write(
        &file,
        r#"name = "shape"
base = "quick-standard"
set = ["optim.epochs=1"]
activations = ["relu", "prelu", "pssilu2"]
fix_alpha = [-0.5, 0.5]
seeds = [1, 2]
trainers = ["standard", "pgd-at"]
"#,
    )
    .unwrap();
    let sweep = SweepConfig::from_file(&file).unwrap();
    let runs = sweep.expand(&dir, &[]).unwrap();
    // relu: 1 α value; prelu and pssilu2: 2; × 2 seeds × 2 trainers
    assert_eq!(runs.len(), (1 + 2 + 2) * 2 * 2);
    let ids: std::collections::BTreeSet<_> = runs.iter().map(|r| r.id.clone()).collect();
    assert_eq!(ids.len(), runs.len(), "distinct run directories");
    assert!(runs.iter().all(|r| r.config.optim.epochs == 1));
    assert!(ids.contains("prelu_alpha-0.5_pgd-at_seed2"), "{ids:?}");
    for n in [1, 3, 7, 40] {
        let mut seen = vec![0; runs.len()];
        for i in 0..n {
            let shard = Shard::parse(&format!("{i}/{n}")).unwrap();
            for r in runs.iter().filter(|r| shard.contains(r.index)) {
                seen[r.index] += 1;
            }
        }
        assert!(seen.iter().all(|&c| c == 1), "{n} shards: {seen:?}");
    }
    assert!(Shard::parse("3/3").is_err() && Shard::parse("x").is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Per-family values (`fix_alpha_for`, `fix_beta_for`) replace the shared axis for their family
/// only; a name that is no activation, has no such parameter or is not swept is an error.
#[test]
fn sweep_per_family_values_replace_the_shared_axis() {
    let sweep = SweepConfig::from_toml(
        r#"name = "shape"
base = "quick-standard"
activations = ["prelu", "psilu", "pssilu2"]
fix_alpha = [1.0]
[fix_alpha_for]
prelu = [-0.25, 0.0, 0.25]
[fix_beta_for]
pssilu2 = [0.0, 0.4]
"#,
        "inline",
    )
    .unwrap();
    let runs = sweep.expand(std::path::Path::new("."), &[]).unwrap();
    let ids: Vec<&str> = runs.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "prelu_alpha-0.25_standard_seed12345",
            "prelu_alpha0_standard_seed12345",
            "prelu_alpha0.25_standard_seed12345",
            "psilu_alpha1_standard_seed12345",
            "pssilu2_alpha1_beta0_standard_seed12345",
            "pssilu2_alpha1_beta0.4_standard_seed12345",
        ],
        "prelu: its own α; psilu: the shared α; pssilu2: shared α × its own β"
    );
    assert_eq!(runs[5].config.model.fix_beta, Some(0.4));
    for (bad, what) in [
        ("[fix_alpha_for]\nswish = [1.0]", "not an activation"),
        ("[fix_beta_for]\nprelu = [0.1]", "no parameter beta"),
        (
            "[fix_alpha_for]\npelu = [0.5]",
            "not one of the sweep's activations",
        ),
    ] {
        let text =
            format!("name = \"s\"\nbase = \"quick-standard\"\nactivations = [\"prelu\"]\n{bad}\n");
        let e = SweepConfig::from_toml(&text, "inline")
            .unwrap_err()
            .to_string();
        assert!(e.contains(what), "{bad}: {e}");
    }
}

/// The CLI's models hold an `AnyActivation`: training one is training the concrete type (same
/// metrics.jsonl, weights and checkpoint tensors), checkpoints move between the two both ways, and
/// the tensors a kind does not use are neither trained nor saved (a ReLU file has no
/// `activation.*` tensor, so it loads into a `Relu` model).
#[test]
fn any_activation_models_train_and_checkpoint_like_concrete_ones() {
    let d = data(200);
    let short = [
        "optim.epochs=1",
        "data.batch_size=50",
        "eval.n_examples=50",
        "eval.batch_size=50",
        "trainer.steps=2",
    ];
    let cfg = config("quick-pgd-at", "pssilu2", &short);
    let (a_dir, b_dir) = (tmp("concrete"), tmp("any"));
    let (m, dev) = tiny::<Pssilu<Dev>>(cfg.seed);
    let a = train(&cfg, m, &dev, &d, &a_dir, RunMode::Fresh, &mut Silent).unwrap();
    let (m, dev) = tiny::<AnyActivation<Dev>>(cfg.seed); // ReLU until `train` sets PSSiLU
    let b = train(&cfg, m, &dev, &d, &b_dir, RunMode::Fresh, &mut Silent).unwrap();
    assert_eq!(b.model.activation().kind(), ActivationKind::Pssilu);
    assert_eq!(
        common::untimed_metrics(&a_dir),
        common::untimed_metrics(&b_dir)
    );
    assert_eq!(
        named_tensors(&a.model).unwrap(),
        named_tensors(&b.model).unwrap()
    );
    let ca = read_checkpoint(&a_dir.join(LAST_FILE)).unwrap();
    let cb = read_checkpoint(&b_dir.join(LAST_FILE)).unwrap();
    assert_eq!(ca.tensors, cb.tensors, "same tensors, momentum included");

    let (mut any, _) = tiny::<AnyActivation<Dev>>(1);
    ca.apply(&mut any, None).unwrap();
    assert_eq!(any.activation().kind(), ActivationKind::Pssilu);
    assert_eq!(
        named_tensors(&any).unwrap(),
        named_tensors(&a.model).unwrap()
    );
    let (mut concrete, _) = tiny::<Pssilu<Dev>>(2);
    cb.apply(&mut concrete, None).unwrap();
    assert_eq!(
        named_tensors(&concrete).unwrap(),
        named_tensors(&b.model).unwrap()
    );

    // ReLU: alpha/beta stay at their build values and are not in the checkpoint
    let relu_cfg = config("quick-pgd-at", "relu", &short);
    let c_dir = tmp("any-relu");
    let (m, dev) = tiny::<AnyActivation<Dev>>(relu_cfg.seed);
    let (alpha0, beta0) = (m.activation.alpha.as_vec(), m.activation.beta.as_vec());
    let c = train(&relu_cfg, m, &dev, &d, &c_dir, RunMode::Fresh, &mut Silent).unwrap();
    assert_eq!(
        c.model.activation.alpha.as_vec(),
        alpha0,
        "not weight-decayed"
    );
    assert_eq!(c.model.activation.beta.as_vec(), beta0);
    let cc = read_checkpoint(&c_dir.join(LAST_FILE)).unwrap();
    assert!(
        cc.tensors.keys().all(|k| !k.contains("activation.")),
        "{:?}",
        cc.tensors
            .keys()
            .filter(|k| k.contains("activation"))
            .collect::<Vec<_>>()
    );
    let (mut relu, _) = tiny::<Relu<Dev>>(4);
    cc.apply(&mut relu, None).unwrap();
    assert_eq!(
        state_tensors(&relu).unwrap(),
        state_tensors(&c.model).unwrap()
    );
    let e = cc.apply(&mut concrete, None).unwrap_err();
    assert!(matches!(e, TrainError::CheckpointMismatch { .. }), "{e}");
    for dir in [a_dir, b_dir, c_dir] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Resuming a finished run gives back its trained model; resuming (a finished or an interrupted
/// run) from a truncated or corrupted `last.safetensors` is a typed error naming the file, and
/// the run directory is left exactly as it was (checkpoints, metrics, config).
#[test]
fn resuming_from_a_damaged_checkpoint_is_an_error_and_loses_nothing() {
    let d = data(100);
    let cfg = config(
        "quick-pgd-at",
        "pssilu2",
        &[
            "optim.epochs=1",
            "data.batch_size=50",
            "eval.n_examples=50",
            "eval.batch_size=50",
            "trainer.steps=1",
        ],
    );
    let dir = tmp("damaged");
    let (m, dev) = tiny::<Pssilu<Dev>>(cfg.seed);
    let trained = train(&cfg, m, &dev, &d, &dir, RunMode::Fresh, &mut Silent).unwrap();
    // resuming the finished run gives back the trained model
    let (m, dev) = tiny::<Pssilu<Dev>>(cfg.seed + 1);
    let again = train(&cfg, m, &dev, &d, &dir, RunMode::Resume, &mut Silent).unwrap();
    assert_eq!(
        named_tensors(&again.model).unwrap(),
        named_tensors(&trained.model).unwrap()
    );
    let snapshot = |dir: &PathBuf| -> Vec<(String, Vec<u8>)> {
        let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path();
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    std::fs::read(&p).unwrap(),
                )
            })
            .collect();
        files.sort();
        files
    };
    let last = dir.join(LAST_FILE);
    let good = std::fs::read(&last).unwrap();
    let mut flipped = good.clone();
    let n = flipped.len();
    flipped[n - 3] ^= 0x10;
    let cases = [
        ("truncated", &good[..n / 2], true),
        ("corrupted", &flipped[..], true),
        ("truncated, run unfinished", &good[..n / 2], false),
        ("corrupted, run unfinished", &flipped[..], false),
    ];
    for (what, bytes, finished) in cases {
        if !finished {
            let _ = std::fs::remove_file(dir.join("summary.json"));
        }
        std::fs::write(&last, bytes).unwrap();
        let before = snapshot(&dir);
        let (m, dev) = tiny::<Pssilu<Dev>>(cfg.seed);
        let Err(e) = train(&cfg, m, &dev, &d, &dir, RunMode::Resume, &mut Silent) else {
            panic!("{what}: resumed");
        };
        assert!(
            matches!(e, TrainError::Checkpoint { .. }) && e.to_string().contains(LAST_FILE),
            "{what}: {e}"
        );
        assert_eq!(
            snapshot(&dir),
            before,
            "{what}: the run directory is untouched"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// 1:1 real + synthetic batches (docs/reproduction.md §3.5) go through the same trainer: each step
/// sees `batch_size` real and `per_batch` synthetic images, the epoch length is the real set's, and
/// the run differs from the real-only one. Synthetic images asked for but not given (or given
/// but not asked for) are an error, never a silent real-only run.
#[test]
fn synthetic_images_are_mixed_into_every_batch() {
    let real = data(200);
    let synthetic_images = FashionMnist::embedded().unwrap().train;
    let idx: Vec<usize> = (1000..1500).collect();
    let mixed = TrainData {
        synthetic: Some(Arc::new(
            synthetic_images.select("stand-in synthetic", &idx).unwrap(),
        )),
        ..data(200)
    };
    let base = config(
        "quick-pgd-at",
        "relu",
        &[
            "optim.epochs=1",
            "data.batch_size=50",
            "eval.n_examples=50",
            "eval.batch_size=50",
            "trainer.steps=1",
        ],
    );
    let mut cfg = base.clone();
    cfg.data.synthetic = Some(robust_paf::train::config::SyntheticConfig {
        path: "stand-in.npz".into(),
        format: Default::default(),
        per_batch: 50,
    });
    let (a_dir, b_dir) = (tmp("real-only"), tmp("mixed"));
    let (m, dev) = tiny::<Relu<Dev>>(cfg.seed);
    train(&base, m, &dev, &real, &a_dir, RunMode::Fresh, &mut Silent).unwrap();
    let (m, dev) = tiny::<Relu<Dev>>(cfg.seed);
    train(&cfg, m, &dev, &mixed, &b_dir, RunMode::Fresh, &mut Silent).unwrap();
    let (a, b) = (
        read_metrics(&a_dir).unwrap().remove(0),
        read_metrics(&b_dir).unwrap().remove(0),
    );
    assert_eq!((a.global_step, a.train_examples), (4, 200));
    assert_eq!(
        (b.global_step, b.train_examples),
        (4, 400),
        "50 + 50 per step"
    );
    assert_ne!(a.train_loss, b.train_loss);

    for (c, d) in [(&cfg, &real), (&base, &mixed)] {
        let (m, dev) = tiny::<Relu<Dev>>(cfg.seed);
        let dir = tmp("mismatch");
        let Err(e) = train(c, m, &dev, d, &dir, RunMode::Fresh, &mut Silent) else {
            panic!("trained with mismatched synthetic data");
        };
        assert!(e.to_string().contains("data.synthetic"), "{e}");
        assert!(!dir.exists(), "nothing written");
    }
    let _ = std::fs::remove_dir_all(&a_dir);
    let _ = std::fs::remove_dir_all(&b_dir);
}

/// A run that cannot fit in the machine's free memory stops before it writes anything, with the
/// estimate in its error (`src/train/memory.rs`): a batch of ten million images of the small CNN
/// needs about 6 TB.
#[test]
fn a_run_too_big_for_the_machine_stops_before_writing() {
    if robust_paf::train::memory::available_memory().is_none() {
        eprintln!("no /proc/meminfo here: the free-memory check cannot run");
        return;
    }
    let dir = tmp("too-big");
    let cfg = config("quick-standard", "relu", &["data.batch_size=10000000"]);
    let (model, dev) = tiny::<Relu<Dev>>(0);
    let err = train(
        &cfg,
        model,
        &dev,
        &data(100),
        &dir,
        RunMode::Fresh,
        &mut Silent,
    )
    .err()
    .expect("a 6 TB run must not start");
    match &err {
        TrainError::Config { field, reason, .. } => {
            assert_eq!(field, "data.batch_size");
            assert!(reason.contains("free") && reason.contains("GiB"), "{err}");
        }
        e => panic!("expected a configuration error, got {e}"),
    }
    assert!(!dir.exists(), "nothing written");
}

/// The ImageNette preset end to end on a generated `imagenette2` folder (3 classes × 2 JPEGs per
/// split): the ImageNet-stem ResNet-18 at 224 pixels trains one epoch and is evaluated, through
/// the same `load_data` + `train_named` as `robust-paf train --preset imagenette-linf-resnet18`.
/// A CIFAR model on that data is a configuration error naming both shapes.
#[test]
fn the_imagenette_preset_trains_the_imagenet_stem_resnet18_at_224_pixels() {
    use robust_paf::train::{load_data, train_named};
    let root = crate::data_imagenette::make_folder("train-run", 2);
    let dir = tmp("imagenette");
    let root_s = root.display().to_string().replace('\\', "/");
    let set: Vec<String> = [
        format!("data.dir=\"{root_s}\""),
        "data.batch_size=3".into(),
        "optim.epochs=1".into(),
        "trainer.kind=\"standard\"".into(),
        "eval.batch_size=3".into(),
        "eval.pgd_steps=0".into(),
        "model.activation=\"relu\"".into(),
    ]
    .into();
    let cfg = TrainConfig::preset("imagenette-linf-resnet18", &set).unwrap();
    let data = load_data(&cfg).unwrap();
    assert_eq!(
        data.train.shape(),
        robust_paf::data::ImageShape::square(224)
    );
    assert_eq!((data.train.len(), data.test.len()), (6, 6));
    // the validation images class by class in turn
    assert_eq!(data.test.labels(), &[0, 1, 2, 0, 1, 2]);
    let summary = train_named(
        Cpu::seed_from_u64(0),
        &cfg,
        &data,
        &dir,
        RunMode::Fresh,
        &mut Silent,
    )
    .unwrap();
    assert_eq!(summary.status, "finished");
    assert!(
        summary.architecture.starts_with("ResNet-18-ImageNet"),
        "{}",
        summary.architecture
    );
    assert_eq!(read_metrics(&dir).unwrap().len(), 1);

    let mut cifar = cfg.clone();
    cifar.model.arch = robust_paf::train::config::Arch::ResNet18;
    let err = train_named(
        Cpu::seed_from_u64(0),
        &cifar,
        &data,
        &tmp("imagenette-cifar"),
        RunMode::Fresh,
        &mut Silent,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("32×32×3") && err.to_string().contains("224×224×3"),
        "{err}"
    );
    std::fs::remove_dir_all(&root).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
