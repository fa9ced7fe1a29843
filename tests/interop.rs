//! PyTorch interop (docs/reproduction.md §2): RobustBench's `PAF_WideResNet` with PSSiLU, the
//! official code's CIFAR and ImageNet-stem ResNet-18 and VGG-16-BN (narrow, PSSiLU and ReLU),
//! random weights and BatchNorm statistics, saved by `torch.save`
//! (`scripts/make_parity_fixtures.py`, outputs in `tests/fixtures/torch/`). Imported, the crate's
//! model gives PyTorch's eval-mode logits, summed cross-entropy and input gradient within 1e-4,
//! and a train-mode forward moves the running statistics as PyTorch's did; the export holds
//! exactly PyTorch's keys and values; bad files are typed errors that change nothing.

use std::path::{Path, PathBuf};

use dfdx::prelude::*;
use robust_paf::activations::{Activation, ActivationKind, AnyActivation, Pssilu, Relu};
use robust_paf::attacks::{host_images, logits_loss_grad};
use robust_paf::interop::{
    import_state_dict, read_torch_state_dict, write_torch_safetensors, InteropError, TorchStateDict,
};
use robust_paf::models::{
    named_tensors, Classifier, ResNet18ImageNetNarrow, ResNet18Narrow, Vgg16BnNarrow,
    WideResNet16x1, WideResNet16x4,
};

type Dev = Cpu;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/torch")
        .join(name)
}

fn close(what: &str, got: &[f32], want: &[f32], rtol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= rtol * scale,
            "{what}[{i}]: {g} vs PyTorch {w} (scale {scale})"
        );
    }
}

/// The flat NHWC input of `scripts/make_parity_fixtures.py::deterministic_input` (the 224×224
/// fixture stores no `x`): `((i · 2654435761) mod 2³² mod 4096) / 4095`.
fn deterministic_input(len: usize) -> Vec<f32> {
    (0..len as u64)
        .map(|i| (((i * 2_654_435_761) % 4_294_967_296) % 4096) as f64 / 4095.0)
        .map(|v| v as f32)
        .collect()
}

/// Logits, summed CE and ∂CE/∂x (NHWC) of `m` on `x`, in eval mode.
fn forward<M: Classifier<Dev>>(
    m: &mut M,
    x: &[f32],
    io: &TorchStateDict,
) -> (Vec<f32>, f64, Vec<f32>) {
    let dev = Dev::default();
    m.eval();
    let labels: Vec<usize> = io.tensors["labels"]
        .values
        .iter()
        .map(|v| *v as usize)
        .collect();
    let (logits, losses, grad) = logits_loss_grad(m, &dev, x, labels.len(), |i, l| {
        let mx = l.iter().fold(f32::MIN, |a, &b| a.max(b)) as f64;
        let z: f64 = l.iter().map(|&v| (v as f64 - mx).exp()).sum();
        let ce = mx + z.ln() - l[labels[i]] as f64;
        let g = l
            .iter()
            .enumerate()
            .map(|(k, &v)| ((v as f64 - mx).exp() / z - (k == labels[i]) as u8 as f64) as f32)
            .collect();
        (ce, g)
    })
    .unwrap();
    (logits, losses.iter().sum(), grad)
}

/// Eval-mode logits, loss and input gradient within 1e-4 of PyTorch's, and one train-mode
/// forward moves all `batch_norms` running means and variances as PyTorch's did.
fn check_parity<M: Classifier<Dev>>(
    m: &mut M,
    io: &TorchStateDict,
    what: &str,
    batch_norms: usize,
) {
    let n = io.tensors["labels"].values.len();
    let x = match io.tensors.get("x") {
        Some(x) => x.values.clone(),
        None => deterministic_input(n * 224 * 224 * 3),
    };
    let (logits, loss, grad) = forward(m, &x, io);
    close(
        &format!("{what} logits"),
        &logits,
        &io.tensors["logits"].values,
        1e-4,
    );
    let want = io.tensors["loss"].values[0] as f64;
    assert!(
        (loss - want).abs() <= 1e-4 * want.abs().max(1.0),
        "{what} loss {loss} vs {want}"
    );
    if let Some(g) = io.tensors.get("grad") {
        close(&format!("{what} ∂CE/∂x"), &grad, &g.values, 1e-4);
    } else {
        // sampled: every 97th element and the sum of |∂CE/∂x|
        let at: Vec<f32> = io.tensors["grad_index"]
            .values
            .iter()
            .map(|&i| grad[i as usize])
            .collect();
        close(
            &format!("{what} ∂CE/∂x (sampled)"),
            &at,
            &io.tensors["grad_at"].values,
            1e-4,
        );
        let abs: f64 = grad.iter().map(|g| g.abs() as f64).sum();
        let want = io.tensors["grad_abs_sum"].values[0] as f64;
        assert!(
            (abs - want).abs() <= 1e-4 * want,
            "{what} Σ|∂CE/∂x| {abs} vs {want}"
        );
    }
    let dev = Dev::default();
    let mut t = m.clone();
    t.train();
    let xt = host_images::<M, Dev>(&dev, x, n);
    t.try_logits_mut(xt).unwrap();
    let after = named_tensors(&t).unwrap();
    let mut compared = 0;
    for (name, v) in &after {
        if let Some(ref_t) = io.tensors.get(&format!("after_train.{name}")) {
            close(
                &format!("{what} {name} after a train forward"),
                v,
                &ref_t.values,
                1e-4,
            );
            compared += 1;
        }
    }
    assert_eq!(
        compared,
        2 * batch_norms,
        "{what}: every batch norm's mean and variance"
    );
}

