//! Notebook 05's entry points (docs/reproduction.md §4; `notebooks/05_evaluation`): import a
//! PyTorch or RobustBench checkpoint and check it computes what PyTorch computed, evaluate a
//! checkpoint file (clean, PGD, each AutoAttack attack), interrupt an AutoAttack evaluation and
//! resume it from its state file, and show the result as a table and as a RobustBench-style record.
//! All on the CPU, concrete types only.

use std::cell::Cell;
use std::fmt;
use std::path::{Path, PathBuf};

use plotters::prelude::*;

use super::ablation::{run_or_collect, NotebookMode, NotebookSetup};
use super::plot::{plot_error as err, PlotOptions, PALETTE};
use super::table::{escape_html, html_table, text_table};
use super::Figure;
use crate::eval::{EvalConfig, EvalReport};
use crate::interop::{import_torch_checkpoint, read_torch_state_dict, Imported, InteropError};
use crate::progress::{EpochLines, Progress};
use crate::train::assess::{checkpoint_test_set, evaluate_checkpoint, logits_of_checkpoint};
use crate::train::checkpoint::read_checkpoint;
use crate::train::run::BEST_FILE;
use crate::train::TrainError;

/// An imported checkpoint and how close its logits are to PyTorch's.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ImportCheck {
    pub imported: Imported,
    /// Images of the reference file the logits were compared on (0: no reference given).
    pub compared_images: usize,
    /// max |logit − PyTorch's logit| over them.
    pub max_abs_difference: f64,
    /// The same divided by max |PyTorch's logit|.
    pub max_relative_difference: f64,
}

impl fmt::Display for ImportCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.imported.config.model;
        write!(
            f,
            "imported {} tensors{} as {} / {} -> {}",
            self.imported.tensors,
            if self.imported.prefix.is_empty() {
                String::new()
            } else {
                format!(" (under `{}`)", self.imported.prefix)
            },
            c.arch,
            c.activation.code_name(),
            self.imported.checkpoint.display()
        )?;
        if self.compared_images > 0 {
            write!(
                f,
                "\nlogits on the reference's {} images: max |difference to PyTorch| = {:.2e} \
                 ({:.2e} of the largest logit)",
                self.compared_images, self.max_abs_difference, self.max_relative_difference
            )?;
        }
        Ok(())
    }
}

/// [`import_torch_checkpoint`] (`robust-paf import`), then, given a reference file with the
/// inputs `x` (NHWC, `[0, 1]`) and `logits` PyTorch computed for them in eval mode (as
/// `scripts/make_parity_fixtures.py` writes), the largest difference of the imported model's
/// logits to PyTorch's.
pub fn import_and_compare(
    from: &Path,
    reference: Option<&Path>,
    arch: &str,
    activation: &str,
    dataset: &str,
    out: &Path,
) -> Result<ImportCheck, InteropError> {
    let imported = import_torch_checkpoint(from, arch, activation, None, dataset, out)?;
    let mut check = ImportCheck {
        imported,
        compared_images: 0,
        max_abs_difference: 0.0,
        max_relative_difference: 0.0,
    };
    if let Some(r) = reference {
        let io = read_torch_state_dict(r)?;
        let missing = |key: &str| InteropError::File {
            path: r.to_path_buf(),
            reason: format!("no tensor `{key}` (a reference holds `x` and `logits`)"),
        };
        let x = &io.tensors.get("x").ok_or_else(|| missing("x"))?.values;
        let want = &io
            .tensors
            .get("logits")
            .ok_or_else(|| missing("logits"))?
            .values;
        let n = io.tensors.get("labels").map_or(0, |l| l.values.len());
        if n == 0 || x.len() % n != 0 {
            return Err(missing("labels"));
        }
        let ckpt = read_checkpoint(&check.imported.checkpoint)?;
        let got = logits_of_checkpoint(&ckpt, &check.imported.config, x, n)?;
        if got.len() != want.len() {
            return Err(InteropError::File {
                path: r.to_path_buf(),
                reason: format!("{} logits, the model gives {}", want.len(), got.len()),
            });
        }
        let diff = got
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs() as f64)
            .fold(0.0, f64::max);
        let scale = want.iter().map(|v| v.abs() as f64).fold(0.0, f64::max);
        check.compared_images = n;
        check.max_abs_difference = diff;
        check.max_relative_difference = diff / scale.max(f64::MIN_POSITIVE);
    }
    Ok(check)
}

