//! Evaluating saved checkpoints and runs (docs/reproduction.md §4):
//! the official `eval.py` (clean, PGD, AutoAttack: [`evaluate_checkpoint`]) and `eval_std.py`
//! (the shape ablation's metrics — clean accuracy, average minimal radius, Square success rate,
//! empirical Lipschitz: [`shape_metrics_of_checkpoint`], [`run_shape_metrics`]) on a checkpoint
//! written by the trainer or imported from PyTorch. The checkpoint names its architecture, its
//! activation and its training configuration (hence the dataset); [`super::with_model`] builds
//! the model. The CLI's `eval` and `shape-metrics` and the notebooks call these.

use std::path::{Path, PathBuf};
use std::time::Instant;

use dfdx::nn::BuildModule;
use dfdx::shapes::ConstDim;

use super::checkpoint::{read_checkpoint, write_atomic, Checkpoint};
use super::dispatch::{with_model, WithModel};
use super::run::BEST_FILE;
use super::{load_data, TrainConfig, TrainError};
use crate::attacks::AttackModel;
use crate::data::ImageSet;
use crate::eval::{
    average_radius, empirical_lipschitz, evaluate, square_success_rate, EvalConfig, EvalReport,
    RadiusConfig,
};
use crate::models::Classifier;
use crate::ops::{Backend, Elem};
use crate::progress::Progress;

/// The file [`run_shape_metrics`] writes into a run directory.
pub const SHAPE_METRICS_FILE: &str = "shape_metrics.json";

/// The training configuration a checkpoint carries (its dataset, ε, norm), with the synthetic
/// extra data dropped (evaluation reads the test set only) and `data_dir` replacing the folder.
pub fn checkpoint_config(
    ckpt: &Checkpoint,
    path: &Path,
    data_dir: Option<&Path>,
) -> Result<TrainConfig, TrainError> {
    let Some(mut cfg) = ckpt.meta.config.clone() else {
        return Err(TrainError::Checkpoint {
            path: path.to_path_buf(),
            reason: "holds no training configuration (dataset unknown); import it with \
                     `robust-paf import --preset ...`"
                .into(),
        });
    };
    if let Some(d) = data_dir {
        cfg.data.dir = Some(d.to_path_buf());
    }
    cfg.data.synthetic = None;
    Ok(cfg)
}

/// The test set of a checkpoint's training configuration ([`checkpoint_config`]).
pub fn checkpoint_test_set(
    ckpt: &Checkpoint,
    path: &Path,
    data_dir: Option<&Path>,
) -> Result<(TrainConfig, ImageSet), TrainError> {
    let cfg = checkpoint_config(ckpt, path, data_dir)?;
    let data = load_data(&cfg)?;
    Ok((cfg, data.test))
}

/// Builds the checkpoint's model on `dev` and runs `f` on it (in evaluation mode).
struct ModelJob<'a, D, F> {
    ckpt: &'a Checkpoint,
    dev: D,
    f: F,
}

/// What a job does with the loaded model; a trait, not a closure, because the model type is a
/// generic parameter of the call.
trait OnModel<D: Backend> {
    type Output;
    fn call<M: Classifier<D>>(self, model: &mut M, dev: &D) -> Self::Output;
}

impl<D: Backend, F: OnModel<D, Output = Result<T, TrainError>>, T> WithModel<D>
    for ModelJob<'_, D, F>
{
    type Output = Result<T, TrainError>;
    fn run<M: Classifier<D> + BuildModule<D, Elem>>(self) -> Self::Output {
        let mut model =
            M::try_build(&self.dev).map_err(|e| crate::Error::Device(format!("{e:?}")))?;
        self.ckpt.apply(&mut model, None)?;
        model.eval();
        self.f.call(&mut model, &self.dev)
    }
}

