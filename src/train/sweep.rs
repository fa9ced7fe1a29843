//! Parameter sweeps (the shape ablation of docs/reproduction.md §6 steps 3–5 and 8): a grid of
//! activation × fixed α × fixed β × seed × trainer over a base configuration, expanded into runs in
//! a fixed order, split into deterministic shards (`--shard I/N`, or Slurm's
//! `SLURM_ARRAY_TASK_ID` / `SLURM_ARRAY_TASK_COUNT`), each run in its own directory
//! `OUT/<sweep>/<run id>`; and the table of finished runs (`robust-paf collect`, CSV and
//! Markdown).
//!
//! A sweep file:
//!
//! ```toml
//! name = "shape-prelu"
//! base = "cifar10-standard-resnet18"   # a preset, or a TOML file (relative to this file)
//! set = ["optim.epochs=50"]             # overrides for every run
//! activations = ["prelu", "pelu"]
//! fix_alpha = [-0.5, 0.0, 0.5]          # empty or absent: α not frozen
//! seeds = [1, 2]
//! trainers = ["standard", "pgd-at"]
//! ```
//!
//! Axes left empty keep the base's value. A fixed α (β) is applied only to activations that
//! have an α (a learnable β); for the others the axis collapses to one run, so no run is
//! repeated. Each family of the shape ablation has its own meaningful range (a PReLU slope of
//! −0.25 … 0.25, a PSiLU sharpness of 0.5 … 8): `fix_alpha_for` / `fix_beta_for` give an
//! activation its own values, replacing `fix_alpha` / `fix_beta` for it:
//!
//! ```toml
//! activations = ["prelu", "psilu", "pssilu2"]
//! [fix_alpha_for]
//! prelu = [-0.25, 0.0, 0.25]
//! psilu = [0.5, 2.0, 8.0]
//! [fix_beta_for]
//! pssilu2 = [0.0, 0.2, 0.4]
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::config::{TrainConfig, TrainerKind};
use super::run::{read_summary, RunSummary};
use super::TrainError;
use crate::activations::ActivationKind;

/// A sweep file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepConfig {
    /// The sweep's name: its runs go to `OUT/<name>/`.
    pub name: String,
    /// A preset name or a TOML configuration file (relative to the sweep file).
    pub base: String,
    /// `key=value` overrides applied to the base for every run.
    #[serde(default)]
    pub set: Vec<String>,
    #[serde(default)]
    pub activations: Vec<ActivationKind>,
    #[serde(default)]
    pub fix_alpha: Vec<f64>,
    #[serde(default)]
    pub fix_beta: Vec<f64>,
    /// Per-activation fixed α values (by code name), replacing `fix_alpha` for that activation.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fix_alpha_for: BTreeMap<String, Vec<f64>>,
    /// Per-activation fixed β values (by code name), replacing `fix_beta` for that activation.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fix_beta_for: BTreeMap<String, Vec<f64>>,
    #[serde(default)]
    pub seeds: Vec<u64>,
    #[serde(default)]
    pub trainers: Vec<TrainerKind>,
}

/// One run of a sweep.
#[derive(Clone, Debug, PartialEq)]
pub struct SweepRun {
    /// Position in the expanded grid (0-based).
    pub index: usize,
    /// Directory name, e.g. `prelu_alpha-0.5_standard_seed1`.
    pub id: String,
    pub config: TrainConfig,
}

