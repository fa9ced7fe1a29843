//! Attacks (docs/reproduction.md §3.3, §3.4): PGD (ℓ∞, ℓ2), FGSM and TRADES' inner maximisation.
//!
//! - On a linear classifier the worst perturbation has a closed form; PGD reaches it (margin
//!   within 1e-3): ℓ∞ with the [0, 1] box, `x′ᵢ = clamp(xᵢ − ε·sign(vᵢ), 0, 1)`; ℓ2 away from the
//!   box, `x′ = x − ε·v/‖v‖₂`, where `v = w_y − w_other` (two classes: the margin
//!   `m(x) = v·x + c` is what cross-entropy ascent lowers).
//! - Every output lies in the ε-ball and in [0, 1] (random models, inputs, settings).
//! - The attacks raise the loss; the model's mode is restored; the paper's unclamped random start
//!   is what the model sees first (and `clip_start` clamps it).
//! - Invalid settings are errors.

use std::cell::RefCell;

use dfdx::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use robust_paf::activations::Relu;
use robust_paf::attacks::{
    fgsm, pgd, trades_adversary, AttackModel, Norm, PgdConfig, TradesConfig,
};
use robust_paf::models::{Classifier, Mode, ResNet18};

const P: usize = 8;
type X = Tensor<(usize, Const<1>, Const<1>, Const<P>), f32, Cpu>;

/// `logits = W·x + b` on 8 "pixels"; records the smallest input value of every call.
struct Linear<const K: usize> {
    w: Tensor<Rank2<K, P>, f32, Cpu>,
    b: Tensor<Rank1<K>, f32, Cpu>,
    seen_min: RefCell<Vec<f32>>,
    /// Calls whose input carried a gradient tape.
    taped_calls: RefCell<usize>,
}

impl<const K: usize> Linear<K> {
    fn random(rng: &mut StdRng) -> Self {
        let dev = Cpu::default();
        let w: Vec<f32> = (0..K * P).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let b: Vec<f32> = (0..K).map(|_| rng.gen_range(-0.5..0.5)).collect();
        Linear {
            w: dev.tensor_from_vec(w, (Const, Const)),
            b: dev.tensor_from_vec(b, (Const,)),
            seen_min: RefCell::new(Vec::new()),
            taped_calls: RefCell::new(0),
        }
    }
    fn logits(&self, x: &X) -> Vec<f32> {
        self.attack_logits(x.clone()).unwrap().as_vec()
    }
    /// Mean cross-entropy of `x` with `labels`.
    fn loss(&self, x: &X, labels: &[usize]) -> f64 {
        let l = self.logits(x);
        labels
            .iter()
            .enumerate()
            .map(|(i, &y)| {
                let row = &l[i * K..(i + 1) * K];
                let m = row.iter().fold(f32::MIN, |a, &b| a.max(b)) as f64;
                let lse = m + row.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln();
                lse - row[y] as f64
            })
            .sum::<f64>()
            / labels.len() as f64
    }
}

impl<const K: usize> AttackModel<Cpu> for Linear<K> {
    type Height = Const<1>;
    type Width = Const<1>;
    type Channels = Const<P>;
    type Classes = Const<K>;
    fn attack_logits<T: Tape<f32, Cpu>>(
        &self,
        x: Tensor<(usize, Const<1>, Const<1>, Const<P>), f32, Cpu, T>,
    ) -> Result<Tensor<(usize, Const<K>), f32, Cpu, T>, CpuError> {
        let n = x.shape().0;
        if T::OWNS_TAPE {
            *self.taped_calls.borrow_mut() += 1;
        }
        self.seen_min
            .borrow_mut()
            .push(x.as_vec().into_iter().fold(f32::MAX, f32::min));
        let x = x.try_reshape_like(&(n, Const::<P>))?;
        let wt = self.w.retaped::<T>().try_permute::<_, Axes2<1, 0>>()?;
        let b = self.b.retaped::<T>().try_broadcast_like(&(n, Const::<K>))?;
        x.try_matmul(wt)?.try_add(b)
    }
}