fn with_checkpoint_model<D: Backend, F: OnModel<D, Output = Result<T, TrainError>>, T>(
    ckpt: &Checkpoint,
    cfg: &TrainConfig,
    dev: D,
    f: F,
) -> Result<T, TrainError> {
    let (arch, classes) = (cfg.model.arch, cfg.data.dataset.classes());
    with_model::<D, _>(arch, classes, ModelJob { ckpt, dev, f })?
}

/// [`evaluate`] (clean, PGD, AutoAttack as `cfg` asks) of the checkpoint's model on `test`.
pub fn evaluate_checkpoint<D: Backend>(
    dev: D,
    ckpt: &Checkpoint,
    train_cfg: &TrainConfig,
    test: &ImageSet,
    cfg: &EvalConfig,
    progress: &mut dyn Progress,
) -> Result<EvalReport, TrainError> {
    struct Eval<'a> {
        test: &'a ImageSet,
        cfg: &'a EvalConfig,
        progress: &'a mut dyn Progress,
    }
    impl<D: Backend> OnModel<D> for Eval<'_> {
        type Output = Result<EvalReport, TrainError>;
        fn call<M: Classifier<D>>(self, m: &mut M, dev: &D) -> Self::Output {
            let name = m.architecture();
            Ok(evaluate(m, dev, &name, self.test, self.cfg, self.progress)?)
        }
    }
    with_checkpoint_model(
        ckpt,
        train_cfg,
        dev,
        Eval {
            test,
            cfg,
            progress,
        },
    )
}

/// Eval-mode logits of the checkpoint's model (on the CPU) for `n` host images (NHWC, `[0, 1]`),
/// `n · classes` values.
pub fn logits_of_checkpoint(
    ckpt: &Checkpoint,
    train_cfg: &TrainConfig,
    images: &[f32],
    n: usize,
) -> Result<Vec<f32>, TrainError> {
    struct Job<'a> {
        images: &'a [f32],
        n: usize,
    }
    impl<D: Backend> OnModel<D> for Job<'_> {
        type Output = Result<Vec<f32>, TrainError>;
        fn call<M: Classifier<D>>(self, m: &mut M, dev: &D) -> Self::Output {
            let f = <M as AttackModel<D>>::Height::SIZE
                * <M as AttackModel<D>>::Width::SIZE
                * <M as AttackModel<D>>::Channels::SIZE;
            if self.images.len() != self.n * f {
                return Err(crate::Error::InvalidParameter {
                    name: "images",
                    value: self.images.len() as f64,
                    reason: "expected n · H·W·C values for the model's input",
                }
                .into());
            }
            Ok(crate::attacks::logits_of(m, dev, self.images, self.n)?)
        }
    }
    let dev = dfdx::tensor::Cpu::seed_from_u64(0);
    with_checkpoint_model(ckpt, train_cfg, dev, Job { images, n })
}

/// The first `n` (all: `None`) images of `test` as `[0, 1]` floats and their labels, checked
/// against the model's input and class count.
fn first_images<M: Classifier<D>, D: Backend>(
    test: &ImageSet,
    n: Option<usize>,
) -> Result<(Vec<f32>, Vec<usize>), TrainError> {
    let input = crate::data::ImageShape::new(
        <M as AttackModel<D>>::Height::SIZE,
        <M as AttackModel<D>>::Width::SIZE,
        <M as AttackModel<D>>::Channels::SIZE,
    );
    let f = input.bytes();
    if input != test.shape() || test.classes > <M as AttackModel<D>>::Classes::SIZE {
        return Err(crate::Error::InvalidParameter {
            name: "model",
            value: f as f64,
            reason: "does not take the data set's image shape or classes",
        }
        .into());
    }
    let n = n.unwrap_or(test.len()).min(test.len());
    let images = test.pixels()[..n * f]
        .iter()
        .map(|&v| v as f32 / 255.0)
        .collect();
    let labels = test.labels()[..n].iter().map(|&l| l as usize).collect();
    Ok((images, labels))
}

