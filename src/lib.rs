//! # robust-paf
//!
//! Parametric activation functions for adversarial robustness: a Rust reproduction of
//! Dai, Mahloujifar & Mittal, *Parameterizing Activation Functions for Adversarial Robustness*
//! (arXiv 2110.05626), on dfdx 0.13 with compile-time-shaped models.
//!
//! Modules, from the bottom up (each depends only on those before it):
//! - [`ops`]: convolution, batch norm (train and eval mode, both differentiable), pooling, and the
//!   fused point-wise op, as dfdx tape ops (the conv/pool/BN dfdx lacks on stable Rust);
//! - [`activations`]: the twelve activations of docs/reproduction.md §1.2, shared by the whole
//!   network, and their shape properties (§1.3);
//! - [`models`]: CIFAR ResNet-18, pre-activation WideResNet, ImageNet-stem ResNet-18, VGG-16-BN
//!   (docs/reproduction.md §2);
//! - [`attacks`]: PGD (ℓ∞, ℓ2), FGSM, TRADES' inner maximisation (§3.3, §3.4);
//! - [`eval`]: AutoAttack's protocol, `evaluate`, the shape-ablation metrics (§4);
//! - [`train`]: standard training, PGD-AT and TRADES as the paper's code, checkpoints, runs with
//!   resume, configurations and presets, sweeps (§3);
//! - [`interop`]: PyTorch checkpoints in (official code, RobustBench) and out, without pickle
//!   code execution (docs/reproduction.md §2);
//! - [`notebook`]: plots and tables for the evcxr notebooks;
//! - [`data`] (apart from the stack): CIFAR-10/100, Fashion-MNIST, synthetic data, batching.
//!
//! What each module reproduces, with the paper's formulas, defaults and the official code's quirks,
//! is written down in `docs/reproduction.md` (sections cited as §x throughout these docs); the
//! notebooks in `notebooks/` walk through the paper's ablations with the entry points of
//! [`notebook`].
//!
//! # The flow in one example
//!
//! Data → model → attack → training → evaluation → plot, on the embedded Fashion-MNIST subset
//! with the small CNN of the `quick-*` presets (the paper's models are [`models::ResNet18`],
//! [`models::WideResNet28x10`], [`models::Vgg16Bn`]; the same code trains them, on CUDA too):
//!
//! ```
//! use std::sync::Arc;
//!
//! use dfdx::prelude::*;
//! use robust_paf::activations::prelude::*;
//! use robust_paf::attacks::{host_images, pgd, PgdConfig};
//! use robust_paf::data::{FashionMnist, IMAGE_BYTES};
//! use robust_paf::eval::{evaluate, EvalConfig};
//! use robust_paf::models::{Classifier, SmallCnn};
//! use robust_paf::notebook::plot_run_dirs;
//! use robust_paf::progress::Silent;
//! use robust_paf::train::{train, RunMode, TrainConfig, TrainData};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // 1. Data: labelled 32×32×3 byte images (Fashion-MNIST padded and copied to three channels),
//! //    [0, 1] floats only once batched (no normalisation, §2.5).
//! let fashion = FashionMnist::embedded()?;
//! let first: Vec<usize> = (0..200).collect();
//! let data = TrainData {
//!     train: Arc::new(fashion.train.select("200 train images", &first)?),
//!     synthetic: None,
//!     test: fashion.test.select("40 test images", &first[..40])?,
//!     description: "Fashion-MNIST, 200 train images".into(),
//! };
//!
//! // 2. The model: one PSSiLU (α₀ = 1, β₀ = 1e-8) shared by every layer (§1.1); its shape.
//! type Model = SmallCnn<Pssilu<Cpu>, Cpu>;
//! let cfg = TrainConfig::preset("quick-pgd-at", &["optim.epochs=1".into()])?;
//! let dev = Cpu::seed_from_u64(cfg.seed);
//! let mut model = Model::new(&dev);
//! let shape = properties_of(model.activation());
//! assert_eq!(shape.value_at_zero, 0.0);
//! assert!(!shape.kink_at_zero, "PSSiLU is smooth at 0: finite curvature");
//!
//! // 3. An attack: the paper's PGD-10 (ε 0.031, step 0.0078, random start) on 8 test images.
//! let x: Vec<f32> = data.test.pixels()[..8 * IMAGE_BYTES].iter().map(|&b| b as f32 / 255.0).collect();
//! let y: Vec<usize> = data.test.labels()[..8].iter().map(|&l| l as usize).collect();
//! let adv = pgd(&mut model, &host_images::<Model, Cpu>(&dev, x.clone(), 8), &y, &PgdConfig::paper())?;
//! let linf = adv.as_vec().iter().zip(&x).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
//! assert!(linf <= 0.031 + 1e-6);
//!
//! // 4. Training: PGD-AT with the paper's protocol (SGD Nesterov, per-iteration cosine, PSSiLU's
//! //    β penalty and clip, §3), one epoch, into a run directory (config, metrics.jsonl,
//! //    best/last checkpoints; `RunMode::Resume` continues an interrupted run).
//! let dir = std::env::temp_dir().join(format!("robust-paf-doc-flow-{}", std::process::id()));
//! let run = train(&cfg, model, &dev, &data, &dir, RunMode::Fresh, &mut Silent)?;
//! assert_eq!(run.summary.epochs, 1);
//!
//! // 5. Evaluation: clean and PGD-10 accuracy (`EvalConfig::paper()` adds AutoAttack standard).
//! let mut model = run.model;
//! let eval = EvalConfig { autoattack: None, ..EvalConfig::paper() };
//! let report = evaluate(&mut model, &dev, "SmallCNN-PSSiLU", &data.test, &eval, &mut Silent)?;
//! assert!(report.pgd_accuracy.unwrap() <= report.clean_accuracy);
//!
//! // 6. A plot: the run's curves as an SVG figure (`fig.evcxr_display()` in a notebook cell).
//! let fig = plot_run_dirs(&[dir.as_path()])?;
//! assert!(fig.svg().contains("<svg"));
//! std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # }
//! ```
//!
//! The command line does the same from a configuration: `robust-paf train --preset quick-pgd-at`,
//! then `robust-paf eval --checkpoint <run>/best.safetensors --autoattack standard`; the paper's
//! experiments are presets too (`robust-paf presets`, §3.7).
//!
//! # Where to start
//!
//! | to | call |
//! |---|---|
//! | build a model of the paper | [`models::ResNet18::new`], [`models::WideResNet28x10::new`], [`models::Vgg16Bn::new`] with any activation of [`activations`] |
//! | pick the activation by name at run time | [`activations::AnyActivation`], [`train::with_model`] |
//! | an activation's shape (negative outputs, curvature) | [`activations::shape::properties_of`], [`notebook::shape_table`] |
//! | attack a batch | [`attacks::pgd()`], [`attacks::apgd()`], [`attacks::fab_targeted`], [`attacks::square()`] |
//! | AutoAttack, RobustBench's protocol | [`eval::run_autoattack`], [`eval::evaluate`] with [`eval::EvalConfig::robustbench`] |
//! | train as the paper does | [`train::train`] (a run), [`train::train_step`] (one step), [`train::TrainConfig::preset`] |
//! | checkpoints | [`train::save_checkpoint`], [`train::load_checkpoint`], [`interop::import_torch_checkpoint`] (official / RobustBench `.pt`) |
//! | data | [`data::FashionMnist::embedded`], [`data::load_cifar10`], [`data::load_npz`] (DDPM data), [`data::Loader`], [`data::MixedLoader`] |
//! | plots and tables in a notebook | [`notebook`] ([`notebook::plot_paper_activations`], [`notebook::plot_run_dirs`], ...) |
//!
//! Everything runs on [`dfdx::tensor::Cpu`] and, with the `cuda` feature, on `dfdx::tensor::Cuda`
//! (README, "CUDA"); every error is a typed `thiserror` enum ([`Error`], [`train::TrainError`],
//! [`data::DataError`], [`interop::InteropError`]), never a panic on bad input.

// Typed tensors (`Tensor<(B, H, W, C), f32, D, T>`) make long signatures unavoidable.
#![allow(clippy::type_complexity)]

pub mod error;
pub mod ops;

pub use error::Error;
pub mod activations;
pub mod attacks;
pub mod data;
pub mod eval;
pub mod interop;
pub mod models;
pub mod notebook;
pub mod progress;
pub mod train;
