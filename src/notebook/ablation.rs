//! The ablation notebooks' entry points (docs/reproduction.md §3.7 and §6; `notebooks/03_*`): one
//! call per cell, concrete types only, so a cell compiles in a fraction of a second.
//!
//! A notebook runs in one of two modes ([`setup`]), from the environment:
//! - `ROBUST_PAF_MODE=quick` (the default): [`run_or_collect`] trains the notebook's small
//!   sweep live on the CPU (one plain line per epoch), on the embedded data, into
//!   `ROBUST_PAF_RUNS/<sweep name>/`, skipping runs that already finished there;
//! - `ROBUST_PAF_MODE=full`: it trains nothing; it reads the finished runs of the paper-scale
//!   sweep file (e.g. produced by a Slurm array on a GPU cluster with `robust-paf sweep`) from
//!   `ROBUST_PAF_RUNS/<sweep name>/`, and prints the exact command that produces the missing ones.
//!
//! [`collect_sweep`] reads a sweep's finished runs in either mode (runs too long for quick
//! mode, such as notebook 03's laptop-scale demonstration).
//!
//! [`ResultsTable`] and [`plot_accuracy_bars`] summarise the runs per configuration (mean and
//! spread over seeds); [`crate::notebook::plot_run_dirs`] draws their training curves and α/β.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use plotters::prelude::*;

use super::plot::{plot_error as err, short, PlotOptions, PALETTE};
use super::table::{html_table, shape_table, text_table, ShapeTable};
use super::Figure;
use crate::activations::{ActivationKind, ScalarActivation};
use crate::progress::EpochLines;
use crate::train::run::{read_summary, CONFIG_FILE};
use crate::train::sweep::{collect, Collected, SweepConfig};
use crate::train::{load_data, train_named, RunMode, TrainConfig, TrainError};

/// Quick (train the small sweep live) or full (analyse finished paper-scale runs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum NotebookMode {
    Quick,
    Full,
}

/// Where a notebook's runs are and what it does with them.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct NotebookSetup {
    pub mode: NotebookMode,
    /// `ROBUST_PAF_RUNS`, default `<output dir>/runs` ([`super::output_dir`]).
    pub runs: PathBuf,
}

impl fmt::Display for NotebookSetup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.mode {
            NotebookMode::Quick => write!(
                f,
                "quick mode: small runs trained here, on the CPU, into {} (finished runs are \
                 reused); ROBUST_PAF_MODE=full analyses paper-scale runs instead",
                self.runs.display()
            ),
            NotebookMode::Full => write!(
                f,
                "full mode: finished runs are read from {}; nothing is trained here",
                self.runs.display()
            ),
        }
    }
}

/// Reads `ROBUST_PAF_MODE` (`quick`, the default, or `full`) and `ROBUST_PAF_RUNS`.
pub fn setup() -> Result<NotebookSetup, TrainError> {
    setup_from(
        std::env::var("ROBUST_PAF_MODE").ok().as_deref(),
        std::env::var_os("ROBUST_PAF_RUNS").map(PathBuf::from),
    )
}

/// [`setup`] from given values instead of the environment.
pub fn setup_from(mode: Option<&str>, runs: Option<PathBuf>) -> Result<NotebookSetup, TrainError> {
    let mode = match mode.map(str::trim) {
        None | Some("") | Some("quick") => NotebookMode::Quick,
        Some("full") => NotebookMode::Full,
        Some(other) => {
            return Err(TrainError::Config {
                field: "ROBUST_PAF_MODE".into(),
                value: other.into(),
                reason: "expected quick or full".into(),
            })
        }
    };
    let runs = runs
        .filter(|v| !v.as_os_str().is_empty())
        .unwrap_or_else(|| super::output_dir().join("runs"));
    Ok(NotebookSetup { mode, runs })
}

