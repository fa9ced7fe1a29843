//! [`ShapeTable`]: the shape properties of docs/reproduction.md §1.3 for a list of activations.

use std::fmt;

use crate::activations::shape::ShapeProperties;
use crate::activations::ActivationKind::{Pssilu, PssiluFixed};
use crate::activations::ScalarActivation;

/// The [`ShapeProperties`] of a list of activations, one row each. Shown as an HTML table by
/// evcxr ([`ShapeTable::evcxr_display`]) and as aligned plain text by `Display`.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ShapeTable {
    pub rows: Vec<ShapeProperties>,
}

/// The shape properties of every activation, in order.
///
/// ```
/// use robust_paf::notebook::{paper_activations, shape_table};
///
/// let table = shape_table(&paper_activations()); // `table.evcxr_display()` in a notebook
/// assert_eq!(table.rows.len(), 12);
/// assert!(format!("{table}").contains("PSSiLU"));
/// ```
pub fn shape_table(acts: &[ScalarActivation]) -> ShapeTable {
    ShapeTable {
        rows: acts.iter().map(ShapeProperties::of).collect(),
    }
}

/// Columns: name and parameters, the curvature property (f″(0); a kink, i.e. infinite curvature,
/// at 0; max |f″| on [−5, 5]) and the negative-input property of the paper
/// (docs/reproduction.md §1.3): outputs that grow positive as x → −∞, i.e. f′(−∞) < 0 (PSSiLU with
/// β ≠ 0, PReLU with α < 0). Softplus, positive everywhere but tending to 0 (f′(−∞) = 0), does not
/// have it; nor does an activation whose slope there is above [`NEGATIVE_SLOPE`] (PSSiLU at its
/// initial β = 1e-8).
const HEADER: [&str; COLUMNS] = [
    "activation",
    "α",
    "β",
    "f(0)",
    "f′(0)",
    "f″(0)",
    "kink at 0",
    "max |f″|",
    "f′(−∞)",
    "positive outputs on x < 0",
];
const COLUMNS: usize = 10;

/// "Positive outputs on negative inputs" needs f′(−∞) below this (outputs growing by at least
/// 0.001 per unit of −x): PSSiLU needs |β| > 0.000999.
pub const NEGATIVE_SLOPE: f64 = -1e-3;

impl ShapeTable {
    /// The table's cells as text, header first.
    fn cells(&self) -> Vec<[String; COLUMNS]> {
        let header = HEADER.map(str::to_string);
        let rows = self.rows.iter().map(|p| {
            [
                p.kind.name().to_string(),
                parameter(p.kind.num_params() > 0, p.alpha),
                parameter(matches!(p.kind, Pssilu | PssiluFixed), p.beta),
                number(p.value_at_zero),
                number(p.slope_at_zero),
                number(p.curvature_at_zero),
                yes_no(p.kink_at_zero),
                number(p.max_abs_curvature_on_grid),
                number(p.slope_at_neg_inf),
                yes_no(p.slope_at_neg_inf < NEGATIVE_SLOPE),
            ]
        });
        std::iter::once(header).chain(rows).collect()
    }

    /// The table as an HTML `<table>`.
    pub fn to_html(&self) -> String {
        html_table(&self.cells())
    }

    /// Shows the table inline in Jupyter as `text/html` (evcxr's display protocol).
    pub fn evcxr_display(&self) {
        super::evcxr_show("text/html", &self.to_html());
    }
}

impl fmt::Display for ShapeTable {
    /// A plain text table: the name left-aligned, numbers right-aligned.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        text_table(f, &self.cells(), 1)
    }
}

