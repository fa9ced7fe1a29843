//! Line plots of activations and their first two derivatives (docs/reproduction.md §1.2, §1.3).

use plotters::coord::Shift;
use plotters::prelude::*;

use super::Figure;
use crate::activations::shape::ShapeGrid;
use crate::activations::{ActivationKind, ScalarActivation};
use crate::Error;

/// Points per curve; odd, so a range symmetric around 0 samples x = 0 exactly.
const SAMPLES: usize = 401;
const TITLE_HEIGHT: u32 = 44;
const FONT: &str = "sans-serif";

/// Size and range of the notebook plots. Every figure scales to the width of its notebook cell
/// (SVG `viewBox`, `width="100%"`) up to `max_width`; the sizes below are in SVG units, i.e.
/// pixels when the figure is shown at full size, so text stays readable when a figure of three
/// panels is shrunk to a 1000 px cell (labels of size 18, which plotters writes as SVG
/// `font-size` 14.5, are shown at 12 px there).
#[derive(Clone, Debug, PartialEq)]
pub struct PlotOptions {
    /// Width of one panel (default 400).
    pub panel_width: u32,
    /// Height of one panel (default 330).
    pub panel_height: u32,
    /// Tick, axis and legend label size in plotters' units (default 18; the SVG gets 0.81 of it);
    /// captions get +3, the title +7.
    pub font_size: u32,
    /// The widest the figure is shown, in px (default: its own width).
    pub max_width: Option<u32>,
    /// The x range of activation plots (default [−5, 5]).
    pub x_range: (f64, f64),
}

impl Default for PlotOptions {
    fn default() -> Self {
        Self {
            panel_width: 400,
            panel_height: 330,
            font_size: 18,
            max_width: None,
            x_range: (-5.0, 5.0),
        }
    }
}

impl PlotOptions {
    fn check(&self) -> Result<(), Error> {
        for (name, v, lo) in [
            ("panel_width", self.panel_width, 120),
            ("panel_height", self.panel_height, 100),
            ("font_size", self.font_size, 6),
        ] {
            if v < lo {
                return Err(Error::InvalidParameter {
                    name,
                    value: v as f64,
                    reason: "too small to draw",
                });
            }
        }
        check_range(self.x_range.0, self.x_range.1)
    }
}

/// The twelve activations of docs/reproduction.md §1.2 at the paper's initial parameters.
pub fn paper_activations() -> Vec<ScalarActivation> {
    ActivationKind::ALL
        .into_iter()
        .map(ScalarActivation::initial)
        .collect()
}

/// [`plot_activations`] of the twelve [`paper_activations`] on [−5, 5].
///
/// ```
/// let fig = robust_paf::notebook::plot_paper_activations()?;
/// assert!(fig.svg().contains("PSSiLU")); // in a notebook cell: `fig.evcxr_display()`
/// # Ok::<(), robust_paf::Error>(())
/// ```
pub fn plot_paper_activations() -> Result<Figure, Error> {
    plot_activations(&paper_activations(), -5.0, 5.0)
}

/// Plots f, f′ and f″ of every activation on `[lo, hi]`, in three panels side by side, with a
/// legend: [`plot_activations_with`] with the default [`PlotOptions`].
///
/// ```
/// use robust_paf::activations::{ActivationKind, ScalarActivation};
/// use robust_paf::notebook::plot_activations;
///
/// let acts = [
///     ScalarActivation::initial(ActivationKind::Relu),
///     ScalarActivation::new(ActivationKind::Prelu, 0.25, 0.0),
///     ScalarActivation::new(ActivationKind::Pssilu, 4.0, 0.5),
/// ];
/// let fig = plot_activations(&acts, -3.0, 3.0)?;
/// assert!(fig.svg().contains("PReLU"));
/// assert!(plot_activations(&acts, 3.0, -3.0).is_err(), "an empty range is an error");
/// # Ok::<(), robust_paf::Error>(())
/// ```
pub fn plot_activations(acts: &[ScalarActivation], lo: f64, hi: f64) -> Result<Figure, Error> {
    plot_activations_with(
        acts,
        &PlotOptions {
            x_range: (lo, hi),
            ..PlotOptions::default()
        },
    )
}