/// Evaluates the checkpoint file `path` (a run's `best.safetensors`, an imported
/// `model.safetensors`) as `cfg` asks, on the CPU, on its training configuration's test set; one
/// plain line per phase and attack.
pub fn evaluate_file(path: &Path, cfg: &EvalConfig) -> Result<EvalReport, TrainError> {
    let ckpt = read_checkpoint(path)?;
    let (train_cfg, test) = checkpoint_test_set(&ckpt, path, None)?;
    evaluate_checkpoint(
        dfdx::tensor::Cpu::seed_from_u64(cfg.seed),
        &ckpt,
        &train_cfg,
        &test,
        cfg,
        &mut EpochLines,
    )
}

/// Plain lines, and a stop request once `after` AutoAttack attacks have finished.
struct StopAfter {
    after: usize,
    done: Cell<usize>,
}

impl Progress for StopAfter {
    fn start(&mut self, _: &str, _: u64) {}
    fn advance(&mut self, _: u64) {}
    fn message(&mut self, msg: &str) {
        if msg.starts_with("robust accuracy after") {
            self.done.set(self.done.get() + 1);
        }
        println!("{msg}");
    }
    fn finish(&mut self) {}
    fn cancelled(&self) -> bool {
        self.done.get() >= self.after
    }
}

/// What [`interrupt_autoattack`] left behind.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Interrupted {
    /// The state file to resume from.
    pub state: PathBuf,
    /// The attacks it holds as done.
    pub attacks_done: Vec<String>,
    /// Robust accuracy after each of them.
    pub robust_accuracy_after: Vec<(String, f64)>,
}

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "interrupted after {}; the state in {} holds {}",
            self.attacks_done.join(", "),
            self.state.display(),
            self.robust_accuracy_after
                .iter()
                .map(|(a, v)| format!("{a}: {:.2}%", 100.0 * v))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

/// Runs the AutoAttack of `cfg` (which must name a state file) on the checkpoint `path` and stops
/// it, as Ctrl-C or a job's time limit would, once `after` attacks have finished and the state is
/// saved. [`evaluate_file`] with the same `cfg` then resumes after them.
pub fn interrupt_autoattack(
    path: &Path,
    cfg: &EvalConfig,
    after: usize,
) -> Result<Interrupted, TrainError> {
    let state = cfg
        .autoattack_state
        .clone()
        .ok_or_else(|| TrainError::Config {
            field: "autoattack_state".into(),
            value: "None".into(),
            reason: "an interrupted evaluation needs a state file to resume from".into(),
        })?;
    let ckpt = read_checkpoint(path)?;
    let (train_cfg, test) = checkpoint_test_set(&ckpt, path, None)?;
    let mut p = StopAfter {
        after,
        done: Cell::new(0),
    };
    let dev = dfdx::tensor::Cpu::seed_from_u64(cfg.seed);
    // only AutoAttack's state survives the interruption: no PGD to throw away
    let aa_only = EvalConfig {
        pgd: None,
        ..cfg.clone()
    };
    match evaluate_checkpoint(dev, &ckpt, &train_cfg, &test, &aa_only, &mut p) {
        Err(TrainError::Model(crate::Error::Interrupted(_))) => {}
        Err(e) => return Err(e),
        Ok(_) => {
            return Err(TrainError::RunDir {
                path: state,
                reason: format!("AutoAttack finished before {after} attack(s) were done"),
            })
        }
    }
    let text = std::fs::read_to_string(&state).map_err(|e| TrainError::io(&state, e))?;
    let s: crate::eval::AutoAttackState =
        serde_json::from_str(&text).map_err(|e| TrainError::RunDir {
            path: state.clone(),
            reason: format!("unreadable AutoAttack state: {e}"),
        })?;
    Ok(Interrupted {
        state,
        attacks_done: s.attacks_done,
        robust_accuracy_after: s.robust_accuracy_after,
    })
}