/// Rows of cells (header first) as an HTML `<table>`.
pub(super) fn html_table<R: AsRef<[String]>>(rows: &[R]) -> String {
    let mut html = String::from("<table>\n");
    for (i, cells) in rows.iter().enumerate() {
        let tag = if i == 0 { "th" } else { "td" };
        html.push_str("<tr>");
        for cell in cells.as_ref() {
            html.push_str(&format!("<{tag}>{}</{tag}>", escape_html(cell)));
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</table>");
    html
}

/// Rows of cells (header first) as aligned plain text: the first `left` columns left-aligned,
/// the others right-aligned, two spaces between columns.
pub(super) fn text_table<R: AsRef<[String]>>(
    f: &mut fmt::Formatter<'_>,
    rows: &[R],
    left: usize,
) -> fmt::Result {
    let columns = rows.iter().map(|r| r.as_ref().len()).max().unwrap_or(0);
    let mut widths = vec![0; columns];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row.as_ref()) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in rows {
        let mut line = String::new();
        for (column, (cell, &width)) in row.as_ref().iter().zip(&widths).enumerate() {
            let pad = " ".repeat(width - cell.chars().count());
            let sep = if column == 0 { "" } else { "  " };
            if column < left {
                line.push_str(&format!("{sep}{cell}{pad}"));
            } else {
                line.push_str(&format!("{sep}{pad}{cell}"));
            }
        }
        writeln!(f, "{}", line.trim_end())?;
    }
    Ok(())
}

fn number(x: f64) -> String {
    super::plot::short(x)
}

/// A parameter's value, or "–" for an activation that has no such parameter.
fn parameter(exists: bool, value: f64) -> String {
    if exists {
        number(value)
    } else {
        "–".to_string()
    }
}

fn yes_no(flag: bool) -> String {
    if flag { "yes" } else { "no" }.to_string()
}

pub(super) fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notebook::paper_activations;

    #[test]
    fn paper_table_has_twelve_rows() {
        let table = shape_table(&paper_activations());
        assert_eq!(table.rows.len(), 12);
        let text = table.to_string();
        assert_eq!(text.lines().count(), 1 + 12);
        assert!(text.contains("PSSiLU"));
        let html = table.to_html();
        assert_eq!(html.matches("<tr>").count(), 1 + 12);
        assert!(html.contains("<td>PSSiLU</td>"));
    }

    /// The paper's property: outputs that grow positive on negative inputs (f′(−∞) < 0), not
    /// merely f > 0 there (Softplus).
    #[test]
    fn positive_outputs_on_negative_inputs_is_the_papers_property() {
        use crate::activations::ActivationKind;
        let row = |kind, alpha, beta| {
            let t = shape_table(&[ScalarActivation::new(kind, alpha, beta)]);
            t.cells()[1].clone()
        };
        assert_eq!(row(ActivationKind::Softplus, 0.0, 0.0)[9], "no");
        assert_eq!(row(ActivationKind::Relu, 0.0, 0.0)[9], "no");
        assert_eq!(row(ActivationKind::Pssilu, 1.0, 0.3)[9], "yes");
        assert_eq!(row(ActivationKind::Prelu, -0.25, 0.0)[9], "yes");
        assert_eq!(row(ActivationKind::Prelu, 0.25, 0.0)[9], "no");
        // PSSiLU at its initial β = 1e-8 is SiLU for every purpose
        assert_eq!(row(ActivationKind::Pssilu, 1.0, 1e-8)[9], "no");
        assert_eq!(row(ActivationKind::Pssilu, 1.0, -0.01)[9], "yes");
        // one number format: 0, 1, 0.25, 1e-8
        let r = row(ActivationKind::Pssilu, 1.0, 1e-8);
        assert_eq!(
            (r[1].as_str(), r[2].as_str(), r[3].as_str()),
            ("1", "1e-8", "0")
        );
    }

    #[test]
    fn text_columns_line_up() {
        let text = shape_table(&paper_activations()).to_string();
        let widths: Vec<usize> = text.lines().map(|line| line.chars().count()).collect();
        // Every row ends with the right-aligned last column, so all lines are equally long.
        assert!(widths.iter().all(|&w| w == widths[0]), "{text}");
    }
}