/// Plots f, f′ and f″ of every activation on `opts.x_range`, in three panels side by side.
/// Activations whose three curves coincide on the range (e.g. ReLU and PReLU at α = 0) are
/// drawn once with one legend entry naming them all ("ELU = PELU"); an activation kind listed
/// more than once is labelled with its parameters ("PReLU α=0.25").
pub fn plot_activations_with(
    acts: &[ScalarActivation],
    opts: &PlotOptions,
) -> Result<Figure, Error> {
    opts.check()?;
    let (lo, hi) = opts.x_range;
    if acts.is_empty() {
        return Err(Error::InvalidParameter {
            name: "acts",
            value: 0.0,
            reason: "no activations to plot",
        });
    }
    let all: Vec<ShapeGrid> = acts
        .iter()
        .map(|act| ShapeGrid::evaluate(act, lo, hi, SAMPLES))
        .collect();
    let (grids, labels) = group_coincident(&all, &activation_labels(acts));
    let title = format!("Activations on [{lo}, {hi}]: f, f′, f″");
    let panels: Vec<Panel> = DERIVATIVES
        .iter()
        .enumerate()
        .map(|(order, caption)| Panel {
            caption: (*caption).to_string(),
            curves: curves(&grids, &labels, order),
            legend: order == 0,
            x: (lo, hi),
            x_desc: "x",
            integer_x: false,
        })
        .collect();
    draw(&title, (1, 3), &panels, opts)
}

/// Legend labels: the name, plus the parameters when the kind occurs more than once.
pub(super) fn activation_labels(acts: &[ScalarActivation]) -> Vec<String> {
    acts.iter()
        .map(|act| {
            let repeated = acts.iter().filter(|a| a.kind == act.kind).count() > 1;
            let params = act.kind.num_params();
            match (repeated, params) {
                (false, _) | (true, 0) => act.name().to_string(),
                (true, 1) => format!("{} α={}", act.name(), short(act.alpha)),
                (true, _) => format!(
                    "{} α={}, β={}",
                    act.name(),
                    short(act.alpha),
                    short(act.beta)
                ),
            }
        })
        .collect()
}

/// A number with at most 4 significant digits, trailing zeros dropped (`0.25`, `1`, `1e-8`,
/// `0.4167`): the one number format of the plots and tables.
pub(super) fn short(x: f64) -> String {
    if !x.is_finite() {
        return format!("{x}");
    }
    if x == 0.0 {
        return "0".into();
    }
    if !(1e-3..1e4).contains(&x.abs()) {
        let s = format!("{x:.3e}");
        let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
        let m = if m.contains('.') {
            m.trim_end_matches('0').trim_end_matches('.')
        } else {
            m
        };
        return format!("{m}e{e}");
    }
    let digits = (3 - x.abs().log10().floor() as i32).max(0) as usize;
    let s = format!("{x:.digits$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Merges grids whose f, f′ and f″ all agree within 1e-4 of the curves' range (indistinguishable
/// on the plot) into one, labelled "A = B = …".
fn group_coincident(grids: &[ShapeGrid], labels: &[String]) -> (Vec<ShapeGrid>, Vec<String>) {
    let range = |ys: &dyn Fn(&ShapeGrid) -> &Vec<f64>| {
        let (lo, hi) = grids
            .iter()
            .flat_map(|g| ys(g).iter().copied())
            .filter(|v| v.is_finite())
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
                (l.min(v), h.max(v))
            });
        (hi - lo).max(1e-12)
    };
    let tol = [
        1e-4 * range(&|g| &g.f),
        1e-4 * range(&|g| &g.df),
        1e-4 * range(&|g| &g.d2f),
    ];
    let same = |a: &ShapeGrid, b: &ShapeGrid| {
        let close = |x: &[f64], y: &[f64], t: f64| x.iter().zip(y).all(|(p, q)| (p - q).abs() <= t);
        close(&a.f, &b.f, tol[0]) && close(&a.df, &b.df, tol[1]) && close(&a.d2f, &b.d2f, tol[2])
    };
    let mut out: Vec<(ShapeGrid, Vec<String>)> = Vec::new();
    for (g, l) in grids.iter().zip(labels) {
        match out.iter_mut().find(|(h, _)| same(h, g)) {
            Some((_, names)) => names.push(l.clone()),
            None => out.push((g.clone(), vec![l.clone()])),
        }
    }
    out.into_iter().map(|(g, n)| (g, n.join(" = "))).unzip()
}

