//! Reading a PyTorch checkpoint (`torch.save`: the zip format of PyTorch ≥ 1.6, and the legacy
//! and tar formats `pytorch-reader` also reads) into a plain `state_dict`: every floating-point
//! tensor by its key, as `f32`, in PyTorch's own layout (NCHW convolution weights).
//!
//! The file may hold the bare `state_dict` (RobustBench), `{"state_dict": ...}` (the official
//! `model_best.pth.tar`, next to `epoch`, `arch`, `best_prec1` and the optimizer's state),
//! `{"model": ...}`, each possibly with DataParallel's `module.` prefix; [`TorchStateDict::prefix`]
//! says what was stripped. `num_batches_tracked` counters are read and ignored.
//!
//! Safety: nothing in the file is executed (the reader is a data-only pickle machine), and any
//! Python global other than those `torch.save` writes for tensors and plain values
//! ([`ALLOWED_GLOBALS`]) is an [`InteropError::DisallowedGlobal`] naming it. No tensor larger
//! than the file itself is read, so a forged header cannot make the reader allocate without
//! bound.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pytorch_reader::{DType, PickleValue, PytorchReader};

use super::InteropError;

/// A tensor of a PyTorch checkpoint: its PyTorch shape and values (row-major, as `f32`).
#[derive(Clone, Debug, PartialEq)]
pub struct TorchTensor {
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

/// The `state_dict` of a PyTorch checkpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct TorchStateDict {
    /// The file it was read from.
    pub path: PathBuf,
    /// Every floating-point tensor by its key (nesting and `module.` prefix stripped).
    pub tensors: BTreeMap<String, TorchTensor>,
    /// What was stripped from the keys: `""`, `"state_dict."`, `"module."`, ...
    pub prefix: String,
    /// Keys read and ignored (`num_batches_tracked`).
    pub ignored: Vec<String>,
}

/// Python globals a tensor checkpoint may name: tensor and storage types, dtypes, devices,
/// `OrderedDict`, and the numpy scalars the official code's `best_prec1` can be.
pub const ALLOWED_GLOBALS: &[&str] = &[
    "torch.Tensor",
    "torch.TypedStorage",
    "torch.UntypedStorage",
    "torch.device",
    "torch.Size",
    "collections.OrderedDict",
    "numpy.core.multiarray.scalar",
    "numpy._core.multiarray.scalar",
    "numpy.dtype",
];

fn allowed(global: &str) -> bool {
    ALLOWED_GLOBALS.contains(&global)
        // dtypes and storage classes: torch.float32, torch.FloatStorage, ...
        || global
            .strip_prefix("torch.")
            .is_some_and(|n| !n.contains('.') && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
}

fn first_disallowed(v: &PickleValue) -> Option<String> {
    match v {
        PickleValue::Unsupported(name) if !allowed(name) => Some(name.clone()),
        PickleValue::List(items) => items.iter().find_map(first_disallowed),
        PickleValue::Dict(d) => {
            let mut keys: Vec<&String> = d.keys().collect();
            keys.sort();
            keys.into_iter().find_map(|k| first_disallowed(&d[k]))
        }
        _ => None,
    }
}

/// The nesting of the state dict among `keys`: `"state_dict."` or `"model."` when the weights
/// sit under that key, then `"module."` when every weight has DataParallel's prefix.
fn state_prefix(keys: &[&str]) -> String {
    let mut prefix = String::new();
    for outer in ["state_dict.", "model."] {
        if keys.iter().any(|k| k.starts_with(outer)) {
            prefix.push_str(outer);
            break;
        }
    }
    let inner: Vec<&str> = keys
        .iter()
        .filter_map(|k| k.strip_prefix(prefix.as_str()))
        .collect();
    if !inner.is_empty() && inner.iter().all(|k| k.starts_with("module.")) {
        prefix.push_str("module.");
    }
    prefix
}

/// Whether `head` starts a safetensors file: a little-endian header length, then `{`.
fn is_safetensors(head: &[u8]) -> bool {
    head.len() > 8 && head[8] == b'{'
}

/// A `state_dict` exported as safetensors ([`super::write_torch_safetensors`],
/// `safetensors.torch.save_file`): F32 tensors by key, I64 `num_batches_tracked` ignored.
fn read_safetensors(path: &Path, bytes: &[u8]) -> Result<TorchStateDict, InteropError> {
    let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| InteropError::File {
        path: path.to_path_buf(),
        reason: format!("safetensors: {e:?}"),
    })?;
    let mut tensors = BTreeMap::new();
    let mut ignored = Vec::new();
    for (key, view) in st.tensors() {
        if key.ends_with("num_batches_tracked") {
            ignored.push(key);
            continue;
        }
        let values = match view.dtype() {
            safetensors::Dtype::F32 => view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            other => {
                return Err(InteropError::Tensor {
                    path: path.to_path_buf(),
                    key,
                    reason: format!("dtype {other:?}: only float32 weights are read"),
                })
            }
        };
        tensors.insert(
            key,
            TorchTensor {
                shape: view.shape().to_vec(),
                values,
            },
        );
    }
    ignored.sort();
    Ok(TorchStateDict {
        path: path.to_path_buf(),
        tensors,
        prefix: String::new(),
        ignored,
    })
}

