//! A training run (docs/reproduction.md §3.1, §3.2): the epoch loop over a [`TrainConfig`], with
//! the per-epoch evaluation and model selection of the official `train.py`, a run directory, and
//! resume after any interruption.
//!
//! The run directory holds
//! - `config.toml`: the resolved configuration;
//! - `metrics.jsonl`: one JSON line per epoch ([`EpochRecord`]: epoch, lr, train loss and
//!   accuracies, test clean and PGD accuracy, the activation's α/β, seconds) and, with
//!   `run.log_every_steps`, one per N steps ([`StepRecord`]);
//! - `last.safetensors`: model, momentum buffers and run position, after every epoch and every
//!   `run.checkpoint_every_steps` steps;
//! - `best.safetensors`: the model of the best evaluation (PGD accuracy for adversarial
//!   trainers, clean accuracy for standard training; strictly better than before, as the
//!   official `is_best = prec > best_prec`);
//! - `summary.json`: written when the run finishes ([`RunSummary`]).
//!
//! Everything random depends only on the seed and the step: the initial weights (the caller
//! builds the model on a device seeded with `cfg.seed`), the data order and augmentation
//! (`(seed, epoch, step)`), each step's attack start and each evaluation's PGD start. A run
//! killed at any point (even `kill -9`) and resumed from `last.safetensors` therefore repeats the
//! uninterrupted run exactly on the CPU: the same losses and accuracies, epoch by epoch (VGG's
//! dropout excepted: it draws from the device's generator).
//!
//! A non-finite loss stops the run with [`TrainError::NonFiniteLoss`] before that step changes
//! anything; the checkpoints on disk stay those of before.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use dfdx::shapes::ConstDim;

use super::checkpoint::{
    read_checkpoint, save_checkpoint, write_atomic, Best, CheckpointMeta, EpochSums, RunPosition,
};
use super::collective::{Collective, Single};
use super::config::{Selection, TrainConfig, TrainerConfig, TrainerKind};
use super::data::{TrainData, TrainLoader};
use super::optim::{LrSchedule, Sgd, SgdSettings};
use super::parallel::{broadcast_state, receive_from_root, send_to_ranks, Parallel};
use super::records::{activation_map, append_line, root_summary, truncate_metrics};
pub use super::records::{read_metrics, read_summary, EpochRecord, RunSummary, StepRecord};
use super::step::{draw_start, train_step_parallel, ShardOf, Start, StepSettings};
use super::TrainError;
use crate::activations::Activation;
use crate::attacks::{classified_correctly, host_images, in_eval_mode, pgd_from, PgdConfig};
use crate::models::Classifier;
use crate::ops::Backend;
use crate::progress::{Progress, Silent};

/// `config.toml`, `metrics.jsonl`, ... of a run directory.
pub const CONFIG_FILE: &str = "config.toml";
pub const METRICS_FILE: &str = "metrics.jsonl";
pub const LAST_FILE: &str = "last.safetensors";
pub const BEST_FILE: &str = "best.safetensors";
pub const SUMMARY_FILE: &str = "summary.json";

/// How [`train`] treats an existing run directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunMode {
    /// A new run: the directory must not hold one already.
    Fresh,
    /// Continue the run in the directory (its configuration must equal the one given); a
    /// directory with no checkpoint yet starts from the beginning.
    Resume,
    /// Resume when the directory holds a run, start one otherwise (sweeps). A finished run is
    /// returned as is.
    Auto,
}

/// A finished run: the model after the last step and the summary.
pub struct TrainedRun<M> {
    pub model: M,
    pub summary: RunSummary,
    pub dir: PathBuf,
}

fn split_mix(words: [u64; 3]) -> u64 {
    let mut z = 0x243F_6A88_85A3_08D3u64;
    for w in words {
        z = (z ^ w).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
    }
    z
}

/// The seed of step `global_step`'s attack start.
pub fn step_seed(seed: u64, global_step: usize) -> u64 {
    split_mix([seed, 1, global_step as u64])
}

/// The seed of epoch `epoch`'s evaluation PGD.
pub fn eval_seed(seed: u64, epoch: usize) -> u64 {
    split_mix([seed, 2, epoch as u64])
}

