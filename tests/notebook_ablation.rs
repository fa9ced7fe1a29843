//! The ablation notebooks' entry points (`notebook::ablation`): quick mode trains a sweep and
//! reuses finished runs, full mode trains nothing and names the missing runs and the command,
//! the results table averages seeds, the bars and learned shapes are drawn from it.

use std::path::{Path, PathBuf};

use robust_paf::notebook::ablation::{
    learned_shapes, plot_accuracy_bars, results_table, run_or_collect, setup_from, NotebookMode,
};
use robust_paf::notebook::shape_sweep::{plot_shape_sweep, shape_sweep_table};
use robust_paf::train::assess::{read_shape_metrics, ShapeMetricsConfig, SHAPE_METRICS_FILE};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("robust-paf-ablation-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Two tiny PGD-AT runs (seconds each): small CNN, 40 images, 1 epoch, 2 PGD steps.
const QUICK: &str = r#"
name = "tiny"
base = "quick-pgd-at"
activations = ["relu", "pssilu2"]
seeds = [1]
trainers = ["pgd-at"]
set = ["optim.epochs=1", "data.train_subset=40", "data.batch_size=20", "eval.n_examples=20",
       "eval.batch_size=20", "trainer.steps=2", "eval.pgd_steps=2"]
"#;

#[test]
fn quick_mode_trains_the_sweep_and_reuses_finished_runs() {
    let runs = tmp("quick");
    let setup = setup_from(None, Some(runs.clone())).unwrap();
    assert_eq!(setup.mode, NotebookMode::Quick);
    let first = run_or_collect(&setup, QUICK, Path::new("unused.toml")).unwrap();
    assert_eq!(first.trained, 2);
    assert_eq!(first.runs.len(), 2);
    assert!(first.missing.is_empty());
    let again = run_or_collect(&setup, QUICK, Path::new("unused.toml")).unwrap();
    assert_eq!(again.trained, 0, "finished runs are reused");
    assert_eq!(again.runs.len(), 2);
    // an edited quick sweep does not silently show the old runs
    let edited = QUICK.replace("optim.epochs=1", "optim.epochs=2");
    let e = run_or_collect(&setup, &edited, Path::new("unused.toml")).unwrap_err();
    assert!(e.to_string().contains("another configuration"), "{e}");

    let table = results_table(&again.runs);
    assert_eq!(table.rows.len(), 2);
    let pssilu = table
        .rows
        .iter()
        .find(|r| r.activation == "pssilu2")
        .unwrap();
    assert_eq!(pssilu.label(), "PSSiLU");
    assert!(pssilu.parameters.contains_key("alpha") && pssilu.parameters.contains_key("beta"));
    assert!((0.0..=1.0).contains(&pssilu.clean_mean));
    assert!(pssilu.clean_std.is_nan(), "one seed: no spread");
    let text = table.to_string();
    assert!(text.contains("PSSiLU") && text.contains("ReLU"), "{text}");
    assert!(table.to_html().matches("<tr>").count() == 3);

    let bars = plot_accuracy_bars(&table, "tiny").unwrap();
    // two bars per configuration (clean, PGD) plus the two legend marks
    assert!(bars.svg().matches("<rect").count() >= 2 * 2 + 2);
    assert!(again.plot_curves().unwrap().svg().contains("<svg"));
    let shapes = learned_shapes(&table);
    assert_eq!(shapes.rows.len(), 2);
    let i = table
        .rows
        .iter()
        .position(|r| r.activation == "pssilu2")
        .unwrap();
    assert_eq!(shapes.rows[i].alpha, pssilu.parameters["alpha"]);
    assert_eq!(shapes.rows[i].beta, pssilu.parameters["beta"]);

    // full mode over the same folder with a sweep file naming a third run: nothing is trained,
    // the missing run and the command are reported
    let file = runs.join("sweep.toml");
    std::fs::write(
        &file,
        QUICK.replace(r#"["relu", "pssilu2"]"#, r#"["relu", "pssilu2", "psilu"]"#),
    )
    .unwrap();
    let full = setup_from(Some("full"), Some(runs.clone())).unwrap();
    let o = run_or_collect(&full, "", &file).unwrap();
    assert_eq!(o.trained, 0);
    assert_eq!(o.runs.len(), 2);
    assert_eq!(o.missing.len(), 1, "{:?}", o.missing);
    assert!(o.missing[0].starts_with("psilu"), "{:?}", o.missing);
    assert!(
        o.command.starts_with("robust-paf sweep --config "),
        "{}",
        o.command
    );
    assert!(o.to_string().contains("1 run(s) missing"), "{o}");
    let _ = std::fs::remove_dir_all(&runs);
}

/// Three tiny standard runs with a frozen shape: PReLU at two slopes, PSSiLU at one β.
const SHAPE: &str = r#"
name = "tiny-shape"
base = "quick-standard"
activations = ["prelu", "pssilu2"]
seeds = [1]
trainers = ["standard"]
set = ["optim.epochs=1", "data.train_subset=40", "data.batch_size=20", "eval.n_examples=20",
       "eval.batch_size=20", "eval.pgd=false"]
[fix_alpha_for]
prelu = [-0.25, 0.25]
[fix_beta_for]
pssilu2 = [0.3]
"#;

/// Quick mode computes the shape metrics of each standard run once (stored in the run, reused
/// after), with the shape property of each frozen value; full mode reads the stored metrics and
/// names the runs without them and the command; the figure has a panel column per family.
#[test]
fn shape_sweep_computes_metrics_once_and_full_mode_names_what_is_missing() {
    let runs = tmp("shape");
    let setup = setup_from(None, Some(runs.clone())).unwrap();
    let outcome = run_or_collect(&setup, SHAPE, Path::new("unused.toml")).unwrap();
    assert_eq!(outcome.runs.len(), 3);
    let metrics = ShapeMetricsConfig {
        n_examples: Some(10),
        square_queries: 5,
        ..ShapeMetricsConfig::quick()
    };
    let table = shape_sweep_table(&setup, &outcome, &metrics).unwrap();
    assert_eq!(table.rows.len(), 3);
    assert!(table.missing_metrics.is_empty() && table.command.is_none());
    let prelu_neg = table.rows.iter().find(|r| r.value == -0.25).unwrap();
    assert_eq!(
        (prelu_neg.activation.as_str(), prelu_neg.parameter.as_str()),
        ("prelu", "α")
    );
    assert!(
        prelu_neg.positive_on_negative_inputs,
        "PReLU α < 0: |x|-like"
    );
    assert!(
        prelu_neg.curvature_at_zero.is_infinite(),
        "PReLU has a kink at 0"
    );
    let prelu_pos = table.rows.iter().find(|r| r.value == 0.25).unwrap();
    assert!(!prelu_pos.positive_on_negative_inputs);
    let pssilu = table.rows.iter().find(|r| r.parameter == "β").unwrap();
    assert_eq!((pssilu.activation.as_str(), pssilu.value), ("pssilu2", 0.3));
    assert!(pssilu.positive_on_negative_inputs && pssilu.curvature_at_zero.is_finite());
    for r in &table.rows {
        assert!((0.0..=1.0).contains(&r.clean), "{r:?}");
        assert!(
            r.average_radius >= 0.0 && r.average_radius.is_finite(),
            "{r:?}"
        );
        assert!((0.0..=1.0).contains(&r.square_success_rate), "{r:?}");
        assert!(r.lipschitz.is_finite() && r.lipschitz >= 0.0, "{r:?}");
        assert!(r.pgd.is_nan(), "no PGD evaluation was asked");
    }
    // stored and reused: a second call does not rewrite the files
    let file = outcome.runs[0].dir.join(SHAPE_METRICS_FILE);
    let before = std::fs::metadata(&file).unwrap().modified().unwrap();
    let again = shape_sweep_table(&setup, &outcome, &metrics).unwrap();
    assert_eq!(
        format!("{again:?}"),
        format!("{table:?}"),
        "the same (NaN-safe)"
    );
    assert_eq!(
        std::fs::metadata(&file).unwrap().modified().unwrap(),
        before
    );
    assert!(read_shape_metrics(&outcome.runs[0].dir, Some(&metrics))
        .unwrap()
        .is_some());
    assert!(
        read_shape_metrics(&outcome.runs[0].dir, Some(&ShapeMetricsConfig::paper()))
            .unwrap()
            .is_none(),
        "other settings: not reused"
    );

    let fig = plot_shape_sweep(&table, "tiny shape sweep").unwrap();
    let svg = fig.svg();
    assert!(
        svg.contains("\nPReLU\n") && svg.contains("\nPSSiLU\n"),
        "one column per family"
    );
    for label in [
        "clean acc. (%)",
        "avg. radius",
        "Square succ. %",
        "Lipschitz",
    ] {
        assert!(svg.contains(label), "{label}");
    }
    assert!(
        !svg.contains("PGD acc."),
        "no PGD metric in the table, no PGD row"
    );
    let text = table.to_string();
    assert!(text.contains("α=-0.25") && text.contains("β=0.3"), "{text}");
    let values: Vec<f64> = table.rows.iter().map(|r| r.value).collect();
    assert_eq!(
        values,
        [-0.25, 0.25, 0.3],
        "families in sweep order, values ascending"
    );

    // full mode: a run without stored metrics is named, with the command
    std::fs::remove_file(&file).unwrap();
    let full = setup_from(Some("full"), Some(runs.clone())).unwrap();
    let t = shape_sweep_table(&full, &outcome, &metrics).unwrap();
    assert_eq!(t.missing_metrics.len(), 1, "{:?}", t.missing_metrics);
    assert!(!file.exists(), "full mode computes nothing");
    let cmd = t.command.clone().unwrap();
    assert!(cmd.starts_with("robust-paf shape-metrics "), "{cmd}");
    assert!(
        t.to_string().contains("1 run(s) without shape metrics"),
        "{t}"
    );
    let _ = std::fs::remove_dir_all(&runs);
}

#[test]
fn bad_settings_are_errors() {
    assert!(setup_from(Some("fast"), None).is_err());
    let runs = tmp("bad");
    let setup = setup_from(Some("quick"), Some(runs.clone())).unwrap();
    assert!(run_or_collect(&setup, "name = ", Path::new("x")).is_err());
    let full = setup_from(Some("full"), Some(runs)).unwrap();
    assert!(run_or_collect(&full, "", Path::new("/nonexistent/sweep.toml")).is_err());
    assert!(plot_accuracy_bars(&results_table(&[]), "empty").is_err());
    let empty = robust_paf::notebook::shape_sweep::ShapeSweepTable {
        rows: Vec::new(),
        missing_metrics: Vec::new(),
        command: None,
    };
    assert!(plot_shape_sweep(&empty, "empty").is_err());
    let bad = ShapeMetricsConfig {
        batch_size: 0,
        ..ShapeMetricsConfig::quick()
    };
    assert!(bad.validate().is_err());
}

/// Every sweep file in `examples/sweeps/` (the full-mode sweeps of the notebooks among them)
/// parses and expands into valid configurations.
#[test]
fn example_sweeps_expand() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/sweeps");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().and_then(|x| x.to_str()) != Some("toml") {
            continue;
        }
        let s = robust_paf::train::sweep::SweepConfig::from_file(&p).unwrap();
        let runs = s
            .expand(&dir, &[])
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert!(!runs.is_empty(), "{}", p.display());
        if s.name == "paf-pgd-at" {
            assert_eq!(runs.len(), 5 * 3);
        }
        n += 1;
    }
    assert!(n >= 7, "{n} sweep files");
}

