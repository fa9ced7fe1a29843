//! The records of a run directory (docs/reproduction.md §3.1, §3.2): `metrics.jsonl` — one
//! [`EpochRecord`] per epoch, optionally a [`StepRecord`] every N steps — and `summary.json`
//! ([`RunSummary`]), written by [`super::run::train`] (rank 0 of a data-parallel run), read back by
//! a resumed run, sweeps and notebooks.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::checkpoint::{write_atomic, RunPosition};
use super::config::{Selection, TrainConfig};
use super::run::{METRICS_FILE, SUMMARY_FILE};
use super::TrainError;
use crate::activations::Activation;
use crate::models::Classifier;
use crate::ops::Backend;

/// One line of `metrics.jsonl` per epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// Always `"epoch"`.
    pub kind: String,
    /// 0-based, warm-up epochs first.
    pub epoch: usize,
    /// `"warmup"` or `"train"`.
    pub phase: String,
    /// Steps done after this epoch.
    pub global_step: usize,
    /// Learning rate of the epoch's last step.
    pub lr: f64,
    pub momentum: f64,
    /// Training images of the epoch (real + synthetic).
    #[serde(default)]
    pub train_examples: usize,
    /// Mean objective over the epoch's images (penalty included).
    pub train_loss: f64,
    /// Accuracy of the train-mode forward on the clean batches.
    pub train_clean_accuracy: f64,
    /// Accuracy of the train-mode forward on the adversarial batches (PGD-AT, TRADES).
    pub train_adv_accuracy: Option<f64>,
    /// Test accuracy in eval mode (`None` when this epoch was not evaluated).
    pub test_clean_accuracy: Option<f64>,
    /// Test PGD accuracy (the trainer's threat model, `eval.pgd_steps` steps, random start).
    pub test_pgd_accuracy: Option<f64>,
    /// Test images evaluated.
    pub test_examples: usize,
    /// The activation's parameters after the epoch (raw α, β).
    pub activation: BTreeMap<String, f64>,
    /// This epoch wrote `best.safetensors`.
    pub best: bool,
    /// Seconds of the epoch (training and evaluation).
    pub seconds: f64,
    /// Seconds of the evaluation alone.
    pub eval_seconds: f64,
    /// Training images per second (real + synthetic).
    pub images_per_second: f64,
}

/// One line of `metrics.jsonl` every `run.log_every_steps` steps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Always `"step"`.
    pub kind: String,
    pub epoch: usize,
    pub step: usize,
    pub global_step: usize,
    pub lr: f64,
    pub loss: f64,
    pub clean_accuracy: f64,
    pub adv_accuracy: Option<f64>,
    pub beta_grad: Option<f64>,
    pub activation: BTreeMap<String, f64>,
}

/// `summary.json` of a finished run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// Always `"finished"`.
    pub status: String,
    pub name: String,
    pub architecture: String,
    pub arch: String,
    pub activation: String,
    pub trainer: String,
    pub dataset: String,
    pub seed: u64,
    pub fix_alpha: Option<f64>,
    pub fix_beta: Option<f64>,
    /// The threat model of training and of the PGD evaluation: `"linf"` or `"l2"` (absent from
    /// summaries written before 0.1.0's Unreleased changes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub norm: Option<String>,
    /// Its radius ε.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eps: Option<f64>,
    /// The synthetic images mixed 1:1 into the batches (`data.synthetic.path`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synthetic: Option<String>,
    pub epochs: usize,
    pub steps: usize,
    /// `"pgd"` or `"clean"`: what chose the best epoch.
    pub selection: String,
    pub best_epoch: Option<usize>,
    pub best_clean_accuracy: Option<f64>,
    pub best_pgd_accuracy: Option<f64>,
    pub final_clean_accuracy: Option<f64>,
    pub final_pgd_accuracy: Option<f64>,
    pub final_train_loss: f64,
    /// The activation's parameters at the end.
    pub activation_parameters: BTreeMap<String, f64>,
    pub test_examples: usize,
    pub seconds: f64,
    pub crate_version: String,
}

pub(crate) fn activation_map<M: Classifier<D>, D: Backend>(m: &M) -> BTreeMap<String, f64> {
    m.activation()
        .parameters()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

pub(crate) fn append_line(path: &Path, line: &str) -> Result<(), TrainError> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| TrainError::io(path, e))?;
    writeln!(f, "{line}").map_err(|e| TrainError::io(path, e))?;
    f.sync_data().map_err(|e| TrainError::io(path, e))
}

