//! One training step, number for number against the paper's official code: two steps of each
//! trainer (`baseline`, `madry` = PGD-AT, `adv` = TRADES) on a tiny network, against
//! `tests/golden/train_step.json`, written by `scripts/reference_train_step.py` (PyTorch,
//! float64, the official `trainers.py` / `utils_adv.py` code paths with the start perturbation
//! given). Compared: the loss (PSSiLU penalty 10·|β| included), β's gradient before clipping, the
//! BN running statistics after PGD-AT's clean pass, the adversarial images, and every tensor
//! after each SGD step (Nesterov 0.9, weight decay 5e-4 on every parameter, β's gradient clipped
//! to 0.01 / 0.1).
//!
//! Also: the SGD update against PyTorch's formula written out, the β penalty and clip, frozen
//! parameters skipped, and the warm-up / cosine schedule.

use crate::common;

use std::collections::BTreeMap;

use common::tiny::Tiny8;
use dfdx::prelude::*;
use robust_paf::activations::{Activation, Pssilu};
use robust_paf::attacks::{pgd_from, Images, PgdConfig};
use robust_paf::models::{named_tensors, Classifier};
use robust_paf::train::config::TrainerKind;
use robust_paf::train::optim::{clip_coefficient, LrSchedule};
use robust_paf::train::{train_step, Sgd, SgdSettings, Start, StepSettings, TrainerConfig};

type Dev = Cpu;
type Net = Tiny8<Pssilu<Dev>, Dev>;

const N: usize = 4;
const S: usize = 8;
const LABELS: [usize; 4] = [1, 3, 0, 7];

fn golden() -> serde_json::Value {
    serde_json::from_str(include_str!("golden/train_step.json")).unwrap()
}

/// An NHWC tensor from a function of the PyTorch (n, c, h, w) index.
fn nhwc(dev: &Dev, f: impl Fn(usize, usize, usize, usize) -> f64) -> Images<Net, Dev> {
    let mut v = Vec::with_capacity(N * S * S * 3);
    for n in 0..N {
        for h in 0..S {
            for w in 0..S {
                for c in 0..3 {
                    v.push(f(n, c, h, w) as f32);
                }
            }
        }
    }
    dev.tensor_from_vec(v, (N, Const, Const, Const))
}

/// The reference's closed-form weights (see the script), in the crate's layout.
fn reference_net(dev: &Dev) -> Net {
    let mut m = Net::build(dev);
    let mut w1 = Vec::new();
    for o in 0..4 {
        for kh in 0..3 {
            for kw in 0..3 {
                for i in 0..3 {
                    w1.push(
                        (0.2 * (0.5 * o as f64
                            + 1.1 * i as f64
                            + 0.7 * kh as f64
                            + 0.3 * kw as f64
                            + 0.1)
                            .sin()) as f32,
                    );
                }
            }
        }
    }
    m.conv1.weight.copy_from(&w1);
    let mut w2 = Vec::new();
    for o in 0..4 {
        for kh in 0..3 {
            for kw in 0..3 {
                for i in 0..4 {
                    w2.push(
                        (0.2 * (0.3 * o as f64
                            + 0.9 * i as f64
                            + 0.5 * kh as f64
                            + 0.2 * kw as f64)
                            .cos()) as f32,
                    );
                }
            }
        }
    }
    m.conv2.weight.copy_from(&w2);
    let c4 = |f: &dyn Fn(f64) -> f64| (0..4).map(|c| f(c as f64) as f32).collect::<Vec<_>>();
    m.bn1.weight.copy_from(&c4(&|c| 1.0 + 0.1 * c));
    m.bn1.bias.copy_from(&c4(&|c| 0.05 * c - 0.1));
    m.bn2.weight.copy_from(&c4(&|c| 1.0 - 0.05 * c));
    m.bn2.bias.copy_from(&c4(&|c| 0.02 * c));
    let mut fw = Vec::new();
    for k in 0..10 {
        for c in 0..4 {
            fw.push((0.3 * (0.4 * k as f64 + 1.7 * c as f64).sin()) as f32);
        }
    }
    m.fc.weight.copy_from(&fw);
    m.fc.bias
        .copy_from(&(0..10).map(|k| 0.01 * k as f32).collect::<Vec<_>>());
    m
}

