//! A PyTorch `state_dict` onto a crate model and back (docs/reproduction.md §2: the reference
//! architectures' keys).
//!
//! The crate's tensors already carry the reference `state_dict` keys; two things differ:
//! - **layout**: convolution weights are `[C_out, K, K, C_in]` here (channels-last) and
//!   `[C_out, C_in, K, K]` in PyTorch; every other tensor is the same;
//! - **the shared activation**: the reference registers the one activation module at every
//!   site that applies it (ResNet-18: the stem and each block; WRN: each block and the head;
//!   VGG: each `features`/`classifier` slot), so PyTorch's `state_dict` holds α (β) once per
//!   site ([`Classifier::torch_activation_sites`]); the crate holds it once, as
//!   `activation.alpha`. Importing checks that every site is present and that all agree;
//!   exporting writes every site.
//!
//! BatchNorm's `num_batches_tracked` is ignored on import and written as 0 on export (the
//! crate does not count batches; PyTorch uses the counter only with `momentum=None`), so
//! `model.load_state_dict(safetensors.torch.load_file(f), strict=True)` accepts the file.

use std::collections::BTreeMap;
use std::path::Path;

use super::{InteropError, TorchStateDict};
use crate::activations::Activation;
use crate::models::{assign_tensors, state_tensors, Classifier, NamedTensor, ACTIVATION_PREFIX};
use crate::ops::{Backend, Elem};
use crate::train::checkpoint::write_atomic;

/// A module path of the reference architecture that holds the shared activation.
pub type Site = String;

/// PyTorch's shape of a crate tensor of shape `shape`.
fn torch_shape(shape: &[usize]) -> Vec<usize> {
    match shape {
        [o, kh, kw, i] => vec![*o, *i, *kh, *kw],
        s => s.to_vec(),
    }
}

/// Convolution weights between PyTorch's `[O, I, KH, KW]` and the crate's `[O, KH, KW, I]`
/// (`shape` is the crate's); other tensors are the same in both.
fn convert_layout(shape: &[usize], v: &[Elem], to_torch: bool) -> Vec<Elem> {
    let [o, kh, kw, i] = shape else {
        return v.to_vec();
    };
    let (o, kh, kw, i) = (*o, *kh, *kw, *i);
    let mut out = vec![0.0; v.len()];
    for a in 0..o {
        for b in 0..i {
            for y in 0..kh {
                for x in 0..kw {
                    let torch = ((a * i + b) * kh + y) * kw + x;
                    let crate_ = ((a * kh + y) * kw + x) * i + b;
                    if to_torch {
                        out[torch] = v[crate_];
                    } else {
                        out[crate_] = v[torch];
                    }
                }
            }
        }
    }
    out
}

/// Loads the PyTorch `state_dict` `sd` into `model`, whose activation must already be the
/// file's (`Activation::try_set_kind`; fixed-β PSSiLU's β, which PyTorch does not save, set
/// beforehand). Every missing, unexpected or mis-shaped key, and activation sites that disagree,
/// are listed in one [`InteropError::Mismatch`]; on any error the model is unchanged.
pub fn import_state_dict<M: Classifier<D>, D: Backend>(
    model: &mut M,
    sd: &TorchStateDict,
) -> Result<(), InteropError> {
    let device = |e: D::Err| InteropError::Model(crate::Error::Device(format!("{e:?}")));
    let want = state_tensors(model).map_err(device)?;
    let sites = model.torch_activation_sites();
    let mut used: Vec<&str> = Vec::new();
    let mut problems = Vec::new();
    let mut values: BTreeMap<String, Vec<Elem>> = BTreeMap::new();
    for (name, shape, _) in &want {
        if let Some(param) = name.strip_prefix(ACTIVATION_PREFIX) {
            let mut found: Option<(&str, f32)> = None;
            for site in &sites {
                let key = format!("{site}.{param}");
                match sd.tensors.get_key_value(&key) {
                    None => problems.push(format!("missing `{key}`")),
                    Some((k, t)) if t.shape != [1] => {
                        problems.push(format!("`{k}` has shape {:?}, expected [1]", t.shape));
                        used.push(k);
                    }
                    Some((k, t)) => {
                        used.push(k);
                        let v = t.values[0];
                        match found {
                            None => found = Some((k, v)),
                            Some((first, w)) if w.to_bits() != v.to_bits() => {
                                problems.push(format!(
                                    "the shared activation's `{param}` differs between sites: \
                                 `{first}` = {w}, `{k}` = {v}"
                                ))
                            }
                            Some(_) => {}
                        }
                    }
                }
            }
            if let Some((_, v)) = found {
                values.insert(name.clone(), vec![v]);
            }
            continue;
        }
        let expect = torch_shape(shape);
        match sd.tensors.get_key_value(name) {
            None => problems.push(format!("missing `{name}` (shape {expect:?})")),
            Some((k, t)) => {
                used.push(k);
                if t.shape != expect {
                    problems.push(format!(
                        "`{name}` has shape {:?}, expected {expect:?}",
                        t.shape
                    ));
                } else {
                    values.insert(name.clone(), convert_layout(shape, &t.values, false));
                }
            }
        }
    }
    for key in sd.tensors.keys() {
        if !used.contains(&key.as_str()) {
            problems.push(format!("unexpected `{key}`"));
        }
    }
    if !problems.is_empty() {
        return Err(InteropError::Mismatch {
            path: sd.path.clone(),
            model: model.architecture(),
            problems,
        });
    }
    // a copy first (tensors are copy-on-write): the activation is checked before `model` changes
    let mut target = model.clone();
    assign_tensors(&mut target, &values).map_err(device)?;
    target.activation().validate()?;
    *model = target;
    Ok(())
}