/// Plots PSSiLU, f(x) = x·(σ(|α|x) − |β|)/(1 − |β|), for every α in `alphas` (one colour each)
/// and β in `betas` (one column each), with f, f′ and f″ in three rows, on [−5, 5]. α sets the
/// curvature at 0 (f″(0) = |α|/(2(1 − |β|))), β the slope −|β|/(1 − |β|) on very negative
/// inputs, i.e. how positive the outputs on negative inputs are (docs/reproduction.md §1.3).
///
/// ```
/// let fig = robust_paf::notebook::plot_pssilu_family(&[1.0, 4.0, 16.0], &[0.0, 0.3])?;
/// assert!(fig.svg().contains("<svg"));
/// # Ok::<(), robust_paf::Error>(())
/// ```
pub fn plot_pssilu_family(alphas: &[f64], betas: &[f64]) -> Result<Figure, Error> {
    plot_pssilu_family_with(alphas, betas, &PlotOptions::default())
}

/// [`plot_pssilu_family`] with the sizes and x range of `opts`.
pub fn plot_pssilu_family_with(
    alphas: &[f64],
    betas: &[f64],
    opts: &PlotOptions,
) -> Result<Figure, Error> {
    opts.check()?;
    let (lo, hi) = opts.x_range;
    for (name, values) in [("alphas", alphas), ("betas", betas)] {
        if values.is_empty() {
            return Err(Error::InvalidParameter {
                name,
                value: 0.0,
                reason: "empty list",
            });
        }
    }
    if let Some(&alpha) = alphas.iter().find(|a| !a.is_finite()) {
        return Err(Error::InvalidParameter {
            name: "alpha",
            value: alpha,
            reason: "must be finite",
        });
    }
    if let Some(&beta) = betas.iter().find(|b| b.is_nan() || b.abs() >= 1.0) {
        return Err(Error::InvalidParameter {
            name: "beta",
            value: beta,
            reason: "PSSiLU needs |β| < 1",
        });
    }
    let labels: Vec<String> = alphas
        .iter()
        .map(|&alpha| format!("α = {}", short(alpha)))
        .collect();
    // One grid per (β, α), evaluated once; panels row by row: f, f′, f″ for each β.
    let grids: Vec<Vec<ShapeGrid>> = betas
        .iter()
        .map(|&beta| {
            alphas
                .iter()
                .map(|&alpha| {
                    let act = ScalarActivation::new(ActivationKind::Pssilu, alpha, beta);
                    ShapeGrid::evaluate(&act, lo, hi, SAMPLES)
                })
                .collect()
        })
        .collect();
    let mut panels = Vec::with_capacity(3 * betas.len());
    for (order, derivative) in DERIVATIVES.iter().enumerate() {
        for (beta, grids) in betas.iter().zip(&grids) {
            panels.push(Panel {
                caption: format!("PSSiLU {derivative}, β = {}", short(*beta)),
                curves: curves(grids, &labels, order),
                legend: panels.is_empty(),
                x: (lo, hi),
                x_desc: "x",
                integer_x: false,
            });
        }
    }
    draw(
        "PSSiLU: α sets the curvature at 0, β the outputs on negative inputs",
        (3, betas.len()),
        &panels,
        opts,
    )
}

/// Line colours, in order (matplotlib's "tab10" plus black and navy): distinguishable, none too
/// pale on white.
pub(super) const PALETTE: [RGBColor; 12] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x7f, 0x7f, 0x7f),
    RGBColor(0xbc, 0xbd, 0x22),
    RGBColor(0x17, 0xbe, 0xcf),
    RGBColor(0x00, 0x00, 0x00),
    RGBColor(0x00, 0x00, 0x80),
];