fn images(dev: &Dev) -> Images<Net, Dev> {
    nhwc(dev, |n, c, h, w| {
        0.5 + 0.4 * (1.3 * n as f64 + 0.7 * c as f64 + 0.31 * h as f64 + 0.17 * w as f64).sin()
    })
}

fn pgd_start(dev: &Dev, step: usize) -> Images<Net, Dev> {
    nhwc(dev, |n, c, h, w| {
        0.031
            * (2.1 * n as f64 + 1.3 * c as f64 + 0.9 * h as f64 + 0.4 * w as f64 + step as f64)
                .sin()
    })
}

fn trades_start(dev: &Dev, step: usize) -> Images<Net, Dev> {
    nhwc(dev, |n, c, h, w| {
        0.001
            * (1.7 * n as f64 + 0.6 * c as f64 + 1.1 * h as f64 + 0.3 * w as f64 + step as f64)
                .cos()
    })
}

/// The crate's tensors in PyTorch's layout (conv weights `[out, in, kh, kw]`), by name.
fn torch_layout(m: &Net) -> BTreeMap<String, Vec<f64>> {
    let mut out = BTreeMap::new();
    for (name, v) in named_tensors(m).unwrap() {
        let v: Vec<f64> = v.iter().map(|&x| x as f64).collect();
        let v = match name.as_str() {
            "conv1.weight" | "conv2.weight" => {
                let ci = if name == "conv1.weight" { 3 } else { 4 };
                let mut t = vec![0.0; v.len()];
                for o in 0..4 {
                    for kh in 0..3 {
                        for kw in 0..3 {
                            for i in 0..ci {
                                t[((o * ci + i) * 3 + kh) * 3 + kw] =
                                    v[((o * 3 + kh) * 3 + kw) * ci + i];
                            }
                        }
                    }
                }
                t
            }
            _ => v,
        };
        out.insert(name, v);
    }
    out
}

/// NHWC values in PyTorch's NCHW order.
fn nchw(v: &[f32]) -> Vec<f64> {
    let mut t = vec![0.0; v.len()];
    for n in 0..N {
        for h in 0..S {
            for w in 0..S {
                for c in 0..3 {
                    t[((n * 3 + c) * S + h) * S + w] = v[((n * S + h) * S + w) * 3 + c] as f64;
                }
            }
        }
    }
    t
}

fn floats(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn close(what: &str, got: &[f64], want: &[f64], rtol: f64, atol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= atol + rtol * w.abs(),
            "{what}[{i}]: got {g}, want {w} (PyTorch float64)"
        );
    }
}

fn compare_state(what: &str, m: &Net, want: &serde_json::Value) {
    let got = torch_layout(m);
    let want = want.as_object().unwrap();
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{what}: tensor names (the state_dict's)"
    );
    for (name, w) in want {
        close(
            &format!("{what} {name}"),
            &got[name],
            &floats(w),
            2e-4,
            2e-6,
        );
    }
}

fn run(kind: TrainerKind, key: &str) {
    let g = golden();
    let dev = Dev::default();
    let mut m = reference_net(&dev);
    let mut opt = Sgd::new(SgdSettings::default()).unwrap();
    let cfg = TrainerConfig::paper(kind);
    let x = images(&dev);
    for step in 0..2 {
        let r = &g[key][step];
        let start = match kind {
            TrainerKind::Trades => trades_start(&dev, step),
            _ => pgd_start(&dev, step),
        };
        if kind == TrainerKind::PgdAt {
            // the pieces: BN statistics after the clean pass, then the attack in eval mode
            let mut probe = m.clone();
            probe.train();
            let _ = probe.logits_mut(x.clone());
            compare_state(
                &format!("{key} step {step} after the clean pass"),
                &probe,
                &r["after_clean_pass"],
            );
            let adv = pgd_from(&mut probe, &x, &LABELS, Some(&start), &PgdConfig::paper()).unwrap();
            close(
                &format!("{key} step {step} adversarial images"),
                &nchw(&adv.as_vec()),
                &floats(&r["adv"]),
                0.0,
                1e-5,
            );
        }
        let out = train_step(
            &cfg,
            &StepSettings::default(),
            &mut m,
            &mut opt,
            &x,
            &LABELS,
            Start::Given(&start),
        )
        .unwrap();
        close(
            &format!("{key} step {step} loss"),
            &[out.loss],
            &[r["loss"].as_f64().unwrap()],
            1e-5,
            0.0,
        );
        close(
            &format!("{key} step {step} beta gradient"),
            &[out.beta_grad.unwrap()],
            &[r["beta_grad"].as_f64().unwrap()],
            1e-5,
            1e-6,
        );
        compare_state(
            &format!("{key} step {step} after SGD"),
            &m,
            &r["after_step"],
        );
    }
}