/// Settings of the shape-ablation metrics (the official `eval_std.py`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ShapeMetricsConfig {
    /// The first N test images (`None`: all of them, as the paper).
    pub n_examples: Option<usize>,
    /// The binary search of the average minimal radius.
    pub radius: RadiusConfig,
    /// ℓ∞ ε of the Square attack (0.031).
    pub square_eps: f64,
    /// Square's query budget per image (1,000: `eval_std.py --queries`).
    pub square_queries: usize,
    pub batch_size: usize,
}

impl ShapeMetricsConfig {
    /// The official `eval_std.py`: the whole test set, the paper's radius search, Square with
    /// 1,000 queries at ε = 0.031.
    pub fn paper() -> Self {
        ShapeMetricsConfig {
            n_examples: None,
            radius: RadiusConfig::paper(),
            square_eps: 0.031,
            square_queries: 1000,
            batch_size: 128,
        }
    }

    /// The notebooks' quick setting: the first 64 test images, Square with 100 queries (a
    /// weaker attack: its success rates are lower bounds of the paper's).
    pub fn quick() -> Self {
        ShapeMetricsConfig {
            n_examples: Some(64),
            square_queries: 100,
            ..Self::paper()
        }
    }

    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |field: &str, value: String, reason: &str| TrainError::Config {
            field: field.into(),
            value,
            reason: reason.into(),
        };
        if self.batch_size == 0 {
            return Err(bad("batch_size", "0".into(), "must be at least 1"));
        }
        if self.n_examples == Some(0) {
            return Err(bad("n_examples", "0".into(), "must be at least 1"));
        }
        if !(self.square_eps.is_finite() && self.square_eps > 0.0) {
            return Err(bad(
                "square_eps",
                self.square_eps.to_string(),
                "must be positive",
            ));
        }
        if self.square_queries == 0 {
            return Err(bad("square_queries", "0".into(), "must be at least 1"));
        }
        if self.radius.pgd_steps == 0
            || !(self.radius.eps_init.is_finite() && self.radius.eps_init > 0.0)
        {
            return Err(bad(
                "radius",
                format!("{:?}", self.radius),
                "needs pgd_steps >= 1 and eps_init > 0",
            ));
        }
        Ok(())
    }
}

/// The shape-ablation metrics of one model (docs/reproduction.md §4: `eval_std.py`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ShapeMetrics {
    /// The model's [`Classifier::architecture`].
    pub model: String,
    pub dataset: String,
    pub n_examples: usize,
    pub clean_accuracy: f64,
    /// Average minimal ℓ∞ radius (binary search with PGD) over the images classified correctly.
    pub average_radius: f64,
    /// Fraction of the correctly classified images Square misclassifies.
    pub square_success_rate: f64,
    /// `Σ ‖f(x) − f(x_adv)‖₁ / ‖x_adv − x‖∞` per batch (PGD-10 at ε 0.031), over the images.
    pub lipschitz: f64,
    pub config: ShapeMetricsConfig,
    pub seconds: f64,
}

