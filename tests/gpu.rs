//! GPU checks (issue 3), run on a machine with an NVIDIA GPU: every model and activation on dfdx's
//! `Cuda` device (the composed ops of `robust_paf::ops::composed`) against the CPU kernels with the
//! same weights and inputs. Relative error `‖gpu − cpu‖ / ‖cpu‖ ≤ 1e-4` per tensor, for the
//! logits, the input gradient, every parameter gradient, the batch-norm running statistics after a
//! training step, and the parameters after an optimizer step; in evaluation mode, the logits and
//! input gradient an attack uses.
//!
//! With a CUDA toolkit: `cargo test --release --features cuda --test gpu`. Without one
//! (README.md, "CUDA"): `source <(bash scripts/cuda-toolkit.sh)`,
//! `cargo test --release --features cuda --test gpu --no-run`, pack the binary with
//! `scripts/cuda-pack.sh`, and run it on the GPU machine after `source .gpu/cuda-env.sh`.
//! CI type-checks it with
//! `cargo check --all-targets --features cuda,dfdx/ci-check`.
#![cfg(feature = "cuda")]

use dfdx::prelude::*;
use robust_paf::activations::{ActivationKind, PafFn, Pssilu, Relu};
use robust_paf::models::{named_gradients, named_tensors, Classifier, ResNet18, WideResNet28x10};
use robust_paf::ops::Backend;
use robust_paf::train::{Sgd, SgdSettings};

const TOL: f64 = 1e-4;

fn rel_err(gpu: &[f32], cpu: &[f32]) -> f64 {
    assert_eq!(gpu.len(), cpu.len());
    let diff: f64 = gpu
        .iter()
        .zip(cpu)
        .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
        .sum::<f64>()
        .sqrt();
    let norm: f64 = cpu.iter().map(|b| (*b as f64).powi(2)).sum::<f64>().sqrt();
    diff / norm.max(1e-12)
}

fn assert_rel(what: &str, gpu: &[f32], cpu: &[f32]) {
    let e = rel_err(gpu, cpu);
    assert!(e <= TOL, "{what}: relative error {e:.2e} > {TOL:e}");
}

fn assert_all_rel(what: &str, gpu: &[(String, Vec<f32>)], cpu: &[(String, Vec<f32>)]) {
    assert_eq!(gpu.len(), cpu.len(), "{what}: tensor count");
    let mut worst = (0.0, String::new());
    for ((ng, g), (nc, c)) in gpu.iter().zip(cpu) {
        assert_eq!(ng, nc);
        let e = rel_err(g, c);
        if e > worst.0 {
            worst = (e, ng.clone());
        }
        assert!(e <= TOL, "{what} {ng}: relative error {e:.2e} > {TOL:e}");
    }
    println!(
        "{what}: {} tensors, worst {:.2e} ({})",
        gpu.len(),
        worst.0,
        worst.1
    );
}

macro_rules! check_model {
    ($name:literal, $model:ident, $act:ident, $batch:expr) => {{
        let cpu = Cpu::seed_from_u64(1);
        let gpu = Cuda::seed_from_u64(1);
        let b: usize = $batch;
        let mut m_cpu = $model::<$act<Cpu>, Cpu>::new(&cpu);
        let mut m_gpu = m_cpu.to_device(&gpu);
        let x: Tensor<(usize, Const<32>, Const<32>, Const<3>), f32, Cpu> =
            cpu.sample_uniform_like(&(b, Const, Const, Const));
        let mut y = vec![0.0f32; b * 10];
        for i in 0..b {
            y[i * 10 + (i * 3) % 10] = 1.0;
        }
        let y_cpu = cpu.tensor_from_vec(y, (b, Const::<10>));
        let x_gpu = x.to_device(&gpu);
        let y_gpu = y_cpu.to_device(&gpu);

        // training step: logits, input gradient, every parameter gradient
        let mut g_cpu = m_cpu.alloc_grads();
        g_cpu.try_alloc_for(&x).unwrap();
        let mut g_gpu = m_gpu.alloc_grads();
        g_gpu.try_alloc_for(&x_gpu).unwrap();
        let l_cpu = m_cpu.logits_mut(x.clone().traced(g_cpu));
        let l_gpu = m_gpu.logits_mut(x_gpu.clone().traced(g_gpu));
        assert_rel(
            concat!($name, " train logits"),
            &l_gpu.as_vec(),
            &l_cpu.as_vec(),
        );
        let mut g_cpu = cross_entropy_with_logits_loss(l_cpu, y_cpu.clone()).backward();
        let mut g_gpu = cross_entropy_with_logits_loss(l_gpu, y_gpu.clone()).backward();
        assert_rel(
            concat!($name, " train input gradient"),
            &g_gpu.get(&x_gpu).as_vec(),
            &g_cpu.get(&x).as_vec(),
        );
        assert_all_rel(
            concat!($name, " parameter gradients"),
            &named_gradients(&m_gpu, &mut g_gpu).unwrap(),
            &named_gradients(&m_cpu, &mut g_cpu).unwrap(),
        );
        // the batch-norm running statistics that step updated (and every other tensor)
        assert_all_rel(
            concat!($name, " tensors after a training forward"),
            &named_tensors(&m_gpu).unwrap(),
            &named_tensors(&m_cpu).unwrap(),
        );
        // an optimizer step
        let settings = SgdSettings {
            lr: 0.01,
            ..Default::default()
        };
        let mut o_cpu = Sgd::new(settings).unwrap();
        let mut o_gpu = Sgd::new(settings).unwrap();
        o_cpu.step(&mut m_cpu, &mut g_cpu).unwrap();
        o_gpu.step(&mut m_gpu, &mut g_gpu).unwrap();
        assert_all_rel(
            concat!($name, " parameters after an SGD step"),
            &named_tensors(&m_gpu).unwrap(),
            &named_tensors(&m_cpu).unwrap(),
        );
        // evaluation mode: what an attack computes
        m_cpu.eval();
        m_gpu.eval();
        let l_cpu = m_cpu.logits(x.leaky_trace());
        let l_gpu = m_gpu.logits(x_gpu.leaky_trace());
        assert_rel(
            concat!($name, " eval logits"),
            &l_gpu.as_vec(),
            &l_cpu.as_vec(),
        );
        let g_cpu = cross_entropy_with_logits_loss(l_cpu, y_cpu).backward();
        let g_gpu = cross_entropy_with_logits_loss(l_gpu, y_gpu).backward();
        assert_rel(
            concat!($name, " eval input gradient"),
            &g_gpu.get(&x_gpu).as_vec(),
            &g_cpu.get(&x).as_vec(),
        );
    }};
}

