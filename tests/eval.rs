//! Evaluation (docs/reproduction.md §4): AutoAttack's protocol — flags only go from robust to
//! broken, the accuracy after each attack never rises, every adversarial example passes the final
//! check, and a run interrupted after an attack resumes from its saved state to the same final
//! report.

use std::cell::Cell;

use dfdx::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use robust_paf::attacks::{AttackModel, Norm};
use robust_paf::eval::{run_autoattack, AutoAttackConfig};
use robust_paf::progress::{Progress, Silent};
use robust_paf::Error;

const P: usize = 8;
const K: usize = 5;

/// `logits = W·x + b` on 8 "pixels", 5 classes.
struct Linear {
    w: Tensor<Rank2<K, P>, f32, Cpu>,
    b: Tensor<Rank1<K>, f32, Cpu>,
}

impl Linear {
    fn random(rng: &mut StdRng) -> Self {
        let dev = Cpu::default();
        let w: Vec<f32> = (0..K * P).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let b: Vec<f32> = (0..K).map(|_| rng.gen_range(-0.2..0.2)).collect();
        Linear {
            w: dev.tensor_from_vec(w, (Const, Const)),
            b: dev.tensor_from_vec(b, (Const,)),
        }
    }
}

impl AttackModel<Cpu> for Linear {
    type Height = Const<1>;
    type Width = Const<1>;
    type Channels = Const<P>;
    type Classes = Const<K>;
    fn attack_logits<T: Tape<f32, Cpu>>(
        &self,
        x: Tensor<(usize, Const<1>, Const<1>, Const<P>), f32, Cpu, T>,
    ) -> Result<Tensor<(usize, Const<K>), f32, Cpu, T>, CpuError> {
        let n = x.shape().0;
        let x = x.try_reshape_like(&(n, Const::<P>))?;
        let wt = self.w.retaped::<T>().try_permute::<_, Axes2<1, 0>>()?;
        let b = self.b.retaped::<T>().try_broadcast_like(&(n, Const::<K>))?;
        x.try_matmul(wt)?.try_add(b)
    }
}

/// Data the model mostly gets right: labels are its own predictions, except every 7th.
fn data(m: &Linear, rng: &mut StdRng, n: usize) -> (Vec<f32>, Vec<usize>) {
    let x: Vec<f32> = (0..n * P).map(|_| rng.gen_range(0.1..0.9)).collect();
    let dev = Cpu::default();
    let t = dev.tensor_from_vec(x.clone(), (n, Const::<1>, Const::<1>, Const::<P>));
    let l = m.attack_logits(t).unwrap().as_vec();
    let labels = (0..n)
        .map(|i| {
            let row = &l[i * K..(i + 1) * K];
            let p = (0..K).fold(0, |b, j| if row[j] > row[b] { j } else { b });
            if i % 7 == 0 {
                (p + 1) % K
            } else {
                p
            }
        })
        .collect();
    (x, labels)
}

/// Cancels once it has seen `stop_after` "robust accuracy after" messages.
struct StopAfter {
    stop_after: usize,
    seen: Cell<usize>,
}

impl Progress for StopAfter {
    fn start(&mut self, _: &str, _: u64) {}
    fn advance(&mut self, _: u64) {}
    fn message(&mut self, msg: &str) {
        if msg.starts_with("robust accuracy after") {
            self.seen.set(self.seen.get() + 1);
        }
    }
    fn finish(&mut self) {}
    fn cancelled(&self) -> bool {
        self.seen.get() >= self.stop_after
    }
}