/// Checks that `model` is what `cfg.model` describes and applies the activation settings
/// (fixed-β PSSiLU's β, frozen α/β).
pub fn prepare_model<M: Classifier<D>, D: Backend>(
    cfg: &TrainConfig,
    model: &mut M,
) -> Result<(), TrainError> {
    let m = &cfg.model;
    let mismatch = |what: String| TrainError::Config {
        field: "model".to_string(),
        value: format!("{} / {}", m.arch, m.activation.code_name()),
        reason: format!("the model given is {what}"),
    };
    let act = model.activation_mut();
    if act.try_set_kind(m.activation).is_err() {
        return Err(mismatch(format!("built with {}", act.name())));
    }
    if !model
        .architecture()
        .starts_with(m.arch.architecture_prefix())
    {
        return Err(mismatch(model.architecture()));
    }
    let classes = <M::Classes as ConstDim>::SIZE;
    if classes != cfg.data.dataset.classes() {
        return Err(mismatch(format!(
            "a {classes}-class model, the dataset has {}",
            cfg.data.dataset.classes()
        )));
    }
    let act = model.activation_mut();
    if let Some(b) = m.pssilu_beta {
        act.set_parameter("beta", b)?;
    }
    if let Some(a) = m.fix_alpha {
        act.freeze("alpha", a)?;
    }
    if let Some(b) = m.fix_beta {
        act.freeze("beta", b)?;
    }
    Ok(())
}

struct Eval {
    pixels: Vec<f32>,
    labels: Vec<usize>,
}

/// Clean and (optionally) PGD accuracy on the evaluation images, in eval mode.
fn evaluate_epoch<M: Classifier<D>, D: Backend>(
    cfg: &TrainConfig,
    model: &mut M,
    dev: &D,
    data: &Eval,
    epoch: usize,
    progress: &mut dyn Progress,
    par: &Parallel,
) -> Result<(f64, Option<f64>), TrainError> {
    let (rank, ranks) = (par.comm.rank(), par.comm.size());
    let b = cfg.eval.batch_size;
    let f = data.pixels.len() / data.labels.len().max(1);
    let n = data.labels.len();
    let with_pgd = cfg.eval_pgd();
    let pgd_cfg = PgdConfig {
        norm: cfg.trainer.norm,
        eps: cfg.trainer.eps,
        step_size: cfg.trainer.step_size,
        steps: cfg.eval.pgd_steps,
        random_start: true,
        clip_start: cfg.trainer.clip_start,
        seed: eval_seed(cfg.seed, epoch),
        official_l2: cfg.trainer.official_l2,
    };
    // the official per-epoch PGD (`pgd_whitebox`) starts as PGD-AT's training attack does
    let start_cfg = TrainerConfig {
        kind: TrainerKind::PgdAt,
        ..cfg.trainer.clone()
    };
    progress.start("evaluation", n.div_ceil(b) as u64);
    let (mut clean, mut robust) = (0usize, 0usize);
    for (c, y) in data.labels.chunks(b).enumerate() {
        if c % ranks != rank {
            // another rank's chunk (the same seeds: the result of one process)
            progress.advance(1);
            continue;
        }
        let s = c * b;
        let x = &data.pixels[s * f..(s + y.len()) * f];
        let ok = in_eval_mode(model, |m| classified_correctly(m, dev, x, y))?;
        clean += ok.iter().filter(|v| **v).count();
        if with_pgd {
            let xt = host_images::<M, D>(dev, x.to_vec(), y.len());
            let cfg_c = PgdConfig {
                seed: split_mix([pgd_cfg.seed, 3, c as u64]),
                ..pgd_cfg.clone()
            };
            let delta0 = draw_start::<M, D>(&start_cfg, dev, y.len(), cfg_c.seed)?;
            let adv = pgd_from(model, &xt, y, Some(&delta0), &cfg_c)?.as_vec();
            let ok = in_eval_mode(model, |m| classified_correctly(m, dev, &adv, y))?;
            robust += ok.iter().filter(|v| **v).count();
        }
        progress.advance(1);
    }
    progress.finish();
    let mut counts = [clean as f64, robust as f64];
    par.comm.all_reduce_f64(&mut counts)?;
    let (clean, robust) = (counts[0], counts[1]);
    let n = n.max(1) as f64;
    Ok((clean / n, with_pgd.then(|| robust / n)))
}

