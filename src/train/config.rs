//! Training configurations (docs/reproduction.md §3.1–§3.7): serde types
//! read from and written as TOML, every field validated with an error that names the field and
//! the bad value, `--set key=value` overrides, and the presets of every experiment of the paper
//! (`configs/presets/*.toml`, compiled in).
//!
//! The names follow the official `train.py` flags where there is one, so a command of the paper
//! translates directly:
//!
//! | official flag | here |
//! |---|---|
//! | `--arch resnet18 \| wrn_28_10 \| vgg16_bn` | `model.arch = "resnet18" \| "wrn-28-10" \| "vgg16-bn"` (the official spellings are accepted) |
//! | `--activation pssilu2` | `model.activation = "pssilu2"` (the code names, docs/reproduction.md §1.2) |
//! | `--fix-act --fix-act-val V` | `model.fix_alpha = V` (`model.fix_beta` also freezes PSSiLU's β) |
//! | `--pssilu-beta B` | `model.pssilu_beta = B` (fixed-β PSSiLU only) |
//! | `--trainer baseline \| madry \| adv` | `trainer.kind = "standard" \| "pgd-at" \| "trades"` (the official names are accepted) |
//! | `--epsilon --num-steps --step-size --distance` | `trainer.eps`, `trainer.steps`, `trainer.step_size`, `trainer.norm` |
//! | `--beta` (TRADES) | `trainer.trades_beta` |
//! | `--pssilu-reg` | `trainer.pssilu_reg` |
//! | `--lr --weight-decay --momentum --epochs` | `optim.lr`, `optim.weight_decay`, `optim.momentum`, `optim.epochs` |
//! | `--warmup --wamrup-epochs` | `optim.warmup_epochs` |
//! | `--batch-size --batch-size-syn` | `data.batch_size`, `data.synthetic.per_batch` |
//! | `--syn-data-list diffusion_cifar10` | `data.synthetic = { path = "…", format = "npz" \| "folder" }` |
//! | `--seed` | `seed` |

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::TrainError;
use crate::activations::ActivationKind;
use crate::attacks::Norm;

/// One training run, as written in `config.toml` of its run directory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// A short name (run directories, tables).
    pub name: String,
    /// What the run is (presets say which experiment of the paper they reproduce).
    #[serde(default)]
    pub description: String,
    /// Seed of the initialisation, data order, augmentation and attack starts (`train.py
    /// --seed`, 12345).
    #[serde(default = "default_seed")]
    pub seed: u64,
    pub model: ModelConfig,
    pub data: DataConfig,
    pub trainer: TrainerConfig,
    #[serde(default)]
    pub optim: OptimConfig,
    #[serde(default)]
    pub eval: EvalSettings,
    #[serde(default)]
    pub run: RunSettings,
}

fn default_seed() -> u64 {
    12345
}

/// The architectures a run can train (docs/reproduction.md §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Arch {
    /// CIFAR ResNet-18 (§2.1).
    #[serde(rename = "resnet18")]
    ResNet18,
    /// ResNet-18 with the ImageNet stem, 224×224 inputs (§2.3), for ImageNette.
    #[serde(rename = "resnet18-imagenet")]
    ResNet18ImageNet,
    /// Pre-activation WideResNet-28-10 (§2.2), the headline model.
    #[serde(rename = "wrn-28-10", alias = "wrn_28_10")]
    Wrn28x10,
    /// WideResNet-34-10 (in the official code, not known to be used in the paper).
    #[serde(rename = "wrn-34-10", alias = "wrn_34_10")]
    Wrn34x10,
    /// WideResNet-16-4 (a smaller WRN for quicker CIFAR runs; not in the paper).
    #[serde(rename = "wrn-16-4", alias = "wrn_16_4")]
    Wrn16x4,
    /// VGG-16-BN (§2.4).
    #[serde(rename = "vgg16-bn", alias = "vgg16_bn")]
    Vgg16Bn,
    /// WideResNet-16-1 (widths 16-32-64, 0.18 M parameters): **not a model of the paper**, the
    /// narrowest member of its WRN family, for CPU runs of an hour.
    #[serde(rename = "wrn-16-1", alias = "wrn_16_1")]
    Wrn16x1,
    /// WideResNet-16-2 (0.69 M parameters): **not a model of the paper**, a small WRN.
    #[serde(rename = "wrn-16-2", alias = "wrn_16_2")]
    Wrn16x2,
    /// WideResNet-28-4 (5.8 M parameters): **not a model of the paper**, the headline depth at
    /// 0.4 of its width.
    #[serde(rename = "wrn-28-4", alias = "wrn_28_4")]
    Wrn28x4,
    /// WideResNet-40-2 (2.2 M parameters, from the WRN paper): **not a model of the paper**.
    #[serde(rename = "wrn-40-2", alias = "wrn_40_2")]
    Wrn40x2,
    /// [`crate::models::SmallCnn`]: **not a model of the paper**, three conv layers, the model
    /// of the `quick-*` presets (minutes on 2 CPU cores).
    #[serde(rename = "cnn-small")]
    SmallCnn,
    /// A model the caller builds and passes to [`super::train`] itself (any
    /// [`crate::models::Classifier`]); the CLI cannot build it.
    #[serde(rename = "custom")]
    Custom,
}

