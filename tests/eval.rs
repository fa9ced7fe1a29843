//! Evaluation (PAPER.md §4): AutoAttack's protocol — flags only go from robust to broken, the
//! accuracy after each attack never rises, every adversarial example passes the final check, and
//! a run interrupted after an attack resumes from its saved state to the same final report.

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
    assert_eq!(resumed.state, whole.state);
    assert_eq!(resumed.adversarial, whole.adversarial);
    // a state from another configuration is refused
    let mut other = cfg.clone();
    other.eps = 0.3;
    assert!(run_autoattack(&mut m, &dev, &x, &y, &other, Some(&state), &mut Silent).is_err());
    let _ = std::fs::remove_dir_all(&dir);
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
