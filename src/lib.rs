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