impl Arch {
    /// Every architecture the crate builds, in the order above.
    pub const ALL: [Arch; 11] = [
        Arch::ResNet18,
        Arch::ResNet18ImageNet,
        Arch::Wrn28x10,
        Arch::Wrn34x10,
        Arch::Wrn16x4,
        Arch::Vgg16Bn,
        Arch::Wrn16x1,
        Arch::Wrn16x2,
        Arch::Wrn28x4,
        Arch::Wrn40x2,
        Arch::SmallCnn,
    ];
    /// The configuration name (`"wrn-28-10"`).
    pub fn name(self) -> &'static str {
        match self {
            Arch::ResNet18 => "resnet18",
            Arch::ResNet18ImageNet => "resnet18-imagenet",
            Arch::Wrn28x10 => "wrn-28-10",
            Arch::Wrn34x10 => "wrn-34-10",
            Arch::Wrn16x4 => "wrn-16-4",
            Arch::Vgg16Bn => "vgg16-bn",
            Arch::Wrn16x1 => "wrn-16-1",
            Arch::Wrn16x2 => "wrn-16-2",
            Arch::Wrn28x4 => "wrn-28-4",
            Arch::Wrn40x2 => "wrn-40-2",
            Arch::SmallCnn => "cnn-small",
            Arch::Custom => "custom",
        }
    }
    /// The start of [`crate::models::Classifier::architecture`] for this architecture.
    pub fn architecture_prefix(self) -> &'static str {
        match self {
            Arch::ResNet18 => "ResNet-18-",
            Arch::ResNet18ImageNet => "ResNet-18-ImageNet-",
            Arch::Wrn28x10 => "WideResNet-28-10-",
            Arch::Wrn34x10 => "WideResNet-34-10-",
            Arch::Wrn16x4 => "WideResNet-16-4-",
            Arch::Vgg16Bn => "VGG-16-BN-",
            Arch::Wrn16x1 => "WideResNet-16-1-",
            Arch::Wrn16x2 => "WideResNet-16-2-",
            Arch::Wrn28x4 => "WideResNet-28-4-",
            Arch::Wrn40x2 => "WideResNet-40-2-",
            Arch::SmallCnn => "SmallCNN-",
            Arch::Custom => "",
        }
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The model: architecture, the shared activation and what of it is frozen.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub arch: Arch,
    /// The official code name (`relu`, `prelu`, `pssilu2`, ...; `pssilu` is fixed-β PSSiLU).
    pub activation: ActivationKind,
    /// `--fix-act --fix-act-val V`: α frozen at V (docs/reproduction.md §1.4; only α, as in the
    /// official code).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix_alpha: Option<f64>,
    /// PSSiLU's β frozen at this value (not in the official code; for the shape sweep).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix_beta: Option<f64>,
    /// Fixed-β PSSiLU's β (`--pssilu-beta`, default 0.3); only for `activation = "pssilu"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pssilu_beta: Option<f64>,
}

