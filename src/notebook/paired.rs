//! Two activations compared seed by seed (notebook 03's laptop-scale demonstration; the
//! paper's PSSiLU-against-ReLU comparison, docs/reproduction.md §5.1): with a few
//! seeds, "PSSiLU beats ReLU" is a claim about each seed's pair of runs, not about two means.

use std::fmt;

use super::table::{html_table, text_table};
use crate::activations::ActivationKind;
use crate::train::sweep::Collected;

/// One seed: the best-epoch accuracies (fractions) of the two activations' runs.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct PairedRow {
    pub seed: u64,
    pub a_clean: Option<f64>,
    pub a_pgd: Option<f64>,
    pub b_clean: Option<f64>,
    pub b_pgd: Option<f64>,
}

impl PairedRow {
    /// PGD accuracy of `a` minus that of `b`, in points (`None` without both).
    pub fn pgd_gain(&self) -> Option<f64> {
        Some(100.0 * (self.a_pgd? - self.b_pgd?))
    }
}

/// [`paired_seeds`]: shown as HTML by evcxr, as text by `Display`.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct PairedSeeds {
    /// Code names of the two activations (`"pssilu2"`, `"relu"`).
    pub a: String,
    pub b: String,
    /// One row per seed that has a run of both, by seed.
    pub rows: Vec<PairedRow>,
}

impl PairedSeeds {
    /// Seeds on which `a`'s PGD accuracy is strictly above `b`'s.
    pub fn wins(&self) -> usize {
        self.rows
            .iter()
            .filter(|r| r.pgd_gain().is_some_and(|g| g > 0.0))
            .count()
    }

    fn name(code: &str) -> String {
        ActivationKind::from_code_name(code).map_or_else(|| code.to_string(), |k| k.name().into())
    }

    /// "PSSiLU's PGD accuracy is above ReLU's on 3 of 3 seeds (mean gain +1.2 points)".
    pub fn verdict(&self) -> String {
        let gains: Vec<f64> = self.rows.iter().filter_map(PairedRow::pgd_gain).collect();
        if gains.is_empty() {
            return format!(
                "no seed has a finished run of both {} and {}",
                Self::name(&self.a),
                Self::name(&self.b)
            );
        }
        format!(
            "{}'s PGD accuracy is above {}'s on {} of {} seeds (mean gain {:+.1} points)",
            Self::name(&self.a),
            Self::name(&self.b),
            self.wins(),
            gains.len(),
            gains.iter().sum::<f64>() / gains.len() as f64
        )
    }

    fn cells(&self) -> Vec<Vec<String>> {
        let (a, b) = (Self::name(&self.a), Self::name(&self.b));
        let pct =
            |v: Option<f64>| v.map_or_else(|| "–".to_string(), |v| format!("{:.1}", 100.0 * v));
        let mut out = vec![vec![
            "seed".to_string(),
            format!("{a} clean (%)"),
            format!("{b} clean (%)"),
            format!("{a} PGD (%)"),
            format!("{b} PGD (%)"),
            format!("{a} − {b} PGD"),
        ]];
        for r in &self.rows {
            out.push(vec![
                r.seed.to_string(),
                pct(r.a_clean),
                pct(r.b_clean),
                pct(r.a_pgd),
                pct(r.b_pgd),
                r.pgd_gain()
                    .map_or_else(|| "–".to_string(), |g| format!("{g:+.1}")),
            ]);
        }
        out
    }

    /// The table as HTML, the verdict below it.
    pub fn to_html(&self) -> String {
        format!("{}<p>{}</p>", html_table(&self.cells()), self.verdict())
    }

    /// Shows the table inline in Jupyter as `text/html`.
    pub fn evcxr_display(&self) {
        super::evcxr_show("text/html", &self.to_html());
    }
}

impl fmt::Display for PairedSeeds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        text_table(f, &self.cells(), 0)?;
        write!(f, "\n{}", self.verdict())
    }
}

/// Pairs the runs of activation `a` with those of `b` (code names) by seed. Runs with a frozen
/// parameter are left out; so is a seed without a run of both. When a seed has several runs of
/// one activation (other trainers or data), the first in `runs` is used: pass one sweep's runs.
pub fn paired_seeds(runs: &[Collected], a: &str, b: &str) -> PairedSeeds {
    let pick = |act: &str, seed: u64| {
        runs.iter().map(|c| &c.summary).find(|s| {
            s.activation == act && s.seed == seed && s.fix_alpha.is_none() && s.fix_beta.is_none()
        })
    };
    let mut seeds: Vec<u64> = runs.iter().map(|c| c.summary.seed).collect();
    seeds.sort_unstable();
    seeds.dedup();
    let rows = seeds
        .into_iter()
        .filter_map(|seed| {
            let (x, y) = (pick(a, seed)?, pick(b, seed)?);
            Some(PairedRow {
                seed,
                a_clean: x.best_clean_accuracy,
                a_pgd: x.best_pgd_accuracy,
                b_clean: y.best_clean_accuracy,
                b_pgd: y.best_pgd_accuracy,
            })
        })
        .collect();
    PairedSeeds {
        a: a.into(),
        b: b.into(),
        rows,
    }
}
