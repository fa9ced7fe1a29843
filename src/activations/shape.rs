//! Shape properties of an activation (docs/reproduction.md §1.3): the quantities the paper's
//! abstract links to robustness — positive outputs on negative inputs and high but finite
//! curvature — computed from the closed forms of [`ScalarActivation`].
//!
//! Definitions (all from closed forms, no finite differences):
//! - `value_at_zero`, `slope_at_zero`, `curvature_at_zero`: f(0), f′(0), f″(0), with the code's
//!   masks at kinks (ReLU′(0) = 0, PELU′(0) = α, ELU″(0) = 1, see
//!   [`ScalarActivation::derivative`]); `slope_left_of_zero` / `slope_right_of_zero` are the
//!   one-sided limits, evaluated at x = ∓1e-300, and `kink_at_zero` says whether they differ.
//! - `slope_at_neg_inf`, `slope_at_pos_inf`: the **closed-form limits** of f′(x) as x → ∓∞
//!   (e.g. −β/(1−β) for PSSiLU with α ≠ 0, α for PReLU as x → −∞), not a far-out evaluation.
//! - On the negative grid [`NEGATIVE_GRID`] (x = −5, −4.995, …, −0.005; 0 excluded):
//!   `min_on_negative`, `max_on_negative`, `positive_fraction_on_negative` (the fraction of grid
//!   points with f(x) > 0) and `positive_on_negative_inputs` = f(x) > 0 for **some** grid point
//!   (`max_on_negative > 0`). "Some", not "all": PSSiLU with β > 0 is positive only for
//!   x < logit(β)/|α| (e.g. x < −0.85 for α = 1, β = 0.3) and slightly negative just left of 0.
//! - `max_abs_curvature_on_grid` / `argmax_abs_curvature`: the maximum of |f″| on
//!   [`CURVATURE_GRID`] (x = −5, −4.995, …, 5, 0 included), from the closed form, i.e. the
//!   Dirac delta of a kink is not counted (ReLU reports 0; its kink shows in `kink_at_zero`).

use serde::{Deserialize, Serialize};

use super::{Activation, ActivationKind, ScalarActivation};
use crate::ops::Backend;

/// The negative-input grid of [`ShapeProperties`]: `(lo, hi, n)` with `x_i = lo + i·(hi−lo)/n`,
/// `i = 0..n`, i.e. `hi` = 0 excluded.
pub const NEGATIVE_GRID: (f64, f64, usize) = (-5.0, 0.0, 1000);
/// The curvature grid of [`ShapeProperties`]: `n` points from `lo` to `hi` inclusive.
pub const CURVATURE_GRID: (f64, f64, usize) = (-5.0, 5.0, 2001);

/// Shape summary of an activation with bound parameters (docs/reproduction.md §1.3); see the module
/// docs for the exact definitions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShapeProperties {
    pub kind: ActivationKind,
    /// Raw α (0 when the activation has none).
    pub alpha: f64,
    /// Raw β (0 when the activation has none).
    pub beta: f64,
    /// f(0).
    pub value_at_zero: f64,
    /// f′(0), with the code's mask at a kink.
    pub slope_at_zero: f64,
    /// lim f′(x), x → 0⁻ (evaluated at x = −1e-300).
    pub slope_left_of_zero: f64,
    /// lim f′(x), x → 0⁺ (evaluated at x = 1e-300).
    pub slope_right_of_zero: f64,
    /// Whether the one-sided slopes at 0 differ by more than 1e-9 (a kink: infinite curvature).
    pub kink_at_zero: bool,
    /// f″(0), with the code's mask at a kink.
    pub curvature_at_zero: f64,
    /// lim f′(x) as x → −∞ (closed form).
    pub slope_at_neg_inf: f64,
    /// lim f′(x) as x → +∞ (closed form).
    pub slope_at_pos_inf: f64,
    /// min f(x) over the negative grid.
    pub min_on_negative: f64,
    /// max f(x) over the negative grid.
    pub max_on_negative: f64,
    /// Fraction of negative-grid points with f(x) > 0.
    pub positive_fraction_on_negative: f64,
    /// f(x) > 0 for some x on the negative grid (`max_on_negative > 0`).
    pub positive_on_negative_inputs: bool,
    /// max |f″(x)| over the curvature grid (closed form, kinks' deltas excluded).
    pub max_abs_curvature_on_grid: f64,
    /// Where that maximum is attained (the first such grid point).
    pub argmax_abs_curvature: f64,
}

impl ShapeProperties {
    /// The shape properties of `f`.
    pub fn of(f: &ScalarActivation) -> Self {
        let neg = negative_grid();
        let fneg: Vec<f64> = neg.iter().map(|&x| f.value(x)).collect();
        let min_on_negative = fneg.iter().copied().fold(f64::INFINITY, f64::min);
        let max_on_negative = fneg.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let positive = fneg.iter().filter(|&&v| v > 0.0).count();

        let (lo, hi, n) = CURVATURE_GRID;
        let curv = ShapeGrid::evaluate(f, lo, hi, n);
        let (mut max_abs_curvature_on_grid, mut argmax_abs_curvature) = (0.0f64, 0.0);
        for (&x, &c) in curv.x.iter().zip(&curv.d2f) {
            if c.abs() > max_abs_curvature_on_grid || c.is_nan() {
                max_abs_curvature_on_grid = c.abs();
                argmax_abs_curvature = x;
            }
        }

        let slope_left_of_zero = f.derivative(-1e-300);
        let slope_right_of_zero = f.derivative(1e-300);
        let (slope_at_neg_inf, slope_at_pos_inf) = slopes_at_infinity(f);
        ShapeProperties {
            kind: f.kind,
            alpha: f.alpha,
            beta: f.beta,
            value_at_zero: f.value(0.0),
            slope_at_zero: f.derivative(0.0),
            slope_left_of_zero,
            slope_right_of_zero,
            kink_at_zero: (slope_left_of_zero - slope_right_of_zero).abs() > 1e-9,
            curvature_at_zero: f.second_derivative(0.0),
            slope_at_neg_inf,
            slope_at_pos_inf,
            min_on_negative,
            max_on_negative,
            positive_fraction_on_negative: positive as f64 / neg.len() as f64,
            positive_on_negative_inputs: max_on_negative > 0.0,
            max_abs_curvature_on_grid,
            argmax_abs_curvature,
        }
    }
}

