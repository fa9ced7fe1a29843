//! The paper's architectures (docs/reproduction.md §2), compile-time shaped and generic over the
//! shared activation: CIFAR ResNet-18, pre-activation WideResNet (28-10, 16-4, 34-10, ...),
//! ImageNet-stem ResNet-18, VGG-16-BN; and, not from the paper, a small CNN for quick CPU runs. Inputs are raw [0, 1] pixels in NHWC, no normalisation
//! (§2.5). Tensor names follow the reference PyTorch `state_dict` keys.
//!
//! Every model is built on a device with its activation type, takes a `(batch, 32, 32, 3)`
//! tensor (224×224 for the ImageNet stem) and returns logits; the activation is one instance
//! shared by every site ([`Classifier::activation`]):
//!
//! ```
//! use dfdx::prelude::*;
//! use robust_paf::activations::{Activation, Pssilu, Relu};
//! use robust_paf::models::{Classifier, ResNet18, SmallCnn, Vgg16Bn, WideResNet16x1};
//!
//! let dev = Cpu::seed_from_u64(0);
//! let resnet = ResNet18::<Pssilu<Cpu>, Cpu>::new(&dev); // the paper's CIFAR ResNet-18
//! let wrn = WideResNet16x1::<Relu<Cpu>, Cpu>::new(&dev); // WRN-28-10: `WideResNet28x10`
//! let vgg = Vgg16Bn::<Relu<Cpu>, Cpu>::new(&dev);
//! let cnn = SmallCnn::<Pssilu<Cpu>, Cpu>::new(&dev); // quick runs only, not the paper's
//! assert_eq!(resnet.architecture(), "ResNet-18-PSSiLU");
//! assert_eq!(resnet.activation().parameters(), [("alpha", 1.0), ("beta", 1e-8f32 as f64)]);
//! assert_eq!(wrn.architecture(), "WideResNet-16-1-ReLU");
//! assert_eq!(vgg.architecture(), "VGG-16-BN-ReLU");
//!
//! let x: Tensor<(usize, Const<32>, Const<32>, Const<3>), f32, Cpu> = dev.sample_uniform_like(&(2, Const, Const, Const));
//! let logits = cnn.logits(x); // eval mode: batch-norm running statistics
//! assert_eq!(logits.shape().0, 2);
//! assert!(logits.as_vec().iter().all(|v| v.is_finite()));
//! ```

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
    assign_tensors, named_buffers, named_gradients, named_shaped_tensors, named_tensors,
    state_tensors, NamedTensor, ACTIVATION_PREFIX,
};

pub use small_cnn::SmallCnn;
pub use vgg::{Vgg16Bn, Vgg16BnNarrow};
