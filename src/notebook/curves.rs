//! Training curves (docs/reproduction.md §3.2, §5.2's figures of learned α/β over training): per
//! epoch, the training loss, the test clean and PGD accuracy, and the shared activation's
//! parameters, one line per run, from the runs' `metrics.jsonl` ([`crate::train::EpochRecord`]).

use std::path::Path;

use super::plot::{draw, Curve, Panel, PlotOptions, PALETTE};
use super::Figure;
use crate::train::run::read_metrics;
use crate::train::EpochRecord;
use crate::Error;

/// Plots the curves of `runs` (`(label, epoch records)`) in a 2×2 grid: training loss, test clean
/// accuracy, test PGD accuracy (percent), and α/β of each run's activation (one colour per run;
/// α solid, β dashed). The runs' legend is on the loss panel only (the colours are the same in
/// every panel); epochs are ticked at integers. Epochs are 1-based; epochs without an evaluation
/// leave a gap in the accuracy curves.
///
/// ```
/// use robust_paf::notebook::plot_training_curves;
/// use robust_paf::train::EpochRecord;
///
/// // what a run directory's metrics.jsonl holds (`train::read_metrics`), one record per epoch
/// let epoch = |e: usize, loss: f64, acc: f64| EpochRecord {
///     kind: "epoch".into(), epoch: e, phase: "train".into(), global_step: 40 * (e + 1),
///     lr: 0.1, momentum: 0.9, train_examples: 2000, train_loss: loss,
///     train_clean_accuracy: acc, train_adv_accuracy: Some(acc / 2.0),
///     test_clean_accuracy: Some(acc), test_pgd_accuracy: Some(acc / 2.0), test_examples: 500,
///     activation: [("alpha".to_string(), 1.0), ("beta".to_string(), 0.1)].into(),
///     best: true, seconds: 10.0, eval_seconds: 1.0, images_per_second: 200.0,
/// };
/// let runs = vec![("PSSiLU".to_string(), vec![epoch(0, 2.0, 0.3), epoch(1, 1.5, 0.5)])];
/// let fig = plot_training_curves(&runs)?;
/// assert!(fig.svg().contains("Training curves"));
/// assert!(plot_training_curves(&[]).is_err(), "nothing to plot is an error");
/// # Ok::<(), robust_paf::Error>(())
/// ```
pub fn plot_training_curves(runs: &[(String, Vec<EpochRecord>)]) -> Result<Figure, Error> {
    if runs.iter().all(|(_, r)| r.is_empty()) {
        return Err(Error::InvalidParameter {
            name: "runs",
            value: 0.0,
            reason: "no epochs to plot",
        });
    }
    let last = runs
        .iter()
        .flat_map(|(_, r)| r.iter().map(|e| e.epoch + 1))
        .max()
        .unwrap_or(1) as f64;
    let x = (1.0, last.max(2.0));
    let series = |f: &dyn Fn(&EpochRecord) -> Option<f64>| -> Vec<Curve> {
        runs.iter()
            .enumerate()
            .map(|(i, (label, records))| Curve {
                label: label.clone(),
                color: PALETTE[i % PALETTE.len()],
                points: records
                    .iter()
                    .filter_map(|r| f(r).map(|v| ((r.epoch + 1) as f64, v)))
                    .collect(),
                dashed: false,
            })
            .filter(|c| !c.points.is_empty())
            .collect()
    };
    let mut params = Vec::new();
    for (i, (label, records)) in runs.iter().enumerate() {
        let names: Vec<String> = records
            .first()
            .map(|r| r.activation.keys().cloned().collect())
            .unwrap_or_default();
        for name in names {
            params.push(Curve {
                label: format!("{label} {}", if name == "alpha" { "α" } else { "β" }),
                color: PALETTE[i % PALETTE.len()],
                points: records
                    .iter()
                    .filter_map(|r| r.activation.get(&name).map(|v| ((r.epoch + 1) as f64, *v)))
                    .collect(),
                dashed: name != "alpha",
            });
        }
    }
    // one legend of the runs (the colours are the same in every panel), one of α and β
    let panel = |caption: &str, curves: Vec<Curve>, legend: bool| Panel {
        caption: caption.to_string(),
        curves,
        legend,
        x,
        x_desc: "epoch",
        integer_x: true,
    };
    let panels = vec![
        panel("training loss", series(&|r| Some(r.train_loss)), true),
        panel(
            "test accuracy, clean (%)",
            series(&|r| r.test_clean_accuracy.map(|a| 100.0 * a)),
            false,
        ),
        panel(
            "test accuracy under PGD (%)",
            series(&|r| r.test_pgd_accuracy.map(|a| 100.0 * a)),
            false,
        ),
        panel(
            "activation parameters (raw α solid, β dashed)",
            params,
            true,
        ),
    ];
    draw("Training curves", (2, 2), &panels, &PlotOptions::default())
}

/// [`plot_training_curves`] of run directories, each labelled by its folder name.
pub fn plot_run_dirs(dirs: &[&Path]) -> Result<Figure, Error> {
    let mut runs = Vec::new();
    for d in dirs {
        let records = read_metrics(d).map_err(|e| Error::Io(e.to_string()))?;
        let label = d
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| d.display().to_string());
        runs.push((label, records));
    }
    plot_training_curves(&runs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn record(epoch: usize, eval: bool, params: &[(&str, f64)]) -> EpochRecord {
        EpochRecord {
            kind: "epoch".into(),
            epoch,
            phase: "train".into(),
            global_step: 10 * (epoch + 1),
            lr: 0.1,
            momentum: 0.9,
            train_examples: 100,
            train_loss: 2.0 / (epoch + 1) as f64,
            train_clean_accuracy: 0.5,
            train_adv_accuracy: Some(0.4),
            test_clean_accuracy: eval.then_some(0.6 + 0.01 * epoch as f64),
            test_pgd_accuracy: eval.then_some(0.4),
            test_examples: 100,
            activation: params
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect::<BTreeMap<_, _>>(),
            best: false,
            seconds: 1.0,
            eval_seconds: 0.5,
            images_per_second: 1.0,
        }
    }

    #[test]
    fn one_curve_per_run_and_parameter() {
        let relu: Vec<_> = (0..4).map(|e| record(e, e % 2 == 1, &[])).collect();
        let pssilu: Vec<_> = (0..4)
            .map(|e| record(e, true, &[("alpha", 1.0 + e as f64), ("beta", 0.01)]))
            .collect();
        let fig =
            plot_training_curves(&[("ReLU".into(), relu), ("PSSiLU".into(), pssilu)]).unwrap();
        let svg = fig.svg();
        // loss, clean and PGD: 2 runs each; parameters: α and β of PSSiLU
        let lines = svg.matches("<polyline").count();
        assert!(lines >= 3 * 2 + 2, "{lines} polylines");
        for label in [
            "ReLU",
            "PSSiLU",
            "PSSiLU α",
            "PSSiLU β",
            "epoch",
            "training loss",
        ] {
            assert!(svg.contains(label), "no {label} in the figure");
        }
        assert!(plot_training_curves(&[]).is_err());
    }
}