/// What [`run_or_collect`] found and did.
#[derive(Clone, Debug)]
pub struct SweepOutcome {
    /// The sweep that was run or read.
    pub sweep: SweepConfig,
    /// Its directory, `runs/<sweep name>`.
    pub dir: PathBuf,
    /// The finished runs, sorted by directory.
    pub runs: Vec<Collected>,
    /// Runs of the sweep that are not finished (full mode: to be produced by `command`).
    pub missing: Vec<String>,
    /// The command that produces the sweep's runs.
    pub command: String,
    /// Runs trained by this call.
    pub trained: usize,
}

impl SweepOutcome {
    /// The run directories, for [`super::plot_run_dirs`].
    pub fn run_dirs(&self) -> Vec<PathBuf> {
        self.runs.iter().map(|c| c.dir.clone()).collect()
    }

    /// [`super::plot_run_dirs`] of every finished run: loss, clean and PGD accuracy and the
    /// activation's α, β per epoch.
    pub fn plot_curves(&self) -> Result<Figure, crate::Error> {
        let dirs: Vec<&Path> = self.runs.iter().map(|c| c.dir.as_path()).collect();
        super::plot_run_dirs(&dirs)
    }
}

impl fmt::Display for SweepOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sweep {}: {} finished run(s) in {} ({} trained now)",
            self.sweep.name,
            self.runs.len(),
            self.dir.display(),
            self.trained
        )?;
        if !self.missing.is_empty() {
            write!(
                f,
                "\n{} run(s) missing ({}); produce them with\n  {}",
                self.missing.len(),
                self.missing.join(", "),
                self.command
            )?;
        }
        Ok(())
    }
}

/// Quick mode: parses `quick_toml` (a sweep, paper-scale or not, whose `base` is a preset)
/// and trains its unfinished runs on the CPU. Full mode: reads the sweep file `full_sweep`
/// (relative paths resolve against the working directory, `notebooks/` under Jupyter) and
/// collects its finished runs, training nothing. Either way the runs live in
/// `setup.runs/<sweep name>/`.
pub fn run_or_collect(
    setup: &NotebookSetup,
    quick_toml: &str,
    full_sweep: &Path,
) -> Result<SweepOutcome, TrainError> {
    let (sweep, base_dir) = match setup.mode {
        NotebookMode::Quick => (
            SweepConfig::from_toml(quick_toml, "the notebook's quick sweep")?,
            PathBuf::from("."),
        ),
        NotebookMode::Full => (
            SweepConfig::from_file(full_sweep)?,
            full_sweep
                .parent()
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
        ),
    };
    let dir = setup.runs.join(&sweep.name);
    let command = match setup.mode {
        NotebookMode::Quick => format!(
            "(trained by this notebook in quick mode into {})",
            dir.display()
        ),
        NotebookMode::Full => format!(
            "robust-paf sweep --config {} --out {}   # add --shard I/N for a Slurm array",
            full_sweep.display(),
            setup.runs.display()
        ),
    };
    let expanded = sweep.expand(&base_dir, &[])?;
    let mut trained = 0;
    let mut missing = Vec::new();
    for run in &expanded {
        let run_dir = dir.join(&run.id);
        if read_summary(&run_dir)?.is_some() {
            // quick mode reuses a finished run only if it is the run the sweep asks for now: an
            // edited quick sweep (more epochs, other data) must not show stale results
            if setup.mode == NotebookMode::Quick {
                same_config(&run_dir, &run.config)?;
            }
            continue;
        }
        if setup.mode == NotebookMode::Full {
            missing.push(run.id.clone());
            continue;
        }
        println!("[{}/{}] {}", run.index + 1, expanded.len(), run.id);
        let data = load_data(&run.config)?;
        let dev = dfdx::tensor::Cpu::seed_from_u64(run.config.seed);
        train_named(
            dev,
            &run.config,
            &data,
            &run_dir,
            RunMode::Auto,
            &mut EpochLines,
        )?;
        trained += 1;
    }
    let ids: Vec<&str> = expanded.iter().map(|r| r.id.as_str()).collect();
    let runs = if dir.is_dir() {
        collect(&dir)?
            .into_iter()
            .filter(|c| {
                c.dir
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| ids.contains(&n))
            })
            .collect()
    } else {
        Vec::new()
    };
    Ok(SweepOutcome {
        sweep,
        dir,
        runs,
        missing,
        command,
        trained,
    })
}

