//! The paper's architectures (PAPER.md §2), compile-time shaped and generic over the shared
//! activation: CIFAR ResNet-18, pre-activation WideResNet (28-10, 16-4, 34-10, ...),
//! ImageNet-stem ResNet-18, VGG-16-BN. Inputs are raw [0, 1] pixels in NHWC, no normalisation
//! (§2.5). Tensor names follow the reference PyTorch `state_dict` keys.

pub mod layers;

pub use layers::{BatchNorm2d, BatchNormState, Conv2d, Conv2dBias, Mode, StatsRecorder};
