//! The shape ablation (docs/reproduction.md §4 and §6 step 3; `notebooks/02_shape_ablation`): each
//! parametric family trained with its shape parameter frozen at several values, and the
//! robustness of each value — clean accuracy, the average minimal radius, the Square success
//! rate and the empirical Lipschitz constant of `eval_std.py` for standard training, PGD accuracy
//! for adversarial training — beside the shape property the value implies (positive outputs on
//! negative inputs, curvature at 0; the columns of notebook 01's [`super::ShapeTable`]).
//!
//! [`shape_sweep_table`] gathers a [`SweepOutcome`] (quick mode computes the missing shape
//! metrics of its runs now, full mode reads those `robust-paf shape-metrics` stored);
//! [`plot_shape_sweep`] draws every metric against the parameter, one panel column per family.

use std::fmt;

use plotters::prelude::*;

use super::ablation::{NotebookMode, NotebookSetup, SweepOutcome};
use super::plot::{plot_error as err, short, PlotOptions, PALETTE};
use super::table::{html_table, text_table, NEGATIVE_SLOPE};
use super::Figure;
use crate::activations::shape::ShapeProperties;
use crate::activations::{ActivationKind, ScalarActivation};
use crate::progress::EpochLines;
pub use crate::train::assess::ShapeMetricsConfig;
use crate::train::assess::{read_shape_metrics, run_shape_metrics};
use crate::train::TrainError;

/// One frozen value of one family (the mean over its seeds).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ShapeSweepRow {
    /// The activation's code name (`prelu`, `pssilu2`, ...).
    pub activation: String,
    pub trainer: String,
    /// `"α"` or `"β"`: the frozen parameter this row varies.
    pub parameter: String,
    /// Its value.
    pub value: f64,
    pub seeds: Vec<u64>,
    /// Best-epoch clean accuracy (fraction).
    pub clean: f64,
    /// Best-epoch PGD accuracy (NaN: not evaluated).
    pub pgd: f64,
    /// Shape metrics of the best checkpoint (NaN: not computed).
    pub average_radius: f64,
    pub square_success_rate: f64,
    pub lipschitz: f64,
    /// The activation as trained (frozen values, learned ones at the end, mean over seeds).
    pub alpha: f64,
    pub beta: f64,
    /// f′(−∞) < −0.001: positive outputs that grow as x → −∞ (docs/reproduction.md §1.3).
    pub positive_on_negative_inputs: bool,
    /// f″(0) (infinite: a kink at 0, as ReLU).
    pub curvature_at_zero: f64,
}

impl ShapeSweepRow {
    /// "PReLU" (the family's name).
    pub fn family(&self) -> String {
        ActivationKind::from_code_name(&self.activation)
            .map_or_else(|| self.activation.clone(), |k| k.name().to_string())
    }

    /// What the parameter changes in this family's shape, for axis labels.
    pub fn parameter_meaning(&self) -> &'static str {
        match (self.activation.as_str(), self.parameter.as_str()) {
            ("prelu", _) => "slope on x < 0",
            ("pelu", _) => "scale on x < 0",
            ("pprelu", _) => "slope on x > 0",
            ("pblu", _) => "bend on x > 0",
            (_, "β") => "shift: f′(−∞) = −β/(1−β)",
            _ => "sharpness (curvature)",
        }
    }
}

/// The rows of a shape sweep, in the sweep's order, and what is missing.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ShapeSweepTable {
    pub rows: Vec<ShapeSweepRow>,
    /// Standard-trained runs without stored shape metrics (full mode).
    pub missing_metrics: Vec<String>,
    /// The command that computes them.
    pub command: Option<String>,
}

/// The swept parameter of a run: a frozen β (PSSiLU's shift) first, else a frozen α.
fn swept(fix_alpha: Option<f64>, fix_beta: Option<f64>) -> Option<(&'static str, f64)> {
    fix_beta
        .map(|b| ("β", b))
        .or_else(|| fix_alpha.map(|a| ("α", a)))
}