/// The datasets a run can train on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Dataset {
    /// CIFAR-10 (binary version; `data.dir` or `data/cifar-10-batches-bin`).
    #[serde(rename = "cifar10")]
    Cifar10,
    /// CIFAR-100, fine labels.
    #[serde(rename = "cifar100")]
    Cifar100,
    /// The class-balanced Fashion-MNIST subset committed to the repository (2,000 + 1,000 images,
    /// padded to 32×32×3): offline, for the quick presets and tests.
    #[serde(rename = "fashion-mnist-subset")]
    FashionMnistSubset,
    /// The full Fashion-MNIST (`data.dir`, `ROBUST_PAF_FASHION_MNIST` or the Debian package).
    #[serde(rename = "fashion-mnist")]
    FashionMnist,
    /// ImageNette (docs/reproduction.md §3.7): fastai's `imagenette2` folder (`data.dir` holding
    /// `train/` and `val/`, or `data.dir/imagenette2`), 224×224 crops, 10 classes.
    #[serde(rename = "imagenette")]
    Imagenette,
}

impl Dataset {
    /// Number of classes.
    pub fn classes(self) -> usize {
        match self {
            Dataset::Cifar100 => 100,
            _ => 10,
        }
    }
    /// The configuration name.
    pub fn name(self) -> &'static str {
        match self {
            Dataset::Cifar10 => "cifar10",
            Dataset::Cifar100 => "cifar100",
            Dataset::FashionMnistSubset => "fashion-mnist-subset",
            Dataset::FashionMnist => "fashion-mnist",
            Dataset::Imagenette => "imagenette",
        }
    }
}

/// Where the synthetic images of a 1:1 real + synthetic run come from (docs/reproduction.md §3.5).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyntheticConfig {
    /// An `.npz` file (`image` uint8 N×32×32×3 + `label`, e.g. a CIFAR-5m part) or a folder of
    /// class-per-folder PNGs (the official `ImageFolder` layout).
    pub path: PathBuf,
    #[serde(default)]
    pub format: SyntheticFormat,
    /// Synthetic images per batch (`--batch-size-syn`, 256).
    #[serde(default = "default_batch")]
    pub per_batch: usize,
}

/// The format of [`SyntheticConfig::path`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyntheticFormat {
    #[default]
    Npz,
    Folder,
}

fn default_batch() -> usize {
    256
}
fn yes() -> bool {
    true
}

/// The training data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    pub dataset: Dataset,
    /// Directory of the dataset (CIFAR: the folder holding `cifar-10-batches-bin/`, or that
    /// folder itself; ImageNette: the folder holding `imagenette2/`, or that folder itself;
    /// default `data`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// Download CIFAR or ImageNette when it is missing (MD5-checked).
    #[serde(default)]
    pub download: bool,
    /// Real images per batch (256).
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Train on the first `n` training images only (quick runs); `None`: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_subset: Option<usize>,
    /// Random crop (padding 4) + flip of the real images (docs/reproduction.md §3.1).
    #[serde(default = "yes")]
    pub augment: bool,
    /// 1:1 real + synthetic batches (DDPM-6M runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synthetic: Option<SyntheticConfig>,
}

/// Which objective a run minimises (docs/reproduction.md §3.3, §3.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TrainerKind {
    /// Standard training on clean images (`--trainer baseline`).
    #[serde(rename = "standard", alias = "baseline")]
    Standard,
    /// PGD adversarial training (`--trainer madry`).
    #[serde(rename = "pgd-at", alias = "madry")]
    PgdAt,
    /// TRADES (`--trainer adv`).
    #[serde(rename = "trades", alias = "adv")]
    Trades,
}

impl TrainerKind {
    /// The configuration name.
    pub fn name(self) -> &'static str {
        match self {
            TrainerKind::Standard => "standard",
            TrainerKind::PgdAt => "pgd-at",
            TrainerKind::Trades => "trades",
        }
    }
    /// The official `--trainer` name.
    pub fn code_name(self) -> &'static str {
        match self {
            TrainerKind::Standard => "baseline",
            TrainerKind::PgdAt => "madry",
            TrainerKind::Trades => "adv",
        }
    }
    /// True for PGD-AT and TRADES.
    pub fn is_adversarial(self) -> bool {
        self != TrainerKind::Standard
    }
    /// The official β-gradient clip of PSSiLU: 0.01 for standard training and PGD-AT, 0.1 for
    /// TRADES (docs/reproduction.md §3.6).
    pub fn default_beta_grad_clip(self) -> f64 {
        match self {
            TrainerKind::Trades => 0.1,
            _ => 0.01,
        }
    }
}