fn batch(rng: &mut StdRng, n: usize, lo: f32, hi: f32) -> X {
    let v: Vec<f32> = (0..n * P).map(|_| rng.gen_range(lo..hi)).collect();
    Cpu::default().tensor_from_vec(v, (n, Const, Const, Const))
}

/// Max over images of ‖x′ − x‖ (ℓ∞ or per-image ℓ2), and whether every value is in [0, 1].
fn budget(x: &X, adv: &X, norm: Norm) -> (f64, bool) {
    let (a, b) = (x.as_vec(), adv.as_vec());
    let in_box = b.iter().all(|v| (0.0..=1.0).contains(v) && v.is_finite());
    let worst = a
        .chunks(P)
        .zip(b.chunks(P))
        .map(|(a, b)| {
            let d = a.iter().zip(b).map(|(a, b)| (*b - *a) as f64);
            match norm {
                Norm::Linf => d.fold(0.0f64, |m, v| m.max(v.abs())),
                Norm::L2 => d.map(|v| v * v).sum::<f64>().sqrt(),
            }
        })
        .fold(0.0, f64::max);
    (worst, in_box)
}

/// Margin `logit_y − logit_other` of a two-class model, per image.
fn margins(m: &Linear<2>, x: &X, labels: &[usize]) -> Vec<f64> {
    let l = m.logits(x);
    labels
        .iter()
        .enumerate()
        .map(|(i, &y)| (l[2 * i + y] - l[2 * i + 1 - y]) as f64)
        .collect()
}

#[test]
fn pgd_linf_reaches_the_closed_form_on_a_linear_model() {
    let mut rng = StdRng::seed_from_u64(1);
    for trial in 0..5 {
        let mut m = Linear::<2>::random(&mut rng);
        let x = batch(&mut rng, 6, 0.0, 1.0);
        let labels: Vec<usize> = (0..6).map(|i| (i + trial) % 2).collect();
        let eps = 0.1;
        for random_start in [false, true] {
            let cfg = PgdConfig {
                norm: Norm::Linf,
                eps,
                step_size: eps / 4.0,
                steps: 20,
                random_start,
                clip_start: false,
                seed: trial as u64,
                official_l2: false,
            };
            let adv = pgd(&mut m, &x, &labels, &cfg).unwrap();
            // closed form: x′ᵢ = clamp(xᵢ − ε·sign(vᵢ), 0, 1), v = w_y − w_other
            let w = m.w.as_vec();
            let xs = x.as_vec();
            let mut best = Vec::new();
            for (i, &y) in labels.iter().enumerate() {
                for j in 0..P {
                    let v = w[y * P + j] - w[(1 - y) * P + j];
                    best.push((xs[i * P + j] - eps as f32 * v.signum()).clamp(0.0, 1.0));
                }
            }
            let best = Cpu::default().tensor_from_vec(best, (6, Const, Const, Const));
            let (got, want) = (margins(&m, &adv, &labels), margins(&m, &best, &labels));
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-3, "margin {g} vs closed form {w}");
            }
        }
    }
}

#[test]
fn pgd_l2_reaches_the_closed_form_on_a_linear_model() {
    let mut rng = StdRng::seed_from_u64(2);
    for trial in 0..5 {
        let mut m = Linear::<2>::random(&mut rng);
        // inside the box by more than ε: the box is inactive
        let x = batch(&mut rng, 4, 0.35, 0.65);
        let labels: Vec<usize> = (0..4).map(|i| (i + trial) % 2).collect();
        let eps = 0.2;
        let cfg = PgdConfig {
            norm: Norm::L2,
            eps,
            step_size: eps / 4.0,
            steps: 20,
            random_start: false,
            clip_start: true,
            seed: 0,
            official_l2: false,
        };
        let adv = pgd(&mut m, &x, &labels, &cfg).unwrap();
        let w = m.w.as_vec();
        let before = margins(&m, &x, &labels);
        for ((i, &y), (g, m0)) in labels
            .iter()
            .enumerate()
            .zip(margins(&m, &adv, &labels).iter().zip(&before))
        {
            let v: Vec<f64> = (0..P)
                .map(|j| (w[y * P + j] - w[(1 - y) * P + j]) as f64)
                .collect();
            let norm_v = v.iter().map(|a| a * a).sum::<f64>().sqrt();
            let want = m0 - eps * norm_v; // x′ = x − ε v/‖v‖
            assert!((g - want).abs() < 1e-3, "image {i}: margin {g} vs {want}");
        }
    }
}