/// Reads the `state_dict` of the PyTorch checkpoint at `path` (see the module docs); a
/// safetensors `state_dict` (an export of this crate, `safetensors.torch.save_file`) is read too.
pub fn read_torch_state_dict(path: &Path) -> Result<TorchStateDict, InteropError> {
    let file = |reason: String| InteropError::File {
        path: path.to_path_buf(),
        reason,
    };
    let size = std::fs::metadata(path)
        .map_err(|e| file(e.to_string()))?
        .len() as usize;
    let mut head = [0u8; 9];
    {
        use std::io::Read;
        let mut f = std::fs::File::open(path).map_err(|e| file(e.to_string()))?;
        let n = f.read(&mut head).map_err(|e| file(e.to_string()))?;
        if is_safetensors(&head[..n]) {
            let bytes = std::fs::read(path).map_err(|e| file(e.to_string()))?;
            return read_safetensors(path, &bytes);
        }
    }
    let tree = PytorchReader::read_pickle_data(path, None).map_err(|e| file(e.to_string()))?;
    if let Some(global) = first_disallowed(&tree) {
        return Err(InteropError::DisallowedGlobal {
            path: path.to_path_buf(),
            global,
        });
    }
    let reader = PytorchReader::new(path).map_err(|e| file(e.to_string()))?;
    let all = reader.tensors();
    let keys: Vec<&str> = all.keys().map(String::as_str).collect();
    let prefix = state_prefix(&keys);
    let mut tensors = BTreeMap::new();
    let mut ignored = Vec::new();
    let mut names: Vec<&String> = all.keys().collect();
    names.sort();
    for full in names {
        let Some(key) = full.strip_prefix(prefix.as_str()) else {
            continue; // beside the weights: optimizer state, ...
        };
        let t = &all[full];
        let bad = |reason: String| InteropError::Tensor {
            path: path.to_path_buf(),
            key: key.to_string(),
            reason,
        };
        if key.ends_with("num_batches_tracked") {
            ignored.push(key.to_string());
            continue;
        }
        if t.byte_len() > size {
            return Err(bad(format!(
                "claims {} bytes, more than the whole file ({size})",
                t.byte_len()
            )));
        }
        let bytes = t.read().map_err(|e| bad(e.to_string()))?;
        let values: Vec<f32> = match t.dtype() {
            DType::F32 => bytes
                .chunks_exact(4)
                .map(|c| f32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            DType::F64 => bytes
                .chunks_exact(8)
                .map(|c| {
                    f64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32
                })
                .collect(),
            other => {
                return Err(bad(format!(
                    "dtype {other:?}: only float32 and float64 weights are read (save with \
                     `.float()`)"
                )))
            }
        };
        if values.len() != t.num_elements() {
            return Err(bad(format!(
                "{} values for shape {:?}",
                values.len(),
                t.shape()
            )));
        }
        tensors.insert(
            key.to_string(),
            TorchTensor {
                shape: t.shape().to_vec(),
                values,
            },
        );
    }
    if tensors.is_empty() {
        return Err(file("no floating-point tensors in it".into()));
    }
    Ok(TorchStateDict {
        path: path.to_path_buf(),
        tensors,
        prefix,
        ignored,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert_eq!(state_prefix(&["conv1.weight", "fc.bias"]), "");
        assert_eq!(
            state_prefix(&[
                "state_dict.conv1.weight",
                "optimizer.state.0.momentum_buffer"
            ]),
            "state_dict."
        );
        assert_eq!(
            state_prefix(&[
                "state_dict.module.conv1.weight",
                "state_dict.module.fc.bias"
            ]),
            "state_dict.module."
        );
        assert_eq!(state_prefix(&["module.a", "module.b"]), "module.");
        assert_eq!(state_prefix(&["module.a", "b"]), "");
    }

    #[test]
    fn globals() {
        for ok in [
            "torch.float32",
            "torch.FloatStorage",
            "collections.OrderedDict",
            "torch.Tensor",
        ] {
            assert!(allowed(ok), "{ok}");
        }
        for bad in [
            "os.system",
            "builtins.eval",
            "torch.nn.modules.conv.Conv2d",
            "subprocess.Popen",
        ] {
            assert!(!allowed(bad), "{bad}");
        }
    }
}
