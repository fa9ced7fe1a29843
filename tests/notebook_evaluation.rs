//! Notebook 05's entry points (`notebook::evaluation`): an imported RobustBench-architecture
//! checkpoint computes PyTorch's logits; an AutoAttack evaluation interrupted after its first
//! attack and resumed from the state file ends where the uninterrupted one ends, without
//! re-running the finished attack; the table, bars and RobustBench record show the report.

use std::path::{Path, PathBuf};

use robust_paf::eval::{AaVersion, EvalConfig};
use robust_paf::notebook::ablation::setup_from;
use robust_paf::notebook::evaluation::{
    eval_table, evaluate_file, import_and_compare, interrupt_autoattack, model_to_evaluate,
    plot_eval_table, robustbench_record,
};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("robust-paf-nbeval-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/torch")
        .join(name)
}

#[test]
fn an_imported_checkpoint_computes_pytorchs_logits() {
    let out = tmp("import");
    let c = import_and_compare(
        &fixture("wrn16_1_pssilu2.pt"),
        Some(&fixture("wrn16_1_pssilu2_io.pt")),
        "wrn-16-1",
        "pssilu2",
        "cifar10",
        &out,
    )
    .unwrap();
    assert!(c.compared_images > 0);
    assert!(c.max_relative_difference < 1e-4, "{c}");
    assert!(c.imported.checkpoint.is_file());
    // the wrong activation does not compute PyTorch's logits
    let relu = import_and_compare(
        &fixture("wrn16_1_pssilu2.pt"),
        Some(&fixture("wrn16_1_pssilu2_io.pt")),
        "wrn-16-1",
        "relu",
        "cifar10",
        &out.join("relu"),
    );
    match relu {
        Ok(c) => assert!(c.max_relative_difference > 1e-2, "{c}"),
        Err(e) => assert!(e.to_string().contains("activation"), "{e}"),
    }
    // a reference without logits is an error, not a silent pass
    let e = import_and_compare(
        &fixture("wrn16_1_pssilu2.pt"),
        Some(&fixture("wrn16_1_pssilu2.pt")),
        "wrn-16-1",
        "pssilu2",
        "cifar10",
        &out.join("bad"),
    )
    .unwrap_err();
    assert!(e.to_string().contains("no tensor `x`"), "{e}");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn an_interrupted_autoattack_resumes_to_the_uninterrupted_result() {
    let runs = tmp("runs");
    let setup = setup_from(None, Some(runs.clone())).unwrap();
    let ckpt = model_to_evaluate(&setup).unwrap();
    assert!(ckpt.ends_with("best.safetensors"));
    let base = EvalConfig {
        n_examples: Some(8),
        batch_size: 8,
        autoattack: Some(AaVersion::Fast),
        ..EvalConfig::paper()
    };
    let whole = evaluate_file(&ckpt, &base).unwrap();
    let state = runs.join("aa-state.json");
    let cfg = EvalConfig {
        autoattack_state: Some(state.clone()),
        ..base.clone()
    };
    let stopped = interrupt_autoattack(&ckpt, &cfg, 1).unwrap();
    assert_eq!(stopped.attacks_done, ["apgd-ce"]);
    let resumed = evaluate_file(&ckpt, &cfg).unwrap();
    assert_eq!(resumed.autoattack_per_attack, whole.autoattack_per_attack);
    assert_eq!(resumed.autoattack_accuracy, whole.autoattack_accuracy);
    assert_eq!(resumed.clean_accuracy, whole.clean_accuracy);

    let table = eval_table(&resumed);
    let names: Vec<&str> = table.rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "clean",
            "PGD-10 (random start)",
            "AutoAttack, after apgd-ce",
            "AutoAttack, after apgd-t",
            "AutoAttack (final)"
        ]
    );
    assert!(table.to_html().contains("<table>") && table.to_string().contains("clean"));
    let fig = plot_eval_table(&table).unwrap();
    assert_eq!(
        fig.svg().matches("<rect").count(),
        1 + table.rows.len(),
        "background + bars"
    );
    let record: serde_json::Value =
        serde_json::from_str(&robustbench_record(&resumed, "quick", false)).unwrap();
    assert_eq!(record["eps"], "0.031");
    assert!(record["footnote"]
        .as_str()
        .unwrap()
        .contains("NON-STANDARD"));
    // full mode needs a checkpoint named in the environment
    let full = setup_from(Some("full"), Some(runs.clone())).unwrap();
    if std::env::var_os("ROBUST_PAF_CHECKPOINT").is_none() {
        let e = model_to_evaluate(&full).unwrap_err();
        assert!(e.to_string().contains("ROBUST_PAF_CHECKPOINT"), "{e}");
    }
    let e = interrupt_autoattack(&ckpt, &base, 1).unwrap_err();
    assert!(e.to_string().contains("state file"), "{e}");
    let _ = std::fs::remove_dir_all(&runs);
}