/// An [`EvalReport`] as a table: clean, PGD, the robust accuracy after each AutoAttack attack
/// (each attacks only the images the ones before did not break) and the final number.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct EvalTable {
    /// "SmallCNN-PSSiLU: 24 test images, ℓ∞ ε = 0.031"
    pub title: String,
    pub dataset: String,
    /// (what, accuracy in [0, 1])
    pub rows: Vec<(String, f64)>,
}

/// The table of `report`.
pub fn eval_table(report: &EvalReport) -> EvalTable {
    let mut rows = vec![("clean".to_string(), report.clean_accuracy)];
    if let (Some(a), Some(p)) = (report.pgd_accuracy, &report.pgd) {
        rows.push((format!("PGD-{} (random start)", p.steps), a));
    }
    for (attack, acc) in &report.autoattack_per_attack {
        rows.push((format!("AutoAttack, after {attack}"), *acc));
    }
    if let Some(a) = report.autoattack_accuracy {
        rows.push(("AutoAttack (final)".to_string(), a));
    }
    let norm = match report.norm {
        crate::attacks::Norm::Linf => "ℓ∞",
        crate::attacks::Norm::L2 => "ℓ2",
    };
    EvalTable {
        title: format!(
            "{}: {} test images, {norm} ε = {}",
            report.model, report.n_examples, report.eps_text
        ),
        dataset: report.dataset.clone(),
        rows,
    }
}

impl EvalTable {
    fn cells(&self) -> Vec<[String; 2]> {
        let mut out = vec![["evaluation".to_string(), "accuracy (%)".to_string()]];
        out.extend(
            self.rows
                .iter()
                .map(|(w, a)| [w.clone(), format!("{:.2}", 100.0 * a)]),
        );
        out
    }

    /// The table as HTML, its title above it.
    pub fn to_html(&self) -> String {
        format!(
            "<p>{} ({})</p>\n{}",
            escape_html(&self.title),
            escape_html(&self.dataset),
            html_table(&self.cells())
        )
    }

    /// Shows the table inline in Jupyter as `text/html`.
    pub fn evcxr_display(&self) {
        super::evcxr_show("text/html", &self.to_html());
    }
}

impl fmt::Display for EvalTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} ({})", self.title, self.dataset)?;
        text_table(f, &self.cells(), 1)
    }
}

/// `report`'s RobustBench-style `model_info` record ([`EvalReport::model_info`]) as pretty JSON.
pub fn robustbench_record(report: &EvalReport, name: &str, additional_data: bool) -> String {
    serde_json::to_string_pretty(&report.model_info(name, additional_data))
        .unwrap_or_else(|e| format!("(cannot serialise the record: {e})"))
}

/// The quick model of notebook 05: PSSiLU, PGD-AT, the quick preset's small CNN on 600 embedded
/// images, 2 epochs (about half a minute on 2 cores).
pub const QUICK_MODEL: &str = r#"
name = "quick-evaluation"
base = "quick-pgd-at"
activations = ["pssilu2"]
seeds = [1]
trainers = ["pgd-at"]
set = ["optim.epochs=2", "data.train_subset=600", "eval.n_examples=200"]
"#;

/// The checkpoint notebook 05 evaluates. Quick mode: the best checkpoint of [`QUICK_MODEL`],
/// trained now under `setup.runs` (or reused). Full mode: the crate checkpoint named by
/// `ROBUST_PAF_CHECKPOINT` (a run's `best.safetensors`, or `robust-paf import`'s
/// `model.safetensors` of the released model).
pub fn model_to_evaluate(setup: &NotebookSetup) -> Result<PathBuf, TrainError> {
    match setup.mode {
        NotebookMode::Quick => {
            let o = run_or_collect(setup, QUICK_MODEL, Path::new("unused"))?;
            let run = o.runs.first().ok_or_else(|| TrainError::RunDir {
                path: o.dir.clone(),
                reason: "the quick model did not finish".into(),
            })?;
            Ok(run.dir.join(BEST_FILE))
        }
        NotebookMode::Full => {
            let path = std::env::var_os("ROBUST_PAF_CHECKPOINT")
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
                .ok_or_else(|| TrainError::Config {
                    field: "ROBUST_PAF_CHECKPOINT".into(),
                    value: "(unset)".into(),
                    reason: "full mode evaluates this checkpoint: a run's best.safetensors or \
                             the model.safetensors of `robust-paf import`"
                        .into(),
                })?;
            if !path.is_file() {
                return Err(TrainError::Checkpoint {
                    path,
                    reason: "no such file".into(),
                });
            }
            Ok(path)
        }
    }
}