impl std::fmt::Display for TrainerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The objective and its attack (docs/reproduction.md §3.3, §3.4, §3.6).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainerConfig {
    pub kind: TrainerKind,
    #[serde(default = "default_norm")]
    pub norm: Norm,
    /// Radius (0.031 for ℓ∞, 0.5 for ℓ2).
    #[serde(default = "default_eps")]
    pub eps: f64,
    /// Attack step (0.0078 for ℓ∞, 0.075 for ℓ2; TRADES ℓ2 uses 2ε/steps).
    #[serde(default = "default_step")]
    pub step_size: f64,
    /// Attack steps (10).
    #[serde(default = "default_steps")]
    pub steps: usize,
    /// TRADES' β (6).
    #[serde(default = "default_trades_beta")]
    pub trades_beta: f64,
    /// PGD-AT quirk: the clean train-mode forward before the attack updates the BN running
    /// statistics (as the official `madry` trainer's logging pass does). `false`: the clean
    /// accuracy is still measured, without touching the statistics.
    #[serde(default = "yes")]
    pub clean_pass_updates_bn: bool,
    /// PGD-AT: clamp the random start to `[0, 1]` before the first step (the official code does
    /// not: `false`).
    #[serde(default)]
    pub clip_start: bool,
    /// ℓ2 quirks of the official attacks (training and per-epoch evaluation): an image whose
    /// gradient is exactly zero steps along `N(0, I)` instead of staying put, and TRADES projects
    /// each step onto `[0, 1]` before the ε-ball (`true`, faithful); `false`: torchattacks' steps.
    #[serde(default = "yes")]
    pub official_l2: bool,
    /// PSSiLU's L1 penalty `pssilu_reg · |β|` (`--pssilu-reg`, 10); learnable-β PSSiLU only.
    #[serde(default = "default_reg")]
    pub pssilu_reg: f64,
    /// Clip of β's gradient norm; default by trainer: 0.01 (standard, PGD-AT), 0.1 (TRADES).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beta_grad_clip: Option<f64>,
    /// Data-parallel runs (several ranks): batch norm with the statistics of the global batch
    /// (PyTorch `SyncBatchNorm`) instead of each rank's shard (`DataParallel`, the paper's
    /// 4-GPU runs; the default). No effect on one process.
    #[serde(default)]
    pub sync_batch_norm: bool,
}

fn default_norm() -> Norm {
    Norm::Linf
}
fn default_eps() -> f64 {
    0.031
}
fn default_step() -> f64 {
    0.0078
}
fn default_steps() -> usize {
    10
}
fn default_trades_beta() -> f64 {
    6.0
}
fn default_reg() -> f64 {
    10.0
}

impl TrainerConfig {
    /// The paper's settings for `kind` (ℓ∞, ε 0.031, step 0.0078, 10 steps, β_TRADES 6, the
    /// quirks on, L1 penalty 10).
    pub fn paper(kind: TrainerKind) -> Self {
        TrainerConfig {
            kind,
            norm: Norm::Linf,
            eps: default_eps(),
            step_size: default_step(),
            steps: default_steps(),
            trades_beta: default_trades_beta(),
            clean_pass_updates_bn: true,
            clip_start: false,
            official_l2: true,
            pssilu_reg: default_reg(),
            beta_grad_clip: None,
            sync_batch_norm: false,
        }
    }
    /// The β-gradient clip in effect.
    pub fn beta_grad_clip(&self) -> f64 {
        self.beta_grad_clip
            .unwrap_or_else(|| self.kind.default_beta_grad_clip())
    }
}

/// SGD and its schedule (docs/reproduction.md §3.1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimConfig {
    /// Epochs of the cosine schedule (200).
    pub epochs: usize,
    pub lr: f64,
    /// `eta_min` of the cosine schedule (0.001).
    pub lr_min: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    pub nesterov: bool,
    /// Official `--warmup`: this many extra epochs before the schedule, lr 0.005 → lr (0: off).
    pub warmup_epochs: usize,
    /// After the warm-up keep `CyclicLR`'s momentum 0.8, as the official code does.
    pub warmup_keeps_momentum: bool,
    /// Weight decay on α and β too (one parameter group, as the official code).
    pub weight_decay_on_activation: bool,
}

impl Default for OptimConfig {
    fn default() -> Self {
        OptimConfig {
            epochs: 200,
            lr: 0.1,
            lr_min: 0.001,
            momentum: 0.9,
            weight_decay: 5e-4,
            nesterov: true,
            warmup_epochs: 0,
            warmup_keeps_momentum: true,
            weight_decay_on_activation: true,
        }
    }
}

