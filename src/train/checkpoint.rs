//! Checkpoints (docs/reproduction.md §3.2): one safetensors file holding every tensor of a model by
//! its `state_dict` name (parameters and BN running statistics), the optimizer's momentum buffers
//! (`optimizer.momentum_buffer.<name>`) and a JSON metadata entry (`__metadata__["robust_paf"]`):
//! architecture, activation and classes, the activation's parameters and frozen values, a CRC-32
//! of the tensor bytes, and — for a training run — its position (epoch, step, schedule, best
//! metric, partial epoch sums), the seed and the resolved configuration.
//!
//! Files are written atomically (temporary file in the same folder, `fsync`, rename, `fsync` of
//! the folder), so a run killed at any instant leaves the previous checkpoint or the new one,
//! never a torn file. Loading checks everything before it changes anything: a truncated or
//! corrupted file, a checkpoint of another architecture, activation or class count, a missing,
//! extra or misshapen tensor is a [`TrainError`] and the model is left as it was.
//!
//! Tensors are stored in the crate's layout (convolution weights `[C_out, K, K, C_in]`, as
//! [`crate::models`] documents); PyTorch's layout is the import/export's business.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::config::TrainConfig;
use super::optim::Sgd;
use super::TrainError;
use crate::activations::{Activation, ActivationKind};
use crate::models::{assign_tensors, state_tensors, Classifier, NamedTensor};
use crate::ops::{Backend, Elem};

/// The `format` written in every checkpoint.
pub const FORMAT: &str = "robust-paf-checkpoint";
/// The version of the format.
pub const FORMAT_VERSION: u32 = 1;
/// The safetensors metadata key holding [`CheckpointMeta`] as JSON.
pub const METADATA_KEY: &str = "robust_paf";
/// Name prefix of the optimizer's momentum buffers.
pub const MOMENTUM_PREFIX: &str = "optimizer.momentum_buffer.";

/// Sums over the steps of an epoch so far (what a mid-epoch checkpoint must carry for the
/// resumed epoch to report the same training loss and accuracy).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EpochSums {
    pub steps: usize,
    pub images: usize,
    /// Σ loss · images (the official `AverageMeter` weighting).
    pub loss_sum: f64,
    pub clean_correct: usize,
    pub adv_correct: usize,
    /// Seconds spent in the epoch's steps so far.
    pub seconds: f64,
}

/// The best evaluation so far.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Best {
    pub epoch: usize,
    pub value: f64,
}

/// Where a training run stands (in `last.safetensors`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunPosition {
    /// Epochs finished (warm-up epochs included).
    pub epochs_done: usize,
    /// Steps finished in the current epoch (0 at an epoch boundary).
    pub step_in_epoch: usize,
    /// Steps finished in the run.
    pub global_step: usize,
    pub lr: f64,
    pub momentum: f64,
    pub sums: EpochSums,
    pub best: Option<Best>,
    /// Seconds of training so far (the run's wall time before this checkpoint).
    pub seconds: f64,
}

/// The metadata of a checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    pub format: String,
    pub format_version: u32,
    pub crate_version: String,
    /// [`Classifier::architecture`] of the model, e.g. `"ResNet-18-PSSiLU"`.
    pub architecture: String,
    pub activation: ActivationKind,
    pub classes: usize,
    /// The activation's parameters (raw α, β; fixed-β PSSiLU's β too).
    pub activation_parameters: Vec<(String, f64)>,
    /// Frozen activation parameters and their values.
    pub frozen: Vec<(String, f64)>,
    /// How tensors are laid out.
    pub layout: String,
    /// CRC-32 of every tensor's bytes, in name order.
    pub crc32: u32,
    /// How the run's random numbers are derived (they depend only on the seed and the step).
    pub rng: String,
    pub seed: Option<u64>,
    pub position: Option<RunPosition>,
    pub config: Option<TrainConfig>,
}

