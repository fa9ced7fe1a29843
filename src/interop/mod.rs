//! PyTorch interoperability (docs/reproduction.md §2 for the architectures and their
//! `state_dict` keys, §3.6 for what the official checkpoints hold): read the official code's
//! `model_best.pth.tar` and RobustBench's checkpoints **without executing pickle code**
//! ([`torch_file`]), map their keys onto the crate's models and write them back in PyTorch's
//! names and layouts ([`state_dict`]); [`import`] turns a PyTorch file into a crate checkpoint
//! that can be evaluated (`robust-paf import`, notebook 05).
//!
//! The reader is the `pytorch-reader` crate (the Burn project's, MIT/Apache-2.0): a pickle
//! stack machine that knows tensors, storages and ordered dicts and never calls anything it
//! reads; on top of it [`torch_file`] refuses any Python global outside a short list of the
//! ones `torch.save` writes for tensors, so a file that would run code under `torch.load` is an
//! error naming the global, not a silently skipped object.

pub mod import;
pub mod state_dict;
pub mod torch_file;

use std::path::PathBuf;

pub use import::{import_torch_checkpoint, Imported};
pub use state_dict::{export_state_dict, import_state_dict, write_torch_safetensors, Site};
pub use torch_file::{read_torch_state_dict, TorchStateDict, TorchTensor};

/// What can go wrong reading, mapping or writing a PyTorch checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum InteropError {
    /// The file cannot be read as a PyTorch checkpoint (not one, truncated, corrupted).
    #[error("{path}: not a readable PyTorch checkpoint: {reason}")]
    File { path: PathBuf, reason: String },
    /// The pickle names a Python global a tensor checkpoint never needs (`os.system`, ...).
    #[error(
        "{path}: the pickle refers to `{global}`, which a checkpoint of tensors never needs; \
         refused (nothing was executed)"
    )]
    DisallowedGlobal { path: PathBuf, global: String },
    /// One tensor of the file is unusable (dtype, storage too short).
    #[error("{path}: tensor `{key}`: {reason}")]
    Tensor {
        path: PathBuf,
        key: String,
        reason: String,
    },
    /// The file's tensors do not fit the model: every missing, unexpected or mis-shaped key.
    #[error("{path} does not fit {model}: {}", problems.join("; "))]
    Mismatch {
        path: PathBuf,
        model: String,
        problems: Vec<String>,
    },
    /// Writing the exported file failed.
    #[error("{path}: {reason}")]
    Write { path: PathBuf, reason: String },
    /// The model rejected a value (an activation parameter out of range, a device error).
    #[error(transparent)]
    Model(#[from] crate::Error),
    /// The configuration or the crate checkpoint of an import ([`import_torch_checkpoint`]).
    #[error(transparent)]
    Train(#[from] crate::train::TrainError),
}
