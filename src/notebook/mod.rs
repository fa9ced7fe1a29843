//! Plots and tables for the evcxr notebooks (`notebooks/*.ipynb`).
//!
//! Everything here is concrete (no generics in the notebook-facing API), so an evcxr cell that
//! calls it compiles in a fraction of a second once the crate is built:
//! - [`Figure`]: an SVG string with a title, shown inline as `image/svg+xml` by
//!   [`Figure::evcxr_display`] and written to a file by [`Figure::save`];
//! - [`plot_activations`] / [`plot_paper_activations`]: f, f′ and f″ of any activations side by
//!   side (the formulas of docs/reproduction.md §1.2), and [`plot_pssilu_family`]: how α and β move
//!   PSSiLU;
//! - [`plot_training_curves`] / [`plot_run_dirs`]: loss, clean and PGD accuracy and α/β per
//!   epoch of training runs;
//! - [`ablation`]: the ablation notebooks' sweeps (quick mode trains them live, full mode reads
//!   finished paper-scale runs), their results table and accuracy bars;
//! - [`evaluation`]: import a PyTorch checkpoint and check it, evaluate a checkpoint file (PGD,
//!   each AutoAttack attack), interrupt and resume AutoAttack, the RobustBench-style record;
//! - [`paired`]: two activations compared seed by seed (wins, mean gain);
//! - [`synthetic`]: PGD-AT with extra images mixed 1:1 into the batches (notebook 04): the
//!   bundled stand-in set, and what the extra data changed per activation;
//! - [`shape_sweep`]: the shape ablation — metrics of frozen-shape runs against the parameter;
//! - [`ShapeTable`] / [`shape_table`]: the shape properties of docs/reproduction.md §1.3 (positive
//!   outputs on negative inputs, finite curvature at 0) as an HTML table in Jupyter and a text
//!   table elsewhere.
//!
//! Plots are drawn with plotters' SVG backend with its default features off: text becomes SVG
//! `<text>` elements, so no font files or system libraries are needed.

pub mod ablation;
mod curves;
pub mod evaluation;
mod figure;
pub mod paired;
mod plot;
pub mod shape_sweep;
pub mod synthetic;
mod table;

use std::path::PathBuf;

pub use curves::{plot_run_dirs, plot_training_curves};
pub use figure::Figure;
pub use plot::{
    paper_activations, plot_activations, plot_activations_with, plot_paper_activations,
    plot_pssilu_family, plot_pssilu_family_with, PlotOptions,
};
pub use table::{shape_table, ShapeTable, NEGATIVE_SLOPE};

/// Where notebooks write their files: `$ROBUST_PAF_OUT` when set, otherwise `out/` relative to
/// the working directory (the notebook's folder under Jupyter, so `notebooks/out/`, which git
/// ignores).
pub fn output_dir() -> PathBuf {
    std::env::var_os("ROBUST_PAF_OUT")
        .filter(|dir| !dir.is_empty())
        .map_or_else(|| PathBuf::from("out"), PathBuf::from)
}

/// Prints `content` in evcxr's display protocol, so Jupyter shows it as `mime`.
pub(crate) fn evcxr_show(mime: &str, content: &str) {
    println!("EVCXR_BEGIN_CONTENT {mime}\n{content}\nEVCXR_END_CONTENT");
}
