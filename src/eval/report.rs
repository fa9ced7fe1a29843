//! [`evaluate`]: one call that measures what the paper reports for a model on a test set
//! (docs/reproduction.md §4) — clean accuracy, PGD robust accuracy, AutoAttack robust accuracy per
//! attack and final — with ε written exactly as given ("0.031" vs "8/255"), the number of examples,
//! the seed and the time, as a serde [`EvalReport`], plus a RobustBench-style `model_info` record
//! ([`EvalReport::model_info`]).

use std::path::Path;
use std::time::Instant;

use dfdx::shapes::ConstDim;

use super::autoattack::{run_autoattack, AaVersion, AttackTiming, AutoAttackConfig};
use crate::attacks::pgd::{pgd, PgdConfig};
use crate::attacks::{classified_correctly, host_images, in_eval_mode, AttackModel, Norm};
use crate::data::ImageSet;
use crate::ops::Backend;
use crate::progress::Progress;
use crate::Error;

/// A perturbation budget written as the paper or RobustBench writes it.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Epsilon {
    /// A decimal (the paper's code: 0.031).
    Decimal(f64),
    /// A fraction `num / den` (RobustBench: 8/255).
    Fraction(u32, u32),
}

impl Epsilon {
    /// The paper's ℓ∞ budget, 0.031 (docs/reproduction.md §4).
    pub const PAPER_LINF: Epsilon = Epsilon::Decimal(0.031);
    /// RobustBench's ℓ∞ budget, 8/255.
    pub const ROBUSTBENCH_LINF: Epsilon = Epsilon::Fraction(8, 255);
    /// The value.
    pub fn value(&self) -> f64 {
        match *self {
            Epsilon::Decimal(v) => v,
            Epsilon::Fraction(n, d) => n as f64 / d as f64,
        }
    }
    /// As written: "0.031" or "8/255".
    pub fn text(&self) -> String {
        match *self {
            Epsilon::Decimal(v) => format!("{v}"),
            Epsilon::Fraction(n, d) => format!("{n}/{d}"),
        }
    }
}

/// What [`evaluate`] runs.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EvalConfig {
    pub norm: Norm,
    pub eps: Epsilon,
    /// PGD to run (its ε and norm are replaced by the ones above); `None`: no PGD.
    pub pgd: Option<PgdConfig>,
    /// AutoAttack version to run; `None`: no AutoAttack.
    pub autoattack: Option<AaVersion>,
    /// Evaluate the first `n` test images only (`None`: all).
    pub n_examples: Option<usize>,
    pub batch_size: usize,
    pub seed: u64,
    /// AutoAttack's state file: saved after every attack; an interrupted evaluation run again
    /// with the same file continues after the last attack it finished ([`run_autoattack`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoattack_state: Option<std::path::PathBuf>,
}

impl EvalConfig {
    /// The paper's evaluation: PGD-10 and standard AutoAttack at ε = 0.031 (ℓ∞).
    pub fn paper() -> Self {
        EvalConfig {
            norm: Norm::Linf,
            eps: Epsilon::PAPER_LINF,
            pgd: Some(PgdConfig::paper()),
            autoattack: Some(AaVersion::Standard),
            n_examples: None,
            batch_size: 128,
            seed: 0,
            autoattack_state: None,
        }
    }
    /// RobustBench's protocol: standard AutoAttack at exactly 8/255, no PGD.
    pub fn robustbench() -> Self {
        EvalConfig {
            eps: Epsilon::ROBUSTBENCH_LINF,
            pgd: None,
            ..Self::paper()
        }
    }
}

/// The result of [`evaluate`] (serde: JSON).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EvalReport {
    pub model: String,
    pub dataset: String,
    pub n_examples: usize,
    pub norm: Norm,
    pub eps: f64,
    /// ε as written ("0.031", "8/255").
    pub eps_text: String,
    pub clean_accuracy: f64,
    pub pgd_accuracy: Option<f64>,
    /// The PGD settings used.
    pub pgd: Option<PgdConfig>,
    pub autoattack_version: Option<AaVersion>,
    /// Robust accuracy after each AutoAttack attack.
    pub autoattack_per_attack: Vec<(String, f64)>,
    /// Wall and CPU time of each AutoAttack attack run in this call or resumed from its state
    /// (empty in reports written before it was kept).
    #[serde(default)]
    pub autoattack_timings: Vec<AttackTiming>,
    pub autoattack_accuracy: Option<f64>,
    pub seed: u64,
    pub seconds: f64,
}

