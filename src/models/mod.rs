//! The paper's architectures (docs/reproduction.md §2), compile-time shaped and generic over the
//! shared activation: CIFAR ResNet-18, pre-activation WideResNet (28-10, 16-4, 34-10, ...),
//! ImageNet-stem ResNet-18, VGG-16-BN; and, not from the paper, a small CNN for quick CPU runs. Inputs are raw [0, 1] pixels in NHWC, no normalisation
//! (§2.5). Tensor names follow the reference PyTorch `state_dict` keys.

pub mod layers;

pub use layers::{BatchNorm2d, BatchNormState, Conv2d, Conv2dBias, Mode, StatsRecorder};
pub mod classifier;
pub mod resnet;

pub use classifier::{Classifier, InputOf, LogitsOf};
pub use resnet::{ResNet18, ResNet18ImageNet, ResNet18ImageNetNarrow, ResNet18Narrow};
pub mod wide_resnet;

pub use wide_resnet::{
    WideResNet, WideResNet16x1, WideResNet16x2, WideResNet16x4, WideResNet28x10, WideResNet28x4,
    WideResNet34x10, WideResNet40x2,
};
pub mod small_cnn;
pub mod tensors;
pub mod vgg;

pub use tensors::{
    assign_tensors, named_gradients, named_shaped_tensors, named_tensors, state_tensors,
    NamedTensor, ACTIVATION_PREFIX,
};

pub use small_cnn::SmallCnn;
pub use vgg::{Vgg16Bn, Vgg16BnNarrow};