#[test]
fn autoattack_flags_only_break_and_accuracy_never_rises() {
    let mut rng = StdRng::seed_from_u64(1);
    let mut m = Linear::random(&mut rng);
    let (x, y) = data(&m, &mut rng, 40);
    let mut cfg = AutoAttackConfig::fast(Norm::Linf, 0.05);
    cfg.batch_size = 16;
    let dev = Cpu::default();
    let r = run_autoattack(&mut m, &dev, &x, &y, &cfg, None, &mut Silent).unwrap();
    let clean = r.state.clean_accuracy;
    assert!(clean > 0.7 && clean < 1.0, "clean accuracy {clean}");
    let mut prev = clean;
    for (name, acc) in &r.state.robust_accuracy_after {
        assert!(*acc <= prev + 1e-12, "{name}: {acc} > {prev}");
        prev = *acc;
    }
    assert_eq!(r.robust_accuracy, prev);
    assert!(
        r.robust_accuracy < clean,
        "some points must break at ε = 0.05"
    );
    assert!(r.max_perturbation <= 0.05 + 1e-6);
    // misclassified clean points are never robust; robust points keep their clean image
    for i in 0..40 {
        if i % 7 == 0 {
            assert!(!r.state.robust[i]);
        }
        if r.state.robust[i] {
            assert_eq!(&r.adversarial[i * P..(i + 1) * P], &x[i * P..(i + 1) * P]);
        }
    }
    assert_eq!(r.state.attacks_done, vec!["apgd-ce", "apgd-t"]);
}