impl SweepConfig {
    /// Reads a sweep file.
    pub fn from_file(path: &Path) -> Result<Self, TrainError> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// Parses a sweep from TOML text (`origin` names it in errors: a file, a notebook cell).
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, TrainError> {
        let de = toml::Deserializer::new(text);
        let s: SweepConfig =
            serde_path_to_error::deserialize(de).map_err(|e| TrainError::Parse {
                origin: origin.to_string(),
                message: format!(
                    "{}: {}",
                    e.path(),
                    e.inner()
                        .message()
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
            })?;
        if s.name.trim().is_empty() || s.name.contains(['/', '\\']) {
            return Err(TrainError::Config {
                field: "name".into(),
                value: format!("{:?}", s.name),
                reason: "must be a non-empty directory name".into(),
            });
        }
        for (field, map) in [
            ("fix_alpha_for", &s.fix_alpha_for),
            ("fix_beta_for", &s.fix_beta_for),
        ] {
            for name in map.keys() {
                let Some(kind) = ActivationKind::from_code_name(name) else {
                    return Err(TrainError::Config {
                        field: format!("{field}.{name}"),
                        value: name.clone(),
                        reason: "not an activation code name (relu, prelu, psilu, pssilu2, ...)"
                            .into(),
                    });
                };
                let wanted = if field == "fix_alpha_for" {
                    "alpha"
                } else {
                    "beta"
                };
                if !kind.param_names().contains(&wanted) {
                    return Err(TrainError::Config {
                        field: format!("{field}.{name}"),
                        value: name.clone(),
                        reason: format!("{} has no parameter {wanted}", kind.name()),
                    });
                }
                if !s.activations.is_empty() && !s.activations.contains(&kind) {
                    return Err(TrainError::Config {
                        field: format!("{field}.{name}"),
                        value: name.clone(),
                        reason: "is not one of the sweep's activations".into(),
                    });
                }
            }
        }
        Ok(s)
    }

    /// The base configuration with the sweep's overrides.
    fn base_config(&self, sweep_dir: &Path, extra: &[String]) -> Result<TrainConfig, TrainError> {
        let mut set = self.set.clone();
        set.extend_from_slice(extra);
        if super::config::preset_text(&self.base).is_some() {
            TrainConfig::preset(&self.base, &set)
        } else {
            let p = sweep_dir.join(&self.base);
            if !p.is_file() {
                return Err(TrainError::Config {
                    field: "base".into(),
                    value: self.base.clone(),
                    reason: "neither a preset nor a configuration file".into(),
                });
            }
            TrainConfig::from_file_with(&p, &set)
        }
    }

    /// Every run of the grid, in a fixed order (activation, α, β, trainer, seed); `extra`
    /// overrides are applied after the sweep's own. Each run is validated.
    pub fn expand(&self, sweep_dir: &Path, extra: &[String]) -> Result<Vec<SweepRun>, TrainError> {
        let base = self.base_config(sweep_dir, extra)?;
        let or_base = |v: &[ActivationKind]| {
            if v.is_empty() {
                vec![base.model.activation]
            } else {
                v.to_vec()
            }
        };
        let opt_axis = |v: &[f64]| -> Vec<Option<f64>> {
            if v.is_empty() {
                vec![None]
            } else {
                v.iter().map(|x| Some(*x)).collect()
            }
        };
        let trainers = if self.trainers.is_empty() {
            vec![base.trainer.kind]
        } else {
            self.trainers.clone()
        };
        let seeds = if self.seeds.is_empty() {
            vec![base.seed]
        } else {
            self.seeds.clone()
        };
        let mut runs = Vec::new();
        for act in or_base(&self.activations) {
            let names = act.param_names();
            let code = act.code_name();
            let alphas = if names.contains(&"alpha") {
                opt_axis(self.fix_alpha_for.get(code).unwrap_or(&self.fix_alpha))
            } else {
                vec![None]
            };
            let betas = if names.contains(&"beta") {
                opt_axis(self.fix_beta_for.get(code).unwrap_or(&self.fix_beta))
            } else {
                vec![None]
            };
            for &a in &alphas {
                for &b in &betas {
                    for &t in &trainers {
                        for &seed in &seeds {
                            let mut cfg = base.clone();
                            cfg.model.activation = act;
                            if act != base.model.activation {
                                // settings of the base's activation do not carry over
                                cfg.model.fix_alpha = None;
                                cfg.model.fix_beta = None;
                                if act != ActivationKind::PssiluFixed {
                                    cfg.model.pssilu_beta = None;
                                }
                            }
                            if a.is_some() || !names.contains(&"alpha") {
                                cfg.model.fix_alpha = a;
                            }
                            if b.is_some() || !names.contains(&"beta") {
                                cfg.model.fix_beta = b;
                            }
                            if t != base.trainer.kind {
                                cfg.trainer.kind = t;
                                cfg.trainer.beta_grad_clip = None;
                            }
                            cfg.seed = seed;
                            let mut id = act.code_name().to_string();
                            if let Some(a) = cfg.model.fix_alpha {
                                id.push_str(&format!("_alpha{a}"));
                            }
                            if let Some(b) = cfg.model.fix_beta {
                                id.push_str(&format!("_beta{b}"));
                            }
                            id.push_str(&format!("_{}_seed{seed}", t.name()));
                            cfg.name = format!("{}-{id}", self.name);
                            cfg.validate()?;
                            runs.push(SweepRun {
                                index: runs.len(),
                                id,
                                config: cfg,
                            });
                        }
                    }
                }
            }
        }
        Ok(runs)
    }
}

/// One share of a sweep: the runs whose index is `index` modulo `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// All runs.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Parses `I/N` (0 ≤ I < N).
    pub fn parse(s: &str) -> Result<Self, TrainError> {
        let bad = |reason: &str| TrainError::Config {
            field: "--shard".into(),
            value: s.to_string(),
            reason: reason.to_string(),
        };
        let (i, n) = s
            .split_once('/')
            .ok_or_else(|| bad("expected I/N, e.g. 0/4"))?;
        let index: usize = i.trim().parse().map_err(|_| bad("I is not a number"))?;
        let count: usize = n.trim().parse().map_err(|_| bad("N is not a number"))?;
        if count == 0 || index >= count {
            return Err(bad("needs 0 <= I < N"));
        }
        Ok(Shard { index, count })
    }