impl CheckpointMeta {
    /// Metadata describing `model` (training fields empty).
    pub fn describe<M: Classifier<D>, D: Backend>(model: &M) -> Self {
        let act = model.activation();
        CheckpointMeta {
            format: FORMAT.to_string(),
            format_version: FORMAT_VERSION,
            crate_version: env!("CARGO_PKG_VERSION").to_string(),
            architecture: model.architecture(),
            activation: act.kind(),
            classes: <M::Classes as dfdx::shapes::ConstDim>::SIZE,
            activation_parameters: act
                .parameters()
                .into_iter()
                .map(|(n, v)| (n.to_string(), v))
                .collect(),
            frozen: act
                .frozen()
                .into_iter()
                .map(|(n, v)| (n.to_string(), v))
                .collect(),
            layout: "robust-paf native: images NHWC, convolution weights [C_out, K, K, C_in]"
                .to_string(),
            crc32: 0,
            rng: "per step: SplitMix64(seed, stream, epoch/step); data order and augmentation \
                  from (seed, epoch, step); model init from the device seeded with `seed`"
                .to_string(),
            seed: None,
            position: None,
            config: None,
        }
    }
}

/// Every tensor a checkpoint of `model` holds ([`state_tensors`]), copied to the host.
pub fn model_tensors<M: Classifier<D>, D: Backend>(
    model: &M,
) -> Result<Vec<NamedTensor>, TrainError> {
    state_tensors(model).map_err(|e| TrainError::Model(crate::Error::Device(format!("{e:?}"))))
}

fn checksum<'a>(tensors: impl Iterator<Item = (&'a str, &'a [u8])>) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for (name, bytes) in tensors {
        h.update(name.as_bytes());
        h.update(bytes);
    }
    h.finalize()
}

fn to_bytes(v: &[Elem]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Writes `bytes` to `path` atomically: a temporary file beside it, `fsync`, rename, `fsync` of
/// the folder.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(TrainError::io(path, e));
    }
    Ok(())
}

/// Saves `model` (and `opt`'s momentum buffers) with `meta` to `path`, atomically. The
/// architecture, activation, classes, activation parameters and checksum of `meta` are filled
/// in from the model.
pub fn save_checkpoint<M: Classifier<D>, D: Backend>(
    path: &Path,
    model: &M,
    opt: Option<&Sgd<D>>,
    meta: &CheckpointMeta,
) -> Result<(), TrainError> {
    let file = checkpoint_bytes(path, model, opt, meta)?;
    write_atomic(path, &file)
}

/// The bytes [`save_checkpoint`] writes (`path` only names it in errors): what rank 0 of a
/// data-parallel run broadcasts to the others.
pub fn checkpoint_bytes<M: Classifier<D>, D: Backend>(
    path: &Path,
    model: &M,
    opt: Option<&Sgd<D>>,
    meta: &CheckpointMeta,
) -> Result<Vec<u8>, TrainError> {
    let mut tensors = model_tensors(model)?;
    if let Some(opt) = opt {
        for (name, v) in opt.buffers() {
            let n = v.len();
            tensors.push((format!("{MOMENTUM_PREFIX}{name}"), vec![n], v));
        }
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(n, s, v)| (n, s, to_bytes(&v)))
        .collect();
    let described = CheckpointMeta::describe(model);
    let meta = CheckpointMeta {
        crc32: checksum(bytes.iter().map(|(n, _, b)| (n.as_str(), b.as_slice()))),
        ..CheckpointMeta {
            seed: meta.seed,
            position: meta.position.clone(),
            config: meta.config.clone(),
            ..described
        }
    };
    let json = serde_json::to_string(&meta).map_err(|e| TrainError::Checkpoint {
        path: path.to_path_buf(),
        reason: format!("metadata: {e}"),
    })?;
    let views = bytes
        .iter()
        .map(|(n, s, b)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                .map(|v| (n.clone(), v))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TrainError::Checkpoint {
            path: path.to_path_buf(),
            reason: format!("{e:?}"),
        })?;
    let mut md = std::collections::HashMap::new();
    md.insert(METADATA_KEY.to_string(), json);
    safetensors::serialize(views, &Some(md)).map_err(|e| TrainError::Checkpoint {
        path: path.to_path_buf(),
        reason: format!("{e:?}"),
    })
}

