//! Model tests: parameter counts (docs/reproduction.md §2), one shared activation (§1.1), frozen
//! parameters (§1.4), batch-norm modes (§3.3), state_dict-style names, and a small net that learns.

use dfdx::prelude::*;
use robust_paf::activations::{Activation, Pssilu, Relu};
use robust_paf::models::{
    Classifier, Mode, ResNet18, ResNet18ImageNet, ResNet18ImageNetNarrow, ResNet18Narrow, Vgg16Bn,
    Vgg16BnNarrow, WideResNet16x1, WideResNet16x2, WideResNet16x4, WideResNet28x10, WideResNet28x4,
    WideResNet34x10, WideResNet40x2,
};
use robust_paf::train::{Sgd, SgdSettings};

type Dev = Cpu;

/// Names of every tensor of a module, as a PyTorch `state_dict` would list them.
fn tensor_names<M: TensorCollection<f32, Dev>>(m: &M) -> Vec<String> {
    struct Names(Vec<String>);
    impl TensorVisitor<f32, Dev> for Names {
        type Viewer = (ViewTensorRef, ViewTensorName);
        type Err = CpuError;
        type E2 = f32;
        type D2 = Dev;
        fn visit<S: Shape>(
            &mut self,
            _opts: TensorOptions<S, f32, Dev>,
            (_t, name): (&Tensor<S, f32, Dev>, String),
        ) -> Result<Option<Tensor<S, f32, Dev>>, CpuError> {
            self.0.push(name);
            Ok(None)
        }
    }
    let mut v = Names(Vec::new());
    M::iter_tensors(&mut RecursiveWalker {
        m: (m, String::new()),
        f: &mut v,
    })
    .unwrap();
    v.0
}

// Parameter counts, docs/reproduction.md §2.1–§2.4 (DERIVED there; VGG and WRN-16-4/34-10 from
// `python3 -c` sums of conv k·k·cin·cout (+cout bias for VGG) + 2·C per BN + Linear weights/biases).
#[test]
fn parameter_counts_match_the_paper() {
    let dev = Dev::default();
    assert_eq!(
        ResNet18::<Relu<Dev>, Dev>::new(&dev).num_trainable_params(),
        11_173_962
    );
    assert_eq!(
        ResNet18::<Pssilu<Dev>, Dev>::new(&dev).num_trainable_params(),
        11_173_962 + 2
    );
    assert_eq!(
        WideResNet28x10::<Relu<Dev>, Dev>::new(&dev).num_trainable_params(),
        36_479_194
    );
    assert_eq!(
        WideResNet28x10::<Pssilu<Dev>, Dev>::new(&dev).num_trainable_params(),
        36_479_194 + 2
    );
    assert_eq!(
        WideResNet16x4::<Relu<Dev>, Dev>::new(&dev).num_trainable_params(),
        2_748_890
    );
    assert_eq!(
        WideResNet34x10::<Relu<Dev>, Dev>::new(&dev).num_trainable_params(),
        46_160_474
    );
    assert_eq!(
        ResNet18ImageNet::<Relu<Dev>, Dev>::new(&dev).num_trainable_params(),
        11_181_642
    );
    assert_eq!(
        Vgg16Bn::<Relu<Dev>, Dev>::new(&dev).num_trainable_params(),
        15_253_578
    );
}