/// Panel captions by derivative order.
const DERIVATIVES: [&str; 3] = ["f(x)", "f′(x)", "f″(x)"];

pub(super) struct Curve {
    pub(super) label: String,
    pub(super) color: RGBColor,
    pub(super) points: Vec<(f64, f64)>,
    /// Drawn dashed (e.g. β beside the solid α of the same run).
    pub(super) dashed: bool,
}

pub(super) struct Panel {
    pub(super) caption: String,
    pub(super) curves: Vec<Curve>,
    pub(super) legend: bool,
    /// The x range and its label.
    pub(super) x: (f64, f64),
    pub(super) x_desc: &'static str,
    /// Ticks at integers only (epochs).
    pub(super) integer_x: bool,
}

/// One curve per grid: its derivative of order `order` (0, 1, 2), coloured by position.
fn curves(grids: &[ShapeGrid], labels: &[String], order: usize) -> Vec<Curve> {
    grids
        .iter()
        .zip(labels)
        .enumerate()
        .map(|(i, (grid, label))| {
            let ys = [&grid.f, &grid.df, &grid.d2f][order];
            Curve {
                label: label.clone(),
                color: PALETTE[i % PALETTE.len()],
                points: grid.x.iter().copied().zip(ys.iter().copied()).collect(),
                dashed: false,
            }
        })
        .collect()
}

fn check_range(lo: f64, hi: f64) -> Result<(), Error> {
    if !lo.is_finite() {
        return Err(Error::InvalidParameter {
            name: "lo",
            value: lo,
            reason: "must be finite",
        });
    }
    if !(hi.is_finite() && hi > lo) {
        return Err(Error::InvalidParameter {
            name: "hi",
            value: hi,
            reason: "must be finite and > lo",
        });
    }
    Ok(())
}

/// Draws `panels` row by row on a `(rows, cols)` grid under `title`.
pub(super) fn draw(
    title: &str,
    (rows, cols): (usize, usize),
    panels: &[Panel],
    opts: &PlotOptions,
) -> Result<Figure, Error> {
    opts.check()?;
    let size = (
        opts.panel_width * cols as u32,
        opts.panel_height * rows as u32 + TITLE_HEIGHT,
    );
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let root = root
            .titled(title, (FONT, opts.font_size + 7))
            .map_err(plot_error)?;
        for (area, panel) in root.split_evenly((rows, cols)).iter().zip(panels) {
            draw_panel(area, panel, opts.font_size)?;
        }
        root.present().map_err(plot_error)?;
    }
    Ok(Figure::new(title, svg).with_max_width(opts.max_width))
}

fn draw_panel(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    panel: &Panel,
    font: u32,
) -> Result<(), Error> {
    let (lo, hi) = panel.x;
    let (y_lo, y_hi) = y_range(panel)?;
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.caption, (FONT, font + 3))
        .margin(10)
        .x_label_area_size(2 * font + 6)
        .y_label_area_size(3 * font + 10)
        .build_cartesian_2d(lo..hi, y_lo..y_hi)
        .map_err(plot_error)?;
    let span = (hi - lo).round().max(1.0) as usize;
    let x_ticks = if panel.integer_x {
        (span + 1).min(11)
    } else {
        10
    };
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .x_desc(panel.x_desc)
        .x_labels(x_ticks)
        .x_label_formatter(&|x| {
            if panel.integer_x && (x - x.round()).abs() > 1e-9 {
                String::new()
            } else {
                tick_label(*x)
            }
        })
        .y_label_formatter(&|y| tick_label(*y))
        .label_style((FONT, font))
        .axis_desc_style((FONT, font))
        .draw()
        .map_err(plot_error)?;
    for curve in &panel.curves {
        let style = curve.color.stroke_width(2);
        let series = if curve.dashed {
            chart.draw_series(DashedLineSeries::new(
                curve.points.iter().copied(),
                7,
                5,
                style,
            ))
        } else {
            chart.draw_series(LineSeries::new(curve.points.iter().copied(), style))
        };
        let dashed = curve.dashed;
        series
            .map_err(plot_error)?
            .label(curve.label.as_str())
            .legend(move |(x, y)| {
                let end = if dashed { x + 8 } else { x + 18 };
                PathElement::new(vec![(x, y), (end, y)], style)
            });
    }
    if panel.legend {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.7))
            .border_style(BLACK.mix(0.4))
            .label_font((FONT, font))
            .draw()
            .map_err(plot_error)?;
    }
    Ok(())
}