/// The shape properties of an activation module with its current (frozen-aware) parameters.
///
/// ```
/// use dfdx::prelude::*;
/// use robust_paf::activations::prelude::*;
///
/// # fn main() -> Result<(), robust_paf::Error> {
/// let dev = Cpu::default();
/// // ReLU: a kink at 0 (infinite curvature), nothing below 0 on negative inputs
/// let relu = properties_of(&Relu::new(&dev));
/// assert!(relu.kink_at_zero && relu.min_on_negative == 0.0);
/// // PSSiLU, x·(σ(|α|x) − |β|)/(1 − |β|): smooth, f″(0) = |α|/(2(1 − |β|)),
/// // slope −|β|/(1 − |β|) far left, i.e. positive outputs on very negative inputs (§1.3)
/// let p = properties_of(&Pssilu::with_params(&dev, 4.0, 0.5)?);
/// assert!(!p.kink_at_zero);
/// assert!((p.curvature_at_zero - 4.0).abs() < 1e-6);
/// assert!((p.slope_at_neg_inf + 1.0).abs() < 1e-9 && p.max_on_negative > 0.0);
/// # Ok(())
/// # }
/// ```
pub fn properties_of<D: Backend, A: Activation<D>>(a: &A) -> ShapeProperties {
    ShapeProperties::of(&a.scalar())
}

fn negative_grid() -> Vec<f64> {
    let (lo, hi, n) = NEGATIVE_GRID;
    (0..n)
        .map(|i| lo + (hi - lo) * i as f64 / n as f64)
        .collect()
}

/// Closed-form limits of f′(x) as x → −∞ and x → +∞ (NaN for PSoftplus at α = 0, where f is
/// undefined).
fn slopes_at_infinity(f: &ScalarActivation) -> (f64, f64) {
    use ActivationKind::*;
    let (a, b) = (f.alpha, f.beta);
    // x·(σ(A x) − B)/(1 − B): slope −B/(1−B) at −∞ and 1 at +∞ for A > 0; (1/2 − B)/(1 − B)
    // everywhere for A = 0 (a linear function).
    let shifted = |aa: f64, bb: f64| {
        if aa > 0.0 {
            (-bb / (1.0 - bb), 1.0)
        } else {
            let s = (0.5 - bb) / (1.0 - bb);
            (s, s)
        }
    };
    match f.kind {
        Relu | Elu | Softplus | Silu | Pelu => (0.0, 1.0),
        Prelu => (a, 1.0),
        Pprelu => (0.0, a),
        Pblu => (0.0, 1.0 + a),
        Psilu => shifted(a.abs(), 0.0),
        Psoftplus => {
            // f′(x) = σ(αx).
            if a > 0.0 {
                (0.0, 1.0)
            } else if a < 0.0 {
                (1.0, 0.0)
            } else {
                (f64::NAN, f64::NAN)
            }
        }
        PssiluFixed => shifted(a.abs(), b),
        Pssilu => shifted(a.abs(), b.abs()),
    }
}

/// f, f′ and f″ sampled on a uniform grid (for plots and tables).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShapeGrid {
    pub x: Vec<f64>,
    pub f: Vec<f64>,
    pub df: Vec<f64>,
    pub d2f: Vec<f64>,
}

impl ShapeGrid {
    /// `n` points from `lo` to `hi` inclusive (`n = 1`: just `lo`; `n = 0`: empty).
    pub fn evaluate(act: &ScalarActivation, lo: f64, hi: f64, n: usize) -> Self {
        let x: Vec<f64> = match n {
            0 => Vec::new(),
            1 => vec![lo],
            _ => (0..n)
                .map(|i| lo + (hi - lo) * i as f64 / (n - 1) as f64)
                .collect(),
        };
        ShapeGrid {
            f: x.iter().map(|&x| act.value(x)).collect(),
            df: x.iter().map(|&x| act.derivative(x)).collect(),
            d2f: x.iter().map(|&x| act.second_derivative(x)).collect(),
            x,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grids() {
        let g = ShapeGrid::evaluate(
            &ScalarActivation::initial(ActivationKind::Relu),
            -1.0,
            1.0,
            5,
        );
        assert_eq!(g.x, vec![-1.0, -0.5, 0.0, 0.5, 1.0]);
        assert_eq!(g.f, vec![0.0, 0.0, 0.0, 0.5, 1.0]);
        assert_eq!(g.df, vec![0.0, 0.0, 0.0, 1.0, 1.0]);
        let n = negative_grid();
        assert_eq!(n.len(), 1000);
        assert_eq!(n[0], -5.0);
        assert!(*n.last().unwrap() < 0.0);
    }

    #[test]
    fn relu_has_a_kink_and_no_grid_curvature() {
        let p = ShapeProperties::of(&ScalarActivation::initial(ActivationKind::Relu));
        assert!(p.kink_at_zero);
        assert_eq!(p.max_abs_curvature_on_grid, 0.0);
        let p = ShapeProperties::of(&ScalarActivation::initial(ActivationKind::Silu));
        assert!(!p.kink_at_zero);
    }
}