#[test]
fn an_interrupted_autoattack_resumes_to_the_same_report() {
    let mut rng = StdRng::seed_from_u64(2);
    let mut m = Linear::random(&mut rng);
    let (x, y) = data(&m, &mut rng, 30);
    let mut cfg = AutoAttackConfig::fast(Norm::L2, 0.15);
    cfg.batch_size = 8;
    let dev = Cpu::default();
    let whole = run_autoattack(&mut m, &dev, &x, &y, &cfg, None, &mut Silent).unwrap();

    let dir = std::env::temp_dir().join(format!("robust-paf-aa-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let state = dir.join("state.json");
    let _ = std::fs::remove_file(&state);
    let mut stop = StopAfter {
        stop_after: 1,
        seen: Cell::new(0),
    };
    let err = run_autoattack(&mut m, &dev, &x, &y, &cfg, Some(&state), &mut stop).unwrap_err();
    assert!(matches!(err, Error::Interrupted(_)), "{err}");
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert_eq!(saved["attacks_done"], serde_json::json!(["apgd-ce"]));
    let resumed = run_autoattack(&mut m, &dev, &x, &y, &cfg, Some(&state), &mut Silent).unwrap();
    // the same state but for the clock: each attack's timing is kept, with the same points
    let untimed = |s: &robust_paf::eval::AutoAttackState| {
        let mut s = s.clone();
        for t in &mut s.timings {
            t.seconds = 0.0;
            t.cpu_seconds = None;
        }
        s
    };
    assert_eq!(untimed(&resumed.state), untimed(&whole.state));
    assert_eq!(resumed.state.timings.len(), 2);
    assert_eq!(resumed.adversarial, whole.adversarial);
    // a state from another configuration is refused
    let mut other = cfg.clone();
    other.eps = 0.3;
    assert!(run_autoattack(&mut m, &dev, &x, &y, &other, Some(&state), &mut Silent).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn standard_autoattack_runs_all_four_attacks_in_order() {
    let mut rng = StdRng::seed_from_u64(4);
    let mut m = Linear::random(&mut rng);
    let (x, y) = data(&m, &mut rng, 20);
    for (norm, eps) in [(Norm::Linf, 0.04), (Norm::L2, 0.12)] {
        let mut cfg = AutoAttackConfig::standard(norm, eps);
        cfg.batch_size = 10;
        let dev = Cpu::default();
        let r = run_autoattack(&mut m, &dev, &x, &y, &cfg, None, &mut Silent).unwrap();
        assert_eq!(
            r.state.attacks_done,
            vec!["apgd-ce", "apgd-t", "fab-t", "square"]
        );
        let accs: Vec<f64> = r.state.robust_accuracy_after.iter().map(|a| a.1).collect();
        assert!(accs.windows(2).all(|w| w[1] <= w[0]));
        assert!(r.max_perturbation <= eps * (1.0 + 1e-5) + 1e-6);
    }
}

#[test]
fn bad_inputs_are_errors() {
    let mut rng = StdRng::seed_from_u64(3);
    let mut m = Linear::random(&mut rng);
    let (mut x, y) = data(&m, &mut rng, 4);
    let dev = Cpu::default();
    let cfg = AutoAttackConfig::fast(Norm::Linf, 0.03);
    assert!(run_autoattack(&mut m, &dev, &x[1..], &y, &cfg, None, &mut Silent).is_err());
    let mut bad = cfg.clone();
    bad.eps = -1.0;
    assert!(run_autoattack(&mut m, &dev, &x, &y, &bad, None, &mut Silent).is_err());
    x[3] = f32::NAN;
    assert!(run_autoattack(&mut m, &dev, &x, &y, &cfg, None, &mut Silent).is_err());
}

// ---------------------------------------------------------------------------------------------
// Shape-ablation metrics (docs/reproduction.md §4): on a two-class linear model, away from the
// [0, 1] box, the minimal ℓ∞ radius is `r* = margin / ‖v‖₁` (v = w_y − w_other) and PGD from x
// without a random start moves every pixel by −ε·sign(vⱼ).

use robust_paf::eval::{average_radius, empirical_lipschitz, square_success_rate, RadiusConfig};

struct Linear2 {
    w: Tensor<Rank2<2, P>, f32, Cpu>,
}

impl AttackModel<Cpu> for Linear2 {
    type Height = Const<1>;
    type Width = Const<1>;
    type Channels = Const<P>;
    type Classes = Const<2>;
    fn attack_logits<T: Tape<f32, Cpu>>(
        &self,
        x: Tensor<(usize, Const<1>, Const<1>, Const<P>), f32, Cpu, T>,
    ) -> Result<Tensor<(usize, Const<2>), f32, Cpu, T>, CpuError> {
        let n = x.shape().0;
        // logits = W·(x − 0.5): the decision boundary passes through the middle of the box
        let x = x.try_reshape_like(&(n, Const::<P>))?.try_sub(0.5)?;
        x.try_matmul(self.w.retaped::<T>().try_permute::<_, Axes2<1, 0>>()?)
    }
}

/// A model, images in [0.25, 0.75] within ≈ 0.12 of its boundary, labels = predictions, and
/// each image's r*.
fn linear_case(seed: u64, n: usize) -> (Linear2, Vec<f32>, Vec<usize>, Vec<f64>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let w: Vec<f32> = (0..2 * P).map(|_| rng.gen_range(-1.0..1.0)).collect();
    // images near the boundary: draw x, then move it along v so that r* lands in [0.005, 0.12]
    let mut x: Vec<f32> = Vec::with_capacity(n * P);
    while x.len() < n * P {
        let xi: Vec<f64> = (0..P).map(|_| rng.gen_range(0.4..0.6)).collect();
        let y = rng.gen_range(0..2usize);
        let v: Vec<f64> = (0..P)
            .map(|j| (w[y * P + j] - w[(1 - y) * P + j]) as f64)
            .collect();
        let m: f64 = (0..P).map(|j| v[j] * (xi[j] - 0.5)).sum();
        let (l1, l2sq) = (
            v.iter().map(|a| a.abs()).sum::<f64>(),
            v.iter().map(|a| a * a).sum::<f64>(),
        );
        let target = rng.gen_range(0.005..0.12) * l1;
        let moved: Vec<f64> = (0..P).map(|j| xi[j] + (target - m) * v[j] / l2sq).collect();
        if moved.iter().all(|v| (0.25..=0.75).contains(v)) {
            x.extend(moved.iter().map(|&v| v as f32));
        }
    }
    let mut labels = Vec::new();
    let mut r = Vec::new();
    for i in 0..n {
        let xi = &x[i * P..(i + 1) * P];
        let z: Vec<f64> = (0..2)
            .map(|k| (0..P).map(|j| (w[k * P + j] * (xi[j] - 0.5)) as f64).sum())
            .collect();
        let y = usize::from(z[1] > z[0]);
        let v: Vec<f64> = (0..P)
            .map(|j| (w[y * P + j] - w[(1 - y) * P + j]) as f64)
            .collect();
        labels.push(y);
        r.push((z[y] - z[1 - y]) / v.iter().map(|a| a.abs()).sum::<f64>());
    }
    let m = Linear2 {
        w: Cpu::default().tensor_from_vec(w, (Const, Const)),
    };
    (m, x, labels, r)
}

#[test]
fn binary_search_radius_brackets_the_linear_minimal_radius() {
    let (mut m, x, y, r) = linear_case(11, 24);
    let dev = Cpu::default();
    let mut exact = RadiusConfig::paper();
    exact.paper_step_schedule = false;
    let (_, radii) = average_radius(&mut m, &dev, &x, &y, &exact).unwrap();
    let (avg_paper, paper) = average_radius(&mut m, &dev, &x, &y, &RadiusConfig::paper()).unwrap();
    let mut checked = 0;
    for i in 0..24 {
        let (est, p) = (radii[i].unwrap(), paper[i].unwrap());
        // PGD never finds an adversarial example inside r*: both estimates are ≥ r* (or at the
        // search's cap of 0.1 when r* is beyond it)
        let floor = r[i].min(0.1);
        assert!(p >= floor - 1e-4, "paper estimate {p} < r* {}", r[i]);
        assert!(est >= floor - 1e-4, "estimate {est} < r* {}", r[i]);
        // the search tops out at 0.05 + 0.025 + … = 0.1
        assert!(p <= 0.1 + 1e-9 && est <= 0.1 + 1e-9);
        if r[i] < 0.095 {
            assert!((est - r[i]).abs() < 1e-3, "image {i}: {est} vs r* {}", r[i]);
            checked += 1;
        }
    }
    assert!(checked >= 5, "too few radii below the cap ({checked})");
    let mean: f64 = paper.iter().flatten().sum::<f64>() / 24.0;
    assert!((avg_paper - mean).abs() < 1e-12);
}

#[test]
fn lipschitz_matches_the_linear_closed_form() {
    let (mut m, x, y, _) = linear_case(12, 10);
    let dev = Cpu::default();
    let w = m.w.as_vec();
    // one batch: Σᵢ ‖W δᵢ‖₁ / ε / N with δᵢⱼ = −ε·sign(vᵢⱼ)
    let mut expected = 0.0;
    for i in 0..10 {
        let v: Vec<f32> = (0..P)
            .map(|j| w[y[i] * P + j] - w[(1 - y[i]) * P + j])
            .collect();
        for k in 0..2 {
            let s: f64 = (0..P).map(|j| (w[k * P + j] * -v[j].signum()) as f64).sum();
            expected += s.abs();
        }
    }
    expected /= 10.0;
    let got = empirical_lipschitz(&mut m, &dev, &x, &y, 16).unwrap();
    assert!(
        (got - expected).abs() < 1e-3 * expected,
        "{got} vs {expected}"
    );
}

#[test]
fn square_success_rate_counts_broken_among_correct() {
    let (mut m, x, y, r) = linear_case(13, 12);
    let dev = Cpu::default();
    let big = r.iter().cloned().fold(0.0, f64::max) * 1.5;
    let (rate, correct) = square_success_rate(&mut m, &dev, &x, &y, big, 300, 8).unwrap();
    assert_eq!(correct, 12);
    assert!(
        rate > 0.5,
        "Square breaks most points beyond their radius: {rate}"
    );
    let (rate0, _) = square_success_rate(&mut m, &dev, &x, &y, 0.0, 50, 8).unwrap();
    assert_eq!(rate0, 0.0);
}

// ---------------------------------------------------------------------------------------------
// evaluate(): the report and the RobustBench-style record

use robust_paf::attacks::PgdConfig;
use robust_paf::data::{ImageSet, IMAGE_BYTES};
use robust_paf::eval::{evaluate, AaVersion, Epsilon, EvalConfig, EvalReport};

/// `logits = W·(x − 0.5)` on 32×32×3 images, 10 classes.
struct Linear32 {
    w: Tensor<Rank2<10, IMAGE_BYTES>, f32, Cpu>,
}

impl AttackModel<Cpu> for Linear32 {
    type Height = Const<32>;
    type Width = Const<32>;
    type Channels = Const<3>;
    type Classes = Const<10>;
    fn attack_logits<T: Tape<f32, Cpu>>(
        &self,
        x: Tensor<(usize, Const<32>, Const<32>, Const<3>), f32, Cpu, T>,
    ) -> Result<Tensor<(usize, Const<10>), f32, Cpu, T>, CpuError> {
        let n = x.shape().0;
        let x = x
            .try_reshape_like(&(n, Const::<IMAGE_BYTES>))?
            .try_sub(0.5)?;
        x.try_matmul(self.w.retaped::<T>().try_permute::<_, Axes2<1, 0>>()?)
    }
}

#[test]
fn evaluate_reports_every_number_with_the_exact_epsilon() {
    let mut rng = StdRng::seed_from_u64(21);
    let dev = Cpu::default();
    let w: Vec<f32> = (0..10 * IMAGE_BYTES)
        .map(|_| rng.gen_range(-0.01..0.01))
        .collect();
    let mut m = Linear32 {
        w: dev.tensor_from_vec(w, (Const, Const)),
    };
    let n = 12;
    let pixels: Vec<u8> = (0..n * IMAGE_BYTES).map(|_| rng.gen()).collect();
    let x: Vec<f32> = pixels.iter().map(|&v| v as f32 / 255.0).collect();
    let l = m
        .attack_logits(dev.tensor_from_vec(x, (n, Const, Const, Const)))
        .unwrap()
        .as_vec();
    let labels: Vec<u16> = (0..n)
        .map(|i| robust_paf::attacks::argmax(&l[i * 10..(i + 1) * 10]) as u16)
        .collect();
    let data = ImageSet::new("generated", 10, pixels, labels, "mem".as_ref()).unwrap();
    let mut cfg = EvalConfig::robustbench();
    cfg.autoattack = Some(AaVersion::Fast);
    cfg.pgd = Some(PgdConfig::paper());
    cfg.batch_size = 5;
    let r = evaluate(&mut m, &dev, "linear", &data, &cfg, &mut Silent).unwrap();
    assert_eq!(r.n_examples, 12);
    assert_eq!(r.eps_text, "8/255");
    assert!((r.eps - 8.0 / 255.0).abs() < 1e-15);
    assert!((r.clean_accuracy - 1.0).abs() < 1e-12);
    let pgd_acc = r.pgd_accuracy.unwrap();
    let aa = r.autoattack_accuracy.unwrap();
    assert!(pgd_acc <= r.clean_accuracy && aa <= r.clean_accuracy);
    assert_eq!(r.autoattack_per_attack.len(), 2);
    assert_eq!(
        r.pgd.as_ref().unwrap().eps,
        8.0 / 255.0,
        "PGD at the report's ε"
    );
    let info = r.model_info("test", false);
    assert_eq!(info["eps"], "8/255");
    assert_eq!(info["clean_acc"], "100.00");
    assert!(info["footnote"].as_str().unwrap().contains("NON-STANDARD"));
    // JSON round trip through save
    let path = std::env::temp_dir().join(format!("robust-paf-report-{}.json", std::process::id()));
    r.save(&path).unwrap();
    let back: EvalReport = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(back, r);
    let _ = std::fs::remove_file(&path);
    assert_eq!(Epsilon::PAPER_LINF.text(), "0.031");
    // subset and invalid settings
    cfg.n_examples = Some(4);
    cfg.autoattack = None;
    assert_eq!(
        evaluate(&mut m, &dev, "linear", &data, &cfg, &mut Silent)
            .unwrap()
            .n_examples,
        4
    );
    cfg.batch_size = 0;
    assert!(evaluate(&mut m, &dev, "linear", &data, &cfg, &mut Silent).is_err());
}