#[test]
fn every_attack_stays_in_the_ball_and_the_box() {
    let mut rng = StdRng::seed_from_u64(3);
    for trial in 0..20u64 {
        let mut m = Linear::<3>::random(&mut rng);
        let n = rng.gen_range(1..6);
        let x = batch(&mut rng, n, 0.0, 1.0);
        let labels: Vec<usize> = (0..n).map(|_| rng.gen_range(0..3)).collect();
        let eps = rng.gen_range(0.0..0.5);
        for norm in [Norm::Linf, Norm::L2] {
            let cfg = PgdConfig {
                norm,
                eps,
                step_size: rng.gen_range(0.0..0.3),
                steps: rng.gen_range(0..6),
                random_start: rng.gen_bool(0.7),
                clip_start: rng.gen_bool(0.5),
                seed: trial,
                official_l2: rng.gen_bool(0.5),
            };
            let adv = pgd(&mut m, &x, &labels, &cfg).unwrap();
            let (d, in_box) = budget(&x, &adv, norm);
            assert!(in_box, "{cfg:?}");
            assert!(d <= eps * (1.0 + 1e-5) + 1e-6, "{cfg:?}: {d} > {eps}");
            let t = TradesConfig {
                norm,
                eps,
                step_size: cfg.step_size,
                steps: cfg.steps,
                seed: trial,
                official_l2: cfg.official_l2,
                ..TradesConfig::paper()
            };
            let adv = trades_adversary(&mut m, &x, &t).unwrap();
            let (d, in_box) = budget(&x, &adv, norm);
            assert!(in_box && d <= eps * (1.0 + 1e-5) + 1e-6, "{t:?}: {d}");
        }
        let adv = fgsm(&mut m, &x, &labels, eps).unwrap();
        let (d, in_box) = budget(&x, &adv, Norm::Linf);
        assert!(in_box && d <= eps + 1e-6);
    }
}

#[test]
fn attacks_raise_the_loss() {
    let mut rng = StdRng::seed_from_u64(4);
    let mut m = Linear::<3>::random(&mut rng);
    let x = batch(&mut rng, 8, 0.2, 0.8);
    let labels: Vec<usize> = (0..8).map(|i| i % 3).collect();
    let clean = m.loss(&x, &labels);
    let pgd_adv = pgd(&mut m, &x, &labels, &PgdConfig::paper()).unwrap();
    let l2_adv = pgd(&mut m, &x, &labels, &PgdConfig::paper_l2()).unwrap();
    let f_adv = fgsm(&mut m, &x, &labels, 0.031).unwrap();
    for (name, adv) in [("PGD", pgd_adv), ("PGD-ℓ2", l2_adv), ("FGSM", f_adv)] {
        let l = m.loss(&adv, &labels);
        assert!(l > clean + 1e-3, "{name}: {l} <= clean {clean}");
    }
    // TRADES moves the prediction away from the clean one: KL(p_clean ‖ p_adv) > 0
    let t = trades_adversary(&mut m, &x, &TradesConfig::paper()).unwrap();
    let (pc, pa) = (m.logits(&x), m.logits(&t));
    let kl: f64 = pc
        .chunks(3)
        .zip(pa.chunks(3))
        .map(|(a, b)| {
            let sm = |r: &[f32]| {
                let e: Vec<f64> = r.iter().map(|v| (*v as f64).exp()).collect();
                let s: f64 = e.iter().sum();
                e.into_iter().map(|v| v / s).collect::<Vec<_>>()
            };
            let (p, q) = (sm(a), sm(b));
            p.iter().zip(&q).map(|(p, q)| p * (p / q).ln()).sum::<f64>()
        })
        .sum();
    assert!(kl > 1e-4, "TRADES KL {kl}");
}