/// `model`'s tensors with PyTorch's keys, shapes and layouts (see the module docs), as
/// `(key, shape, values)`; `num_batches_tracked` is not among them (see
/// [`write_torch_safetensors`]).
pub fn export_state_dict<M: Classifier<D>, D: Backend>(
    model: &M,
) -> Result<Vec<NamedTensor>, InteropError> {
    let tensors = state_tensors(model)
        .map_err(|e| InteropError::Model(crate::Error::Device(format!("{e:?}"))))?;
    let sites = model.torch_activation_sites();
    let mut out = Vec::new();
    for (name, shape, v) in tensors {
        if let Some(param) = name.strip_prefix(ACTIVATION_PREFIX) {
            for site in &sites {
                out.push((format!("{site}.{param}"), shape.clone(), v.clone()));
            }
        } else {
            let t = convert_layout(&shape, &v, true);
            out.push((name, torch_shape(&shape), t));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Writes `model` as a safetensors file PyTorch loads with `strict=True` into the reference
/// architecture ([`export_state_dict`], plus a 0 `num_batches_tracked` per batch norm),
/// atomically.
///
/// ```
/// use dfdx::prelude::*;
/// use robust_paf::activations::Pssilu;
/// use robust_paf::interop::{read_torch_state_dict, write_torch_safetensors};
/// use robust_paf::models::SmallCnn;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dev = Cpu::seed_from_u64(0);
/// let model = SmallCnn::<Pssilu<Cpu>, Cpu>::new(&dev);
/// let path = std::env::temp_dir().join(format!("robust-paf-doc-export-{}.safetensors", std::process::id()));
/// write_torch_safetensors(&model, &path)?; // `safetensors.torch.load_file` + `load_state_dict`
/// let sd = read_torch_state_dict(&path)?;
/// assert_eq!(sd.tensors["conv1.weight"].shape, [16, 3, 3, 3]); // PyTorch OIHW
/// assert!(sd.tensors.contains_key("activation.beta"));
/// std::fs::remove_file(&path)?;
/// # Ok(())
/// # }
/// ```
pub fn write_torch_safetensors<M: Classifier<D>, D: Backend>(
    model: &M,
    path: &Path,
) -> Result<(), InteropError> {
    let write = |reason: String| InteropError::Write {
        path: path.to_path_buf(),
        reason,
    };
    let tensors = export_state_dict(model)?;
    let mut bytes: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, s, v)| {
            let b = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            (n.clone(), safetensors::Dtype::F32, s.clone(), b)
        })
        .collect();
    for (n, _, _) in &tensors {
        if let Some(bn) = n.strip_suffix(".running_mean") {
            bytes.push((
                format!("{bn}.num_batches_tracked"),
                safetensors::Dtype::I64,
                vec![],
                0i64.to_le_bytes().to_vec(),
            ));
        }
    }
    let views = bytes
        .iter()
        .map(|(n, d, s, b)| {
            safetensors::tensor::TensorView::new(*d, s.clone(), b).map(|v| (n.clone(), v))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| write(format!("{e:?}")))?;
    let mut md = std::collections::HashMap::new();
    md.insert("format".to_string(), "pt".to_string());
    md.insert(
        "robust_paf".to_string(),
        format!(
            "exported by robust-paf {} from {}",
            env!("CARGO_PKG_VERSION"),
            model.architecture()
        ),
    );
    let file = safetensors::serialize(views, &Some(md)).map_err(|e| write(format!("{e:?}")))?;
    write_atomic(path, &file).map_err(|e| write(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_round_trip() {
        let shape = [2, 3, 3, 4];
        let v: Vec<f32> = (0..72).map(|i| i as f32).collect();
        let t = convert_layout(&shape, &v, true);
        // torch [o=1, i=2, y=0, x=1] = crate [o=1, y=0, x=1, i=2]
        assert_eq!(t[((4 + 2) * 3) * 3 + 1], v[((3) * 3 + 1) * 4 + 2]);
        assert_eq!(convert_layout(&shape, &t, false), v);
        assert_eq!(torch_shape(&shape), vec![2, 4, 3, 3]);
        assert_eq!(torch_shape(&[10, 64]), vec![10, 64]);
    }
}
