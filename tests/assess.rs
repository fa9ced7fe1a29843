//! `train::assess`: a saved run evaluated through its checkpoint gives the numbers of the model
//! it holds evaluated directly (the checkpoint's weights and activation are loaded, the first N
//! test images are used), and bad input is an error that writes nothing.

use std::path::PathBuf;

use dfdx::prelude::*;
use robust_paf::activations::AnyActivation;
use robust_paf::eval::{
    average_radius, empirical_lipschitz, evaluate, square_success_rate, Epsilon, EvalConfig,
};
use robust_paf::models::{Classifier, SmallCnn};
use robust_paf::progress::Silent;
use robust_paf::train::assess::{
    checkpoint_test_set, evaluate_checkpoint, run_shape_metrics, ShapeMetricsConfig,
    SHAPE_METRICS_FILE,
};
use robust_paf::train::checkpoint::read_checkpoint;
use robust_paf::train::run::BEST_FILE;
use robust_paf::train::{load_data, train_named, RunMode, TrainConfig};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("robust-paf-assess-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// One epoch of standard training of the small CNN with a frozen PReLU slope, on 100 images.
fn trained_run(name: &str) -> PathBuf {
    let dir = tmp(name);
    let cfg = TrainConfig::preset(
        "quick-standard",
        &[
            "model.activation=\"prelu\"".into(),
            "model.fix_alpha=-0.25".into(),
            "optim.epochs=1".into(),
            "data.train_subset=100".into(),
            "eval.n_examples=20".into(),
            "eval.pgd=false".into(),
        ],
    )
    .unwrap();
    let data = load_data(&cfg).unwrap();
    train_named(
        Cpu::seed_from_u64(1),
        &cfg,
        &data,
        &dir,
        RunMode::Fresh,
        &mut Silent,
    )
    .unwrap();
    dir
}

type Model = SmallCnn<AnyActivation<Cpu>, Cpu>;

#[test]
fn metrics_of_a_run_are_those_of_its_model() {
    let dir = trained_run("metrics");
    let path = dir.join(BEST_FILE);
    let ckpt = read_checkpoint(&path).unwrap();
    let (train_cfg, test) = checkpoint_test_set(&ckpt, &path, None).unwrap();

    let cfg = ShapeMetricsConfig {
        n_examples: Some(24),
        square_queries: 20,
        batch_size: 16,
        ..ShapeMetricsConfig::quick()
    };
    let m = run_shape_metrics(&dir, &cfg, &mut Silent).unwrap();
    assert_eq!(m.n_examples, 24);
    assert_eq!(m.model, "SmallCNN-PReLU");

    // the same model, loaded by hand, on the same 24 images
    let dev = Cpu::seed_from_u64(0);
    let mut model = Model::build(&dev);
    ckpt.apply(&mut model, None).unwrap();
    model.eval();
    let f = 32 * 32 * 3;
    let x: Vec<f32> = test.pixels()[..24 * f]
        .iter()
        .map(|&v| v as f32 / 255.0)
        .collect();
    let y: Vec<usize> = test.labels()[..24].iter().map(|&l| l as usize).collect();
    let mut radius = cfg.radius.clone();
    radius.batch_size = 16;
    let (r, radii) = average_radius(&mut model, &dev, &x, &y, &radius).unwrap();
    let (sq, _) = square_success_rate(&mut model, &dev, &x, &y, 0.031, 20, 16).unwrap();
    let lip = empirical_lipschitz(&mut model, &dev, &x, &y, 16).unwrap();
    assert_eq!(m.average_radius, r);
    assert_eq!(m.square_success_rate, sq);
    assert_eq!(m.lipschitz, lip);
    let correct = radii.iter().filter(|r| r.is_some()).count();
    assert_eq!(m.clean_accuracy, correct as f64 / 24.0);

    // evaluate_checkpoint = evaluate on the hand-loaded model
    let ecfg = EvalConfig {
        eps: Epsilon::Decimal(0.031),
        n_examples: Some(24),
        batch_size: 16,
        ..EvalConfig::paper()
    };
    let a = evaluate_checkpoint(
        Cpu::seed_from_u64(0),
        &ckpt,
        &train_cfg,
        &test,
        &ecfg,
        &mut Silent,
    )
    .unwrap();
    let b = evaluate(
        &mut model,
        &dev,
        "SmallCNN-PReLU",
        &test,
        &ecfg,
        &mut Silent,
    )
    .unwrap();
    assert_eq!(a.clean_accuracy, b.clean_accuracy);
    assert_eq!(a.pgd_accuracy, b.pgd_accuracy);
    assert_eq!(a.model, "SmallCNN-PReLU");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_input_is_an_error_and_writes_nothing() {
    let dir = trained_run("bad");
    let bad = ShapeMetricsConfig {
        square_queries: 0,
        ..ShapeMetricsConfig::quick()
    };
    let e = run_shape_metrics(&dir, &bad, &mut Silent).unwrap_err();
    assert!(e.to_string().contains("square_queries"), "{e}");
    assert!(!dir.join(SHAPE_METRICS_FILE).exists());
    // a truncated checkpoint
    let best = dir.join(BEST_FILE);
    let bytes = std::fs::read(&best).unwrap();
    std::fs::write(&best, &bytes[..bytes.len() / 2]).unwrap();
    let e = run_shape_metrics(&dir, &ShapeMetricsConfig::quick(), &mut Silent).unwrap_err();
    assert!(e.to_string().contains("truncated or corrupted"), "{e}");
    assert!(!dir.join(SHAPE_METRICS_FILE).exists());
    // a stale or unreadable stored result is recomputed, not trusted
    let missing = tmp("missing");
    assert!(run_shape_metrics(&missing, &ShapeMetricsConfig::quick(), &mut Silent).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}