/// Reads the finished runs of the sweep file `sweep_file` from `setup.runs/<sweep name>/` in
/// either mode, training nothing (runs too long for quick mode, such as notebook 03's
/// laptop-scale demonstration); the outcome names the missing runs and the command that
/// makes them.
pub fn collect_sweep(setup: &NotebookSetup, sweep_file: &Path) -> Result<SweepOutcome, TrainError> {
    let full = NotebookSetup {
        mode: NotebookMode::Full,
        runs: setup.runs.clone(),
    };
    run_or_collect(&full, "", sweep_file)
}

/// Errors unless `run_dir/config.toml` is `cfg`.
fn same_config(run_dir: &Path, cfg: &TrainConfig) -> Result<(), TrainError> {
    let path = run_dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
    let on_disk = TrainConfig::from_toml(&text, &path.display().to_string())?;
    if &on_disk == cfg {
        Ok(())
    } else {
        Err(TrainError::RunDir {
            path: run_dir.to_path_buf(),
            reason: "holds a finished run of another configuration than the quick sweep's (was \
                     the sweep edited?); delete that folder to retrain it, or rename the sweep"
                .into(),
        })
    }
}

/// One configuration of a sweep (every seed of it) in a [`ResultsTable`].
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ResultsRow {
    pub activation: String,
    pub trainer: String,
    pub fix_alpha: Option<f64>,
    pub fix_beta: Option<f64>,
    /// The threat model of training and PGD evaluation: `"linf"` or `"l2"` (`None`: a summary
    /// from before the crate recorded it).
    pub norm: Option<String>,
    pub eps: Option<f64>,
    /// The synthetic (extra) images mixed 1:1 into the batches, if any (`data.synthetic.path`).
    pub synthetic: Option<String>,
    pub seeds: Vec<u64>,
    /// Best-epoch clean accuracy per seed (fractions), and their mean and sample std.
    pub clean: Vec<f64>,
    pub clean_mean: f64,
    pub clean_std: f64,
    /// Best-epoch PGD accuracy per seed, mean, std (empty / NaN without PGD evaluation).
    pub pgd: Vec<f64>,
    pub pgd_mean: f64,
    pub pgd_std: f64,
    /// The activation parameters after the last epoch, mean over seeds (raw α, β).
    pub parameters: BTreeMap<String, f64>,
}

impl ResultsRow {
    /// "PSSiLU" or "PReLU α=0.25" (a fixed parameter in the label).
    pub fn label(&self) -> String {
        let mut s = ActivationKind::from_code_name(&self.activation)
            .map_or_else(|| self.activation.clone(), |k| k.name().to_string());
        if let Some(a) = self.fix_alpha {
            s.push_str(&format!(" α={}", short(a)));
        }
        if let Some(b) = self.fix_beta {
            s.push_str(&format!(" β={}", short(b)));
        }
        s
    }

    /// "ℓ∞ ε=0.031", "ℓ2 ε=0.5" ("–" when the summary did not record it).
    pub fn threat(&self) -> String {
        let norm = match self.norm.as_deref() {
            Some("linf") => "ℓ∞",
            Some("l2") => "ℓ2",
            Some(other) => other,
            None => return "–".into(),
        };
        match self.eps {
            Some(e) => format!("{norm} ε={}", short(e)),
            None => norm.into(),
        }
    }

    /// "real only", or "+ " and the file name of the synthetic set.
    pub fn data(&self) -> String {
        match &self.synthetic {
            None => "real only".into(),
            Some(p) => format!(
                "+ {}",
                Path::new(p)
                    .file_name()
                    .map_or_else(|| p.clone(), |n| n.to_string_lossy().into_owned())
            ),
        }
    }
}

