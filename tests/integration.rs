//! Every integration test of the crate in one test binary: each file of `tests/` is a module
//! here (`tests/train_run.rs` is `train_run`), sharing `tests/common/`. One binary instead of
//! twenty links the crate once and compiles each generic model, attack and trainer once, which
//! is most of `cargo test`'s time on 2 cores (BENCHMARKS.md, CI time). Run one file's tests with
//! `cargo test --test integration train_run::`, one test with its full name.
//!
//! Separate binary: `tests/gpu.rs` (needs `--features cuda`). The shape-error cases (a misfitting
//! layer does not compile) are `compile_fail` doctests in `src/ops/mod.rs`.

mod common;

mod activations;
mod assess;
mod attacks;
mod attacks_fab;
mod cli;
mod composed;
mod data_cifar;
mod data_fashion;
mod data_fuzz;
mod data_imagenette;
mod data_loader;
mod data_synthetic;
mod eval;
mod interop;
mod learning;
mod models;
mod notebook_ablation;
mod notebook_evaluation;
mod ops;
mod train_parallel;
mod train_run;
mod train_step;