/// With several trainers in one table, each bar names its trainer; with one, only the activation.
#[test]
fn bars_name_the_trainer_when_a_table_has_several() {
    use robust_paf::notebook::ablation::{ResultsRow, ResultsTable};
    let row = |trainer: &str| ResultsRow {
        activation: "relu".into(),
        trainer: trainer.into(),
        fix_alpha: None,
        fix_beta: None,
        norm: Some("linf".into()),
        eps: Some(0.031),
        synthetic: None,
        seeds: vec![1],
        clean: vec![0.5],
        clean_mean: 0.5,
        clean_std: f64::NAN,
        pgd: vec![0.3],
        pgd_mean: 0.3,
        pgd_std: f64::NAN,
        parameters: Default::default(),
    };
    let two = ResultsTable {
        rows: vec![row("pgd-at"), row("trades")],
    };
    let svg = plot_accuracy_bars(&two, "two trainers")
        .unwrap()
        .svg()
        .to_string();
    assert!(svg.contains("ReLU · pgd-at") && svg.contains("ReLU · trades"));
    let one = ResultsTable {
        rows: vec![row("pgd-at")],
    };
    let svg = plot_accuracy_bars(&one, "one trainer")
        .unwrap()
        .svg()
        .to_string();
    assert!(svg.contains("\nReLU\n") && !svg.contains("· pgd-at"));

    // the legend sits in the strip above the plot, never over a bar: its two marks (14 × 12)
    // lie above every bar
    let two = ResultsTable {
        rows: vec![
            ResultsRow {
                clean: vec![1.0],
                clean_mean: 1.0,
                pgd: vec![1.0],
                pgd_mean: 1.0,
                ..row("pgd-at")
            },
            row("trades"),
        ],
    };
    let svg = plot_accuracy_bars(&two, "full bars")
        .unwrap()
        .svg()
        .to_string();
    let rects: Vec<(f64, f64, f64, f64)> = svg
        .split("<rect")
        .skip(1)
        .filter_map(|r| {
            let attr = |n: &str| -> Option<f64> {
                let i = r.find(&format!(" {n}=\""))? + n.len() + 3;
                r[i..r[i..].find('"')? + i].parse().ok()
            };
            Some((attr("x")?, attr("y")?, attr("width")?, attr("height")?))
        })
        .collect();
    let legend: Vec<_> = rects
        .iter()
        .filter(|r| r.2 == 14.0 && r.3 == 12.0)
        .collect();
    assert_eq!(legend.len(), 2, "{rects:?}");
    let bars_top = rects
        .iter()
        .filter(|r| r.2 > 20.0 && r.2 < 100.0)
        .map(|r| r.1)
        .fold(f64::INFINITY, f64::min);
    assert!(bars_top.is_finite(), "{rects:?}");
    for l in legend {
        assert!(
            l.1 + l.3 < bars_top,
            "legend {l:?} overlaps a bar (top {bars_top})"
        );
    }
}