#[test]
fn the_paper_random_start_is_not_clamped_before_the_first_step() {
    let mut rng = StdRng::seed_from_u64(5);
    let mut m = Linear::<2>::random(&mut rng);
    let x = batch(&mut rng, 4, 0.0, 1e-9); // ~0: half the start is negative
    let labels = [0, 1, 0, 1];
    let mut cfg = PgdConfig::paper();
    pgd(&mut m, &x, &labels, &cfg).unwrap();
    let first = m.seen_min.borrow()[0];
    assert!(
        first < 0.0,
        "the paper's start reaches the model unclamped ({first})"
    );
    m.seen_min.borrow_mut().clear();
    cfg.clip_start = true;
    let adv = pgd(&mut m, &x, &labels, &cfg).unwrap();
    assert!(m.seen_min.borrow().iter().all(|&v| v >= 0.0));
    assert!(
        adv.as_vec().iter().all(|&v| v >= 0.0),
        "the output is clamped either way"
    );
}

#[test]
fn invalid_settings_are_errors_not_panics() {
    let mut rng = StdRng::seed_from_u64(6);
    let mut m = Linear::<2>::random(&mut rng);
    let x = batch(&mut rng, 2, 0.0, 1.0);
    let mut cfg = PgdConfig::paper();
    cfg.eps = -0.1;
    assert!(pgd(&mut m, &x, &[0, 1], &cfg).is_err());
    cfg.eps = f64::NAN;
    assert!(pgd(&mut m, &x, &[0, 1], &cfg).is_err());
    assert!(
        pgd(&mut m, &x, &[0], &PgdConfig::paper()).is_err(),
        "label count"
    );
    assert!(
        pgd(&mut m, &x, &[0, 2], &PgdConfig::paper()).is_err(),
        "label 2 of 2 classes"
    );
    let mut t = TradesConfig::paper();
    t.step_size = -1.0;
    assert!(trades_adversary(&mut m, &x, &t).is_err());
}

#[test]
fn pgd_on_resnet18_restores_train_mode_and_raises_the_loss() {
    let dev = Cpu::seed_from_u64(0);
    let mut model = ResNet18::<Relu<Cpu>, Cpu>::new(&dev);
    model.train();
    let x: Tensor<(usize, Const<32>, Const<32>, Const<3>), f32, Cpu> =
        dev.sample_uniform_like(&(2, Const, Const, Const));
    let labels = [3, 7];
    let y = robust_paf::attacks::one_hot::<Const<10>, Cpu>(&dev, &labels).unwrap();
    let mut cfg = PgdConfig::paper();
    cfg.steps = 3;
    let adv = pgd(&mut model, &x, &labels, &cfg).unwrap();
    assert_eq!(model.mode(), Mode::Train, "mode restored");
    model.eval();
    let loss = |t: &Tensor<(usize, Const<32>, Const<32>, Const<3>), f32, Cpu>| {
        cross_entropy_with_logits_loss(model.logits(t.clone()), y.clone()).array()
    };
    assert!(loss(&adv) > loss(&x), "{} <= {}", loss(&adv), loss(&x));
    let (a, b) = (x.as_vec(), adv.as_vec());
    assert!(a.iter().zip(&b).all(|(a, b)| (a - b).abs() <= 0.031 + 1e-6));
    assert!(b.iter().all(|v| (0.0..=1.0).contains(v)));
}

// ---------------------------------------------------------------------------------------------
// APGD

use robust_paf::attacks::apgd::checkpoints;
use robust_paf::attacks::{apgd, ApgdConfig, ApgdLoss};

