//! `robust-paf import` and `robust-paf export`: PyTorch checkpoints in and out
//! (`robust_paf::interop`).

use std::path::{Path, PathBuf};

use clap::Args;
use dfdx::nn::BuildModule;
use dfdx::tensor::Cpu;

use robust_paf::activations::Activation;
use robust_paf::interop::{import_state_dict, read_torch_state_dict, write_torch_safetensors};
use robust_paf::interop::{InteropError, TorchStateDict};
use robust_paf::models::Classifier;
use robust_paf::ops::Elem;
use robust_paf::train::checkpoint::{read_checkpoint, save_checkpoint, Checkpoint, CheckpointMeta};
use robust_paf::train::{with_model, TrainConfig, TrainError, WithModel};

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
    /// The dataset the model was trained on (sets the class count and the evaluation data)
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

struct ImportJob<'a> {
    sd: &'a TorchStateDict,
    cfg: &'a TrainConfig,
    out: &'a Path,
}

impl WithModel<Cpu> for ImportJob<'_> {
    type Output = Result<PathBuf, CliError>;
    fn run<M: Classifier<Cpu> + BuildModule<Cpu, Elem>>(self) -> Self::Output {
        let dev = Cpu::default();
        let mut model = M::try_build(&dev).map_err(device)?;
        model.try_init_paper().map_err(device)?;
        let act = model.activation_mut();
        act.try_set_kind(self.cfg.model.activation)
            .map_err(InteropError::Model)?;
        if let Some(b) = self.cfg.model.pssilu_beta {
            act.set_parameter("beta", b).map_err(InteropError::Model)?;
        }
        import_state_dict(&mut model, self.sd)?;
        std::fs::create_dir_all(self.out).map_err(|e| InteropError::Write {
            path: self.out.to_path_buf(),
            reason: e.to_string(),
        })?;
        let path = self.out.join("model.safetensors");
        let meta = CheckpointMeta {
            config: Some(self.cfg.clone()),
            ..CheckpointMeta::describe(&model)
        };
        save_checkpoint(&path, &model, None, &meta)?;
        Ok(path)
    }
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

/// The evaluation preset an imported model's checkpoint records (dataset, threat model).
fn base_preset(dataset: &str) -> Result<&'static str, TrainError> {
    match dataset {
        "cifar10" => Ok("cifar10-linf-resnet18"),
        "cifar100" => Ok("cifar100-linf-wrn-28-10"),
        other => Err(TrainError::Config {
            field: "--dataset".into(),
            value: other.into(),
            reason: "expected cifar10 or cifar100".into(),
        }),
    }
}

pub fn cmd_import(a: ImportArgs) -> Result<(), CliError> {
    let mut set = vec![
        format!("model.arch={:?}", a.arch),
        format!("model.activation={:?}", a.activation),
    ];
    if let Some(b) = a.pssilu_beta {
        set.push(format!("model.pssilu_beta={b}"));
    }
    let cfg = TrainConfig::preset(base_preset(&a.dataset)?, &set)?;
    let sd = read_torch_state_dict(&a.from)?;
    let job = ImportJob {
        sd: &sd,
        cfg: &cfg,
        out: &a.out,
    };
    let path = with_model::<Cpu, _>(cfg.model.arch, cfg.data.dataset.classes(), job)??;
    println!(
        "imported {} ({} tensors{}) as {} / {} → {}",
        a.from.display(),
        sd.tensors.len(),
        if sd.prefix.is_empty() {
            String::new()
        } else {
            format!(", under `{}`", sd.prefix)
        },
        cfg.model.arch,
        cfg.model.activation.code_name(),
        path.display()
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
