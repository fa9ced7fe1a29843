//! From the names in a configuration (architecture, classes) to the compile-time model type:
//! [`with_model`] calls a [`WithModel`] job with the concrete type, so a program that reads its
//! model from a file (the `robust-paf` CLI, the notebooks) can still use the crate's statically
//! shaped models.
//!
//! The activation is an [`AnyActivation`]: the job sets its kind ([`crate::train::train`] does,
//! from the configuration; [`crate::train::Checkpoint::apply`] takes the checkpoint's). Each
//! [`WithModel`] implementation is thus compiled once per architecture (10 for 10 classes, 2 for
//! 100), not once per architecture × activation (108): on 2 cores the debug build of the
//! `robust-paf` binary alone took 10.5 minutes before, the crate and the binary together now
//! take about 3.

use dfdx::nn::BuildModule;

use super::config::Arch;
use super::TrainError;
use crate::activations::AnyActivation;
use crate::models::{
    Classifier, ResNet18, ResNet18ImageNet, SmallCnn, Vgg16Bn, WideResNet, WideResNet16x1,
    WideResNet16x2, WideResNet16x4, WideResNet28x10, WideResNet28x4, WideResNet34x10,
    WideResNet40x2,
};
use crate::ops::{Backend, Elem};

/// A job to run with a concrete model type `M` (built by the job, e.g. `M::try_build(dev)`; its
/// activation is an [`AnyActivation`], ReLU until the job sets its kind).
pub trait WithModel<D: Backend> {
    type Output;
    fn run<M: Classifier<D> + BuildModule<D, Elem>>(self) -> Self::Output;
}

type ResNet18x100<A, D> = ResNet18<A, D, Elem, 100>;
type WideResNet28x10x100<A, D> = WideResNet<A, D, Elem, 4, 160, 320, 640, 100>;
type Vgg16Bn10<A, D> = Vgg16Bn<A, D, Elem, 10>;
type ResNet18x10<A, D> = ResNet18<A, D, Elem, 10>;
type ResNet18ImageNet10<A, D> = ResNet18ImageNet<A, D, Elem, 10>;
type SmallCnn10<A, D> = SmallCnn<A, D, Elem, 10>;

/// Runs `job` with the model type of `arch` and `classes` on device `D`; an error for a
/// combination the crate does not build (100 classes exist for ResNet-18 and WRN-28-10).
pub fn with_model<D: Backend, J: WithModel<D>>(
    arch: Arch,
    classes: usize,
    job: J,
) -> Result<J::Output, TrainError> {
    Ok(match (arch, classes) {
        (Arch::ResNet18, 10) => job.run::<ResNet18x10<AnyActivation<D>, D>>(),
        (Arch::ResNet18ImageNet, 10) => job.run::<ResNet18ImageNet10<AnyActivation<D>, D>>(),
        (Arch::Wrn28x10, 10) => job.run::<WideResNet28x10<AnyActivation<D>, D>>(),
        (Arch::Wrn34x10, 10) => job.run::<WideResNet34x10<AnyActivation<D>, D>>(),
        (Arch::Wrn16x4, 10) => job.run::<WideResNet16x4<AnyActivation<D>, D>>(),
        (Arch::Vgg16Bn, 10) => job.run::<Vgg16Bn10<AnyActivation<D>, D>>(),
        (Arch::Wrn16x1, 10) => job.run::<WideResNet16x1<AnyActivation<D>, D>>(),
        (Arch::Wrn16x2, 10) => job.run::<WideResNet16x2<AnyActivation<D>, D>>(),
        (Arch::Wrn28x4, 10) => job.run::<WideResNet28x4<AnyActivation<D>, D>>(),
        (Arch::Wrn40x2, 10) => job.run::<WideResNet40x2<AnyActivation<D>, D>>(),
        (Arch::SmallCnn, 10) => job.run::<SmallCnn10<AnyActivation<D>, D>>(),
        (Arch::ResNet18, 100) => job.run::<ResNet18x100<AnyActivation<D>, D>>(),
        (Arch::Wrn28x10, 100) => job.run::<WideResNet28x10x100<AnyActivation<D>, D>>(),
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

/// Trains `cfg` with the model its configuration names ([`with_model`]): builds the model on
/// `dev`, runs [`super::train`] into `dir`, and returns the run's summary.
pub fn train_named<D: Backend>(
    dev: D,
    cfg: &super::TrainConfig,
    data: &super::TrainData,
    dir: &std::path::Path,
    mode: super::RunMode,
    progress: &mut dyn crate::progress::Progress,
) -> Result<super::RunSummary, TrainError> {
    let comm: std::rc::Rc<dyn super::Collective> = std::rc::Rc::new(super::Single);
    train_named_parallel(dev, cfg, data, dir, mode, progress, comm)
}

/// [`train_named`] as one rank of `comm` ([`super::train_parallel`]; `robust-paf train` under
/// `mpirun`).
pub fn train_named_parallel<D: Backend>(
    dev: D,
    cfg: &super::TrainConfig,
    data: &super::TrainData,
    dir: &std::path::Path,
    mode: super::RunMode,
    progress: &mut dyn crate::progress::Progress,
    comm: std::rc::Rc<dyn super::Collective>,
) -> Result<super::RunSummary, TrainError> {
    struct Job<'a, D> {
        cfg: &'a super::TrainConfig,
        data: &'a super::TrainData,
        dir: &'a std::path::Path,
        mode: super::RunMode,
        dev: D,
        progress: &'a mut dyn crate::progress::Progress,
        comm: std::rc::Rc<dyn super::Collective>,
    }
    impl<D: Backend> WithModel<D> for Job<'_, D> {
        type Output = Result<super::RunSummary, TrainError>;
        fn run<M: Classifier<D> + BuildModule<D, Elem>>(self) -> Self::Output {
            let model =
                M::try_build(&self.dev).map_err(|e| crate::Error::Device(format!("{e:?}")))?;
            super::train_parallel(
                self.cfg,
                model,
                &self.dev,
                self.data,
                self.dir,
                self.mode,
                self.progress,
                self.comm,
            )
            .map(|r| r.summary)
        }
    }
    let (arch, classes) = (cfg.model.arch, cfg.data.dataset.classes());
    let job = Job {
        cfg,
        data,
        dir,
        mode,
        dev,
        progress,
        comm,
    };
    with_model::<D, _>(arch, classes, job)?
}