/// Which test metric chooses `best.safetensors` (docs/reproduction.md §3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Selection {
    /// Clean accuracy (the official choice for standard training).
    Clean,
    /// PGD accuracy (the official choice for PGD-AT and TRADES).
    Pgd,
}

/// The per-epoch evaluation on the test set (docs/reproduction.md §3.2).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalSettings {
    /// Evaluate every `every` epochs (and after the last).
    pub every: usize,
    /// The first `n` test images only; `None`: the whole test set (the official code).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n_examples: Option<usize>,
    pub batch_size: usize,
    /// Run PGD (the trainer's ε, step, norm; random start) each evaluation; `None`: for
    /// adversarial trainers only, as the official `--val-method`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pgd: Option<bool>,
    /// PGD steps (10).
    pub pgd_steps: usize,
    /// The metric of `best.safetensors`; `None`: PGD for adversarial trainers, clean otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub select: Option<Selection>,
}

impl Default for EvalSettings {
    fn default() -> Self {
        EvalSettings {
            every: 1,
            n_examples: None,
            batch_size: 256,
            pgd: None,
            pgd_steps: 10,
            select: None,
        }
    }
}

/// Checkpointing and logging of a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunSettings {
    /// Also write `last.safetensors` every this many steps within an epoch (0: at epoch ends
    /// only), so a killed run loses at most that many steps.
    pub checkpoint_every_steps: usize,
    /// Also write a `metrics.jsonl` line every this many steps (0: epoch lines only).
    pub log_every_steps: usize,
}

fn bad(field: &str, value: impl std::fmt::Display, reason: &str) -> TrainError {
    TrainError::Config {
        field: field.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

fn check_positive(field: &str, v: f64) -> Result<(), TrainError> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(bad(field, v, "must be finite and > 0"))
    }
}

fn check_non_negative(field: &str, v: f64) -> Result<(), TrainError> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(bad(field, v, "must be finite and >= 0"))
    }
}

impl TrainConfig {
    /// Reads and validates a TOML file.
    pub fn from_file(path: &Path) -> Result<Self, TrainError> {
        Self::from_file_with(path, &[])
    }