/// Reads `<name>.pt` and `<name>_io.pt`, imports into `m` and checks parity.
fn import_and_check<M: Classifier<Dev>>(m: &mut M, name: &str, batch_norms: usize) {
    let sd = read_torch_state_dict(&fixture(&format!("{name}.pt"))).unwrap();
    assert_eq!(sd.prefix, "");
    assert_eq!(sd.ignored.len(), batch_norms, "num_batches_tracked");
    let io = read_torch_state_dict(&fixture(&format!("{name}_io.pt"))).unwrap();
    import_state_dict(m, &sd).unwrap();
    check_parity(m, &io, name, batch_norms);
}

/// RobustBench's own `PAF_WideResNet` + `PSSiLU` (the `Dai2021Parameterizing` model, at depth
/// 16 and width 1).
#[test]
fn robustbench_wide_resnet_computes_what_pytorch_computed() {
    let dev = Dev::default();
    let mut m = WideResNet16x1::<Pssilu<Dev>, Dev>::new(&dev);
    import_and_check(&mut m, "wrn16_1_pssilu2", 13);
    let sd = read_torch_state_dict(&fixture("wrn16_1_pssilu2.pt")).unwrap();
    let p = m.activation().parameters();
    assert_eq!(
        (p[0].1, p[1].1),
        (
            sd.tensors["block2.layer.1.activation.alpha"].values[0] as f64,
            sd.tensors["activation.beta"].values[0] as f64
        )
    );
    // the same file into a run-time activation
    let mut any = WideResNet16x1::<AnyActivation<Dev>, Dev>::new(&dev);
    any.activation_mut()
        .try_set_kind(ActivationKind::Pssilu)
        .unwrap();
    import_and_check(&mut any, "wrn16_1_pssilu2", 13);
}

/// The official CIFAR ResNet-18 (`resnet_cifar.py`, 17 activation sites), PSSiLU and ReLU.
#[test]
fn resnet18_computes_what_pytorch_computed() {
    let dev = Dev::default();
    let mut m = ResNet18Narrow::<Pssilu<Dev>, Dev>::new(&dev);
    import_and_check(&mut m, "resnet18n_pssilu2", 20);
    let mut m = ResNet18Narrow::<Relu<Dev>, Dev>::new(&dev);
    import_and_check(&mut m, "resnet18n_relu", 20);
}

/// The ImageNet-stem ResNet-18 (`ResNet.py`, docs/reproduction.md §2.3) on 224×224 inputs.
#[test]
fn imagenet_resnet18_computes_what_pytorch_computed() {
    let dev = Dev::default();
    let mut m = ResNet18ImageNetNarrow::<AnyActivation<Dev>, Dev>::new(&dev);
    m.activation_mut()
        .try_set_kind(ActivationKind::Pssilu)
        .unwrap();
    import_and_check(&mut m, "resnet18in_n_pssilu2", 20);
}

/// The official VGG-16-BN (`vgg.py`: 13 `features` sites and `classifier.2`, `classifier.5`).
#[test]
fn vgg16_bn_computes_what_pytorch_computed() {
    let dev = Dev::default();
    let mut m = Vgg16BnNarrow::<Pssilu<Dev>, Dev>::new(&dev);
    import_and_check(&mut m, "vgg16bn_n_pssilu2", 13);
}