// The WRN variants and the narrow (1/16-width) networks of the parity fixtures: sums of
// `p.numel()` over RobustBench's `PAF_WideResNet(nn.ReLU(), depth, widen_factor)` and the
// ResNet18 / VGG16BN of `scripts/make_parity_fixtures.py` (which give 11,173,962 and 15,253,578
// at full width, the counts above).
#[test]
fn parameter_counts_of_the_variants_match_pytorch() {
    let dev = Dev::default();
    assert_eq!(
        WideResNet16x1::<Relu<Dev>, Dev>::new(&dev).num_trainable_params(),
        175_066
    );
    assert_eq!(
        WideResNet16x2::<Relu<Dev>, Dev>::new(&dev).num_trainable_params(),
        691_674
    );
    assert_eq!(
        WideResNet28x4::<Relu<Dev>, Dev>::new(&dev).num_trainable_params(),
        5_849_050
    );
    assert_eq!(
        WideResNet40x2::<Relu<Dev>, Dev>::new(&dev).num_trainable_params(),
        2_243_546
    );
    assert_eq!(
        ResNet18Narrow::<Relu<Dev>, Dev>::new(&dev).num_trainable_params(),
        44_622
    );
    assert_eq!(
        ResNet18ImageNetNarrow::<Relu<Dev>, Dev>::new(&dev).num_trainable_params(),
        45_102
    );
    assert_eq!(
        Vgg16BnNarrow::<Relu<Dev>, Dev>::new(&dev).num_trainable_params(),
        60_798
    );
    assert!(ResNet18Narrow::<Relu<Dev>, Dev>::new(&dev)
        .architecture()
        .starts_with("ResNet-18[4-8-16-32]-"));
}

#[test]
fn tensor_names_follow_the_reference_state_dict() {
    let dev = Dev::default();
    let names = tensor_names(&ResNet18::<Pssilu<Dev>, Dev>::new(&dev));
    for key in [
        "activation.alpha",
        "activation.beta",
        "conv1.weight",
        "bn1.running_var",
        "layer1.0.conv1.weight",
        "layer2.0.downsample.0.weight",
        "layer2.0.downsample.1.bias",
        "layer4.1.bn2.weight",
        "fc.weight",
        "fc.bias",
    ] {
        assert!(names.iter().any(|n| n == key), "missing {key} in {names:?}");
    }
    // the shared activation appears once
    assert_eq!(names.iter().filter(|n| n.ends_with("alpha")).count(), 1);
    let names = tensor_names(&WideResNet16x4::<Pssilu<Dev>, Dev>::new(&dev));
    for key in [
        "block1.layer.0.convShortcut.weight",
        "block1.layer.1.conv2.weight",
        "block3.layer.0.bn1.running_mean",
        "bn1.weight",
        "fc.bias",
    ] {
        assert!(names.iter().any(|n| n == key), "missing {key}");
    }
}

fn input<const N: usize>(
    dev: &Dev,
    seed: u64,
) -> Tensor<(usize, Const<N>, Const<N>, Const<3>), f32, Dev> {
    let d = Dev::seed_from_u64(seed);
    let v: Tensor<(usize, Const<N>, Const<N>, Const<3>), f32, Dev> =
        d.sample_uniform_like(&(2, Const, Const, Const));
    dev.tensor_from_vec(v.as_vec(), (2, Const, Const, Const))
}

#[test]
fn forward_backward_every_architecture() {
    let dev = Dev::seed_from_u64(0);
    let mut m = WideResNet16x4::<Pssilu<Dev>, Dev>::new(&dev);
    let g = m.alloc_grads();
    let y = m.logits(input::<32>(&dev, 1).traced(g));
    assert_eq!(y.shape().1, Const::<10>);
    let g = y.square().mean().backward();
    let ga = g.get(&m.activation.alpha).as_vec()[0];
    assert!(ga.is_finite() && ga != 0.0, "alpha gets a gradient: {ga}");
    m.eval();
    assert_eq!(m.mode(), Mode::Eval);
    let y = m.logits(input::<32>(&dev, 1));
    assert!(y.as_vec().iter().all(|v| v.is_finite()));

    let v = Vgg16Bn::<Relu<Dev>, Dev>::new(&dev);
    let y = v.logits(input::<32>(&dev, 2).leaky_trace());
    let g = y.sum().backward();
    assert!(g.get(&v.fc3.weight).as_vec().iter().any(|&x| x != 0.0));
}