impl EvalReport {
    /// A record shaped like RobustBench's `model_info/<dataset>/<threat>/<name>.json`
    /// (accuracies in percent, as strings with two decimals, as RobustBench writes them).
    pub fn model_info(&self, name: &str, additional_data: bool) -> serde_json::Value {
        let pct = |v: f64| format!("{:.2}", 100.0 * v);
        serde_json::json!({
            "link": "https://arxiv.org/abs/2110.05626",
            "name": "Parameterizing Activation Functions for Adversarial Robustness",
            "authors": "Sihui Dai, Saeed Mahloujifar, Prateek Mittal",
            "additional_data": additional_data,
            "number_forward_passes": 1,
            "dataset": self.dataset,
            "venue": "arXiv, Oct 2021",
            "architecture": self.model,
            "eps": self.eps_text,
            "clean_acc": pct(self.clean_accuracy),
            "reported": null,
            "autoattack_acc": self.autoattack_accuracy.map(pct),
            "footnote": format!(
                "robust-paf {}: {} of {} test images, {}{}",
                name,
                self.n_examples,
                self.dataset,
                match self.autoattack_version {
                    Some(AaVersion::Standard) => "AutoAttack standard",
                    Some(AaVersion::Fast) => "NON-STANDARD AutoAttack (APGD-CE + APGD-T only)",
                    None => "no AutoAttack",
                },
                if self.n_examples < 10_000 { " (a subset)" } else { "" }
            ),
        })
    }

    /// Writes the report as pretty JSON, atomically (temp + rename).
    pub fn save(&self, path: &Path) -> Result<(), Error> {
        let json = serde_json::to_vec_pretty(self).map_err(|e| Error::Io(format!("{e}")))?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, json).map_err(|e| Error::Io(format!("{}: {e}", tmp.display())))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))
    }
}