/// Gathers the runs of `outcome` that froze a shape parameter. Standard-trained runs get the
/// shape metrics of their best checkpoint: quick mode computes those not stored yet (with
/// `metrics`, on the CPU, one line per metric); full mode reads those stored by `robust-paf
/// shape-metrics` (with any settings) and lists the runs still without them.
pub fn shape_sweep_table(
    setup: &NotebookSetup,
    outcome: &SweepOutcome,
    metrics: &ShapeMetricsConfig,
) -> Result<ShapeSweepTable, TrainError> {
    struct Acc {
        row: ShapeSweepRow,
        n: [usize; 5],
        sums: [f64; 5],
    }
    let mut acc: Vec<Acc> = Vec::new();
    let mut missing = Vec::new();
    for c in &outcome.runs {
        let s = &c.summary;
        let Some((parameter, value)) = swept(s.fix_alpha, s.fix_beta) else {
            continue;
        };
        let stored = if s.trainer == "standard" {
            match setup.mode {
                NotebookMode::Quick => Some(run_shape_metrics(&c.dir, metrics, &mut EpochLines)?),
                NotebookMode::Full => {
                    let m = read_shape_metrics(&c.dir, None)?;
                    if m.is_none() {
                        missing.push(
                            c.dir
                                .file_name()
                                .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
                        );
                    }
                    m
                }
            }
        } else {
            None
        };
        let kind = ActivationKind::from_code_name(&s.activation);
        let (a0, b0) = kind.map_or((f64::NAN, f64::NAN), |k| k.initial_params());
        let param = |name: &str, fixed: Option<f64>, init: f64| {
            fixed
                .or_else(|| s.activation_parameters.get(name).copied())
                .unwrap_or(init)
        };
        let (alpha, beta) = (
            param("alpha", s.fix_alpha, a0),
            param("beta", s.fix_beta, b0),
        );
        let values = [
            s.best_clean_accuracy,
            s.best_pgd_accuracy,
            stored.as_ref().map(|m| m.average_radius),
            stored.as_ref().map(|m| m.square_success_rate),
            stored.as_ref().map(|m| m.lipschitz),
        ];
        let i = match acc.iter().position(|a| {
            a.row.activation == s.activation
                && a.row.trainer == s.trainer
                && a.row.parameter == parameter
                && a.row.value == value
        }) {
            Some(i) => i,
            None => {
                acc.push(Acc {
                    row: ShapeSweepRow {
                        activation: s.activation.clone(),
                        trainer: s.trainer.clone(),
                        parameter: parameter.to_string(),
                        value,
                        seeds: Vec::new(),
                        clean: f64::NAN,
                        pgd: f64::NAN,
                        average_radius: f64::NAN,
                        square_success_rate: f64::NAN,
                        lipschitz: f64::NAN,
                        alpha: 0.0,
                        beta: 0.0,
                        positive_on_negative_inputs: false,
                        curvature_at_zero: f64::NAN,
                    },
                    n: [0; 5],
                    sums: [0.0; 5],
                });
                acc.len() - 1
            }
        };
        let a = &mut acc[i];
        let k = a.row.seeds.len() as f64;
        a.row.seeds.push(s.seed);
        a.row.alpha = (a.row.alpha * k + alpha) / (k + 1.0);
        a.row.beta = (a.row.beta * k + beta) / (k + 1.0);
        for (j, v) in values.iter().enumerate() {
            if let Some(v) = v {
                a.n[j] += 1;
                a.sums[j] += v;
            }
        }
    }
    // families in the order the sweep names them, values ascending within each
    let family_of =
        |r: &ShapeSweepRow| (r.activation.clone(), r.trainer.clone(), r.parameter.clone());
    let mut order: Vec<(String, String, String)> = Vec::new();
    for a in &acc {
        if !order.contains(&family_of(&a.row)) {
            order.push(family_of(&a.row));
        }
    }
    acc.sort_by(|a, b| {
        let (fa, fb) = (
            order.iter().position(|f| *f == family_of(&a.row)),
            order.iter().position(|f| *f == family_of(&b.row)),
        );
        fa.cmp(&fb).then(a.row.value.total_cmp(&b.row.value))
    });
    let rows = acc
        .into_iter()
        .map(|a| {
            let mut r = a.row;
            let mean = |j: usize| {
                if a.n[j] == 0 {
                    f64::NAN
                } else {
                    a.sums[j] / a.n[j] as f64
                }
            };
            r.clean = mean(0);
            r.pgd = mean(1);
            r.average_radius = mean(2);
            r.square_success_rate = mean(3);
            r.lipschitz = mean(4);
            if let Some(kind) = ActivationKind::from_code_name(&r.activation) {
                let p = ShapeProperties::of(&ScalarActivation::new(kind, r.alpha, r.beta));
                r.positive_on_negative_inputs = p.slope_at_neg_inf < NEGATIVE_SLOPE;
                r.curvature_at_zero = if p.kink_at_zero {
                    f64::INFINITY
                } else {
                    p.curvature_at_zero
                };
            }
            r
        })
        .collect();
    let command = (!missing.is_empty()).then(|| {
        format!(
            "robust-paf shape-metrics {}   # add --n-examples N for a faster estimate",
            outcome.dir.display()
        )
    });
    Ok(ShapeSweepTable {
        rows,
        missing_metrics: missing,
        command,
    })
}