/// Mean and spread over seeds of each configuration of a sweep: shown as HTML by evcxr, as
/// text by `Display`.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ResultsTable {
    pub rows: Vec<ResultsRow>,
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let m = v.iter().sum::<f64>() / v.len() as f64;
    if v.len() < 2 {
        return (m, f64::NAN);
    }
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64;
    (m, var.sqrt())
}

/// Groups `runs` by (activation, trainer, fixed α, fixed β, threat model, synthetic data), in
/// the order of first appearance.
pub fn results_table(runs: &[Collected]) -> ResultsTable {
    let mut rows: Vec<ResultsRow> = Vec::new();
    for c in runs {
        let s = &c.summary;
        let key = |r: &ResultsRow| {
            r.activation == s.activation
                && r.trainer == s.trainer
                && r.fix_alpha == s.fix_alpha
                && r.fix_beta == s.fix_beta
                && r.norm == s.norm
                && r.eps == s.eps
                && r.synthetic == s.synthetic
        };
        let i = match rows.iter().position(key) {
            Some(i) => i,
            None => {
                rows.push(ResultsRow {
                    activation: s.activation.clone(),
                    trainer: s.trainer.clone(),
                    fix_alpha: s.fix_alpha,
                    fix_beta: s.fix_beta,
                    norm: s.norm.clone(),
                    eps: s.eps,
                    synthetic: s.synthetic.clone(),
                    seeds: Vec::new(),
                    clean: Vec::new(),
                    clean_mean: f64::NAN,
                    clean_std: f64::NAN,
                    pgd: Vec::new(),
                    pgd_mean: f64::NAN,
                    pgd_std: f64::NAN,
                    parameters: BTreeMap::new(),
                });
                rows.len() - 1
            }
        };
        let r = &mut rows[i];
        let n = r.seeds.len() as f64;
        r.seeds.push(s.seed);
        r.clean.extend(s.best_clean_accuracy);
        r.pgd.extend(s.best_pgd_accuracy);
        for (k, v) in &s.activation_parameters {
            let e = r.parameters.entry(k.clone()).or_insert(0.0);
            *e = (*e * n + v) / (n + 1.0);
        }
    }
    for r in &mut rows {
        (r.clean_mean, r.clean_std) = mean_std(&r.clean);
        (r.pgd_mean, r.pgd_std) = mean_std(&r.pgd);
    }
    ResultsTable { rows }
}

/// "73.9 ± 0.4" in percent ("73.9" for one seed, "–" for none).
fn pct(mean: f64, std: f64) -> String {
    if mean.is_nan() {
        "–".into()
    } else if std.is_nan() {
        format!("{:.1}", 100.0 * mean)
    } else {
        format!("{:.1} ± {:.1}", 100.0 * mean, 100.0 * std)
    }
}

impl ResultsTable {
    /// True when the rows differ in `f` (a column or label part worth showing).
    fn varies<T: PartialEq>(&self, f: impl Fn(&ResultsRow) -> T) -> bool {
        let mut it = self.rows.iter().map(f);
        it.next().is_some_and(|first| it.any(|v| v != first))
    }

    /// The bar / row label: the activation, plus the trainer, threat model and data when the
    /// table holds several of them.
    pub fn label(&self, r: &ResultsRow) -> String {
        let mut s = r.label();
        if self.varies(|r| r.trainer.clone()) {
            s.push_str(&format!(" · {}", r.trainer));
        }
        if self.varies(|r| r.threat()) {
            s.push_str(&format!(" · {}", r.threat()));
        }
        if self.varies(|r| r.synthetic.clone()) {
            s.push_str(if r.synthetic.is_some() {
                " · +extra"
            } else {
                " · real"
            });
        }
        s
    }