    /// Reads a TOML file, applies `--set key=value` overrides, validates.
    pub fn from_file_with(path: &Path, overrides: &[String]) -> Result<Self, TrainError> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        Self::from_toml_with(&text, &path.display().to_string(), overrides)
    }

    /// Parses and validates TOML text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, TrainError> {
        Self::from_toml_with(text, origin, &[])
    }

    /// Parses TOML text, applies `overrides` (`key.path=value`, the value as TOML or, failing
    /// that, as a string), validates.
    pub fn from_toml_with(
        text: &str,
        origin: &str,
        overrides: &[String],
    ) -> Result<Self, TrainError> {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| TrainError::Parse {
            origin: origin.to_string(),
            message: one_line(e.message()),
        })?;
        for o in overrides {
            apply_override(&mut table, o)?;
        }
        let cfg: TrainConfig = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| {
                let path = e.path().to_string();
                TrainError::Parse {
                    origin: origin.to_string(),
                    message: if path == "." || path.is_empty() {
                        one_line(&e.inner().to_string())
                    } else {
                        format!("{path}: {}", one_line(&e.inner().to_string()))
                    },
                }
            })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// A preset by name ([`presets`]) with `overrides` applied, validated.
    pub fn preset(name: &str, overrides: &[String]) -> Result<Self, TrainError> {
        let text = preset_text(name).ok_or_else(|| TrainError::UnknownPreset {
            name: name.to_string(),
            known: PRESETS
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", "),
        })?;
        Self::from_toml_with(text, &format!("preset {name}"), overrides)
    }

    /// The resolved configuration as TOML (what a run directory's `config.toml` holds).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a TrainConfig always serialises")
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), TrainError> {
        if self.name.trim().is_empty() {
            return Err(bad("name", "\"\"", "must not be empty"));
        }
        if self
            .name
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control())
        {
            return Err(bad(
                "name",
                &self.name,
                "is used as a directory name: no slashes",
            ));
        }
        self.validate_model()?;
        let d = &self.data;
        if d.batch_size == 0 {
            return Err(bad("data.batch_size", 0, "must be at least 1"));
        }
        if d.train_subset == Some(0) {
            return Err(bad(
                "data.train_subset",
                0,
                "must be at least 1 (or absent)",
            ));
        }
        if let Some(s) = &d.synthetic {
            if s.per_batch == 0 {
                return Err(bad("data.synthetic.per_batch", 0, "must be at least 1"));
            }
            if s.path.as_os_str().is_empty() {
                return Err(bad(
                    "data.synthetic.path",
                    "\"\"",
                    "must name a file or folder",
                ));
            }
        }
        let t = &self.trainer;
        check_non_negative("trainer.eps", t.eps)?;
        check_non_negative("trainer.step_size", t.step_size)?;
        check_non_negative("trainer.trades_beta", t.trades_beta)?;
        check_non_negative("trainer.pssilu_reg", t.pssilu_reg)?;
        if t.kind.is_adversarial() && t.steps == 0 {
            return Err(bad(
                "trainer.steps",
                0,
                "an adversarial trainer needs at least 1 step",
            ));
        }
        if let Some(c) = t.beta_grad_clip {
            check_positive("trainer.beta_grad_clip", c)?;
        }
        let o = &self.optim;
        if o.epochs == 0 {
            return Err(bad("optim.epochs", 0, "must be at least 1"));
        }
        check_positive("optim.lr", o.lr)?;
        check_non_negative("optim.lr_min", o.lr_min)?;
        if o.lr_min > o.lr {
            return Err(bad("optim.lr_min", o.lr_min, "must not exceed optim.lr"));
        }
        if !(o.momentum.is_finite() && (0.0..1.0).contains(&o.momentum)) {
            return Err(bad("optim.momentum", o.momentum, "must be in [0, 1)"));
        }
        check_non_negative("optim.weight_decay", o.weight_decay)?;
        if o.nesterov && o.momentum == 0.0 {
            return Err(bad(
                "optim.momentum",
                0,
                "Nesterov momentum needs momentum > 0",
            ));
        }
        let e = &self.eval;
        if e.every == 0 {
            return Err(bad("eval.every", 0, "must be at least 1"));
        }
        if e.batch_size == 0 {
            return Err(bad("eval.batch_size", 0, "must be at least 1"));
        }
        if e.n_examples == Some(0) {
            return Err(bad("eval.n_examples", 0, "must be at least 1 (or absent)"));
        }
        if self.eval_pgd() && e.pgd_steps == 0 {
            return Err(bad("eval.pgd_steps", 0, "PGD needs at least 1 step"));
        }
        if e.select == Some(Selection::Pgd) && !self.eval_pgd() {
            return Err(bad("eval.select", "\"pgd\"", "needs eval.pgd = true"));
        }
        Ok(())
    }

    fn validate_model(&self) -> Result<(), TrainError> {
        let m = &self.model;
        let kind = m.activation;
        let names = kind.param_names();
        if let Some(a) = m.fix_alpha {
            if !names.contains(&"alpha") {
                return Err(bad(
                    "model.fix_alpha",
                    a,
                    &format!("{} has no parameter α", kind.name()),
                ));
            }
            if !a.is_finite() {
                return Err(bad("model.fix_alpha", a, "must be finite"));
            }
            if kind == ActivationKind::Psoftplus && a == 0.0 {
                return Err(bad("model.fix_alpha", a, "PSoftplus needs α ≠ 0"));
            }
        }
        if let Some(b) = m.fix_beta {
            if !names.contains(&"beta") {
                return Err(bad(
                    "model.fix_beta",
                    b,
                    &format!("{} has no learnable β", kind.name()),
                ));
            }
            if !(b.is_finite() && b.abs() < 1.0) {
                return Err(bad("model.fix_beta", b, "PSSiLU needs |β| < 1"));
            }
        }
        if let Some(b) = m.pssilu_beta {
            if kind != ActivationKind::PssiluFixed {
                return Err(bad(
                    "model.pssilu_beta",
                    b,
                    "only fixed-β PSSiLU (activation = \"pssilu\") has this hyperparameter",
                ));
            }
            if !(b.is_finite() && (0.0..1.0).contains(&b)) {
                return Err(bad("model.pssilu_beta", b, "must be in [0, 1)"));
            }
        }
        if self.data.dataset.classes() == 100 && !matches!(m.arch, Arch::ResNet18 | Arch::Wrn28x10)
        {
            return Err(bad(
                "model.arch",
                m.arch,
                "100 classes are built for resnet18 and wrn-28-10 only",
            ));
        }
        Ok(())
    }

    /// Whether each evaluation runs PGD.
    pub fn eval_pgd(&self) -> bool {
        self.eval.pgd.unwrap_or(self.trainer.kind.is_adversarial())
    }

    /// The metric that chooses `best.safetensors`.
    pub fn selection(&self) -> Selection {
        self.eval
            .select
            .unwrap_or(if self.eval_pgd() && self.trainer.kind.is_adversarial() {
                Selection::Pgd
            } else {
                Selection::Clean
            })
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Applies one `key.path=value` override to a TOML table.
pub fn apply_override(table: &mut toml::Table, o: &str) -> Result<(), TrainError> {
    let Some((key, raw)) = o.split_once('=') else {
        return Err(TrainError::Override {
            text: o.to_string(),
            reason: "expected key=value, e.g. optim.epochs=10".to_string(),
        });
    };
    let key = key.trim();
    let raw = raw.trim();
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(TrainError::Override {
            text: o.to_string(),
            reason: "empty key".to_string(),
        });
    }
    let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let mut t = table;
    for p in &parts[..parts.len() - 1] {
        let entry = t
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        t = match entry {
            toml::Value::Table(t) => t,
            _ => {
                return Err(TrainError::Override {
                    text: o.to_string(),
                    reason: format!("`{p}` is not a table"),
                })
            }
        };
    }
    t.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}

