//! Line plots of activations and their first two derivatives (PAPER.md §1.2, §1.3).

use plotters::coord::Shift;
use plotters::prelude::*;

use super::Figure;
use crate::activations::shape::ShapeGrid;
use crate::activations::{ActivationKind, ScalarActivation};
use crate::Error;

/// Points per curve; odd, so a range symmetric around 0 samples x = 0 exactly.
const SAMPLES: usize = 401;
const PANEL_WIDTH: u32 = 480;
const PANEL_HEIGHT: u32 = 420;
const TITLE_HEIGHT: u32 = 40;
const FONT: &str = "sans-serif";

/// The twelve activations of PAPER.md §1.2 at the paper's initial parameters.
pub fn paper_activations() -> Vec<ScalarActivation> {
    ActivationKind::ALL
        .into_iter()
        .map(ScalarActivation::initial)
        .collect()
}

/// [`plot_activations`] of the twelve [`paper_activations`] on [−5, 5].
pub fn plot_paper_activations() -> Result<Figure, Error> {
    plot_activations(&paper_activations(), -5.0, 5.0)
}

/// Plots f, f′ and f″ of every activation on `[lo, hi]`, in three panels side by side, with a
/// legend of the activations' names.
pub fn plot_activations(acts: &[ScalarActivation], lo: f64, hi: f64) -> Result<Figure, Error> {
    check_range(lo, hi)?;
    if acts.is_empty() {
        return Err(Error::InvalidParameter {
            name: "acts",
            value: 0.0,
            reason: "no activations to plot",
        });
    }
    let grids: Vec<ShapeGrid> = acts
        .iter()
        .map(|act| ShapeGrid::evaluate(act, lo, hi, SAMPLES))
        .collect();
    let labels: Vec<String> = acts.iter().map(|act| act.name().to_string()).collect();
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
        })
        .collect();
    draw(&title, (1, 3), &panels)
}

/// Plots PSSiLU, f(x) = x·(σ(|α|x) − |β|)/(1 − |β|), for every α in `alphas` (one colour each)
/// and β in `betas` (one column each), with f, f′ and f″ in three rows, on [−5, 5]. α sets the
/// curvature at 0 (f″(0) = |α|/(2(1 − |β|))), β the slope −|β|/(1 − |β|) on very negative
/// inputs, i.e. how positive the outputs on negative inputs are (PAPER.md §1.3).
pub fn plot_pssilu_family(alphas: &[f64], betas: &[f64]) -> Result<Figure, Error> {
    let (lo, hi) = (-5.0, 5.0);
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
    let labels: Vec<String> = alphas.iter().map(|alpha| format!("α = {alpha}")).collect();
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
                caption: format!("PSSiLU {derivative}, β = {beta}"),
                curves: curves(grids, &labels, order),
                legend: panels.is_empty(),
                x: (lo, hi),
                x_desc: "x",
            });
        }
    }
    draw(
        "PSSiLU: α sets the curvature at 0, β the outputs on negative inputs",
        (3, betas.len()),
        &panels,
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
}

pub(super) struct Panel {
    pub(super) caption: String,
    pub(super) curves: Vec<Curve>,
    pub(super) legend: bool,
    /// The x range and its label.
    pub(super) x: (f64, f64),
    pub(super) x_desc: &'static str,
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
) -> Result<Figure, Error> {
    let size = (
        PANEL_WIDTH * cols as u32,
        PANEL_HEIGHT * rows as u32 + TITLE_HEIGHT,
    );
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let root = root.titled(title, (FONT, 22)).map_err(plot_error)?;
        for (area, panel) in root.split_evenly((rows, cols)).iter().zip(panels) {
            draw_panel(area, panel)?;
        }
        root.present().map_err(plot_error)?;
    }
    Ok(Figure::new(title, svg))
}

fn draw_panel(area: &DrawingArea<SVGBackend<'_>, Shift>, panel: &Panel) -> Result<(), Error> {
    let (lo, hi) = panel.x;
    let (y_lo, y_hi) = y_range(panel)?;
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.caption, (FONT, 16))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(45)
        .build_cartesian_2d(lo..hi, y_lo..y_hi)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .x_desc(panel.x_desc)
        .x_label_formatter(&|x| tick_label(*x))
        .y_label_formatter(&|y| tick_label(*y))
        .label_style((FONT, 12))
        .draw()
        .map_err(plot_error)?;
    for curve in &panel.curves {
        let style = curve.color.stroke_width(2);
        chart
            .draw_series(LineSeries::new(curve.points.iter().copied(), style))
            .map_err(plot_error)?
            .label(curve.label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
    }
    if panel.legend {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .label_font((FONT, 12))
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

fn plot_error<E: std::error::Error + Send + Sync>(e: DrawingAreaErrorKind<E>) -> Error {
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

    #[test]
    fn paper_plot_has_three_curves_per_activation_and_a_legend() {
        let figure = plot_paper_activations().unwrap();
        let svg = figure.svg();
        assert!(svg.starts_with("<svg"));
        assert_eq!(curve_count(svg), 3 * 12);
        let texts = texts(svg);
        for act in paper_activations() {
            assert!(texts.contains(&act.name()), "legend lacks {}", act.name());
        }
        for caption in DERIVATIVES {
            assert!(texts.contains(&caption), "no panel {caption}");
        }
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