#[test]
fn standard_step_matches_the_official_code() {
    run(TrainerKind::Standard, "baseline");
}

#[test]
fn pgd_at_step_matches_the_official_code() {
    run(TrainerKind::PgdAt, "madry");
}

#[test]
fn trades_step_matches_the_official_code() {
    run(TrainerKind::Trades, "adv");
}

/// PyTorch's `torch.optim.SGD` (nesterov, dampening 0), written out:
/// d = g + wd·p; buf = d (first step), buf = μ·buf + d (later); d = d + μ·buf; p = p − lr·d.
#[test]
fn sgd_is_pytorch_formula() {
    let dev = Dev::default();
    let mut m = reference_net(&dev);
    m.activation_mut().freeze("alpha", 0.75).unwrap();
    let (lr, mu, wd) = (0.05, 0.9, 5e-4);
    let mut opt = Sgd::new(SgdSettings {
        lr,
        momentum: mu,
        weight_decay: wd,
        nesterov: true,
    })
    .unwrap();
    let x = images(&dev);
    let y = dev.tensor_from_vec(
        (0..N * 10)
            .map(|i| if i % 10 == LABELS[i / 10] { 1.0 } else { 0.0 })
            .collect::<Vec<f32>>(),
        (N, Const::<10>),
    );
    let p0: BTreeMap<String, Vec<f32>> = named_tensors(&m).unwrap().into_iter().collect();
    let loss = cross_entropy_with_logits_loss(m.logits(x.clone().traced(m.alloc_grads())), y);
    let mut grads = loss.backward();
    let gv: BTreeMap<String, Vec<f32>> = robust_paf::models::named_gradients(&m, &mut grads)
        .unwrap()
        .into_iter()
        .collect();
    opt.step(&mut m, &mut grads).unwrap();
    let p1: BTreeMap<String, Vec<f32>> = named_tensors(&m).unwrap().into_iter().collect();
    // a second step with the same gradients exercises the momentum buffer
    opt.step(&mut m, &mut grads).unwrap();
    let p2: BTreeMap<String, Vec<f32>> = named_tensors(&m).unwrap().into_iter().collect();
    for (name, g) in &gv {
        if name == "activation.alpha" {
            assert_eq!(
                p2[name],
                vec![0.75],
                "frozen α is skipped (requires_grad = False)"
            );
            assert!(
                opt.buffers().iter().all(|(n, _)| n != name),
                "no momentum buffer for a frozen parameter"
            );
            continue;
        }
        for i in 0..g.len() {
            let (g, a0) = (g[i] as f64, p0[name][i] as f64);
            let d1 = g + wd * a0;
            let buf1 = d1;
            let a1 = a0 - lr * (d1 + mu * buf1);
            let d2 = g + wd * a1;
            let buf2 = mu * buf1 + d2;
            let a2 = a1 - lr * (d2 + mu * buf2);
            for (what, got, want) in [("step 1", p1[name][i], a1), ("step 2", p2[name][i], a2)] {
                assert!(
                    (got as f64 - want).abs() <= 1e-6 * (1.0 + want.abs()),
                    "{name}[{i}] {what}: {got} vs PyTorch's formula {want}"
                );
            }
        }
    }
    // running statistics are not parameters: untouched by the optimizer
    assert_eq!(p2["bn1.running_mean"], p0["bn1.running_mean"]);
}