/// Keeps the lines of `metrics.jsonl` written before the checkpoint a run resumes from.
pub(crate) fn truncate_metrics(
    path: &Path,
    epochs_done: usize,
    global_step: usize,
) -> Result<(), TrainError> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let mut kept = String::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue; // a line torn by the kill
        };
        let keep = match v.get("kind").and_then(|k| k.as_str()) {
            Some("epoch") => v["epoch"]
                .as_u64()
                .is_some_and(|e| (e as usize) < epochs_done),
            Some("step") => v["global_step"]
                .as_u64()
                .is_some_and(|s| (s as usize) <= global_step),
            _ => false,
        };
        if keep {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    write_atomic(path, kept.as_bytes())
}

/// Reads the epoch lines of a run's `metrics.jsonl`.
pub fn read_metrics(dir: &Path) -> Result<Vec<EpochRecord>, TrainError> {
    let path = dir.join(METRICS_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| TrainError::Parse {
            origin: format!("{} line {}", path.display(), i + 1),
            message: e.to_string(),
        })?;
        if v.get("kind").and_then(|k| k.as_str()) == Some("epoch") {
            out.push(serde_json::from_value(v).map_err(|e| TrainError::Parse {
                origin: format!("{} line {}", path.display(), i + 1),
                message: e.to_string(),
            })?);
        }
    }
    Ok(out)
}

/// Reads a run's `summary.json`, if the run finished.
pub fn read_summary(dir: &Path) -> Result<Option<RunSummary>, TrainError> {
    let path = dir.join(SUMMARY_FILE);
    match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| TrainError::Parse {
                origin: path.display().to_string(),
                message: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(TrainError::io(&path, e)),
    }
}

/// Rank 0's end of a run: `summary.json` from the metrics records.
pub(crate) fn root_summary<M: Classifier<D>, D: Backend>(
    cfg: &TrainConfig,
    model: &M,
    dir: &Path,
    pos: &RunPosition,
    last_record: Option<EpochRecord>,
    selection: Selection,
    test_examples: usize,
) -> Result<RunSummary, TrainError> {
    let total_epochs = cfg.optim.warmup_epochs + cfg.optim.epochs;
    let records = read_metrics(dir)?;
    let last = last_record.or_else(|| records.last().cloned());
    let best_record = pos
        .best
        .and_then(|b| records.iter().find(|r| r.epoch == b.epoch).cloned());
    let last_eval = records
        .iter()
        .rev()
        .find(|r| r.test_clean_accuracy.is_some());
    let summary = RunSummary {
        status: "finished".into(),
        name: cfg.name.clone(),
        architecture: model.architecture(),
        arch: cfg.model.arch.to_string(),
        activation: cfg.model.activation.code_name().into(),
        trainer: cfg.trainer.kind.name().into(),
        dataset: cfg.data.dataset.name().into(),
        seed: cfg.seed,
        fix_alpha: cfg.model.fix_alpha,
        fix_beta: cfg.model.fix_beta,
        norm: Some(
            match cfg.trainer.norm {
                crate::attacks::Norm::Linf => "linf",
                crate::attacks::Norm::L2 => "l2",
            }
            .into(),
        ),
        eps: Some(cfg.trainer.eps),
        synthetic: cfg
            .data
            .synthetic
            .as_ref()
            .map(|s| s.path.display().to_string()),
        epochs: total_epochs,
        steps: pos.global_step,
        selection: match selection {
            Selection::Pgd => "pgd",
            Selection::Clean => "clean",
        }
        .into(),
        best_epoch: pos.best.map(|b| b.epoch),
        best_clean_accuracy: best_record.as_ref().and_then(|r| r.test_clean_accuracy),
        best_pgd_accuracy: best_record.as_ref().and_then(|r| r.test_pgd_accuracy),
        final_clean_accuracy: last_eval.and_then(|r| r.test_clean_accuracy),
        final_pgd_accuracy: last_eval.and_then(|r| r.test_pgd_accuracy),
        final_train_loss: last.map(|r| r.train_loss).unwrap_or(f64::NAN),
        activation_parameters: activation_map(model),
        test_examples,
        seconds: pos.seconds,
        crate_version: env!("CARGO_PKG_VERSION").into(),
    };
    write_atomic(
        &dir.join(SUMMARY_FILE),
        serde_json::to_string_pretty(&summary)
            .expect("serialisable")
            .as_bytes(),
    )?;
    Ok(summary)
}