    /// The shard of a Slurm array task: `SLURM_ARRAY_TASK_ID − SLURM_ARRAY_TASK_MIN` of
    /// `SLURM_ARRAY_TASK_COUNT`; `None` outside an array job.
    pub fn from_slurm_env() -> Result<Option<Self>, TrainError> {
        let var = |k: &str| std::env::var(k).ok();
        let (Some(id), Some(count)) = (var("SLURM_ARRAY_TASK_ID"), var("SLURM_ARRAY_TASK_COUNT"))
        else {
            return Ok(None);
        };
        let min = var("SLURM_ARRAY_TASK_MIN").unwrap_or_else(|| "0".into());
        let num = |k: &str, v: &str| -> Result<usize, TrainError> {
            v.trim().parse().map_err(|_| TrainError::Config {
                field: k.to_string(),
                value: v.to_string(),
                reason: "not a number".into(),
            })
        };
        let (id, count, min) = (
            num("SLURM_ARRAY_TASK_ID", &id)?,
            num("SLURM_ARRAY_TASK_COUNT", &count)?,
            num("SLURM_ARRAY_TASK_MIN", &min)?,
        );
        let index = id.checked_sub(min).ok_or_else(|| TrainError::Config {
            field: "SLURM_ARRAY_TASK_ID".into(),
            value: id.to_string(),
            reason: "below SLURM_ARRAY_TASK_MIN".into(),
        })?;
        Self::parse(&format!("{index}/{count}")).map(Some)
    }

    /// Whether run `index` belongs to this shard.
    pub fn contains(&self, index: usize) -> bool {
        index % self.count == self.index
    }
}

/// A finished run found by [`collect`].
#[derive(Clone, Debug, PartialEq)]
pub struct Collected {
    pub dir: PathBuf,
    pub summary: RunSummary,
}

/// Every finished run (`summary.json`) under `dir`, sorted by directory.
pub fn collect(dir: &Path) -> Result<Vec<Collected>, TrainError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| TrainError::io(&d, e))?;
        for e in entries {
            let e = e.map_err(|e| TrainError::io(&d, e))?;
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                stack.push(e.path());
            }
        }
        if let Some(summary) = read_summary(&d)? {
            out.push(Collected {
                dir: d.clone(),
                summary,
            });
        }
    }
    out.sort_by(|a, b| a.dir.cmp(&b.dir));
    Ok(out)
}

const COLUMNS: [&str; 14] = [
    "run",
    "arch",
    "activation",
    "trainer",
    "seed",
    "fix_alpha",
    "fix_beta",
    "epochs",
    "best_epoch",
    "best_clean",
    "best_pgd",
    "final_clean",
    "final_pgd",
    "parameters",
];

fn row(c: &Collected, root: &Path) -> Vec<String> {
    let s = &c.summary;
    let opt = |v: Option<f64>| v.map(|v| format!("{v}")).unwrap_or_default();
    let acc = |v: Option<f64>| v.map(|v| format!("{:.2}", 100.0 * v)).unwrap_or_default();
    let params: Vec<String> = s
        .activation_parameters
        .iter()
        .map(|(k, v)| format!("{k}={v:.4}"))
        .collect();
    vec![
        c.dir
            .strip_prefix(root)
            .unwrap_or(&c.dir)
            .display()
            .to_string(),
        s.arch.clone(),
        s.activation.clone(),
        s.trainer.clone(),
        s.seed.to_string(),
        opt(s.fix_alpha),
        opt(s.fix_beta),
        s.epochs.to_string(),
        s.best_epoch
            .map(|e| (e + 1).to_string())
            .unwrap_or_default(),
        acc(s.best_clean_accuracy),
        acc(s.best_pgd_accuracy),
        acc(s.final_clean_accuracy),
        acc(s.final_pgd_accuracy),
        params.join(" "),
    ]
}

/// The runs as CSV (accuracies in percent; epochs 1-based).
pub fn to_csv(runs: &[Collected], root: &Path) -> String {
    let quote = |s: &str| {
        if s.contains([',', '"', '\n']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    };
    let mut out = COLUMNS.join(",");
    out.push('\n');
    for c in runs {
        let r: Vec<String> = row(c, root).iter().map(|v| quote(v)).collect();
        out.push_str(&r.join(","));
        out.push('\n');
    }
    out
}

/// The runs as a Markdown table (accuracies in percent; epochs 1-based).
pub fn to_markdown(runs: &[Collected], root: &Path) -> String {
    let mut out = format!("| {} |\n", COLUMNS.join(" | "));
    out.push_str(&format!("|{}\n", "---|".repeat(COLUMNS.len())));
    for c in runs {
        let r: Vec<String> = row(c, root).iter().map(|v| v.replace('|', "\\|")).collect();
        out.push_str(&format!("| {} |\n", r.join(" | ")));
    }
    out
}
