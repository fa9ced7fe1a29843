//! `robust-paf import` and `robust-paf export`: PyTorch checkpoints in and out
//! (`robust_paf::interop`).

use std::path::{Path, PathBuf};

use clap::Args;
use dfdx::nn::BuildModule;
use dfdx::tensor::Cpu;

use robust_paf::interop::{import_torch_checkpoint, write_torch_safetensors, InteropError};
use robust_paf::models::Classifier;
use robust_paf::ops::Elem;
use robust_paf::train::checkpoint::{read_checkpoint, Checkpoint};
use robust_paf::train::{with_model, TrainError, WithModel};

#[derive(Args)]
pub struct ImportArgs {
    /// A PyTorch checkpoint: the official `model_best.pth.tar`, RobustBench's `.pt`, a bare
    /// `state_dict`, or a safetensors `state_dict`
    #[arg(long)]
    from: PathBuf,
    /// The architecture (resnet18, wrn-28-10, wrn-34-10, wrn-16-4, wrn-16-1, wrn-16-2, wrn-28-4,
    /// wrn-40-2, vgg16-bn, cnn-small)
    #[arg(long)]
    arch: String,
    /// The activation by its code name (relu, prelu, psilu, pssilu, pssilu2, ...)
    #[arg(long)]
    activation: String,
    /// Fixed-β PSSiLU's β (not in the state_dict; the official default is 0.3 for training)
    #[arg(long)]
    pssilu_beta: Option<f64>,
    /// The dataset the model was trained on (sets the class count and the evaluation data):
    /// cifar10, cifar100, or fashion-mnist-subset (the quick models)
    #[arg(long, default_value = "cifar10")]
    dataset: String,
    /// Folder for `model.safetensors`, the crate's checkpoint of the imported model
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
pub struct ExportArgs {
    /// A checkpoint of this crate (`robust-paf train` or `robust-paf import`)
    #[arg(long)]
    checkpoint: PathBuf,
    /// The safetensors file to write, PyTorch's keys and layouts
    #[arg(long)]
    out: PathBuf,
}

/// What a command of this file can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Train(#[from] TrainError),
    #[error(transparent)]
    Interop(#[from] InteropError),
}

fn device(e: impl std::fmt::Debug) -> InteropError {
    InteropError::Model(robust_paf::Error::Device(format!("{e:?}")))
}

struct ExportJob<'a> {
    ckpt: &'a Checkpoint,
    out: &'a Path,
}

impl WithModel<Cpu> for ExportJob<'_> {
    type Output = Result<(), CliError>;
    fn run<M: Classifier<Cpu> + BuildModule<Cpu, Elem>>(self) -> Self::Output {
        let dev = Cpu::default();
        let mut model = M::try_build(&dev).map_err(device)?;
        self.ckpt.apply(&mut model, None)?;
        write_torch_safetensors(&model, self.out)?;
        Ok(())
    }
}

pub fn cmd_import(a: ImportArgs) -> Result<(), CliError> {
    let imp = import_torch_checkpoint(
        &a.from,
        &a.arch,
        &a.activation,
        a.pssilu_beta,
        &a.dataset,
        &a.out,
    )?;
    println!(
        "imported {} ({} tensors{}) as {} / {} → {}",
        a.from.display(),
        imp.tensors,
        if imp.prefix.is_empty() {
            String::new()
        } else {
            format!(", under `{}`", imp.prefix)
        },
        imp.config.model.arch,
        imp.config.model.activation.code_name(),
        imp.checkpoint.display()
    );
    Ok(())
}

pub fn cmd_export(a: ExportArgs) -> Result<(), CliError> {
    let ckpt = read_checkpoint(&a.checkpoint)?;
    let Some(cfg) = ckpt.meta.config.clone() else {
        return Err(TrainError::Config {
            field: "--checkpoint".into(),
            value: a.checkpoint.display().to_string(),
            reason: "holds no configuration (architecture unknown)".into(),
        }
        .into());
    };
    let job = ExportJob {
        ckpt: &ckpt,
        out: &a.out,
    };
    with_model::<Cpu, _>(cfg.model.arch, cfg.data.dataset.classes(), job)??;
    println!(
        "exported {} ({}) → {} (PyTorch keys and layouts; load_state_dict(strict=True))",
        a.checkpoint.display(),
        ckpt.meta.architecture,
        a.out.display()
    );
    Ok(())
}