/// Rows that differ only in threat model or extra data are separate configurations, and the
/// table and bars say which is which: "ℓ2 ε=0.5", "+extra"; the gains table pairs real-only
/// with extra-data rows and gives the PSSiLU − ReLU gap in each condition.
#[test]
fn threat_model_and_extra_data_are_named() {
    use robust_paf::notebook::ablation::{ResultsRow, ResultsTable};
    use robust_paf::notebook::synthetic::extra_data_gains;
    let row = |act: &str, norm: &str, eps: f64, extra: bool, pgd: f64| ResultsRow {
        activation: act.into(),
        trainer: "pgd-at".into(),
        fix_alpha: None,
        fix_beta: None,
        norm: Some(norm.into()),
        eps: Some(eps),
        synthetic: extra.then(|| "/x/train-extra.npz".into()),
        seeds: vec![1],
        clean: vec![0.8],
        clean_mean: 0.8,
        clean_std: f64::NAN,
        pgd: vec![pgd],
        pgd_mean: pgd,
        pgd_std: f64::NAN,
        parameters: Default::default(),
    };
    let l2 = ResultsTable {
        rows: vec![
            row("relu", "l2", 0.5, false, 0.3),
            row("relu", "linf", 0.031, false, 0.3),
        ],
    };
    let text = l2.to_string();
    assert!(
        text.contains("ℓ2 ε=0.5") && text.contains("ℓ∞ ε=0.031"),
        "{text}"
    );
    let svg = plot_accuracy_bars(&l2, "l2").unwrap().svg().to_string();
    assert!(
        svg.contains("ReLU · ℓ2 ε=0.5"),
        "bars name the threat model"
    );

    let t = ResultsTable {
        rows: vec![
            row("relu", "linf", 0.031, false, 0.30),
            row("pssilu2", "linf", 0.031, false, 0.32),
            row("relu", "linf", 0.031, true, 0.35),
            row("pssilu2", "linf", 0.031, true, 0.40),
            row("psilu", "linf", 0.031, true, 0.38),
        ],
    };
    let text = t.to_string();
    assert!(
        text.contains("+ train-extra.npz") && text.contains("real only"),
        "{text}"
    );
    let svg = plot_accuracy_bars(&t, "extra").unwrap().svg().to_string();
    assert!(svg.contains("ReLU · +extra") && svg.contains("PSSiLU · real"));
    let g = extra_data_gains(&t);
    assert_eq!(g.rows.len(), 2, "PSiLU has no real-only run: left out");
    assert_eq!(g.rows[1].activation, "pssilu2");
    assert!(
        (g.rows[1].pgd_extra - 0.40).abs() < 1e-12 && (g.rows[1].pgd_real - 0.32).abs() < 1e-12
    );
    assert!((g.pssilu_minus_relu_real.unwrap() - 2.0).abs() < 1e-9);
    assert!((g.pssilu_minus_relu_extra.unwrap() - 5.0).abs() < 1e-9);
    let text = g.to_string();
    assert!(text.contains("+8.0") && text.contains("+5.0"), "{text}");
}