/// The official `train.py` checkpoint (`{"state_dict": {"module.…"}, "optimizer", "epoch",
/// …}`) and the legacy (PyTorch < 1.6) format hold the same tensors as the bare zip file.
#[test]
fn the_official_layout_and_the_legacy_format_are_read() {
    let bare = read_torch_state_dict(&fixture("resnet18n_relu.pt")).unwrap();
    let official = read_torch_state_dict(&fixture("resnet18n_relu_official.pth.tar")).unwrap();
    assert_eq!(official.prefix, "state_dict.module.");
    assert_eq!(official.tensors, bare.tensors);
    let legacy = read_torch_state_dict(&fixture("resnet18n_relu_legacy.pt")).unwrap();
    assert_eq!(legacy.prefix, "");
    assert_eq!(legacy.tensors, bare.tensors);
    assert_eq!(legacy.ignored, bare.ignored);
}

/// Imports `<name>.pt` into `m`, exports it, and checks that the export holds exactly PyTorch's
/// keys (every activation site, `num_batches_tracked`) with the values PyTorch saved, bit for
/// bit (so `load_state_dict(strict=True)` accepts it), and that it reads back.
fn export_round_trip<M: Classifier<Dev>>(mut m: M, name: &str, dir: &Path) {
    let sd = read_torch_state_dict(&fixture(&format!("{name}.pt"))).unwrap();
    import_state_dict(&mut m, &sd).unwrap();
    let out = dir.join(format!("{name}.safetensors"));
    write_torch_safetensors(&m, &out).unwrap();
    let bytes = std::fs::read(&out).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut keys: Vec<String> = st.names().into_iter().cloned().collect();
    keys.sort();
    let mut want: Vec<String> = sd
        .tensors
        .keys()
        .cloned()
        .chain(sd.ignored.clone())
        .collect();
    want.sort();
    assert_eq!(keys, want, "{name}: exactly PyTorch's state_dict keys");
    for (k, t) in &sd.tensors {
        let v = st.tensor(k).unwrap();
        assert_eq!(v.shape(), t.shape.as_slice(), "{name} {k}");
        let got: Vec<f32> = v
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert!(
            got.iter()
                .zip(&t.values)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{name} {k}: bit for bit"
        );
    }
    // and it reads back (safetensors export → import)
    let again = read_torch_state_dict(&out).unwrap();
    assert_eq!(again.tensors, sd.tensors, "{name}");
}

/// `ROBUST_PAF_EXPORT_DIR=DIR` keeps the exports there, for `scripts/check_export.py`.
#[test]
fn the_export_is_the_pytorch_state_dict() {
    let dev = Dev::default();
    let keep = std::env::var_os("ROBUST_PAF_EXPORT_DIR").map(PathBuf::from);
    let dir = keep.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("robust-paf-interop-{}", std::process::id()))
    });
    std::fs::create_dir_all(&dir).unwrap();
    export_round_trip(
        WideResNet16x1::<Pssilu<Dev>, Dev>::new(&dev),
        "wrn16_1_pssilu2",
        &dir,
    );
    export_round_trip(
        ResNet18Narrow::<Pssilu<Dev>, Dev>::new(&dev),
        "resnet18n_pssilu2",
        &dir,
    );
    export_round_trip(
        ResNet18Narrow::<Relu<Dev>, Dev>::new(&dev),
        "resnet18n_relu",
        &dir,
    );
    export_round_trip(
        ResNet18ImageNetNarrow::<Pssilu<Dev>, Dev>::new(&dev),
        "resnet18in_n_pssilu2",
        &dir,
    );
    export_round_trip(
        Vgg16BnNarrow::<Pssilu<Dev>, Dev>::new(&dev),
        "vgg16bn_n_pssilu2",
        &dir,
    );
    if keep.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Bad files and mismatched models: typed errors naming the file and the keys; the model is
