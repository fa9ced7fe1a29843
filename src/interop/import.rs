//! From a PyTorch checkpoint to a crate checkpoint (docs/reproduction.md §1.1 and §2): the
//! official `model_best.pth.tar`, RobustBench's `Dai2021Parameterizing.pt`,
//! a bare or safetensors `state_dict` is read by [`super::torch_file`], mapped onto the model
//! its architecture names ([`crate::train::with_model`]), and saved with a training configuration (dataset,
//! threat model) so that `robust-paf eval` and [`crate::train::assess`] can evaluate it. The CLI's
//! `import` and notebook 05 call [`import_torch_checkpoint`].

use std::path::{Path, PathBuf};

use dfdx::nn::BuildModule;
use dfdx::tensor::Cpu;

use super::{import_state_dict, read_torch_state_dict, InteropError, TorchStateDict};
use crate::activations::Activation;
use crate::models::Classifier;
use crate::ops::Elem;
use crate::train::checkpoint::{save_checkpoint, CheckpointMeta};
use crate::train::{with_model, TrainConfig, TrainError, WithModel};

/// What [`import_torch_checkpoint`] did.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Imported {
    /// The crate checkpoint written: `out/model.safetensors`.
    pub checkpoint: PathBuf,
    /// The number of tensors the PyTorch file held.
    pub tensors: usize,
    /// The key prefix stripped (`module.` for DataParallel checkpoints), if any.
    pub prefix: String,
    /// The configuration saved with it.
    pub config: TrainConfig,
}

/// The evaluation preset an imported model's checkpoint records (dataset, threat model).
fn base_preset(dataset: &str) -> Result<&'static str, TrainError> {
    match dataset {
        "cifar10" => Ok("cifar10-linf-resnet18"),
        "cifar100" => Ok("cifar100-linf-wrn-28-10"),
        "fashion-mnist-subset" => Ok("quick-pgd-at"),
        other => Err(TrainError::Config {
            field: "--dataset".into(),
            value: other.into(),
            reason: "expected cifar10, cifar100 or fashion-mnist-subset".into(),
        }),
    }
}

fn device(e: impl std::fmt::Debug) -> TrainError {
    TrainError::Model(crate::Error::Device(format!("{e:?}")))
}

/// Reads the PyTorch checkpoint `from`, maps it onto `arch` with `activation` (code names, as
/// `robust-paf import`; `pssilu_beta` for fixed-β PSSiLU, whose β is not in the `state_dict`),
/// checks every tensor (missing, unexpected or mis-shaped keys are one error; the shared
/// activation must be equal at every site) and writes `out/model.safetensors` with the
/// configuration of `dataset`'s preset.
///
/// ```
/// use std::path::Path;
/// use robust_paf::interop::import_torch_checkpoint;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // RobustBench's layout (a bare `state_dict` of `PAF_WideResNet`), here a WRN-16-1 with PSSiLU
/// let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torch/wrn16_1_pssilu2.pt");
/// let out = std::env::temp_dir().join(format!("robust-paf-doc-import-{}", std::process::id()));
/// let imported = import_torch_checkpoint(&from, "wrn-16-1", "pssilu2", None, "cifar10", &out)?;
/// assert!(imported.tensors > 0);
/// assert!(imported.checkpoint.exists());
/// std::fs::remove_dir_all(&out)?;
/// # Ok(())
/// # }
/// ```
pub fn import_torch_checkpoint(
    from: &Path,
    arch: &str,
    activation: &str,
    pssilu_beta: Option<f64>,
    dataset: &str,
    out: &Path,
) -> Result<Imported, InteropError> {
    let mut set = vec![
        format!("model.arch={arch:?}"),
        format!("model.activation={activation:?}"),
    ];
    if let Some(b) = pssilu_beta {
        set.push(format!("model.pssilu_beta={b}"));
    }
    let cfg = TrainConfig::preset(base_preset(dataset)?, &set)?;
    let sd = read_torch_state_dict(from)?;
    struct Job<'a> {
        sd: &'a TorchStateDict,
        cfg: &'a TrainConfig,
        out: &'a Path,
    }
    impl WithModel<Cpu> for Job<'_> {
        type Output = Result<PathBuf, InteropError>;
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
    let job = Job {
        sd: &sd,
        cfg: &cfg,
        out,
    };
    let checkpoint = with_model::<Cpu, _>(cfg.model.arch, cfg.data.dataset.classes(), job)??;
    Ok(Imported {
        checkpoint,
        tensors: sd.tensors.len(),
        prefix: sd.prefix.clone(),
        config: cfg,
    })
}