    fn cells(&self) -> Vec<Vec<String>> {
        let extra = self.rows.iter().any(|r| r.synthetic.is_some());
        let mut head: Vec<String> = ["activation", "trainer", "threat model"]
            .map(String::from)
            .to_vec();
        if extra {
            head.push("data".into());
        }
        head.extend(["seeds", "clean (%)", "PGD (%)", "final α, β (raw)"].map(String::from));
        let mut out = vec![head];
        for r in &self.rows {
            let params = r
                .parameters
                .iter()
                .map(|(k, v)| format!("{}={}", if k == "alpha" { "α" } else { "β" }, short(*v)))
                .collect::<Vec<_>>()
                .join(", ");
            let mut row = vec![r.label(), r.trainer.clone(), r.threat()];
            if extra {
                row.push(r.data());
            }
            row.extend([
                r.seeds.len().to_string(),
                pct(r.clean_mean, r.clean_std),
                pct(r.pgd_mean, r.pgd_std),
                if params.is_empty() {
                    "–".into()
                } else {
                    params
                },
            ]);
            out.push(row);
        }
        out
    }

    /// The table as HTML.
    pub fn to_html(&self) -> String {
        html_table(&self.cells())
    }

    /// Shows the table inline in Jupyter as `text/html`.
    pub fn evcxr_display(&self) {
        super::evcxr_show("text/html", &self.to_html());
    }
}

impl fmt::Display for ResultsTable {
    /// A plain text table: activation, trainer, threat model (and data) left-aligned, the
    /// numbers right-aligned.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let left = if self.rows.iter().any(|r| r.synthetic.is_some()) {
            4
        } else {
            3
        };
        text_table(f, &self.cells(), left)
    }
}

/// The shape properties ([`ShapeTable`], notebook 01) of each row's final activation (α, β the
/// mean over seeds): what shape adversarial training moved each parametric activation to.
/// Rows whose activation the crate does not know are left out.
pub fn learned_shapes(table: &ResultsTable) -> ShapeTable {
    let acts: Vec<ScalarActivation> = table
        .rows
        .iter()
        .filter_map(|r| {
            let kind = ActivationKind::from_code_name(&r.activation)?;
            let (a0, b0) = kind.initial_params();
            let alpha = r
                .parameters
                .get("alpha")
                .copied()
                .or(r.fix_alpha)
                .unwrap_or(a0);
            let beta = r
                .parameters
                .get("beta")
                .copied()
                .or(r.fix_beta)
                .unwrap_or(b0);
            Some(ScalarActivation::new(kind, alpha, beta))
        })
        .collect();
    shape_table(&acts)
}