/// The published checkpoints `w_j = ⌈p_j·N⌉`, `p_0 = 0`, `p_1 = 0.22`,
/// `p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06)` (Croce & Hein 2020, §3.1), computed here in
/// exact decimal steps: for N = 100, p = 0.22, 0.41, 0.57, 0.70, 0.80, 0.87, 0.93, 0.99.
#[test]
fn apgd_checkpoints_follow_the_published_formula() {
    fn published(n: usize) -> Vec<usize> {
        // in hundredths, to stay exact
        let (mut prev, mut p) = (0i64, 22i64);
        let mut out = Vec::new();
        while p <= 100 {
            out.push((p as usize * n).div_ceil(100));
            let next = p + (p - prev - 3).max(6);
            prev = p;
            p = next;
        }
        out
    }
    assert_eq!(checkpoints(100), vec![22, 41, 57, 70, 80, 87, 93, 99]);
    assert_eq!(checkpoints(100), published(100));
    assert_eq!(checkpoints(1000), published(1000));
    assert_eq!(checkpoints(200), published(200));
}

#[test]
fn apgd_reaches_the_linf_closed_form_and_reports_robustness() {
    let mut rng = StdRng::seed_from_u64(7);
    for trial in 0..3 {
        let mut m = Linear::<2>::random(&mut rng);
        let x = batch(&mut rng, 6, 0.0, 1.0);
        let labels: Vec<usize> = (0..6).map(|i| (i + trial) % 2).collect();
        // attack only images the model gets right: label = its own prediction
        let l = m.logits(&x);
        let labels: Vec<usize> = labels
            .iter()
            .enumerate()
            .map(|(i, _)| if l[2 * i] > l[2 * i + 1] { 0 } else { 1 })
            .collect();
        let eps = 0.05;
        let mut cfg = ApgdConfig::ce(Norm::Linf, eps);
        cfg.n_iter = 50;
        let (adv, robust) = apgd(&mut m, &x, &labels, &cfg).unwrap();
        let (d, in_box) = budget(&x, &adv, Norm::Linf);
        assert!(in_box && d <= eps + 1e-6);
        // closed-form minimal margin: robust exactly when it stays positive
        let w = m.w.as_vec();
        let xs = x.as_vec();
        let mut best = Vec::new();
        for (i, &y) in labels.iter().enumerate() {
            for j in 0..P {
                let v = w[y * P + j] - w[(1 - y) * P + j];
                best.push((xs[i * P + j] - eps as f32 * v.signum()).clamp(0.0, 1.0));
            }
        }
        let best = Cpu::default().tensor_from_vec(best, (6, Const, Const, Const));
        let want = margins(&m, &best, &labels);
        for (i, w) in want.iter().enumerate() {
            if w.abs() > 1e-3 {
                assert_eq!(robust[i], *w > 0.0, "image {i}: closed-form margin {w}");
            }
        }
        // a fooled image's returned point has a non-positive margin
        let got = margins(&m, &adv, &labels);
        for i in 0..6 {
            if !robust[i] {
                assert!(
                    got[i] <= 1e-6,
                    "image {i} reported fooled at margin {}",
                    got[i]
                );
            }
        }
    }
}