/// The presets: `(name, TOML)` for every experiment of docs/reproduction.md §3.7 and the quick
/// ones.
pub const PRESETS: &[(&str, &str)] = &[
    (
        "cifar10-linf-resnet18",
        include_str!("../../configs/presets/cifar10-linf-resnet18.toml"),
    ),
    (
        "cifar10-linf-resnet18-ddpm",
        include_str!("../../configs/presets/cifar10-linf-resnet18-ddpm.toml"),
    ),
    (
        "cifar10-linf-wrn-28-10",
        include_str!("../../configs/presets/cifar10-linf-wrn-28-10.toml"),
    ),
    (
        "cifar10-linf-wrn-28-10-ddpm",
        include_str!("../../configs/presets/cifar10-linf-wrn-28-10-ddpm.toml"),
    ),
    (
        "cifar10-linf-resnet18-trades",
        include_str!("../../configs/presets/cifar10-linf-resnet18-trades.toml"),
    ),
    (
        "cifar10-l2-resnet18",
        include_str!("../../configs/presets/cifar10-l2-resnet18.toml"),
    ),
    (
        "cifar100-linf-wrn-28-10",
        include_str!("../../configs/presets/cifar100-linf-wrn-28-10.toml"),
    ),
    (
        "cifar10-standard-resnet18",
        include_str!("../../configs/presets/cifar10-standard-resnet18.toml"),
    ),
    (
        "imagenette-linf-resnet18",
        include_str!("../../configs/presets/imagenette-linf-resnet18.toml"),
    ),
    (
        "quick-pgd-at",
        include_str!("../../configs/presets/quick-pgd-at.toml"),
    ),
    (
        "quick-standard",
        include_str!("../../configs/presets/quick-standard.toml"),
    ),
    (
        "quick-trades",
        include_str!("../../configs/presets/quick-trades.toml"),
    ),
];

/// The TOML of a preset.
pub fn preset_text(name: &str) -> Option<&'static str> {
    PRESETS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// The TOML of a preset, or the error that lists the presets.
pub fn preset_or_error(name: &str) -> Result<&'static str, TrainError> {
    preset_text(name).ok_or_else(|| TrainError::UnknownPreset {
        name: name.to_string(),
        known: PRESETS
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// Every preset, parsed (name, configuration).
pub fn presets() -> Vec<(&'static str, TrainConfig)> {
    PRESETS
        .iter()
        .map(|(n, _)| {
            (
                *n,
                TrainConfig::preset(n, &[]).expect("the committed presets are valid"),
            )
        })
        .collect()
}

/// Where a run's dataset lives when `data.dir` is not given.
pub fn default_data_dir() -> PathBuf {
    PathBuf::from("data")
}