fn pct(v: f64) -> String {
    format!("{:.2}%", 100.0 * v)
}

fn fmt_params(p: &BTreeMap<String, f64>) -> String {
    if p.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = p.iter().map(|(k, v)| format!("{k} {v:.4}")).collect();
    format!(" | {}", parts.join(" "))
}

/// Trains `model` as `cfg` says on `data`, in the run directory `dir` (see the module docs),
/// reporting progress; `model` must be freshly built on `dev` seeded with `cfg.seed` for a run
/// to be reproducible. Returns the model after the last step and the summary.
///
/// ```
/// use std::sync::Arc;
/// use dfdx::prelude::*;
/// use robust_paf::activations::Relu;
/// use robust_paf::data::FashionMnist;
/// use robust_paf::models::SmallCnn;
/// use robust_paf::progress::Silent;
/// use robust_paf::train::run::read_metrics;
/// use robust_paf::train::{train, RunMode, TrainConfig, TrainData};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let f = FashionMnist::embedded()?;
/// let first: Vec<usize> = (0..100).collect();
/// let data = TrainData {
///     train: Arc::new(f.train.select("100 images", &first)?),
///     synthetic: None,
///     test: f.test.select("20 images", &first[..20])?,
///     description: "Fashion-MNIST, 100 images".into(),
/// };
/// let set: Vec<String> = ["model.activation=\"relu\"", "optim.epochs=2"].map(String::from).into();
/// let cfg = TrainConfig::preset("quick-standard", &set)?;
/// let dev = Cpu::seed_from_u64(cfg.seed);
/// let dir = std::env::temp_dir().join(format!("robust-paf-doc-train-{}", std::process::id()));
/// let run = train(&cfg, SmallCnn::<Relu<Cpu>, Cpu>::new(&dev), &dev, &data, &dir, RunMode::Fresh, &mut Silent)?;
/// assert_eq!(read_metrics(&dir)?.len(), 2, "one metrics.jsonl line per epoch");
/// assert!(dir.join("best.safetensors").exists() && dir.join("last.safetensors").exists());
/// assert_eq!(run.summary.status, "finished");
/// std::fs::remove_dir_all(&dir)?;
/// # Ok(())
/// # }
/// ```
pub fn train<M: Classifier<D>, D: Backend>(
    cfg: &TrainConfig,
    model: M,
    dev: &D,
    data: &TrainData,
    dir: &Path,
    mode: RunMode,
    progress: &mut dyn Progress,
) -> Result<TrainedRun<M>, TrainError> {
    train_parallel(cfg, model, dev, data, dir, mode, progress, Rc::new(Single))
}