/// Bars of an [`EvalTable`]: clean, PGD, then the robust accuracy after each AutoAttack attack.
///
/// ```
/// use robust_paf::notebook::evaluation::{eval_table, plot_eval_table};
/// use robust_paf::eval::EvalReport;
///
/// // an `eval::evaluate` report (as `robust-paf eval --out` writes it)
/// let report: EvalReport = serde_json::from_value(serde_json::json!({
///     "model": "SmallCNN-PSSiLU", "dataset": "Fashion-MNIST test", "n_examples": 100,
///     "norm": "Linf", "eps": 0.031, "eps_text": "0.031", "clean_accuracy": 0.75,
///     "pgd_accuracy": null, "pgd": null, "autoattack_version": "Standard",
///     "autoattack_per_attack": [["apgd-ce", 0.67], ["apgd-t", 0.665], ["fab-t", 0.665], ["square", 0.66]],
///     "autoattack_accuracy": 0.66, "seed": 0, "seconds": 60.0
/// })).unwrap();
/// let table = eval_table(&report);
/// assert_eq!(table.rows.len(), 6); // clean, the four attacks, AutoAttack
/// let fig = plot_eval_table(&table)?;
/// assert!(fig.svg().contains("apgd-t"));
/// # Ok::<(), robust_paf::Error>(())
/// ```
pub fn plot_eval_table(table: &EvalTable) -> Result<Figure, crate::Error> {
    let n = table.rows.len();
    if n == 0 {
        return Err(crate::Error::InvalidParameter {
            name: "table",
            value: 0.0,
            reason: "nothing to plot",
        });
    }
    let font = PlotOptions::default().font_size;
    let (width, height) = (900u32, 120 + 46 * n as u32);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let labels: Vec<String> = table.rows.iter().map(|r| r.0.clone()).collect();
        let mut chart = ChartBuilder::on(&root)
            .caption(&table.title, ("sans-serif", font + 2))
            .margin(12)
            .margin_right(40)
            .x_label_area_size(2 * font + 12)
            .y_label_area_size(300)
            .build_cartesian_2d(0.0f64..100.0, -0.5f64..(n as f64 - 0.5))
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .light_line_style(WHITE)
            .y_labels(n)
            .y_label_formatter(&|y| {
                let i = y.round();
                if (y - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < n {
                    labels[n - 1 - i as usize].clone()
                } else {
                    String::new()
                }
            })
            .x_label_formatter(&|x| format!("{x:.0}"))
            .x_desc("accuracy (%)")
            .label_style(("sans-serif", font))
            .axis_desc_style(("sans-serif", font))
            .draw()
            .map_err(err)?;
        for (i, (what, acc)) in table.rows.iter().enumerate() {
            let y = (n - 1 - i) as f64;
            let color = if what == "clean" {
                PALETTE[0]
            } else if what.starts_with("PGD") {
                PALETTE[1]
            } else {
                PALETTE[3]
            };
            let v = 100.0 * acc;
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(0.0, y - 0.32), (v, y + 0.32)],
                    color.mix(0.8).filled(),
                )))
                .map_err(err)?;
            chart
                .draw_series(std::iter::once(Text::new(
                    format!("{v:.1}"),
                    (v + 1.0, y + 0.2),
                    ("sans-serif", font).into_font(),
                )))
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(Figure::new(&table.title, svg))
}
