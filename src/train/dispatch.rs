//! From the names in a configuration (architecture, activation, classes) to the compile-time
//! model type: [`with_model`] calls a [`WithModel`] job with the concrete type, so a program that
//! reads its model from a file (the `robust-paf` CLI, the notebooks) can still use the crate's
//! statically shaped models.
//!
//! Nothing is compiled until a job type uses it: each [`WithModel`] implementation instantiates
//! its `run` once per supported (architecture, activation, classes) — 12 activations × 7
//! architectures for 10 classes, × 2 for 100 classes.

use dfdx::nn::BuildModule;

use super::config::Arch;
use super::TrainError;
use crate::activations::{
    ActivationKind, Elu, Pelu, Prelu, PreluPlus, Psilu, Psoftplus, Pssilu, PssiluFixed, Reblu,
    Relu, Silu, Softplus,
};
use crate::models::{
    Classifier, ResNet18, SmallCnn, Vgg16Bn, WideResNet, WideResNet16x1, WideResNet16x4,
    WideResNet28x10, WideResNet34x10,
};
use crate::ops::{Backend, Elem};

/// A job to run with a concrete model type `M` (built by the job, e.g. `M::try_build(dev)`).
pub trait WithModel<D: Backend> {
    type Output;
    fn run<M: Classifier<D> + BuildModule<D, Elem>>(self) -> Self::Output;
}

macro_rules! per_activation {
    ($act:expr, $job:expr, $D:ty, $model:ident) => {
        match $act {
            ActivationKind::Relu => $job.run::<$model<Relu<$D>, $D>>(),
            ActivationKind::Elu => $job.run::<$model<Elu<$D>, $D>>(),
            ActivationKind::Softplus => $job.run::<$model<Softplus<$D>, $D>>(),
            ActivationKind::Silu => $job.run::<$model<Silu<$D>, $D>>(),
            ActivationKind::Prelu => $job.run::<$model<Prelu<$D>, $D>>(),
            ActivationKind::Pelu => $job.run::<$model<Pelu<$D>, $D>>(),
            ActivationKind::Pprelu => $job.run::<$model<PreluPlus<$D>, $D>>(),
            ActivationKind::Pblu => $job.run::<$model<Reblu<$D>, $D>>(),
            ActivationKind::Psilu => $job.run::<$model<Psilu<$D>, $D>>(),
            ActivationKind::Psoftplus => $job.run::<$model<Psoftplus<$D>, $D>>(),
            ActivationKind::PssiluFixed => $job.run::<$model<PssiluFixed<$D>, $D>>(),
            ActivationKind::Pssilu => $job.run::<$model<Pssilu<$D>, $D>>(),
        }
    };
}

type ResNet18x100<A, D> = ResNet18<A, D, Elem, 100>;
type WideResNet28x10x100<A, D> = WideResNet<A, D, Elem, 4, 160, 320, 640, 100>;
type Vgg16Bn10<A, D> = Vgg16Bn<A, D, Elem, 10>;
type ResNet18x10<A, D> = ResNet18<A, D, Elem, 10>;
type SmallCnn10<A, D> = SmallCnn<A, D, Elem, 10>;

/// Runs `job` with the model type of `arch`, `activation` and `classes` on device `D`; an error
/// for a combination the crate does not build (100 classes exist for ResNet-18 and
/// WRN-28-10).
pub fn with_model<D: Backend, J: WithModel<D>>(
    arch: Arch,
    activation: ActivationKind,
    classes: usize,
    job: J,
) -> Result<J::Output, TrainError> {
    Ok(match (arch, classes) {
        (Arch::ResNet18, 10) => per_activation!(activation, job, D, ResNet18x10),
        (Arch::Wrn28x10, 10) => per_activation!(activation, job, D, WideResNet28x10),
        (Arch::Wrn34x10, 10) => per_activation!(activation, job, D, WideResNet34x10),
        (Arch::Wrn16x4, 10) => per_activation!(activation, job, D, WideResNet16x4),
        (Arch::Vgg16Bn, 10) => per_activation!(activation, job, D, Vgg16Bn10),
        (Arch::Wrn16x1, 10) => per_activation!(activation, job, D, WideResNet16x1),
        (Arch::SmallCnn, 10) => per_activation!(activation, job, D, SmallCnn10),
        (Arch::ResNet18, 100) => per_activation!(activation, job, D, ResNet18x100),
        (Arch::Wrn28x10, 100) => per_activation!(activation, job, D, WideResNet28x10x100),
        (arch, classes) => {
            return Err(TrainError::Config {
                field: "model.arch".into(),
                value: arch.to_string(),
                reason: format!(
                    "no {classes}-class build (10 classes: every architecture; 100: resnet18, \
                     wrn-28-10)"
                ),
            })
        }
    })
}
