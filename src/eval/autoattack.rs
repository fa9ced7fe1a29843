//! AutoAttack's evaluation protocol (Croce & Hein 2020; `run_standard_evaluation`;
//! docs/reproduction.md §4): the attacks run one after the other, each only on the points every
//! earlier attack left robust; a point's robust flag only ever goes from robust to broken
//! (per-point worst case); the robust accuracy is reported after each attack; at the end every
//! adversarial example is checked to lie in the ε-ball and in `[0, 1]` and to be finite.
//!
//! - [`AaVersion::Standard`]: APGD-CE → APGD-T (9 targets) → FAB-T (9 targets) → Square (5,000
//!   queries), AutoAttack's `version='standard'` and what RobustBench reports.
//! - [`AaVersion::Fast`]: APGD-CE → APGD-T only — **not** the standard protocol (PAFAT's `auto2`),
//!   for notebooks; reports say so.
//!
//! Each attack's wall and CPU time and the number of points it attacked are logged and kept
//! ([`AttackTiming`]). With a state path, the state (configuration, clean accuracy, robust flags,
//! attacks done, the accuracy and timing after each) is written as JSON after every attack, and
//! the adversarial examples found so far beside it (`<state>.adv`, raw little-endian f32), both
//! atomically (temp + rename): an interrupted run resumes after its last finished attack and ends
//! with the same report.

use std::path::{Path, PathBuf};
use std::time::Instant;

use dfdx::shapes::ConstDim;

use crate::attacks::apgd::{apgd, ApgdConfig};
use crate::attacks::fab::{fab_targeted, FabConfig};
use crate::attacks::square::{square, SquareConfig};
use crate::attacks::{classified_correctly, host_images, in_eval_mode, AttackModel, Images, Norm};
use crate::ops::Backend;
use crate::progress::{process_cpu_seconds, Progress};
use crate::Error;

/// Which attacks run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum AaVersion {
    /// APGD-CE, APGD-T, FAB-T, Square: AutoAttack's standard version.
    Standard,
    /// APGD-CE, APGD-T: a fast, **non-standard** preset.
    Fast,
}

/// Settings of [`run_autoattack`].
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AutoAttackConfig {
    pub norm: Norm,
    pub eps: f64,
    pub version: AaVersion,
    /// Images per attack batch.
    pub batch_size: usize,
    pub seed: u64,
}

impl AutoAttackConfig {
    /// AutoAttack's standard version.
    pub fn standard(norm: Norm, eps: f64) -> Self {
        AutoAttackConfig {
            norm,
            eps,
            version: AaVersion::Standard,
            batch_size: 128,
            seed: 0,
        }
    }
    /// The fast, non-standard APGD-CE + APGD-T preset.
    pub fn fast(norm: Norm, eps: f64) -> Self {
        AutoAttackConfig {
            version: AaVersion::Fast,
            ..Self::standard(norm, eps)
        }
    }
    /// The attacks in order.
    pub fn attacks(&self) -> &'static [&'static str] {
        match self.version {
            AaVersion::Standard => &["apgd-ce", "apgd-t", "fab-t", "square"],
            AaVersion::Fast => &["apgd-ce", "apgd-t"],
        }
    }
    /// Errors on invalid settings.
    pub fn validate(&self) -> Result<(), Error> {
        crate::attacks::check_budget(self.eps, 0.0)?;
        if self.batch_size == 0 {
            return Err(Error::InvalidParameter {
                name: "batch_size",
                value: 0.0,
                reason: "must be at least 1",
            });
        }
        Ok(())
    }
}

/// The resumable state of a run (saved as JSON after every attack).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AutoAttackState {
    pub config: AutoAttackConfig,
    pub n_examples: usize,
    pub clean_accuracy: f64,
    /// Per image: not yet broken (false from the start for misclassified clean images).
    pub robust: Vec<bool>,
    pub attacks_done: Vec<String>,
    /// Robust accuracy after each attack done.
    pub robust_accuracy_after: Vec<(String, f64)>,
    /// How long each attack done took (empty in state files written before it was kept).
    #[serde(default)]
    pub timings: Vec<AttackTiming>,
}