#[test]
fn one_activation_instance_is_shared_by_every_site() {
    let dev = Dev::seed_from_u64(0);
    let mut m = ResNet18::<Pssilu<Dev>, Dev>::new(&dev);
    m.eval();
    let x = input::<32>(&dev, 3);
    let y0 = m.logits(x.clone()).as_vec();
    m.activation_mut().set_parameter("alpha", 3.0).unwrap();
    let y1 = m.logits(x.clone()).as_vec();
    assert!(
        y0.iter().zip(&y1).any(|(a, b)| (a - b).abs() > 1e-4),
        "changing alpha changes the output"
    );
    // d(logits)/d(alpha) summed over all 17 sites equals the finite difference of alpha
    let g = m.alloc_grads();
    let r: Tensor<(usize, Const<10>), f32, Dev> = dev.sample_normal_like(&(2, Const));
    let loss = (m.logits(x.clone().traced(g)) * r.clone()).sum::<Rank0, _>();
    let grads = loss.backward();
    let analytic = grads.get(&m.activation.alpha).as_vec()[0] as f64;
    let f = |m: &mut ResNet18<Pssilu<Dev>, Dev>, a: f64| {
        m.activation_mut().set_parameter("alpha", a).unwrap();
        (m.logits(x.clone()) * r.clone()).sum::<Rank0, _>().array() as f64
    };
    let h = 1e-2;
    let numeric = (f(&mut m, 3.0 + h) - f(&mut m, 3.0 - h)) / (2.0 * h);
    assert!(
        (analytic - numeric).abs() <= 0.05 * numeric.abs().max(1e-2),
        "analytic {analytic} vs numeric {numeric}"
    );
}

#[test]
fn frozen_parameters_get_no_update_from_an_optimizer_step() {
    let dev = Dev::seed_from_u64(0);
    let mut m = ResNet18::<Pssilu<Dev>, Dev>::new(&dev);
    m.activation_mut().freeze("alpha", 2.0).unwrap();
    let mut opt = Sgd::new(SgdSettings::default()).unwrap();
    let conv_before = m.conv1.weight.as_vec();
    let beta_before = m.activation.beta.as_vec()[0];
    let g = m.alloc_grads();
    let y = m.logits_mut(input::<32>(&dev, 4).traced(g));
    let mut grads = y.square().mean().backward();
    opt.step(&mut m, &mut grads).unwrap();
    assert_eq!(
        m.activation.alpha.as_vec()[0],
        2.0,
        "frozen alpha stays (weight decay and momentum included)"
    );
    assert_ne!(
        m.activation.beta.as_vec()[0],
        beta_before,
        "beta (not frozen) moves"
    );
    assert_ne!(m.conv1.weight.as_vec(), conv_before, "weights move");
}

#[test]
fn train_mode_updates_running_statistics_only_through_mut_forward() {
    let dev = Dev::seed_from_u64(0);
    let mut m = ResNet18::<Relu<Dev>, Dev>::new(&dev);
    let before = m.bn1.running_mean.as_vec();
    let _ = m.logits(input::<32>(&dev, 5));
    assert_eq!(
        m.bn1.running_mean.as_vec(),
        before,
        "&self forward leaves running stats"
    );
    let _ = m.logits_mut(input::<32>(&dev, 5));
    assert_ne!(
        m.bn1.running_mean.as_vec(),
        before,
        "&mut forward in train mode updates them"
    );
    let mid = m.stages.layer4.1.bn2.running_var.as_vec();
    m.eval();
    let _ = m.logits_mut(input::<32>(&dev, 6));
    assert_eq!(
        m.stages.layer4.1.bn2.running_var.as_vec(),
        mid,
        "eval mode never updates"
    );
}