/// PSSiLU's β: loss + 10·|β| adds 10·sign(β) to its gradient; the gradient is then clipped to
/// norm 0.01 (`clip_grad_norm_`: × 0.01 / (|g| + 1e-6)); the update is SGD's on the clipped value.
#[test]
fn beta_penalty_and_clip() {
    let dev = Dev::default();
    let x = images(&dev);
    let mut with = reference_net(&dev);
    let mut without = reference_net(&dev);
    let mut opt_a = Sgd::new(SgdSettings::default()).unwrap();
    let mut opt_b = Sgd::new(SgdSettings::default()).unwrap();
    let cfg = TrainerConfig::paper(TrainerKind::Standard);
    let no_reg = TrainerConfig {
        pssilu_reg: 0.0,
        ..cfg.clone()
    };
    let s = StepSettings::default();
    let a = train_step(
        &cfg,
        &s,
        &mut with,
        &mut opt_a,
        &x,
        &LABELS,
        Start::Seeded(0),
    )
    .unwrap();
    let b = train_step(
        &no_reg,
        &s,
        &mut without,
        &mut opt_b,
        &x,
        &LABELS,
        Start::Seeded(0),
    )
    .unwrap();
    let (ga, gb) = (a.beta_grad.unwrap(), b.beta_grad.unwrap());
    assert!(
        (ga - gb - 10.0).abs() < 1e-5,
        "the penalty adds 10·sign(β₀) = 10 to β's gradient: {ga} vs {gb}"
    );
    assert!(
        (a.loss - b.loss - 10.0 * 1e-8).abs() < 1e-6,
        "the loss includes 10·|β|"
    );
    // β₁ = β₀ − lr·(1 + μ)·(g·c + wd·β₀), c = 0.01 / (|g| + 1e-6) (first step: buf = d)
    let beta0 = 1e-8f64;
    let c = clip_coefficient(ga.abs(), 0.01);
    assert!((ga * c).abs() <= 0.01 + 1e-12 && (ga * c).abs() > 0.0099);
    let want = beta0 - 0.1 * 1.9 * (ga * c + 5e-4 * beta0);
    let got = with.activation.beta.as_vec()[0] as f64;
    assert!(
        (got - want).abs() < 1e-7,
        "β after the step {got}, expected {want} (clipped to norm 0.01)"
    );
    // TRADES clips to 0.1
    assert_eq!(TrainerKind::Trades.default_beta_grad_clip(), 0.1);
    assert_eq!(TrainerKind::PgdAt.default_beta_grad_clip(), 0.01);
}

/// The official warm-up (CyclicLR 0.005 → lr, momentum 0.9 → 0.8, kept at 0.8 afterwards) and
/// the per-iteration cosine (CosineAnnealingLR's closed form).
#[test]
fn schedule() {
    let s = LrSchedule {
        lr: 0.1,
        lr_min: 0.001,
        momentum: 0.9,
        warmup_steps: 10,
        main_steps: 100,
        warmup_keeps_momentum: true,
    };
    assert_eq!(s.lr_at(0), 0.005);
    assert!((s.lr_at(5) - (0.005 + 0.095 * 0.5)).abs() < 1e-15);
    assert!((s.momentum_at(5) - 0.85).abs() < 1e-15);
    assert_eq!(s.lr_at(10), 0.1, "the cosine starts at lr");
    assert_eq!(
        s.momentum_at(10),
        0.8,
        "the official code keeps CyclicLR's last momentum"
    );
    // lr(t) = 0.001 + 0.5·(0.1 − 0.001)·(1 + cos(π t / T))
    let t = 37;
    let want = 0.001 + 0.5 * 0.099 * (1.0 + (std::f64::consts::PI * t as f64 / 100.0).cos());
    assert!((s.lr_at(10 + t) - want).abs() < 1e-15);
    assert!((s.lr_at(110) - 0.001).abs() < 1e-15);
    let off = LrSchedule {
        warmup_keeps_momentum: false,
        ..s
    };
    assert_eq!(off.momentum_at(10), 0.9);
    let none = LrSchedule {
        warmup_steps: 0,
        ..s
    };
    assert_eq!(none.lr_at(0), 0.1);
    assert_eq!(none.momentum_at(0), 0.9);
}