/// Grouped bars: clean and PGD accuracy (%) per configuration, the bar at the mean over seeds,
/// a whisker from the lowest to the highest seed, each seed a dot.
///
/// ```
/// use robust_paf::notebook::ablation::{plot_accuracy_bars, ResultsRow, ResultsTable};
///
/// // rows as `results_table` groups a sweep's runs (`collect_sweep`, `train::sweep::collect`)
/// let row = |act: &str, clean: Vec<f64>, pgd: Vec<f64>| ResultsRow {
///     activation: act.into(), trainer: "pgd-at".into(), fix_alpha: None, fix_beta: None,
///     norm: Some("linf".into()), eps: Some(0.031), synthetic: None, seeds: vec![0, 1],
///     clean_mean: clean.iter().sum::<f64>() / 2.0, clean_std: 0.01, clean,
///     pgd_mean: pgd.iter().sum::<f64>() / 2.0, pgd_std: 0.01, pgd,
///     parameters: Default::default(),
/// };
/// let table = ResultsTable {
///     rows: vec![row("relu", vec![0.80, 0.82], vec![0.48, 0.50]), row("pssilu2", vec![0.83, 0.84], vec![0.52, 0.53])],
/// };
/// let fig = plot_accuracy_bars(&table, "ReLU against PSSiLU")?;
/// assert!(fig.svg().contains("PSSiLU"));
/// assert!(plot_accuracy_bars(&ResultsTable { rows: vec![] }, "empty").is_err());
/// # Ok::<(), robust_paf::Error>(())
/// ```
pub fn plot_accuracy_bars(table: &ResultsTable, title: &str) -> Result<Figure, crate::Error> {
    let n = table.rows.len();
    if n == 0 {
        return Err(crate::Error::InvalidParameter {
            name: "table",
            value: 0.0,
            reason: "no runs to plot",
        });
    }
    let opts = PlotOptions::default();
    let font = opts.font_size;
    let width = (160 * n as u32 + 160).max(640);
    let height = 440;
    // with several trainers, threat models or data sets in the table, each bar says which
    let labels: Vec<String> = table.rows.iter().map(|r| table.label(r)).collect();
    let all: Vec<f64> = table
        .rows
        .iter()
        .flat_map(|r| r.clean.iter().chain(&r.pgd))
        .map(|v| 100.0 * v)
        .collect();
    let top = all.iter().copied().fold(0.0f64, f64::max);
    let y_hi = ((top / 10.0).ceil() * 10.0 + 5.0).min(100.0);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        // title left and legend right in a strip above the plot, so the legend never covers a
        // bar
        let (header, body) = root.split_vertically(2 * font + 16);
        header
            .draw(&Text::new(
                title.to_string(),
                (14, 8),
                ("sans-serif", font + 5).into_font(),
            ))
            .map_err(err)?;
        let series = [("clean", PALETTE[0], -0.18), ("PGD", PALETTE[3], 0.18)];
        for (k, (name, color, _)) in series.iter().enumerate() {
            let x = width as i32 - 14 - (series.len() - k) as i32 * (5 * font as i32 + 10);
            let y = font as i32;
            header
                .draw(&Rectangle::new(
                    [(x, y - 6), (x + 14, y + 6)],
                    color.mix(0.75).filled(),
                ))
                .map_err(err)?;
            header
                .draw(&Text::new(
                    name.to_string(),
                    (x + 20, y - font as i32 / 2 - 1),
                    ("sans-serif", font).into_font(),
                ))
                .map_err(err)?;
        }
        let mut chart = ChartBuilder::on(&body)
            .margin(14)
            .margin_top(4)
            .x_label_area_size(2 * font + 10)
            .y_label_area_size(3 * font + 12)
            .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), 0.0f64..y_hi)
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(WHITE)
            .x_labels(n)
            .x_label_formatter(&|x| {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < labels.len() {
                    labels[i as usize].clone()
                } else {
                    String::new()
                }
            })
            .y_desc("accuracy (%)")
            .label_style(("sans-serif", font))
            .axis_desc_style(("sans-serif", font))
            .draw()
            .map_err(err)?;
        for (name, color, dx) in series {
            let bars: Vec<(f64, f64, &[f64])> = table
                .rows
                .iter()
                .enumerate()
                .filter_map(|(i, r)| {
                    let v = if name == "clean" { &r.clean } else { &r.pgd };
                    let m = if name == "clean" {
                        r.clean_mean
                    } else {
                        r.pgd_mean
                    };
                    (!m.is_nan()).then_some((i as f64 + dx, 100.0 * m, v.as_slice()))
                })
                .collect();
            chart
                .draw_series(bars.iter().map(|&(x, m, _)| {
                    Rectangle::new([(x - 0.16, 0.0), (x + 0.16, m)], color.mix(0.75).filled())
                }))
                .map_err(err)?;
            for &(x, _, seeds) in &bars {
                let lo = seeds.iter().copied().fold(f64::INFINITY, f64::min) * 100.0;
                let hi = seeds.iter().copied().fold(f64::NEG_INFINITY, f64::max) * 100.0;
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        vec![(x, lo), (x, hi)],
                        BLACK.stroke_width(2),
                    )))
                    .map_err(err)?;
                chart
                    .draw_series(
                        seeds
                            .iter()
                            .map(|v| Circle::new((x, 100.0 * v), 3, BLACK.filled())),
                    )
                    .map_err(err)?;
            }
        }
        root.present().map_err(err)?;
    }
    Ok(Figure::new(title, svg))
}