#[test]
fn apgd_ce_and_targeted_raise_the_loss_and_stay_in_the_ball() {
    let mut rng = StdRng::seed_from_u64(8);
    let mut m = Linear::<5>::random(&mut rng);
    let x = batch(&mut rng, 6, 0.1, 0.9);
    let l = m.logits(&x);
    let labels: Vec<usize> = (0..6)
        .map(|i| {
            let row = &l[5 * i..5 * i + 5];
            (0..5).fold(0, |b, j| if row[j] > row[b] { j } else { b })
        })
        .collect();
    for (loss, norm, eps) in [
        (ApgdLoss::Ce, Norm::Linf, 0.02),
        (ApgdLoss::DlrTargeted, Norm::Linf, 0.02),
        (ApgdLoss::Ce, Norm::L2, 0.1),
        (ApgdLoss::Dlr, Norm::L2, 0.1),
    ] {
        let mut cfg = ApgdConfig::ce(norm, eps);
        cfg.loss = loss;
        cfg.n_iter = 20;
        cfg.n_target_classes = 3;
        let (adv, robust) = apgd(&mut m, &x, &labels, &cfg).unwrap();
        let (d, in_box) = budget(&x, &adv, norm);
        assert!(
            in_box && d <= eps * (1.0 + 1e-5) + 1e-6,
            "{loss:?} {norm:?}: {d}"
        );
        let pred = m.logits(&adv);
        for i in 0..6 {
            let row = &pred[5 * i..5 * i + 5];
            let p = (0..5).fold(0, |b, j| if row[j] > row[b] { j } else { b });
            assert_eq!(
                robust[i],
                p == labels[i],
                "{loss:?}: robust flag of image {i}"
            );
        }
        // against a fixed-step PGD of the same budget, APGD finds at least as many
        let mut pgd_cfg = PgdConfig::paper();
        pgd_cfg.norm = norm;
        pgd_cfg.eps = eps;
        pgd_cfg.step_size = eps / 4.0;
        pgd_cfg.steps = 20;
        let p = pgd(&mut m, &x, &labels, &pgd_cfg).unwrap();
        let pl = m.logits(&p);
        let pgd_fooled = (0..6)
            .filter(|&i| {
                let row = &pl[5 * i..5 * i + 5];
                (0..5).fold(0, |b, j| if row[j] > row[b] { j } else { b }) != labels[i]
            })
            .count();
        let apgd_fooled = robust.iter().filter(|r| !**r).count();
        // APGD raises the loss: every image it reports broken has a higher cross-entropy than
        // its clean version (per image, from the logits)
        let ce = |l: &[f32], i: usize| {
            let row = &l[5 * i..5 * i + 5];
            let m = row.iter().fold(f32::MIN, |a, &b| a.max(b)) as f64;
            m + row.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln() - row[labels[i]] as f64
        };
        let clean_logits = m.logits(&x);
        for i in (0..6).filter(|&i| !robust[i]) {
            assert!(ce(&pred, i) > ce(&clean_logits, i), "{loss:?}: image {i}");
        }
        if loss == ApgdLoss::Ce {
            assert!(
                apgd_fooled >= pgd_fooled,
                "{norm:?}: APGD {apgd_fooled} < PGD {pgd_fooled}"
            );
        }
    }
    let mut cfg = ApgdConfig::ce(Norm::Linf, 0.03);
    cfg.rho = 2.0;
    assert!(apgd(&mut m, &x, &labels, &cfg).is_err());
}

// ---------------------------------------------------------------------------------------------
// Square

use robust_paf::attacks::square::p_selection;
use robust_paf::attacks::{square, SquareConfig};

#[test]
fn square_is_reproducible_gradient_free_and_stays_in_the_ball() {
    let mut rng = StdRng::seed_from_u64(9);
    let mut m = Linear::<3>::random(&mut rng);
    let x = batch(&mut rng, 6, 0.2, 0.8);
    let l = m.logits(&x);
    let labels: Vec<usize> = (0..6)
        .map(|i| {
            let row = &l[3 * i..3 * i + 3];
            (0..3).fold(0, |b, j| if row[j] > row[b] { j } else { b })
        })
        .collect();
    for (norm, eps) in [(Norm::Linf, 0.1), (Norm::L2, 0.3)] {
        let cfg = SquareConfig {
            norm,
            eps,
            n_queries: 200,
            p_init: 0.8,
            seed: 5,
        };
        *m.taped_calls.borrow_mut() = 0;
        let (a1, r1) = square(&mut m, &x, &labels, &cfg).unwrap();
        assert_eq!(
            *m.taped_calls.borrow(),
            0,
            "Square must not compute gradients"
        );
        let (a2, r2) = square(&mut m, &x, &labels, &cfg).unwrap();
        assert_eq!(a1.as_vec(), a2.as_vec(), "{norm:?}: same seed, same result");
        assert_eq!(r1, r2);
        let (d, in_box) = budget(&x, &a1, norm);
        assert!(in_box && d <= eps * (1.0 + 1e-5) + 1e-6, "{norm:?}: {d}");
        // robust flags agree with the returned points
        let pred = m.logits(&a1);
        for i in 0..6 {
            let row = &pred[3 * i..3 * i + 3];
            let p = (0..3).fold(0, |b, j| if row[j] > row[b] { j } else { b });
            assert_eq!(r1[i], p == labels[i], "{norm:?} image {i}");
        }
        assert!(
            r1.iter().any(|r| !r),
            "{norm:?}: nothing broken at this budget"
        );
    }
    // PGD does use gradients (the counter works)
    *m.taped_calls.borrow_mut() = 0;
    pgd(&mut m, &x, &labels, &PgdConfig::paper()).unwrap();
    assert!(*m.taped_calls.borrow() > 0);
}