/// Evaluates `model` on `data` (its images as `[0, 1]` floats, no normalisation) as `cfg` asks,
/// reporting progress; see the module docs. `architecture` names the model in the report.
///
/// ```
/// use dfdx::prelude::*;
/// use robust_paf::activations::Relu;
/// use robust_paf::data::FashionMnist;
/// use robust_paf::eval::{evaluate, AaVersion, EvalConfig};
/// use robust_paf::models::SmallCnn;
/// use robust_paf::progress::Silent;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let test = FashionMnist::embedded()?.test;
/// let dev = Cpu::seed_from_u64(0);
/// let mut model = SmallCnn::<Relu<Cpu>, Cpu>::new(&dev);
/// // PGD-10 and the fast (non-standard) AutoAttack on the first 16 images;
/// // `EvalConfig::paper()` is PGD-10 + AutoAttack standard at ε 0.031 on every image
/// let cfg = EvalConfig { autoattack: Some(AaVersion::Fast), n_examples: Some(16), ..EvalConfig::paper() };
/// let report = evaluate(&mut model, &dev, "SmallCNN-ReLU", &test, &cfg, &mut Silent)?;
/// assert_eq!(report.n_examples, 16);
/// assert!(report.autoattack_accuracy.unwrap() <= report.clean_accuracy);
/// let json = serde_json::to_string(&report)?; // also `report.save(path)`
/// assert!(json.contains("autoattack_timings"));
/// # Ok(())
/// # }
/// ```
pub fn evaluate<M: AttackModel<D>, D: Backend>(
    model: &mut M,
    dev: &D,
    architecture: &str,
    data: &ImageSet,
    cfg: &EvalConfig,
    progress: &mut dyn Progress,
) -> Result<EvalReport, Error> {
    if cfg.batch_size == 0 {
        return Err(Error::InvalidParameter {
            name: "batch_size",
            value: 0.0,
            reason: "must be at least 1",
        });
    }
    let input = crate::data::ImageShape::new(M::Height::SIZE, M::Width::SIZE, M::Channels::SIZE);
    let f = input.bytes();
    if input != data.shape() {
        return Err(Error::InvalidParameter {
            name: "model input",
            value: f as f64,
            reason: "is not the shape of the data set's images",
        });
    }
    if data.classes > M::Classes::SIZE {
        return Err(Error::InvalidParameter {
            name: "classes",
            value: data.classes as f64,
            reason: "the data set has more classes than the model",
        });
    }
    let started = Instant::now();
    let n = cfg.n_examples.unwrap_or(data.len()).min(data.len());
    let images: Vec<f32> = data.pixels()[..n * f]
        .iter()
        .map(|&v| v as f32 / 255.0)
        .collect();
    let labels: Vec<usize> = data.labels()[..n].iter().map(|&l| l as usize).collect();
    let eps = cfg.eps.value();
    // clean accuracy
    progress.start("clean", n.div_ceil(cfg.batch_size) as u64);
    let mut correct = 0usize;
    for (c, y) in labels.chunks(cfg.batch_size).enumerate() {
        let s = c * cfg.batch_size;
        let x = &images[s * f..(s + y.len()) * f];
        let ok = in_eval_mode(model, |m| classified_correctly(m, dev, x, y))?;
        correct += ok.iter().filter(|c| **c).count();
        progress.advance(1);
    }
    progress.finish();
    let clean = correct as f64 / n.max(1) as f64;
    progress.message(&format!("clean accuracy: {:.2}%", 100.0 * clean));
    // PGD
    let pgd_cfg = cfg.pgd.clone().map(|mut p| {
        p.norm = cfg.norm;
        p.eps = eps;
        p.seed = cfg.seed;
        p
    });
    let pgd_accuracy = match &pgd_cfg {
        Some(p) => {
            progress.start("PGD", n.div_ceil(cfg.batch_size) as u64);
            let mut robust = 0usize;
            for (c, y) in labels.chunks(cfg.batch_size).enumerate() {
                let s = c * cfg.batch_size;
                let x =
                    host_images::<M, D>(dev, images[s * f..(s + y.len()) * f].to_vec(), y.len());
                let adv = pgd(model, &x, y, p)?.as_vec();
                let ok = in_eval_mode(model, |m| classified_correctly(m, dev, &adv, y))?;
                robust += ok.iter().filter(|c| **c).count();
                progress.advance(1);
            }
            progress.finish();
            let acc = robust as f64 / n.max(1) as f64;
            progress.message(&format!(
                "PGD-{} robust accuracy: {:.2}%",
                p.steps,
                100.0 * acc
            ));
            Some(acc)
        }
        None => None,
    };
    // AutoAttack
    let (per_attack, timings, aa) = match cfg.autoattack {
        Some(version) => {
            let aa_cfg = AutoAttackConfig {
                norm: cfg.norm,
                eps,
                version,
                batch_size: cfg.batch_size,
                seed: cfg.seed,
            };
            let state = cfg.autoattack_state.as_deref();
            let r = run_autoattack(model, dev, &images, &labels, &aa_cfg, state, progress)?;
            let s = r.state;
            (s.robust_accuracy_after, s.timings, Some(r.robust_accuracy))
        }
        None => (Vec::new(), Vec::new(), None),
    };
    Ok(EvalReport {
        model: architecture.to_string(),
        dataset: data.name.clone(),
        n_examples: n,
        norm: cfg.norm,
        eps,
        eps_text: cfg.eps.text(),
        clean_accuracy: clean,
        pgd_accuracy,
        pgd: pgd_cfg,
        autoattack_version: cfg.autoattack,
        autoattack_per_attack: per_attack,
        autoattack_timings: timings,
        autoattack_accuracy: aa,
        seed: cfg.seed,
        seconds: started.elapsed().as_secs_f64(),
    })
}