/// unchanged.
#[test]
fn bad_files_and_mismatches_are_errors_that_change_nothing() {
    let dev = Dev::default();
    let dir = std::env::temp_dir().join(format!("robust-paf-interop-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = std::fs::read(fixture("wrn16_1_pssilu2.pt")).unwrap();
    let mut m = WideResNet16x1::<Pssilu<Dev>, Dev>::new(&dev);
    let before = named_tensors(&m).unwrap();

    let junk = dir.join("junk.pt");
    std::fs::write(&junk, b"certainly not a checkpoint").unwrap();
    let truncated = dir.join("truncated.pt");
    std::fs::write(&truncated, &good[..good.len() / 2]).unwrap();
    for p in [&junk, &truncated, &dir.join("missing.pt")] {
        let e = read_torch_state_dict(p).unwrap_err();
        assert!(
            matches!(e, InteropError::File { .. } | InteropError::Tensor { .. }),
            "{e}"
        );
        assert!(
            e.to_string()
                .contains(p.file_name().unwrap().to_str().unwrap()),
            "{e}"
        );
    }
    // pickle protocol 2: os.system("echo pwned"), the classic malicious checkpoint
    let evil = dir.join("evil.pt");
    std::fs::write(
        &evil,
        b"\x80\x02cos\nsystem\nq\x00X\x0a\x00\x00\x00echo pwnedq\x01\x85q\x02Rq\x03.",
    )
    .unwrap();
    let e = read_torch_state_dict(&evil).unwrap_err();
    assert!(
        matches!(&e, InteropError::DisallowedGlobal { global, .. } if global == "os.system"),
        "{e}"
    );

    // a PSSiLU file into a ReLU model: the activation keys are unexpected
    let sd = read_torch_state_dict(&fixture("wrn16_1_pssilu2.pt")).unwrap();
    let mut relu = WideResNet16x1::<Relu<Dev>, Dev>::new(&dev);
    let e = import_state_dict(&mut relu, &sd).unwrap_err();
    let s = e.to_string();
    assert!(
        s.contains("unexpected `activation.alpha`") && s.contains("block3.layer.1.activation.beta"),
        "{s}"
    );
    // a ReLU file into a PSSiLU model: every site is missing
    let relu_sd = read_torch_state_dict(&fixture("resnet18n_relu.pt")).unwrap();
    let mut narrow = ResNet18Narrow::<Pssilu<Dev>, Dev>::new(&dev);
    let e = import_state_dict(&mut narrow, &relu_sd).unwrap_err();
    assert!(
        e.to_string()
            .contains("missing `layer3.1.activation.alpha`"),
        "{e}"
    );
    // another width: every mis-shaped key in one error
    let mut wide = WideResNet16x4::<Pssilu<Dev>, Dev>::new(&dev);
    let wide_before = named_tensors(&wide).unwrap();
    let Err(InteropError::Mismatch { problems, .. }) = import_state_dict(&mut wide, &sd) else {
        panic!("imported into the wrong width");
    };
    assert!(
        problems.len() > 10
            && problems
                .iter()
                .any(|p| p.contains("block1.layer.0.conv1.weight"))
    );
    assert_eq!(named_tensors(&wide).unwrap(), wide_before);
    // sites that disagree
    let mut forged = sd.clone();
    forged
        .tensors
        .get_mut("block2.layer.0.activation.alpha")
        .unwrap()
        .values[0] = 0.5;
    let e = import_state_dict(&mut m, &forged).unwrap_err();
    assert!(
        e.to_string().contains("differs between sites")
            && e.to_string().contains("block2.layer.0.activation.alpha"),
        "{e}"
    );
    // an out-of-range β (|β| ≥ 1) is refused after the keys fit
    let mut forged = sd.clone();
    for (k, t) in forged.tensors.iter_mut() {
        if k.ends_with(".beta") {
            t.values[0] = 1.5;
        }
    }
    assert!(matches!(
        import_state_dict(&mut m, &forged),
        Err(InteropError::Model(_))
    ));
    assert_eq!(named_tensors(&m).unwrap(), before, "nothing loaded");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The reader on damaged files (every truncation length on a grid, random byte flips, random
/// bytes): an error or a state_dict, never a panic, never a huge allocation.
#[test]
fn damaged_files_never_panic() {
    use rand::{Rng, SeedableRng};
    let good = std::fs::read(fixture("resnet18n_relu_official.pth.tar")).unwrap();
    let dir = std::env::temp_dir().join(format!("robust-paf-interop-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("case.pt");
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut cases: Vec<Vec<u8>> = (0..40)
        .map(|i| good[..good.len() * i / 40].to_vec())
        .collect();
    for _ in 0..60 {
        let mut b = good.clone();
        for _ in 0..rng.gen_range(1..8) {
            let i = rng.gen_range(0..b.len());
            b[i] = rng.gen();
        }
        cases.push(b);
    }
    for n in [0, 1, 9, 100, 5000] {
        cases.push((0..n).map(|_| rng.gen()).collect());
    }
    let mut errors = 0;
    for c in &cases {
        std::fs::write(&p, c).unwrap();
        if read_torch_state_dict(&p).is_err() {
            errors += 1;
        }
    }
    assert!(
        errors >= 45,
        "truncations and random bytes are errors ({errors})"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