#[test]
fn invalid_parameters_are_errors_not_panics() {
    let dev = Dev::default();
    let mut m = ResNet18::<Pssilu<Dev>, Dev>::new(&dev);
    assert!(m.activation_mut().set_parameter("beta", 1.5).is_err());
    assert!(m.activation_mut().set_parameter("gamma", 0.5).is_err());
    assert!(m.activation_mut().set_parameter("alpha", f64::NAN).is_err());
    assert!(Sgd::<Dev>::new(SgdSettings {
        lr: -0.1,
        ..Default::default()
    })
    .is_err());
    assert!(Sgd::<Dev>::new(SgdSettings {
        momentum: 1.5,
        ..Default::default()
    })
    .is_err());
}

/// `named_tensors` lists every tensor with its state-dict name (parameters and running
/// statistics), `named_gradients` every trainable one; `to_device` keeps them all (what the GPU
/// test compares), the activation included.
#[test]
fn named_tensors_and_gradients_cover_the_model() {
    use robust_paf::models::{named_gradients, named_tensors};
    let dev = Dev::default();
    let mut m = ResNet18::<Pssilu<Dev>, Dev>::new(&dev);
    let tensors = named_tensors(&m).unwrap();
    let total: usize = tensors.iter().map(|(_, v)| v.len()).sum();
    // 11,173,962 parameters + α, β + running mean and var of 20 batch norms (2 · 4,800 values)
    let bn_channels = 64 + 4 * 64 + 4 * 128 + 4 * 256 + 4 * 512 + 128 + 256 + 512;
    assert_eq!(bn_channels, 4800);
    assert_eq!(total, 11_173_962 + 2 + 2 * bn_channels);
    let copy = m.to_device(&dev);
    assert_eq!(named_tensors(&copy).unwrap(), tensors);

    let x = input::<32>(&dev, 1);
    let mut grads = m.alloc_grads();
    let logits = m.logits_mut(x.traced(grads));
    grads = logits.sum::<Rank0, _>().backward();
    let named = named_gradients(&m, &mut grads).unwrap();
    let n: usize = named.iter().map(|(_, v)| v.len()).sum();
    assert_eq!(n, 11_173_962 + 2, "trainable tensors only");
    for key in [
        "conv1.weight",
        "fc.weight",
        "activation.alpha",
        "activation.beta",
    ] {
        let (_, g) = named.iter().find(|(k, _)| k == key).unwrap();
        assert!(g.iter().any(|v| *v != 0.0), "{key} has a zero gradient");
    }
    assert!(!named.iter().any(|(k, _)| k.contains("running")));
}

/// Inside `without_parameter_gradients` the crate's ops record only input gradients: the input
/// gradient is the same as with every gradient, and no convolution or batch-norm parameter gets
/// one (what attacks use, like PyTorch's `torch.autograd.grad(loss, x)`).
#[test]
fn input_gradient_only_mode_gives_the_same_input_gradient() {
    use robust_paf::models::named_gradients;
    use robust_paf::ops::{parameter_gradients_wanted, without_parameter_gradients};
    let dev = Dev::default();
    let mut m = ResNet18::<Pssilu<Dev>, Dev>::new(&dev);
    m.eval();
    let x = input::<32>(&dev, 3);
    let run = |only_input: bool| {
        let f = || {
            let logits = m.logits(x.leaky_trace());
            logits.sum::<Rank0, _>().backward()
        };
        if only_input {
            without_parameter_gradients(f)
        } else {
            f()
        }
    };
    let mut all = run(false);
    let mut only = run(true);
    assert!(parameter_gradients_wanted(), "the setting is restored");
    assert_eq!(all.get(&x).as_vec(), only.get(&x).as_vec());
    let with = named_gradients(&m, &mut all).unwrap();
    let without = named_gradients(&m, &mut only).unwrap();
    for ((name, g_all), (_, g_only)) in with.iter().zip(&without) {
        if name.starts_with("fc.") {
            continue; // dfdx's own Linear always computes its gradients
        }
        assert!(g_only.iter().all(|v| *v == 0.0), "{name} got a gradient");
        if name == "conv1.weight" || name == "activation.alpha" {
            assert!(g_all.iter().any(|v| *v != 0.0), "{name}");
        }
    }
}