/// [`ShapeMetrics`] of the checkpoint's model on `test`, one progress message per metric.
pub fn shape_metrics_of_checkpoint<D: Backend>(
    dev: D,
    ckpt: &Checkpoint,
    train_cfg: &TrainConfig,
    test: &ImageSet,
    cfg: &ShapeMetricsConfig,
    progress: &mut dyn Progress,
) -> Result<ShapeMetrics, TrainError> {
    cfg.validate()?;
    struct Job<'a> {
        test: &'a ImageSet,
        cfg: &'a ShapeMetricsConfig,
        progress: &'a mut dyn Progress,
    }
    impl<D: Backend> OnModel<D> for Job<'_> {
        type Output = Result<ShapeMetrics, TrainError>;
        fn call<M: Classifier<D>>(self, m: &mut M, dev: &D) -> Self::Output {
            let started = Instant::now();
            let (images, labels) = first_images::<M, D>(self.test, self.cfg.n_examples)?;
            let n = labels.len();
            let bs = self.cfg.batch_size;
            let mut radius = self.cfg.radius.clone();
            radius.batch_size = bs;
            let p = self.progress;
            p.message(&format!(
                "shape metrics of {} on {n} images",
                m.architecture()
            ));
            let (avg, radii) = average_radius(m, dev, &images, &labels, &radius)?;
            let correct = radii.iter().filter(|r| r.is_some()).count();
            p.message(&format!(
                "  average minimal radius {avg:.5} ({correct} correct)"
            ));
            let (square, _) = square_success_rate(
                m,
                dev,
                &images,
                &labels,
                self.cfg.square_eps,
                self.cfg.square_queries,
                bs,
            )?;
            p.message(&format!(
                "  Square success rate {:.2}% ({} queries)",
                100.0 * square,
                self.cfg.square_queries
            ));
            let lipschitz = empirical_lipschitz(m, dev, &images, &labels, bs)?;
            p.message(&format!("  empirical Lipschitz {lipschitz:.4}"));
            Ok(ShapeMetrics {
                model: m.architecture(),
                dataset: self.test.name.clone(),
                n_examples: n,
                clean_accuracy: correct as f64 / n.max(1) as f64,
                average_radius: avg,
                square_success_rate: square,
                lipschitz,
                config: self.cfg.clone(),
                seconds: started.elapsed().as_secs_f64(),
            })
        }
    }
    with_checkpoint_model(
        ckpt,
        train_cfg,
        dev,
        Job {
            test,
            cfg,
            progress,
        },
    )
}

/// The metrics stored in `run_dir/shape_metrics.json`, if any (and, given `cfg`, only if they
/// were computed with those settings).
pub fn read_shape_metrics(
    run_dir: &Path,
    cfg: Option<&ShapeMetricsConfig>,
) -> Result<Option<ShapeMetrics>, TrainError> {
    let path = run_dir.join(SHAPE_METRICS_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(TrainError::io(&path, e)),
    };
    // An unreadable or stale file is recomputed, not an error: it is a cache.
    Ok(serde_json::from_str::<ShapeMetrics>(&text)
        .ok()
        .filter(|m| cfg.map_or(true, |c| &m.config == c)))
}

/// The shape metrics of a finished run (`run_dir/best.safetensors`, on the CPU), computed once
/// and stored in `run_dir/shape_metrics.json` (atomically); a stored result with the same
/// settings is returned without recomputing.
pub fn run_shape_metrics(
    run_dir: &Path,
    cfg: &ShapeMetricsConfig,
    progress: &mut dyn Progress,
) -> Result<ShapeMetrics, TrainError> {
    run_shape_metrics_on(dfdx::tensor::Cpu::seed_from_u64(0), run_dir, cfg, progress)
}

/// [`run_shape_metrics`] on device `dev` (a GPU for the paper's 10,000 CIFAR-10 images).
pub fn run_shape_metrics_on<D: Backend>(
    dev: D,
    run_dir: &Path,
    cfg: &ShapeMetricsConfig,
    progress: &mut dyn Progress,
) -> Result<ShapeMetrics, TrainError> {
    cfg.validate()?;
    if let Some(m) = read_shape_metrics(run_dir, Some(cfg))? {
        return Ok(m);
    }
    let path: PathBuf = run_dir.join(BEST_FILE);
    let ckpt = read_checkpoint(&path)?;
    let (train_cfg, test) = checkpoint_test_set(&ckpt, &path, None)?;
    let m = shape_metrics_of_checkpoint(dev, &ckpt, &train_cfg, &test, cfg, progress)?;
    let json = serde_json::to_vec_pretty(&m).map_err(|e| TrainError::RunDir {
        path: run_dir.to_path_buf(),
        reason: format!("cannot serialise the shape metrics: {e}"),
    })?;
    write_atomic(&run_dir.join(SHAPE_METRICS_FILE), &json)?;
    Ok(m)
}