#[test]
fn resnet18_relu_on_the_gpu_matches_the_cpu() {
    check_model!("ResNet-18 ReLU", ResNet18, Relu, 8);
}

#[test]
fn resnet18_pssilu_on_the_gpu_matches_the_cpu() {
    check_model!("ResNet-18 PSSiLU", ResNet18, Pssilu, 8);
}

#[test]
fn wide_resnet_28_10_pssilu_on_the_gpu_matches_the_cpu() {
    check_model!("WRN-28-10 PSSiLU", WideResNet28x10, Pssilu, 4);
}

/// The parameter tensors an activation of `kind` learns (PSSiLU: α and β; fixed-β PSSiLU and the
/// one-parameter ones: α).
fn which<'a, T>(kind: ActivationKind, a: &'a T, b: &'a T) -> [Option<&'a T>; 2] {
    match kind {
        ActivationKind::Pssilu => [Some(a), Some(b)],
        _ if kind.num_params() >= 1 => [Some(a), None],
        _ => [None, None],
    }
}

#[test]
fn every_activation_on_the_gpu_matches_the_cpu() {
    let cpu = Cpu::seed_from_u64(2);
    let gpu = Cuda::seed_from_u64(2);
    for kind in ActivationKind::ALL {
        for (alpha, beta) in [(1.3f32, 0.2f32), (-0.7, 1e-8)] {
            let f = PafFn { kind, alpha, beta };
            let x: Tensor<Rank2<64, 33>, f32, Cpu> = cpu.sample_normal();
            let x = x * 3.0;
            let up: Tensor<Rank2<64, 33>, f32, Cpu> = cpu.sample_normal();
            let (pa, pb) = (cpu.tensor([alpha]), cpu.tensor([beta]));
            let (pa_g, pb_g) = (pa.to_device(&gpu), pb.to_device(&gpu));
            let (x_g, up_g) = (x.to_device(&gpu), up.to_device(&gpu));
            let y_c = Cpu::pointwise_kernel(x.leaky_trace(), f, which(kind, &pa, &pb)).unwrap();
            let y_g =
                Cuda::pointwise_kernel(x_g.leaky_trace(), f, which(kind, &pa_g, &pb_g)).unwrap();
            let what = format!("{kind:?} α={alpha} β={beta}");
            assert_rel(&format!("{what} values"), &y_g.as_vec(), &y_c.as_vec());
            let gc = (y_c * up).sum::<Rank0, _>().backward();
            let gg = (y_g * up_g).sum::<Rank0, _>().backward();
            assert_rel(
                &format!("{what} dx"),
                &gg.get(&x_g).as_vec(),
                &gc.get(&x).as_vec(),
            );
            for (i, (p_c, p_g)) in which(kind, &pa, &pb)
                .iter()
                .zip(which(kind, &pa_g, &pb_g))
                .enumerate()
            {
                if let (Some(p_c), Some(p_g)) = (p_c, p_g) {
                    assert_rel(
                        &format!("{what} d(param {i})"),
                        &gg.get(p_g).as_vec(),
                        &gc.get(*p_c).as_vec(),
                    );
                }
            }
        }
    }
}