/// The cost of one AutoAttack attack: wall and CPU time, and how many points it attacked (those
/// every earlier attack left robust).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AttackTiming {
    pub attack: String,
    pub seconds: f64,
    /// CPU seconds of the whole process meanwhile (every thread; `None` where the platform does
    /// not tell, see [`crate::progress::process_cpu_seconds`]).
    pub cpu_seconds: Option<f64>,
    /// Points attacked.
    pub points: usize,
}

/// What [`run_autoattack`] returns.
#[derive(Clone, Debug, PartialEq)]
pub struct AutoAttackReport {
    pub state: AutoAttackState,
    /// Final robust accuracy (after the last attack).
    pub robust_accuracy: f64,
    /// The adversarial images (the clean image where none was found), `n · H·W·C` values.
    pub adversarial: Vec<f32>,
    /// Largest perturbation norm found (ℓ∞ or ℓ2 per the threat model).
    pub max_perturbation: f64,
    /// Seconds spent in this call (attacks resumed from a state file are not counted).
    pub seconds: f64,
}

fn accuracy(robust: &[bool]) -> f64 {
    if robust.is_empty() {
        0.0
    } else {
        robust.iter().filter(|r| **r).count() as f64 / robust.len() as f64
    }
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Io(format!("{}: {e}", path.display()))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let tmp = path.with_extension(format!(
        "{}.tmp",
        path.extension().and_then(|e| e.to_str()).unwrap_or("")
    ));
    std::fs::write(&tmp, bytes).map_err(|e| io_err(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_err(path, e))
}

fn adv_path(state: &Path) -> PathBuf {
    let mut p = state.as_os_str().to_owned();
    p.push(".adv");
    PathBuf::from(p)
}

fn save(state_path: &Path, state: &AutoAttackState, adv: &[f32]) -> Result<(), Error> {
    let bytes: Vec<u8> = adv.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_atomic(&adv_path(state_path), &bytes)?;
    let json = serde_json::to_vec_pretty(state).map_err(|e| io_err(state_path, e))?;
    write_atomic(state_path, &json)
}

fn load(state_path: &Path, n_values: usize) -> Result<Option<(AutoAttackState, Vec<f32>)>, Error> {
    if !state_path.exists() {
        return Ok(None);
    }
    let json = std::fs::read(state_path).map_err(|e| io_err(state_path, e))?;
    let state: AutoAttackState =
        serde_json::from_slice(&json).map_err(|e| io_err(state_path, format!("bad state: {e}")))?;
    let ap = adv_path(state_path);
    let bytes = std::fs::read(&ap).map_err(|e| io_err(&ap, e))?;
    if bytes.len() != n_values * 4 {
        return Err(io_err(
            &ap,
            format!("{} bytes, expected {}", bytes.len(), n_values * 4),
        ));
    }
    let adv = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok(Some((state, adv)))
}

/// Runs one attack on `x` (a batch of still-robust images).
fn attack<M: AttackModel<D>, D: Backend>(
    name: &str,
    model: &mut M,
    x: &Images<M, D>,
    labels: &[usize],
    cfg: &AutoAttackConfig,
) -> Result<(Images<M, D>, Vec<bool>), Error> {
    match name {
        "apgd-ce" => {
            let mut c = ApgdConfig::ce(cfg.norm, cfg.eps);
            c.seed = cfg.seed;
            apgd(model, x, labels, &c)
        }
        "apgd-t" => {
            let mut c = ApgdConfig::targeted(cfg.norm, cfg.eps);
            c.seed = cfg.seed;
            c.n_target_classes = c.n_target_classes.min(M::Classes::SIZE.saturating_sub(1));
            apgd(model, x, labels, &c)
        }
        "fab-t" => fab_t(model, x, labels, cfg),
        "square" => {
            let mut c = SquareConfig::autoattack(cfg.eps);
            c.norm = cfg.norm;
            c.seed = cfg.seed;
            square(model, x, labels, &c)
        }
        _ => Err(Error::InvalidParameter {
            name: "attack",
            value: f64::NAN,
            reason: "unknown attack",
        }),
    }
}

fn fab_t<M: AttackModel<D>, D: Backend>(
    model: &mut M,
    x: &Images<M, D>,
    labels: &[usize],
    cfg: &AutoAttackConfig,
) -> Result<(Images<M, D>, Vec<bool>), Error> {
    let mut c = FabConfig::targeted(cfg.norm, cfg.eps);
    c.seed = cfg.seed;
    fab_targeted(model, x, labels, &c)
}

/// Runs AutoAttack on `images` (`n · H·W·C` host values in `[0, 1]`, NHWC) with true `labels`:
/// see the module docs. `state_path`: where to save (and resume) the state.
///
/// ```
/// use dfdx::prelude::*;
/// use robust_paf::activations::Relu;
/// use robust_paf::attacks::Norm;
/// use robust_paf::eval::{run_autoattack, AutoAttackConfig};
/// use robust_paf::models::SmallCnn;
/// use robust_paf::progress::Silent;
///
/// let dev = Cpu::seed_from_u64(0);
/// let mut model = SmallCnn::<Relu<Cpu>, Cpu>::new(&dev);
/// let images: Vec<f32> = (0..4 * 32 * 32 * 3).map(|i| (i % 97) as f32 / 97.0).collect();
/// let labels = [0, 1, 2, 3];
/// // `standard` is what RobustBench reports; `fast` (APGD-CE, APGD-T) keeps this example short
/// let cfg = AutoAttackConfig { batch_size: 4, ..AutoAttackConfig::fast(Norm::Linf, 8.0 / 255.0) };
/// let r = run_autoattack(&mut model, &dev, &images, &labels, &cfg, None, &mut Silent)?;
/// assert_eq!(r.state.attacks_done, ["apgd-ce", "apgd-t"]);
/// assert!(r.robust_accuracy <= r.state.clean_accuracy);
/// assert!(r.max_perturbation <= 8.0 / 255.0 + 1e-6);
/// # Ok::<(), robust_paf::Error>(())
/// ```
pub fn run_autoattack<M: AttackModel<D>, D: Backend>(
    model: &mut M,
    dev: &D,
    images: &[f32],
    labels: &[usize],
    cfg: &AutoAttackConfig,
    state_path: Option<&Path>,
    progress: &mut dyn Progress,
) -> Result<AutoAttackReport, Error> {
    cfg.validate()?;
    let f = M::Height::SIZE * M::Width::SIZE * M::Channels::SIZE;
    let n = labels.len();
    if images.len() != n * f {
        return Err(Error::InvalidParameter {
            name: "images",
            value: images.len() as f64,
            reason: "expected labels.len() · H·W·C values",
        });
    }
    if images
        .iter()
        .any(|v| !v.is_finite() || !(0.0..=1.0).contains(v))
    {
        return Err(Error::NonFinite {
            what: "input images (must be finite and in [0, 1])".into(),
        });
    }
    let started = Instant::now();
    let resumed = match state_path {
        Some(p) => load(p, images.len())?,
        None => None,
    };
    let (mut state, mut adv) = match resumed {
        Some((s, a)) => {
            if s.config != *cfg || s.n_examples != n {
                return Err(Error::InvalidParameter {
                    name: "state",
                    value: s.n_examples as f64,
                    reason: "the saved state belongs to another configuration or data set",
                });
            }
            progress.message(&format!(
                "resuming after {:?}: robust accuracy {:.2}%",
                s.attacks_done,
                100.0 * accuracy(&s.robust)
            ));
            (s, a)
        }
        None => {
            // clean accuracy, in batches
            progress.start("clean accuracy", n.div_ceil(cfg.batch_size) as u64);
            let mut robust = Vec::with_capacity(n);
            for (c, chunk) in labels.chunks(cfg.batch_size).enumerate() {
                let start = c * cfg.batch_size;
                let x = &images[start * f..(start + chunk.len()) * f];
                robust.extend(in_eval_mode(model, |m| {
                    classified_correctly(m, dev, x, chunk)
                })?);
                progress.advance(1);
            }
            progress.finish();
            let clean = accuracy(&robust);
            progress.message(&format!("clean accuracy: {:.2}%", 100.0 * clean));
            let s = AutoAttackState {
                config: cfg.clone(),
                n_examples: n,
                clean_accuracy: clean,
                robust,
                attacks_done: Vec::new(),
                robust_accuracy_after: Vec::new(),
                timings: Vec::new(),
            };
            let a = images.to_vec();
            if let Some(p) = state_path {
                save(p, &s, &a)?;
            }
            (s, a)
        }
    };
    for &name in cfg.attacks() {
        if state.attacks_done.iter().any(|d| d == name) {
            continue;
        }
        let todo: Vec<usize> = (0..n).filter(|&i| state.robust[i]).collect();
        progress.start(name, todo.len().div_ceil(cfg.batch_size) as u64);
        let (t, cpu0) = (Instant::now(), process_cpu_seconds());
        for chunk in todo.chunks(cfg.batch_size) {
            let x: Vec<f32> = chunk
                .iter()
                .flat_map(|&i| images[i * f..(i + 1) * f].iter().copied())
                .collect();
            let y: Vec<usize> = chunk.iter().map(|&i| labels[i]).collect();
            let xt = host_images::<M, D>(dev, x, chunk.len());
            let (a, still) = attack(name, model, &xt, &y, cfg)?;
            let av = a.as_vec();
            for (j, &i) in chunk.iter().enumerate() {
                if !still[j] {
                    state.robust[i] = false; // robust → broken, never back
                    adv[i * f..(i + 1) * f].copy_from_slice(&av[j * f..(j + 1) * f]);
                }
            }
            progress.advance(1);
        }
        progress.finish();
        let acc = accuracy(&state.robust);
        let seconds = t.elapsed().as_secs_f64();
        let cpu_seconds = cpu0.zip(process_cpu_seconds()).map(|(a, b)| b - a);
        let cpu = cpu_seconds.map_or(String::new(), |c| format!(", CPU {c:.1} s"));
        progress.message(&format!(
            "robust accuracy after {name}: {:.2}% ({seconds:.1} s{cpu}, {} points)",
            100.0 * acc,
            todo.len()
        ));
        state.attacks_done.push(name.to_string());
        state.robust_accuracy_after.push((name.to_string(), acc));
        state.timings.push(AttackTiming {
            attack: name.to_string(),
            seconds,
            cpu_seconds,
            points: todo.len(),
        });
        if let Some(p) = state_path {
            save(p, &state, &adv)?;
        }
        if progress.cancelled() {
            return Err(Error::Interrupted(format!(
                "AutoAttack after {name}; the state is saved, run again to resume"
            )));
        }
    }
    // the final check
    let mut max_pert = 0.0f64;
    for i in 0..n {
        let (a, x) = (&adv[i * f..(i + 1) * f], &images[i * f..(i + 1) * f]);
        if a.iter().any(|v| !v.is_finite() || !(0.0..=1.0).contains(v)) {
            return Err(Error::NonFinite {
                what: format!("adversarial example {i} (outside [0, 1] or not finite)"),
            });
        }
        let d = match cfg.norm {
            Norm::Linf => a
                .iter()
                .zip(x)
                .fold(0.0f64, |m, (a, x)| m.max((a - x).abs() as f64)),
            Norm::L2 => a
                .iter()
                .zip(x)
                .map(|(a, x)| ((a - x) as f64).powi(2))
                .sum::<f64>()
                .sqrt(),
        };
        if d > cfg.eps * (1.0 + 1e-5) + 1e-6 {
            return Err(Error::InvalidParameter {
                name: "perturbation",
                value: d,
                reason: "an adversarial example lies outside the ε-ball",
            });
        }
        max_pert = max_pert.max(d);
    }
    let robust_accuracy = accuracy(&state.robust);
    Ok(AutoAttackReport {
        state,
        robust_accuracy,
        adversarial: adv,
        max_perturbation: max_pert,
        seconds: started.elapsed().as_secs_f64(),
    })
}