/// [`train`] as one rank of `comm` (synchronous data-parallel SGD, [`super::parallel`]): every
/// rank calls it with the same configuration and data; each trains on its shard of every global
/// batch, rank 0 alone reads and writes the run directory (it sends the others its initial or
/// resumed state) and reports progress. The run is that of one process on the same global
/// batches, so it resumes with any number of ranks. Every rank returns the trained model and the
/// summary; an error of rank 0's setup (a run directory that does not fit, ...) is every rank's.
#[allow(clippy::too_many_arguments)]
pub fn train_parallel<M: Classifier<D>, D: Backend>(
    cfg: &TrainConfig,
    mut model: M,
    dev: &D,
    data: &TrainData,
    dir: &Path,
    mode: RunMode,
    progress: &mut dyn Progress,
    comm: Rc<dyn Collective>,
) -> Result<TrainedRun<M>, TrainError> {
    let par = Parallel::new(comm, cfg.trainer.sync_batch_norm);
    let (rank, ranks) = (par.comm.rank(), par.comm.size());
    let is_root = rank == 0;
    let mut silent = Silent;
    let progress: &mut dyn Progress = if is_root { progress } else { &mut silent };
    cfg.validate()?;
    if par.is_parallel() && cfg.trainer.sync_batch_norm && !D::SYNC_BATCH_NORM {
        return Err(TrainError::Config {
            field: "trainer.sync_batch_norm".into(),
            value: "true".into(),
            reason: "synchronised batch norm runs on the CPU only for now (the CUDA kernels \
                     are composed of dfdx ops); use per-rank batch norm (false)"
                .into(),
        });
    }
    let input = crate::data::ImageShape::new(
        <M::Height as ConstDim>::SIZE,
        <M::Width as ConstDim>::SIZE,
        <M::Channels as ConstDim>::SIZE,
    );
    let f = input.bytes();
    let synthetic = data.synthetic.as_ref().map(|s| s.shape());
    for held in [Some(data.train.shape()), Some(data.test.shape()), synthetic]
        .into_iter()
        .flatten()
    {
        if held != input {
            return Err(TrainError::Config {
                field: "model.arch".into(),
                value: cfg.model.arch.to_string(),
                reason: format!("the model takes {input} images, the data hold {held} images"),
            });
        }
    }
    if data.test.classes > <M::Classes as ConstDim>::SIZE {
        return Err(TrainError::Config {
            field: "data.dataset".into(),
            value: cfg.data.dataset.name().into(),
            reason: "more classes than the model".into(),
        });
    }
    // before anything is written: a run that cannot fit stops here, with the estimate
    let batch = (cfg.data.batch_size + cfg.data.synthetic.as_ref().map_or(0, |s| s.per_batch))
        .div_ceil(ranks);
    let params = dfdx::nn::NumParams::num_trainable_params(&model);
    if let Some(est) = super::memory::estimate(cfg.model.arch, params, batch) {
        progress.message(&format!("memory estimate: {}", est.describe(batch)));
        let free = if D::HOST_MEMORY {
            super::memory::available_memory()
        } else {
            None
        };
        if let Some(free) = free.filter(|&f| est.total > f) {
            return Err(TrainError::Config {
                field: "data.batch_size".into(),
                value: batch.to_string(),
                reason: format!(
                    "the run needs about {} of memory, the machine has {} free; lower the batch \
                     size (--set data.batch_size=N)",
                    super::memory::gib(est.total),
                    super::memory::gib(free)
                ),
            });
        }
    }
    prepare_model(cfg, &mut model)?;
    // before anything is written: a data/config mismatch leaves no half-made run directory
    let loader = TrainLoader::new(cfg, data)?.with_shard(rank, ranks);
    if loader.smallest_batch() < ranks {
        return Err(TrainError::Config {
            field: "data.batch_size".into(),
            value: cfg.data.batch_size.to_string(),
            reason: format!(
                "an epoch's smallest batch has {} images, fewer than the {ranks} ranks",
                loader.smallest_batch()
            ),
        });
    }
    let config_path = dir.join(CONFIG_FILE);
    let metrics_path = dir.join(METRICS_FILE);
    let last_path = dir.join(LAST_FILE);
    let best_path = dir.join(BEST_FILE);
    let run_dir_err = |reason: String| TrainError::RunDir {
        path: dir.to_path_buf(),
        reason,
    };
    let steps = loader.steps_per_epoch();
    let o = &cfg.optim;
    let warmup = o.warmup_epochs;
    let total_epochs = warmup + o.epochs;
    let schedule = LrSchedule {
        lr: o.lr,
        lr_min: o.lr_min,
        momentum: o.momentum,
        warmup_steps: warmup * steps,
        main_steps: o.epochs * steps,
        warmup_keeps_momentum: o.warmup_keeps_momentum,
    };
    let mut opt = Sgd::new(SgdSettings {
        lr: o.lr,
        momentum: o.momentum,
        weight_decay: o.weight_decay,
        nesterov: o.nesterov,
    })?;
    let settings = StepSettings {
        decay_activation: o.weight_decay_on_activation,
    };

    let mut pos = RunPosition {
        epochs_done: 0,
        step_in_epoch: 0,
        global_step: 0,
        lr: o.lr,
        momentum: o.momentum,
        sums: EpochSums::default(),
        best: None,
        seconds: 0.0,
    };
    // rank 0: the run directory (new, or resumed from its checkpoint); `Some(summary)` for a
    // run that already finished
    let mut root_setup = || -> Result<Option<RunSummary>, TrainError> {
        let exists = last_path.exists() || config_path.exists();
        let resume = match mode {
            RunMode::Fresh if exists => {
                return Err(run_dir_err(
                    "already holds a run (resume it with --resume, or choose another --out)".into(),
                ))
            }
            RunMode::Fresh => false,
            RunMode::Resume if !exists => {
                return Err(run_dir_err(
                    "holds no run to resume (no config.toml)".into(),
                ))
            }
            RunMode::Resume | RunMode::Auto => exists,
        };
        if resume {
            let text = std::fs::read_to_string(&config_path)
                .map_err(|e| TrainError::io(&config_path, e))?;
            let on_disk = TrainConfig::from_toml(&text, &config_path.display().to_string())?;
            if &on_disk != cfg {
                return Err(run_dir_err(
                    "its config.toml differs from the configuration given; resume it with its own \
                     configuration (robust-paf train --resume DIR)"
                        .into(),
                ));
            }
            if let Some(s) = read_summary(dir)? {
                // finished: the model after the last step, as for a run that just ended
                if last_path.exists() {
                    read_checkpoint(&last_path)?.apply(&mut model, None)?;
                }
                return Ok(Some(s));
            }
        } else {
            std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
            write_atomic(&config_path, cfg.to_toml().as_bytes())?;
            write_atomic(&metrics_path, b"")?;
        }
        if resume && last_path.exists() {
            let ckpt = read_checkpoint(&last_path)?;
            if ckpt.meta.config.as_ref() != Some(cfg) {
                return Err(run_dir_err(format!(
                    "{LAST_FILE} was written by another configuration"
                )));
            }
            ckpt.apply(&mut model, Some(&mut opt))?;
            pos = ckpt.meta.position.clone().ok_or_else(|| {
                run_dir_err(format!(
                    "{LAST_FILE} holds no run position (not a training checkpoint)"
                ))
            })?;
            truncate_metrics(&metrics_path, pos.epochs_done, pos.global_step)?;
            progress.message(&format!(
                "resuming {} at epoch {}, step {} (global step {})",
                cfg.name,
                pos.epochs_done + 1,
                pos.step_in_epoch,
                pos.global_step
            ));
        } else if resume {
            // started, but killed before its first checkpoint: start again
            write_atomic(&metrics_path, b"")?;
        }
        Ok(None)
    };
    let finished: Option<RunSummary> = if is_root {
        let r = root_setup();
        send_to_ranks(&*par.comm, &r)?;
        r?
    } else {
        receive_from_root(&*par.comm)?
    };
    // every rank: rank 0's model, momentum buffers and run position
    let state = CheckpointMeta {
        seed: Some(cfg.seed),
        position: Some(pos.clone()),
        config: Some(cfg.clone()),
        ..CheckpointMeta::describe(&model)
    };
    if let Some(p) = broadcast_state(&*par.comm, &mut model, &mut opt, &state)? {
        pos = p;
    }
    if let Some(summary) = finished {
        return Ok(TrainedRun {
            model,
            summary,
            dir: dir.to_path_buf(),
        });
    }
    let n_eval = cfg
        .eval
        .n_examples
        .unwrap_or(data.test.len())
        .min(data.test.len());
    let eval = Eval {
        pixels: data.test.pixels()[..n_eval * f]
            .iter()
            .map(|&v| v as f32 / 255.0)
            .collect(),
        labels: data.test.labels()[..n_eval]
            .iter()
            .map(|&l| l as usize)
            .collect(),
    };
    let selection = cfg.selection();
    let run_started = Instant::now();
    let seconds_before = pos.seconds;
    // save_checkpoint describes the model itself; this carries the run's part
    let template = CheckpointMeta::describe(&model);
    let meta_for = |pos: &RunPosition| CheckpointMeta {
        seed: Some(cfg.seed),
        position: Some(pos.clone()),
        config: Some(cfg.clone()),
        ..template.clone()
    };
    let mut last_record: Option<EpochRecord> = None;
    progress.message(&format!(
        "{}: {} on {}, {} steps/epoch, {} epochs{}",
        cfg.name,
        model.architecture(),
        data.description,
        steps,
        o.epochs,
        if warmup > 0 {
            format!(" + {warmup} warm-up")
        } else {
            String::new()
        }
    ));
    if par.is_parallel() {
        progress.message(&format!(
            "data-parallel: {ranks} ranks over {}, {} batch norm, rank 0 writes {}",
            par.comm.describe(),
            if cfg.trainer.sync_batch_norm {
                "synchronised"
            } else {
                "per-rank"
            },
            dir.display()
        ));
    }

    for epoch in pos.epochs_done..total_epochs {
        progress.outer(epoch as u64, total_epochs as u64);
        progress.start(
            &format!("epoch {}/{}", epoch + 1, total_epochs),
            steps as u64,
        );
        let first = pos.step_in_epoch;
        progress.advance(first as u64);
        let epoch_started = Instant::now();
        let seconds_in_epoch_before = pos.sums.seconds;
        for (i, batch) in loader.epoch_from(epoch, first).enumerate() {
            let step = first + i;
            let batch = batch?;
            let t = pos.global_step;
            opt.set_lr(schedule.lr_at(t));
            opt.set_momentum(schedule.momentum_at(t));
            let x = host_images::<M, D>(dev, batch.pixels, batch.labels.len());
            let labels: Vec<usize> = batch.labels.iter().map(|&l| l as usize).collect();
            let step_started = Instant::now();
            let out = train_step_parallel(
                &cfg.trainer,
                &settings,
                &mut model,
                &mut opt,
                &x,
                &labels,
                Start::Seeded(step_seed(cfg.seed, t)),
                &par,
                ShardOf {
                    offset: batch.offset,
                    global_len: batch.global_len,
                },
            )
            .map_err(|e| match e {
                crate::Error::NonFinite { what } => TrainError::NonFiniteLoss {
                    epoch,
                    step,
                    global_step: t,
                    what,
                },
                e => TrainError::Model(e),
            })?;
            let s = &mut pos.sums;
            s.steps += 1;
            s.images += out.n;
            s.loss_sum += out.loss * out.n as f64;
            s.clean_correct += out.clean_correct;
            s.adv_correct += out.adv_correct.unwrap_or(0);
            s.seconds += step_started.elapsed().as_secs_f64();
            pos.global_step += 1;
            pos.step_in_epoch = step + 1;
            pos.lr = opt.lr();
            pos.momentum = opt.settings().momentum;
            let elapsed = seconds_in_epoch_before + epoch_started.elapsed().as_secs_f64();
            progress.advance(1);
            progress.status(&format!(
                "loss {:.4} · acc {} · {:.1} img/s",
                s.loss_sum / s.images.max(1) as f64,
                pct(if cfg.trainer.kind.is_adversarial() {
                    s.adv_correct as f64 / s.images.max(1) as f64
                } else {
                    s.clean_correct as f64 / s.images.max(1) as f64
                }),
                s.images as f64 / elapsed.max(1e-9)
            ));
            let log_every = cfg.run.log_every_steps;
            if is_root && log_every > 0 && pos.global_step % log_every == 0 {
                let r = StepRecord {
                    kind: "step".into(),
                    epoch,
                    step,
                    global_step: pos.global_step,
                    lr: opt.lr(),
                    loss: out.loss,
                    clean_accuracy: out.clean_correct as f64 / out.n.max(1) as f64,
                    adv_accuracy: out.adv_correct.map(|c| c as f64 / out.n.max(1) as f64),
                    beta_grad: out.beta_grad,
                    activation: activation_map(&model),
                };
                append_line(
                    &metrics_path,
                    &serde_json::to_string(&r).expect("serialisable"),
                )?;
            }
            let every = cfg.run.checkpoint_every_steps;
            if is_root && every > 0 && pos.step_in_epoch % every == 0 && pos.step_in_epoch < steps {
                pos.seconds = seconds_before + run_started.elapsed().as_secs_f64();
                save_checkpoint(&last_path, &model, Some(&opt), &meta_for(&pos))?;
            }
            // rank 0's interruption stops every rank at the same step
            let mut stop = [if progress.cancelled() { 1.0 } else { 0.0 }];
            if par.is_parallel() {
                par.comm.all_reduce_f64(&mut stop)?;
            }
            if stop[0] > 0.0 {
                pos.seconds = seconds_before + run_started.elapsed().as_secs_f64();
                if is_root {
                    save_checkpoint(&last_path, &model, Some(&opt), &meta_for(&pos))?;
                }
                progress.finish();
                return Err(TrainError::Model(crate::Error::Interrupted(format!(
                    "stopped at epoch {}, step {}; `robust-paf train --resume {}` continues",
                    epoch + 1,
                    pos.step_in_epoch,
                    dir.display()
                ))));
            }
        }
        progress.finish();
        let sums = pos.sums;
        let in_warmup = epoch < warmup;
        let last_epoch = epoch + 1 == total_epochs;
        let main_epoch = epoch.saturating_sub(warmup) + 1;
        let evaluate = !in_warmup && (main_epoch % cfg.eval.every == 0 || last_epoch);
        let eval_started = Instant::now();
        let (test_clean, test_pgd) = if evaluate {
            let (c, p) = evaluate_epoch(cfg, &mut model, dev, &eval, epoch, progress, &par)?;
            (Some(c), p)
        } else {
            (None, None)
        };
        let eval_seconds = eval_started.elapsed().as_secs_f64();
        let metric = match selection {
            Selection::Pgd => test_pgd,
            Selection::Clean => test_clean,
        };
        let is_best = match metric {
            Some(v) => v > pos.best.map_or(0.0, |b| b.value),
            None => false,
        };
        pos.epochs_done = epoch + 1;
        pos.step_in_epoch = 0;
        pos.sums = EpochSums::default();
        if is_best {
            pos.best = Some(Best {
                epoch,
                value: metric.unwrap_or(0.0),
            });
        }
        pos.seconds = seconds_before + run_started.elapsed().as_secs_f64();
        let n = sums.images.max(1) as f64;
        let record = EpochRecord {
            kind: "epoch".into(),
            epoch,
            phase: if in_warmup { "warmup" } else { "train" }.into(),
            global_step: pos.global_step,
            lr: opt.lr(),
            momentum: opt.settings().momentum,
            train_examples: sums.images,
            train_loss: sums.loss_sum / n,
            train_clean_accuracy: sums.clean_correct as f64 / n,
            train_adv_accuracy: cfg
                .trainer
                .kind
                .is_adversarial()
                .then(|| sums.adv_correct as f64 / n),
            test_clean_accuracy: test_clean,
            test_pgd_accuracy: test_pgd,
            test_examples: if evaluate { eval.labels.len() } else { 0 },
            activation: activation_map(&model),
            best: is_best,
            seconds: seconds_in_epoch_before + epoch_started.elapsed().as_secs_f64(),
            eval_seconds,
            images_per_second: sums.images as f64 / sums.seconds.max(1e-9),
        };
        // metrics line, then best, then last: a kill in between is undone on resume (the
        // metrics are cut back to the last checkpoint and the epoch is run again, identically)
        if is_root {
            append_line(
                &metrics_path,
                &serde_json::to_string(&record).expect("serialisable"),
            )?;
            if is_best {
                save_checkpoint(&best_path, &model, None, &meta_for(&pos))?;
            }
            save_checkpoint(&last_path, &model, Some(&opt), &meta_for(&pos))?;
        }
        // rank 0's weights again on every rank (replicas that a reduction rounded apart cannot
        // drift)
        broadcast_state(&*par.comm, &mut model, &mut opt, &meta_for(&pos))?;
        progress.message(&format!(
            "epoch {:>3}/{} lr {:.4} | train loss {:.4} clean {}{} | test{}{}{}{} | {:.0} s, {:.1} img/s",
            epoch + 1,
            total_epochs,
            record.lr,
            record.train_loss,
            pct(record.train_clean_accuracy),
            record
                .train_adv_accuracy
                .map(|a| format!(" adv {}", pct(a)))
                .unwrap_or_default(),
            record
                .test_clean_accuracy
                .map(|a| format!(" clean {}", pct(a)))
                .unwrap_or_else(|| " -".into()),
            record
                .test_pgd_accuracy
                .map(|a| format!(" PGD-{} {}", cfg.eval.pgd_steps, pct(a)))
                .unwrap_or_default(),
            if is_best { " (best)" } else { "" },
            fmt_params(&record.activation),
            record.seconds,
            record.images_per_second,
        ));
        last_record = Some(record);
    }
    progress.outer(total_epochs as u64, total_epochs as u64);

    // the summary: from the records (a resumed run reads the earlier ones back), rank 0's
    let summary = if is_root {
        let r = root_summary(
            cfg,
            &model,
            dir,
            &pos,
            last_record,
            selection,
            eval.labels.len(),
        );
        send_to_ranks(&*par.comm, &r)?;
        r?
    } else {
        receive_from_root(&*par.comm)?
    };
    Ok(TrainedRun {
        model,
        summary,
        dir: dir.to_path_buf(),
    })
}