/// The y range covering every curve of the panel, padded by 5% (±0.5 around a flat panel).
fn y_range(panel: &Panel) -> Result<(f64, f64), Error> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for curve in &panel.curves {
        for &(_, y) in &curve.points {
            if !y.is_finite() {
                return Err(Error::NonFinite {
                    what: format!("{} of {}", panel.caption, curve.label),
                });
            }
            lo = lo.min(y);
            hi = hi.max(y);
        }
    }
    if lo > hi {
        return Ok((0.0, 1.0)); // no curves
    }
    let pad = if hi - lo > 1e-9 {
        0.05 * (hi - lo)
    } else {
        0.5
    };
    Ok((lo - pad, hi + pad))
}

/// A tick label: at most three decimals, trailing zeros dropped, no "-0".
fn tick_label(value: f64) -> String {
    let text = format!("{value:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".to_string()
    } else {
        text.to_string()
    }
}

pub(super) fn plot_error<E: std::error::Error + Send + Sync>(e: DrawingAreaErrorKind<E>) -> Error {
    Error::Io(format!("plotting failed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Curves are the `<polyline>`s with many points (axes, ticks and legend marks have two).
    fn curve_count(svg: &str) -> usize {
        svg.split("<polyline")
            .skip(1)
            .filter(|element| {
                let points = element
                    .split("points=\"")
                    .nth(1)
                    .and_then(|rest| rest.split('"').next());
                points.is_some_and(|p| p.split_whitespace().count() > 10)
            })
            .count()
    }

    /// The contents of the `<text>` elements.
    fn texts(svg: &str) -> Vec<&str> {
        svg.split("<text")
            .skip(1)
            .filter_map(|element| element.split_once('>')?.1.split_once("</text>"))
            .map(|(text, _)| text.trim())
            .collect()
    }

    /// The legend entries: texts that name an activation of the paper.
    fn legend_entries(svg: &str) -> Vec<String> {
        let names: Vec<&str> = paper_activations().iter().map(|a| a.name()).collect();
        texts(svg)
            .into_iter()
            .filter(|t| t.split(" = ").all(|n| names.contains(&n)))
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn paper_plot_draws_each_visible_curve_once_and_names_every_activation() {
        let figure = plot_paper_activations().unwrap();
        let svg = figure.svg();
        assert!(svg.starts_with("<svg"));
        let entries = legend_entries(svg);
        // at their initial parameters PReLU (α = 0) is ReLU, PELU (α = 1) is ELU, PSiLU and
        // PSSiLU (β = 1e-8) are SiLU, PSoftplus is Softplus: one curve and one entry each
        for group in ["ReLU = PReLU", "ELU = PELU", "Softplus = PSoftplus"] {
            assert!(
                entries.iter().any(|e| e.starts_with(group)),
                "{group}: {entries:?}"
            );
        }
        assert!(
            entries
                .iter()
                .any(|e| e.starts_with("SiLU = PSiLU = PSSiLU")),
            "{entries:?}"
        );
        assert_eq!(curve_count(svg), 3 * entries.len());
        assert!(entries.len() < 12);
        for act in paper_activations() {
            assert!(
                entries
                    .iter()
                    .any(|e| e.split(" = ").any(|n| n == act.name())),
                "legend lacks {}",
                act.name()
            );
        }
        for caption in DERIVATIVES {
            assert!(texts(svg).contains(&caption), "no panel {caption}");
        }
    }

    #[test]
    fn sweeps_are_labelled_with_their_parameters() {
        let acts: Vec<ScalarActivation> = [0.25, -0.5, 0.0]
            .iter()
            .map(|&a| ScalarActivation::new(ActivationKind::Prelu, a, 0.0))
            .chain([ScalarActivation::initial(ActivationKind::Relu)])
            .collect();
        let svg = plot_activations(&acts, -2.0, 2.0)
            .unwrap()
            .svg()
            .to_string();
        let texts = texts(&svg);
        assert!(texts.contains(&"PReLU α=0.25"), "{texts:?}");
        assert!(texts.contains(&"PReLU α=-0.5"), "{texts:?}");
        assert!(texts.contains(&"PReLU α=0 = ReLU"), "{texts:?}");
        assert_eq!(curve_count(&svg), 3 * 3);
    }

    /// The smallest `font-size` in the SVG and the `viewBox` width.
    fn smallest_font_and_width(svg: &str) -> (f64, f64) {
        let smallest = svg
            .split("font-size=\"")
            .skip(1)
            .filter_map(|r| r.split('"').next()?.parse::<f64>().ok())
            .fold(f64::INFINITY, f64::min);
        let view_box = svg
            .split("viewBox=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let width: f64 = view_box.split_whitespace().nth(2).unwrap().parse().unwrap();
        (smallest, width)
    }

    #[test]
    fn figures_scale_to_the_cell_and_stay_readable_in_1000_px() {
        for figure in [
            plot_paper_activations().unwrap(),
            plot_pssilu_family(&[0.5, 1.0, 2.0, 5.0], &[0.0, 0.1, 0.3]).unwrap(),
        ] {
            let shown_svg = figure.display_svg();
            let head = &shown_svg[..shown_svg.find('>').unwrap()];
            assert!(
                head.contains("width=\"100%\"") && head.contains("viewBox"),
                "{head}"
            );
            assert!(!head.contains("height=\""), "{head}");
            let (font, width) = smallest_font_and_width(figure.svg());
            let shown = font * (1000.0 / width).min(1.0);
            assert!(
                shown >= 11.0,
                "{}: {font} units at {width} wide: {shown:.1} px",
                figure.title()
            );
        }
        let opts = PlotOptions {
            panel_width: 300,
            max_width: Some(700),
            x_range: (-2.0, 1.0),
            ..PlotOptions::default()
        };
        let f = plot_activations_with(&paper_activations(), &opts).unwrap();
        assert!(
            f.svg().contains("viewBox=\"0 0 900 "),
            "{}",
            &f.svg()[..120]
        );
        assert!(f.display_svg().contains("max-width: 700px"));
        assert!(f.title().contains("[-2, 1]"));
        let bad = PlotOptions {
            font_size: 2,
            ..PlotOptions::default()
        };
        assert!(plot_activations_with(&paper_activations(), &bad).is_err());
    }

    #[test]
    fn pssilu_family_has_one_curve_per_alpha_beta_and_derivative() {
        let figure = plot_pssilu_family(&[0.5, 1.0, 2.0, 5.0], &[0.0, 0.1, 0.3]).unwrap();
        assert_eq!(curve_count(figure.svg()), 3 * 4 * 3);
        let texts = texts(figure.svg());
        assert!(texts.contains(&"α = 5"));
        assert!(texts.contains(&"PSSiLU f(x), β = 0.3"));
    }

    #[test]
    fn short_numbers() {
        assert_eq!(short(0.25), "0.25");
        assert_eq!(short(1.0), "1");
        assert_eq!(short(1e-8), "1e-8");
        assert_eq!(short(2.5e-5), "2.5e-5");
        assert_eq!(short(0.41666666), "0.4167");
        assert_eq!(short(-12.5), "-12.5");
    }

    #[test]
    fn tick_labels_are_short() {
        assert_eq!(tick_label(-0.0001), "0");
        assert_eq!(tick_label(2.0), "2");
        assert_eq!(tick_label(-0.25), "-0.25");
        assert_eq!(tick_label(10.0), "10");
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(plot_activations(&[], -1.0, 1.0).is_err());
        assert!(plot_activations(&paper_activations(), 1.0, -1.0).is_err());
        assert!(plot_activations(&paper_activations(), f64::NAN, 1.0).is_err());
        assert!(plot_pssilu_family(&[1.0], &[1.0]).is_err());
        assert!(plot_pssilu_family(&[], &[0.1]).is_err());
    }
}