fn pct(v: f64) -> String {
    if v.is_nan() {
        "–".into()
    } else {
        format!("{:.1}", 100.0 * v)
    }
}

fn num(v: f64, digits: usize) -> String {
    if v.is_nan() {
        "–".into()
    } else {
        format!("{v:.digits$}")
    }
}

impl ShapeSweepTable {
    /// The rows of one trainer (`"standard"`, `"pgd-at"`, `"trades"`).
    pub fn for_trainer(&self, trainer: &str) -> ShapeSweepTable {
        ShapeSweepTable {
            rows: self
                .rows
                .iter()
                .filter(|r| r.trainer == trainer)
                .cloned()
                .collect(),
            missing_metrics: self.missing_metrics.clone(),
            command: self.command.clone(),
        }
    }

    fn cells(&self) -> Vec<[String; 11]> {
        let mut out = vec![[
            "family".to_string(),
            "frozen".into(),
            "trainer".into(),
            "seeds".into(),
            "positive outputs on x < 0".into(),
            "f″(0)".into(),
            "clean (%)".into(),
            "PGD (%)".into(),
            "avg. radius".into(),
            "Square success (%)".into(),
            "Lipschitz".into(),
        ]];
        for r in &self.rows {
            out.push([
                r.family(),
                format!("{}={}", r.parameter, short(r.value)),
                r.trainer.clone(),
                r.seeds.len().to_string(),
                if r.positive_on_negative_inputs {
                    "yes".into()
                } else {
                    "no".into()
                },
                if r.curvature_at_zero.is_infinite() {
                    "∞ (kink)".into()
                } else {
                    short(r.curvature_at_zero)
                },
                pct(r.clean),
                pct(r.pgd),
                num(r.average_radius, 4),
                pct(r.square_success_rate),
                num(r.lipschitz, 2),
            ]);
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

impl fmt::Display for ShapeSweepTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        text_table(f, &self.cells(), 3)?;
        if let Some(c) = &self.command {
            write!(
                f,
                "\n{} run(s) without shape metrics ({}); compute them with\n  {c}",
                self.missing_metrics.len(),
                self.missing_metrics.join(", ")
            )?;
        }
        Ok(())
    }
}

/// A metric [`plot_shape_sweep`] can draw.
struct Metric {
    name: &'static str,
    get: fn(&ShapeSweepRow) -> f64,
}

const METRICS: [Metric; 5] = [
    Metric {
        name: "clean acc. (%)",
        get: |r| 100.0 * r.clean,
    },
    Metric {
        name: "PGD acc. (%)",
        get: |r| 100.0 * r.pgd,
    },
    Metric {
        name: "avg. radius (↑ robust)",
        get: |r| r.average_radius,
    },
    Metric {
        name: "Square succ. % (↓ robust)",
        get: |r| 100.0 * r.square_success_rate,
    },
    Metric {
        name: "Lipschitz (↓ robust)",
        get: |r| r.lipschitz,
    },
];

/// Every metric the table holds against the frozen parameter: one column of panels per family
/// (each with its own x axis, the parameter's meaning below it), one row per metric; a filled
/// marker where the value gives positive outputs on negative inputs, a hollow one where not.
/// Rows of several trainers are drawn as one line each, in the trainer's colour.
///
/// ```
/// use robust_paf::notebook::shape_sweep::{plot_shape_sweep, ShapeSweepRow, ShapeSweepTable};
///
/// // the rows `shape_sweep_table` gathers from a sweep freezing PSSiLU's β
/// let row = |beta: f64, pgd: f64| ShapeSweepRow {
///     activation: "pssilu2".into(), trainer: "pgd-at".into(), parameter: "β".into(), value: beta,
///     seeds: vec![0], clean: 0.8, pgd, average_radius: f64::NAN, square_success_rate: f64::NAN,
///     lipschitz: f64::NAN, alpha: 1.0, beta, positive_on_negative_inputs: beta > 0.0,
///     curvature_at_zero: 0.5 / (1.0 - beta),
/// };
/// let table = ShapeSweepTable {
///     rows: vec![row(0.0, 0.45), row(0.25, 0.50), row(0.5, 0.52)],
///     missing_metrics: vec![],
///     command: None,
/// };
/// let fig = plot_shape_sweep(&table, "PSSiLU, β frozen")?;
/// assert!(fig.svg().contains("<svg"));
/// # Ok::<(), robust_paf::Error>(())
/// ```
pub fn plot_shape_sweep(table: &ShapeSweepTable, title: &str) -> Result<Figure, crate::Error> {
    let mut families: Vec<(String, String)> = Vec::new();
    for r in &table.rows {
        let key = (r.activation.clone(), r.parameter.clone());
        if !families.contains(&key) {
            families.push(key);
        }
    }
    let metrics: Vec<&Metric> = METRICS
        .iter()
        .filter(|m| table.rows.iter().any(|r| (m.get)(r).is_finite()))
        .collect();
    if families.is_empty() || metrics.is_empty() {
        return Err(crate::Error::InvalidParameter {
            name: "table",
            value: table.rows.len() as f64,
            reason: "no run with a frozen shape parameter and a metric to plot",
        });
    }
    let mut trainers: Vec<&str> = Vec::new();
    for r in &table.rows {
        if !trainers.contains(&r.trainer.as_str()) {
            trainers.push(&r.trainer);
        }
    }
    let opts = PlotOptions::default();
    let font = opts.font_size;
    let (pw, ph) = (330u32, 230u32);
    let (cols, nrows) = (families.len() as u32, metrics.len() as u32);
    let top = 2 * font + 30;
    let width = (pw * cols).max(560); // room for the marker legend above one column
    let height = top + ph * nrows;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let (head, body) = root.split_vertically(top);
        head.titled(title, ("sans-serif", font + 7)).map_err(err)?;
        let legend = format!(
            "● positive outputs on x < 0 (f′(−∞) < 0)   ○ none{}",
            if trainers.len() > 1 {
                format!(
                    "   colours: {}",
                    trainers
                        .iter()
                        .enumerate()
                        .map(|(i, t)| format!("{} {t}", ["blue", "red", "green"][i.min(2)]))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            } else {
                String::new()
            }
        );
        head.draw(&Text::new(
            legend,
            (10, (font + 14) as i32),
            ("sans-serif", font).into_font(),
        ))
        .map_err(err)?;
        let panels = body.split_evenly((nrows as usize, cols as usize));
        for (mi, m) in metrics.iter().enumerate() {
            for (fi, (act, par)) in families.iter().enumerate() {
                let area = &panels[mi * cols as usize + fi];
                let rows: Vec<&ShapeSweepRow> = table
                    .rows
                    .iter()
                    .filter(|r| &r.activation == act && &r.parameter == par)
                    .collect();
                let xs: Vec<f64> = rows.iter().map(|r| r.value).collect();
                let (x_lo, x_hi) = padded(&xs);
                let ys: Vec<f64> = rows
                    .iter()
                    .map(|r| (m.get)(r))
                    .filter(|v| v.is_finite())
                    .collect();
                let (y_lo, y_hi) = padded(&ys);
                let last_row = mi + 1 == metrics.len();
                let mut chart = ChartBuilder::on(area)
                    .margin(6)
                    .caption(
                        if mi == 0 {
                            rows[0].family()
                        } else {
                            String::new()
                        },
                        ("sans-serif", font + 2),
                    )
                    .x_label_area_size(if last_row { 2 * font + 8 } else { font + 8 })
                    .y_label_area_size(3 * font + 6)
                    .build_cartesian_2d(x_lo..x_hi, y_lo..y_hi)
                    .map_err(err)?;
                let x_desc = format!("{}: {}", par, rows[0].parameter_meaning());
                let mut mesh = chart.configure_mesh();
                mesh.x_labels(4)
                    .y_labels(4)
                    .light_line_style(WHITE)
                    .x_label_formatter(&|v| short(*v))
                    .y_label_formatter(&|v| short(*v))
                    .label_style(("sans-serif", font - 2));
                if last_row {
                    mesh.x_desc(x_desc.as_str());
                }
                if fi == 0 {
                    mesh.y_desc(m.name);
                }
                mesh.axis_desc_style(("sans-serif", font - 2))
                    .draw()
                    .map_err(err)?;
                for (ti, t) in trainers.iter().enumerate() {
                    let color = if trainers.len() == 1 {
                        PALETTE[fi % PALETTE.len()]
                    } else {
                        [PALETTE[0], PALETTE[3], PALETTE[2]][ti.min(2)]
                    };
                    let mut pts: Vec<(f64, f64, bool)> = rows
                        .iter()
                        .filter(|r| r.trainer == *t)
                        .map(|r| (r.value, (m.get)(r), r.positive_on_negative_inputs))
                        .filter(|p| p.1.is_finite())
                        .collect();
                    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                    chart
                        .draw_series(LineSeries::new(
                            pts.iter().map(|p| (p.0, p.1)),
                            color.stroke_width(2),
                        ))
                        .map_err(err)?;
                    chart
                        .draw_series(pts.iter().map(|&(x, y, pos)| {
                            let style = if pos {
                                color.filled()
                            } else {
                                color.stroke_width(2)
                            };
                            Circle::new((x, y), 5, style)
                        }))
                        .map_err(err)?;
                }
            }
        }
        root.present().map_err(err)?;
    }
    Ok(Figure::new(title, svg))
}

/// A range around the values, 8 % wider on each side (±0.5 around a single value).
fn padded(v: &[f64]) -> (f64, f64) {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 1.0);
    }
    let span = hi - lo;
    if span <= 1e-12 * hi.abs().max(1.0) {
        let d = (0.5 * hi.abs()).max(0.5);
        return (lo - d, hi + d);
    }
    (lo - 0.08 * span, hi + 0.08 * span)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_swept_parameter_is_a_frozen_beta_first() {
        assert_eq!(swept(Some(1.0), Some(0.3)), Some(("β", 0.3)));
        assert_eq!(swept(Some(-0.25), None), Some(("α", -0.25)));
        assert_eq!(swept(None, None), None);
    }

    #[test]
    fn padded_ranges_contain_their_values() {
        assert_eq!(padded(&[0.0, 1.0]), (-0.08, 1.08));
        let (lo, hi) = padded(&[2.0]);
        assert!(lo < 2.0 && hi > 2.0);
        assert_eq!(padded(&[]), (0.0, 1.0));
    }
}