/// The bundled extra set mixed 1:1 into a quick sweep (notebook 04): the runs record it, their
/// step saw real + extra images, and the table keeps them apart from real-only runs.
#[test]
fn extra_data_sweep_records_the_synthetic_set() {
    use robust_paf::notebook::synthetic::{extra_data_gains, extra_set};
    let runs = tmp("extra");
    let setup = setup_from(None, Some(runs.clone())).unwrap();
    let extra = extra_set().unwrap();
    assert_eq!(extra.images, 1000);
    assert_eq!(extra.per_class, vec![100; 10]);
    let with_extra = QUICK.replace("name = \"tiny\"", "name = \"tiny-extra\"").replace(
        "\"trainer.steps=2\",",
        &format!(
            "\"trainer.steps=2\", {}, \"data.synthetic.format=npz\", \"data.synthetic.per_batch=20\",",
            extra.set_override()
        ),
    );
    let real = run_or_collect(&setup, QUICK, Path::new("unused.toml")).unwrap();
    let mixed = run_or_collect(&setup, &with_extra, Path::new("unused.toml")).unwrap();
    assert_eq!(mixed.trained, 2);
    let s = &mixed.runs[0].summary;
    assert_eq!(
        s.synthetic.as_deref(),
        Some(extra.path.to_str().unwrap()),
        "the summary names the extra set"
    );
    assert_eq!((s.norm.as_deref(), s.eps), (Some("linf"), Some(0.031)));
    // 40 real images, 20 + 20 per step: 2 steps, 80 images
    let m = robust_paf::train::run::read_metrics(&mixed.runs[0].dir).unwrap();
    assert_eq!((m[0].global_step, m[0].train_examples), (2, 80));
    let table = results_table(&[real.runs, mixed.runs].concat());
    assert_eq!(table.rows.len(), 4);
    let g = extra_data_gains(&table);
    assert_eq!(g.rows.len(), 2);
    assert!(g.pssilu_minus_relu_real.is_some() && g.pssilu_minus_relu_extra.is_some());
    let _ = std::fs::remove_dir_all(&runs);
}

