//! The ablation notebooks' entry points (`notebook::ablation`): quick mode trains a sweep and
//! reuses finished runs, full mode trains nothing and names the missing runs and the command,
//! the results table averages seeds, the bars and learned shapes are drawn from it.

use std::path::{Path, PathBuf};

use robust_paf::notebook::ablation::{
    learned_shapes, plot_accuracy_bars, results_table, run_or_collect, setup_from, NotebookMode,
};

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

#[test]
fn bad_settings_are_errors() {
    assert!(setup_from(Some("fast"), None).is_err());
    let runs = tmp("bad");
    let setup = setup_from(Some("quick"), Some(runs.clone())).unwrap();
    assert!(run_or_collect(&setup, "name = ", Path::new("x")).is_err());
    let full = setup_from(Some("full"), Some(runs)).unwrap();
    assert!(run_or_collect(&full, "", Path::new("/nonexistent/sweep.toml")).is_err());
    assert!(plot_accuracy_bars(&results_table(&[]), "empty").is_err());
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
    assert!(n >= 3);
}