/// A checkpoint read and checked, not yet applied to a model.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    pub path: PathBuf,
    pub meta: CheckpointMeta,
    /// Every tensor by name: (shape, values).
    pub tensors: BTreeMap<String, (Vec<usize>, Vec<Elem>)>,
}

fn corrupt(path: &Path, reason: impl Into<String>) -> TrainError {
    TrainError::Checkpoint {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Reads `path` and checks its format and checksum (not yet against a model).
pub fn read_checkpoint(path: &Path) -> Result<Checkpoint, TrainError> {
    let bytes = std::fs::read(path).map_err(|e| TrainError::io(path, e))?;
    parse_checkpoint(path, &bytes)
}

/// [`read_checkpoint`] of bytes already in memory (`path` names them in errors).
pub fn parse_checkpoint(path: &Path, bytes: &[u8]) -> Result<Checkpoint, TrainError> {
    let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| {
        corrupt(
            path,
            format!("not a complete safetensors file (truncated or corrupted?): {e:?}"),
        )
    })?;
    let (_, header) = safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|e| corrupt(path, format!("unreadable header: {e:?}")))?;
    let json = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get(METADATA_KEY))
        .ok_or_else(|| {
            corrupt(
                path,
                format!("no `{METADATA_KEY}` metadata: not a robust-paf checkpoint"),
            )
        })?;
    let meta: CheckpointMeta = serde_json::from_str(json)
        .map_err(|e| corrupt(path, format!("unreadable metadata: {e}")))?;
    if meta.format != FORMAT || meta.format_version > FORMAT_VERSION {
        return Err(corrupt(
            path,
            format!(
                "format {} v{} (this build reads {FORMAT} up to v{FORMAT_VERSION})",
                meta.format, meta.format_version
            ),
        ));
    }
    let mut names: Vec<(&str, safetensors::tensor::TensorView<'_>)> = st.iter().collect();
    names.sort_by(|a, b| a.0.cmp(b.0));
    let crc = checksum(names.iter().map(|(n, v)| (*n, v.data())));
    if crc != meta.crc32 {
        return Err(corrupt(
            path,
            format!(
                "checksum mismatch (stored {:08x}, computed {crc:08x}): the file is corrupted",
                meta.crc32
            ),
        ));
    }
    let mut tensors = BTreeMap::new();
    for (name, view) in names {
        if view.dtype() != safetensors::Dtype::F32 {
            return Err(corrupt(
                path,
                format!("tensor `{name}` is {:?}, expected F32", view.dtype()),
            ));
        }
        let values: Vec<Elem> = view
            .data()
            .chunks_exact(4)
            .map(|c| Elem::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        tensors.insert(name.to_string(), (view.shape().to_vec(), values));
    }
    Ok(Checkpoint {
        path: path.to_path_buf(),
        meta,
        tensors,
    })
}

impl Checkpoint {
    /// Checks that this checkpoint fits `model` exactly (architecture, activation, classes, every
    /// tensor present with its shape, no extra tensors), then loads it: the model's tensors, the
    /// activation's fixed β and frozen values, and `opt`'s momentum buffers when given. An
    /// [`AnyActivation`](crate::activations::AnyActivation) model takes the checkpoint's
    /// activation. On any mismatch nothing is changed.
    pub fn apply<M: Classifier<D>, D: Backend>(
        &self,
        model: &mut M,
        opt: Option<&mut Sgd<D>>,
    ) -> Result<(), TrainError> {
        // An `AnyActivation` takes the checkpoint's kind. Everything happens on a copy (the
        // tensors are shared copy-on-write), so a mismatch leaves `model` as it was.
        let mut target = model.clone();
        if target.activation().kind() != self.meta.activation {
            // a concrete activation type refuses; the check below names the mismatch
            let _ = target.activation_mut().try_set_kind(self.meta.activation);
        }
        let want = CheckpointMeta::describe(&target);
        let m = &self.meta;
        if m.architecture != want.architecture
            || m.activation != want.activation
            || m.classes != want.classes
        {
            return Err(TrainError::CheckpointMismatch {
                path: self.path.clone(),
                expected: format!(
                    "{} ({}, {} classes)",
                    want.architecture,
                    want.activation.code_name(),
                    want.classes
                ),
                found: format!(
                    "{} ({}, {} classes)",
                    m.architecture,
                    m.activation.code_name(),
                    m.classes
                ),
            });
        }
        let current = model_tensors(&target)?;
        let mut values = BTreeMap::new();
        for (name, shape, _) in &current {
            match self.tensors.get(name) {
                None => {
                    return Err(TrainError::CheckpointMismatch {
                        path: self.path.clone(),
                        expected: format!("a tensor `{name}`"),
                        found: "none".to_string(),
                    })
                }
                Some((s, _)) if s != shape => {
                    return Err(TrainError::CheckpointMismatch {
                        path: self.path.clone(),
                        expected: format!("`{name}` of shape {shape:?}"),
                        found: format!("shape {s:?}"),
                    })
                }
                Some((_, v)) => {
                    values.insert(name.clone(), v.clone());
                }
            }
        }
        let extra: Vec<&String> = self
            .tensors
            .keys()
            .filter(|k| !k.starts_with(MOMENTUM_PREFIX) && !values.contains_key(*k))
            .collect();
        if !extra.is_empty() {
            return Err(TrainError::CheckpointMismatch {
                path: self.path.clone(),
                expected: "only the model's tensors".to_string(),
                found: format!("extra tensors {extra:?}"),
            });
        }
        // everything fits: apply
        assign_tensors(&mut target, &values)
            .map_err(|e| TrainError::Model(crate::Error::Device(format!("{e:?}"))))?;
        let act = target.activation_mut();
        for (name, v) in &m.activation_parameters {
            // tensors were loaded above; this sets what is not a tensor (fixed-β PSSiLU's β)
            if act.kind() == ActivationKind::PssiluFixed && name == "beta" {
                act.set_parameter("beta", *v)?;
            }
        }
        for (name, v) in &m.frozen {
            act.freeze(name, *v)?;
        }
        if let Some(opt) = opt {
            let buffers = self
                .tensors
                .iter()
                .filter_map(|(k, (_, v))| {
                    k.strip_prefix(MOMENTUM_PREFIX)
                        .map(|n| (n.to_string(), v.clone()))
                })
                .collect();
            opt.set_buffers(buffers);
        }
        *model = target;
        Ok(())
    }
}

/// Reads `path` and loads it into `model` (see [`Checkpoint::apply`]); returns its metadata.
///
/// ```
/// use dfdx::prelude::*;
/// use robust_paf::activations::{Activation, Pssilu};
/// use robust_paf::models::{Classifier, SmallCnn};
/// use robust_paf::train::{load_checkpoint, save_checkpoint, CheckpointMeta};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// type Model = SmallCnn<Pssilu<Cpu>, Cpu>;
/// let dev = Cpu::seed_from_u64(1);
/// let mut model = Model::new(&dev);
/// model.activation_mut().set_parameter("alpha", 2.5)?;
/// let path = std::env::temp_dir().join(format!("robust-paf-doc-ckpt-{}.safetensors", std::process::id()));
/// save_checkpoint(&path, &model, None, &CheckpointMeta::describe(&model))?;
///
/// let mut other = Model::new(&Cpu::seed_from_u64(2));
/// let meta = load_checkpoint(&path, &mut other, None)?;
/// assert_eq!(meta.architecture, model.architecture());
/// assert_eq!(other.activation().parameters(), model.activation().parameters());
/// assert_eq!(other.conv1.weight.as_vec(), model.conv1.weight.as_vec());
///
/// // a damaged file is an error that leaves the model as it was
/// std::fs::write(&path, b"not a checkpoint")?;
/// assert!(load_checkpoint(&path, &mut other, None).is_err());
/// assert_eq!(other.conv1.weight.as_vec(), model.conv1.weight.as_vec());
/// std::fs::remove_file(&path)?;
/// # Ok(())
/// # }
/// ```
pub fn load_checkpoint<M: Classifier<D>, D: Backend>(
    path: &Path,
    model: &mut M,
    opt: Option<&mut Sgd<D>>,
) -> Result<CheckpointMeta, TrainError> {
    let c = read_checkpoint(path)?;
    c.apply(model, opt)?;
    Ok(c.meta)
}