/// Seed-by-seed comparison (notebook 03's laptop-scale demonstration): runs are paired by seed,
/// frozen-parameter runs and seeds without both activations are left out, wins count strict
/// gains only.
#[test]
fn paired_seeds_compare_each_seed() {
    use robust_paf::notebook::paired::paired_seeds;
    use robust_paf::train::sweep::Collected;
    let run = |act: &str, seed: u64, pgd: f64, fix_beta: Option<f64>| Collected {
        dir: PathBuf::from(format!("{act}-{seed}")),
        summary: serde_json::from_value(serde_json::json!({
            "status": "finished", "name": "x", "architecture": "SmallCNN", "arch": "cnn-small",
            "activation": act, "trainer": "pgd-at", "dataset": "fashion-mnist-subset",
            "seed": seed, "fix_alpha": null, "fix_beta": fix_beta, "epochs": 1, "steps": 1,
            "selection": "pgd", "best_epoch": 1, "best_clean_accuracy": pgd + 0.1,
            "best_pgd_accuracy": pgd, "final_clean_accuracy": null, "final_pgd_accuracy": null,
            "final_train_loss": 1.0, "activation_parameters": {}, "test_examples": 10,
            "seconds": 1.0, "crate_version": "0.1.0"
        }))
        .unwrap(),
    };
    let runs = vec![
        run("relu", 1, 0.60, None),
        run("relu", 2, 0.61, None),
        run("relu", 3, 0.62, None),
        run("relu", 4, 0.90, None),
        run("pssilu2", 1, 0.62, None),
        run("pssilu2", 2, 0.60, None),
        run("pssilu2", 3, 0.65, None),
        run("pssilu2", 4, 0.99, Some(0.3)),
    ];
    let p = paired_seeds(&runs, "pssilu2", "relu");
    assert_eq!(p.rows.iter().map(|r| r.seed).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(p.wins(), 2);
    let gains: Vec<f64> = p.rows.iter().map(|r| r.pgd_gain().unwrap()).collect();
    for (g, want) in gains.iter().zip([2.0, -1.0, 3.0]) {
        assert!((g - want).abs() < 1e-9, "{gains:?}");
    }
    let v = p.verdict();
    assert!(
        v.contains("PSSiLU's PGD accuracy is above ReLU's on 2 of 3 seeds"),
        "{v}"
    );
    assert!(v.contains("+1.3 points"), "{v}");
    let text = p.to_string();
    assert!(
        text.contains("PSSiLU − ReLU PGD") && text.contains("-1.0"),
        "{text}"
    );
    assert!(paired_seeds(&runs, "psilu", "relu")
        .verdict()
        .starts_with("no seed"));
}
