//! Training (docs/reproduction.md §3): standard training, PGD-AT and TRADES exactly as the official
//! `train.py` + `trainers.py`, with checkpoints that survive `kill -9`, per-epoch evaluation and
//! model selection, TOML configurations and presets, and parameter sweeps.
//!
//! - [`config`]: [`TrainConfig`] (serde + TOML, validated field by field), `--set` overrides,
//!   the presets of every experiment of §3.7 and the `quick-*` ones;
//! - [`optim`]: PyTorch's SGD with checkpointable momentum buffers, the per-iteration cosine
//!   schedule (optional warm-up), the β-gradient clip (§3.1, §3.6);
//! - [`step`]: one step of each trainer ([`train_step`], with an explicit δ₀ when asked);
//! - [`checkpoint`]: safetensors checkpoints (tensors by `state_dict` name, momentum buffers,
//!   JSON metadata), written atomically, checked before loading;
//! - [`records`]: `metrics.jsonl` and `summary.json` of a run directory;
//! - [`run`]: the epoch loop — run directory, `metrics.jsonl`, `best`/`last` checkpoints,
//!   resume, progress ([`run::train`]);
//! - [`sweep`]: grids of runs, shards for Slurm arrays, and the table of their results;
//! - [`data`]: the datasets a configuration names;
//! - [`dispatch`]: from the names of a configuration to the compile-time model type;
//! - [`collective`], [`parallel`]: one run over several processes (MPI) or threads —
//!   synchronous data-parallel SGD, per-rank or synchronised batch norm;
//! - [`assess`]: evaluating saved checkpoints and runs (PGD, AutoAttack, the shape metrics),
//!   with the model their checkpoint names (the one place `train` uses [`crate::eval`]).
//!
//! Everything is generic over the model and the device (CPU, CUDA).

pub mod assess;
pub mod checkpoint;
pub mod collective;
pub mod config;
pub mod data;
pub mod dispatch;
pub mod memory;
pub mod optim;
pub mod parallel;
pub mod records;
pub mod run;
pub mod step;
pub mod sweep;

use std::path::{Path, PathBuf};

pub use assess::{
    evaluate_checkpoint, run_shape_metrics, shape_metrics_of_checkpoint, ShapeMetrics,
    ShapeMetricsConfig,
};
pub use checkpoint::{
    load_checkpoint, read_checkpoint, save_checkpoint, Checkpoint, CheckpointMeta,
};
pub use collective::{Collective, CollectiveError, LocalGroup, Single};
pub use config::{
    Arch, Dataset, EvalSettings, ModelConfig, OptimConfig, RunSettings, Selection, TrainConfig,
    TrainerConfig, TrainerKind, PRESETS,
};
pub use data::{load_data, TrainData};
pub use dispatch::{train_named, train_named_parallel, with_model, WithModel};
pub use optim::{cosine_lr, LrSchedule, Sgd, SgdSettings, StepRules};
pub use parallel::Parallel;
pub use run::{train, train_parallel, EpochRecord, RunMode, RunSummary, TrainedRun};
pub use step::{train_step, train_step_parallel, ShardOf, Start, StepOutcome, StepSettings};

/// Everything that can go wrong in configuring, running or resuming training.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A configuration that does not parse (syntax, unknown field, wrong type).
    #[error("{origin}: {message}")]
    Parse { origin: String, message: String },
    /// A configuration field with a value outside its range.
    #[error("invalid configuration: `{field}` = {value}: {reason}")]
    Config {
        field: String,
        value: String,
        reason: String,
    },
    /// A preset name that does not exist.
    #[error("unknown preset `{name}` (presets: {known})")]
    UnknownPreset { name: String, known: String },
    /// A `--set` that is not `key=value`.
    #[error("bad --set `{text}`: {reason}")]
    Override { text: String, reason: String },
    /// A checkpoint file that cannot be read (missing, truncated, corrupted, other format).
    #[error("checkpoint {path}: {reason}")]
    Checkpoint { path: PathBuf, reason: String },
    /// A checkpoint of another model.
    #[error("checkpoint {path} does not fit: expected {expected}, found {found}")]
    CheckpointMismatch {
        path: PathBuf,
        expected: String,
        found: String,
    },
    /// The loss became NaN or infinite; nothing of that step was applied or saved.
    #[error(
        "non-finite loss at epoch {epoch}, step {step} (global step {global_step}): {what}; \
         stopped before the update, the checkpoints on disk are those of before"
    )]
    NonFiniteLoss {
        epoch: usize,
        step: usize,
        global_step: usize,
        what: String,
    },
    /// A run directory that does not match what was asked (resume of another configuration,
    /// a finished run, ...).
    #[error("run directory {path}: {reason}")]
    RunDir { path: PathBuf, reason: String },
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Reading a dataset failed.
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    /// The model, an attack or the device failed.
    #[error(transparent)]
    Model(#[from] crate::Error),
}

impl TrainError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        TrainError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