/// The reference schedule: p_init halves after 10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000
/// of 10,000 iterations (rescaled to the query budget).
#[test]
fn square_p_schedule_matches_the_reference() {
    let at = |it| p_selection(0.8, it, 10_000);
    assert_eq!(at(0), 0.8);
    assert_eq!(at(10), 0.8);
    assert_eq!(at(11), 0.4);
    assert_eq!(at(51), 0.2);
    assert_eq!(at(201), 0.1);
    assert_eq!(at(8001), 0.8 / 512.0);
    // rescaled: with 5,000 queries iteration 6 is iteration 12 of the 10,000 schedule
    assert_eq!(p_selection(0.8, 6, 5000), 0.4);
}

/// The paper's ℓ2 steps (`utils_adv.py`): where the gradient is exactly zero (a linear model with
/// zero weights) torchattacks' step leaves the image where it is, the official step moves it
/// along N(0, I) (10 steps of 0.075·‖z‖ ≈ 0.2 here), reproducibly from the seed, inside the
/// ball and the box. The same for TRADES' official steps.
#[test]
fn official_l2_steps_move_zero_gradient_images() {
    let mut rng = StdRng::seed_from_u64(9);
    let mut m = Linear::<2>::random(&mut rng);
    m.w = Cpu::default().zeros();
    let x = batch(&mut rng, 5, 0.3, 0.7);
    let labels = vec![0, 1, 0, 1, 1];
    let mut cfg = PgdConfig {
        random_start: false,
        ..PgdConfig::paper_l2()
    };
    let still = pgd(&mut m, &x, &labels, &cfg).unwrap();
    assert_eq!(still.as_vec(), x.as_vec(), "zero gradient, no step");
    cfg.official_l2 = true;
    let moved = pgd(&mut m, &x, &labels, &cfg).unwrap();
    let per_image = |adv: &X| -> Vec<f64> {
        x.as_vec()
            .chunks(P)
            .zip(adv.as_vec().chunks(P))
            .map(|(a, b)| {
                a.iter()
                    .zip(b)
                    .map(|(a, b)| ((b - a) as f64).powi(2))
                    .sum::<f64>()
                    .sqrt()
            })
            .collect()
    };
    let (worst, in_box) = budget(&x, &moved, Norm::L2);
    assert!(in_box && worst <= cfg.eps * (1.0 + 1e-5), "{worst}");
    assert!(per_image(&moved).iter().all(|d| *d > 0.2), "moved");
    assert_eq!(
        pgd(&mut m, &x, &labels, &cfg).unwrap().as_vec(),
        moved.as_vec()
    );
    cfg.seed = 1;
    assert_ne!(
        pgd(&mut m, &x, &labels, &cfg).unwrap().as_vec(),
        moved.as_vec()
    );

    let mut t = TradesConfig {
        norm: Norm::L2,
        eps: 0.5,
        ..TradesConfig::paper()
    };
    let small = per_image(&trades_adversary(&mut m, &x, &t).unwrap());
    assert!(
        small.iter().all(|d| *d < 0.01),
        "only the 0.001·N start: {small:?}"
    );
    t.official_l2 = true;
    let adv = trades_adversary(&mut m, &x, &t).unwrap();
    let (d, in_box) = budget(&x, &adv, Norm::L2);
    assert!(in_box && d <= t.eps * (1.0 + 1e-5), "{d}");
    assert!(per_image(&adv).iter().all(|d| *d > 0.4), "moved");
}
