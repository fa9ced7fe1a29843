//! FAB-T (targeted Fast Adaptive Boundary attack, AutoAttack's version), ℓ∞ and ℓ2.
//!
//! - The box-constrained hyperplane projections: the closed form away from the box
//!   (`t − c·sign(w)/‖w‖₁` for ℓ∞, `t − c·w/‖w‖₂²` for ℓ2, `c = w·t − b`), the box corner when the
//!   hyperplane misses the box, and a brute-force minimum over the hyperplane ∩ box in 2 and 3
//!   dimensions when the box is active.
//! - On a two-class linear model, away from the box, FAB is exact: the minimal perturbation to the
//!   boundary has size `margin/‖v‖₁` (ℓ∞) or `margin/‖v‖₂` (ℓ2), `v = w_y − w_other`; with ε a bit
//!   above it the image is broken, the perturbation is within 1% of the minimum and the margin is
//!   ≤ 0; with ε a bit below it the image stays robust and is returned unchanged.
//! - Every output lies in the ε-ball and in [0, 1] (random 3–5-class linear models), broken images
//!   are misclassified, robust ones unchanged, misclassified clean images not robust.
//! - Invalid settings are errors; a fixed seed reproduces the attack (random restarts included).

use dfdx::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use robust_paf::attacks::fab::{projection_l2, projection_linf};
use robust_paf::attacks::{fab_targeted, AttackModel, FabConfig, Norm};
use robust_paf::Error;

const P: usize = 8;
type X = Tensor<(usize, Const<1>, Const<1>, Const<P>), f32, Cpu>;

/// `logits = W·x + b` on 8 "pixels".
struct Linear<const K: usize> {
    w: Tensor<Rank2<K, P>, f32, Cpu>,
    b: Tensor<Rank1<K>, f32, Cpu>,
}

impl<const K: usize> Linear<K> {
    fn random(rng: &mut StdRng) -> Self {
        let dev = Cpu::default();
        let w: Vec<f32> = (0..K * P).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let b: Vec<f32> = (0..K).map(|_| rng.gen_range(-0.5..0.5)).collect();
        Linear {
            w: dev.tensor_from_vec(w, (Const, Const)),
            b: dev.tensor_from_vec(b, (Const,)),
        }
    }
    fn logits(&self, x: &X) -> Vec<f32> {
        self.attack_logits(x.clone()).unwrap().as_vec()
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
        let x = x.try_reshape_like(&(n, Const::<P>))?;
        let wt = self.w.retaped::<T>().try_permute::<_, Axes2<1, 0>>()?;
        let b = self.b.retaped::<T>().try_broadcast_like(&(n, Const::<K>))?;
        x.try_matmul(wt)?.try_add(b)
    }
}

fn images(v: Vec<f32>) -> X {
    let n = v.len() / P;
    Cpu::default().tensor_from_vec(v, (n, Const, Const, Const))
}

fn batch(rng: &mut StdRng, n: usize, lo: f32, hi: f32) -> X {
    images((0..n * P).map(|_| rng.gen_range(lo..hi)).collect())
}

fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

fn norm_of(norm: Norm, d: impl Iterator<Item = f64>) -> f64 {
    match norm {
        Norm::Linf => d.fold(0.0, |m, v| m.max(v.abs())),
        Norm::L2 => d.map(|v| v * v).sum::<f64>().sqrt(),
    }
}

/// Per image ‖x′ − x‖ (ℓ∞ or ℓ2), and whether every value is finite and in [0, 1].
fn distances(x: &X, adv: &X, norm: Norm) -> (Vec<f64>, bool) {
    let (a, b) = (x.as_vec(), adv.as_vec());
    let in_box = b.iter().all(|v| (0.0..=1.0).contains(v) && v.is_finite());
    let d = a
        .chunks(P)
        .zip(b.chunks(P))
        .map(|(a, b)| norm_of(norm, a.iter().zip(b).map(|(a, b)| (*b - *a) as f64)))
        .collect();
    (d, in_box)
}

// ---------------------------------------------------------------- projections

fn project(norm: Norm, t: &[f32], w: &[f32], b: f64) -> Vec<f64> {
    match norm {
        Norm::Linf => projection_linf(t, w, b).unwrap(),
        Norm::L2 => projection_l2(t, w, b).unwrap(),
    }
}

fn dot(w: &[f32], z: &[f64]) -> f64 {
    w.iter().zip(z).map(|(&w, z)| w as f64 * z).sum()
}

#[test]
fn projections_match_the_closed_form_away_from_the_box() {
    let mut rng = StdRng::seed_from_u64(10);
    for _ in 0..50 {
        let n = rng.gen_range(1..12);
        let t: Vec<f32> = (0..n).map(|_| rng.gen_range(0.4..0.6)).collect();
        let w: Vec<f32> = (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let wt = dot(&w, &t.iter().map(|&v| v as f64).collect::<Vec<_>>());
        let l1: f64 = w.iter().map(|v| v.abs() as f64).sum();
        let l2sq: f64 = w.iter().map(|v| (*v as f64).powi(2)).sum();
        // a hyperplane at ℓ∞ distance ≤ 0.05 from t, on either side
        let c = rng.gen_range(-0.05..0.05) * l1;
        let b = wt - c;
        let dinf = project(Norm::Linf, &t, &w, b);
        let d2 = project(Norm::L2, &t, &w, b);
        for i in 0..n {
            let sign = (w[i] as f64).signum() * (w[i] != 0.0) as u8 as f64;
            assert!((dinf[i] - (-c / l1 * sign)).abs() < 1e-9, "{dinf:?}");
            assert!((d2[i] - (-c * w[i] as f64 / l2sq)).abs() < 1e-9, "{d2:?}");
        }
    }
}

#[test]
fn projections_reach_the_corner_when_the_hyperplane_misses_the_box() {
    let t = [0.2f32, 0.7, 0.5, 0.1];
    let w = [1.0f32, -2.0, 0.0, 0.5];
    // max of w·z over the box is 1.5 (z = (1, 0, ·, 1)); b = 3 is out of reach
    for norm in [Norm::Linf, Norm::L2] {
        let d = project(norm, &t, &w, 3.0);
        let z: Vec<f64> = t.iter().zip(&d).map(|(&t, d)| t as f64 + d).collect();
        let want = [1.0, 0.0, 0.5, 1.0];
        for (z, w) in z.iter().zip(want) {
            assert!((z - w).abs() < 1e-7, "{norm:?}: {z:?}");
        }
        // the other side: min of w·z is −2 (z = (0, 1, ·, 0))
        let d = project(norm, &t, &w, -5.0);
        let want = [0.0, 1.0, 0.5, 0.0];
        for ((t, d), w) in t.iter().zip(&d).zip(want) {
            assert!((*t as f64 + d - w).abs() < 1e-7, "{norm:?}: {d:?}");
        }
    }
}

#[test]
fn projections_are_minimal_on_the_hyperplane_inside_the_box() {
    let mut rng = StdRng::seed_from_u64(11);
    for trial in 0..40 {
        let dims = 2 + trial % 2;
        let t: Vec<f32> = (0..dims).map(|_| rng.gen_range(0.0..1.0)).collect();
        let mut w: Vec<f32> = (0..dims).map(|_| rng.gen_range(-1.0..1.0)).collect();
        // the last coordinate solves the hyperplane in the brute force: keep |w_last| ≥ 0.5
        let last = w[dims - 1];
        w[dims - 1] = last.signum() * (0.5 + 0.5 * last.abs());
        // a hyperplane through a random point of the box: feasible
        let z0: Vec<f64> = (0..dims).map(|_| rng.gen_range(0.0..1.0)).collect();
        let b = dot(&w, &z0);
        for norm in [Norm::Linf, Norm::L2] {
            let d = project(norm, &t, &w, b);
            let z: Vec<f64> = t.iter().zip(&d).map(|(&t, d)| t as f64 + d).collect();
            assert!(z.iter().all(|v| (-1e-9..=1.0 + 1e-9).contains(v)), "{z:?}");
            assert!(
                (dot(&w, &z) - b).abs() < 1e-9,
                "{norm:?}: off the hyperplane"
            );
            let got = norm_of(norm, d.iter().copied());
            // brute force: a grid on the first coordinates, the last one from the hyperplane
            let steps = if dims == 2 { 20_000 } else { 400 };
            let mut best = f64::INFINITY;
            let grid = |k: usize| k as f64 / steps as f64;
            let mut visit = |head: &[f64]| {
                let rest: f64 = head.iter().zip(&w).map(|(h, &w)| h * w as f64).sum();
                let zl = (b - rest) / w[dims - 1] as f64;
                if (0.0..=1.0).contains(&zl) {
                    let diff = head
                        .iter()
                        .chain(std::iter::once(&zl))
                        .zip(&t)
                        .map(|(z, &t)| z - t as f64);
                    best = best.min(norm_of(norm, diff));
                }
            };
            for i in 0..=steps {
                if dims == 2 {
                    visit(&[grid(i)]);
                } else {
                    for j in 0..=steps {
                        visit(&[grid(i), grid(j)]);
                    }
                }
            }
            // the projection is never beaten, and the grid comes close to it
            assert!(got <= best + 1e-9, "{norm:?}: {got} > brute force {best}");
            let tol = if dims == 2 { 2e-4 } else { 1e-2 };
            assert!(
                best - got < tol,
                "{norm:?}: {got} far below brute force {best}"
            );
        }
    }
}

#[test]
fn projections_keep_zero_weight_coordinates_and_reject_bad_input() {
    let d = projection_linf(&[0.5, 0.5, 0.5], &[1.0, 0.0, -1.0], 0.2).unwrap();
    assert_eq!(d[1], 0.0);
    let d = projection_l2(&[0.5, 0.5, 0.5], &[1.0, 0.0, -1.0], 0.2).unwrap();
    assert_eq!(d[1], 0.0);
    assert!(projection_linf(&[0.5, 0.5], &[1.0], 0.0).is_err());
    assert!(projection_l2(&[0.5], &[f32::NAN], 0.0).is_err());
    assert!(projection_l2(&[0.5], &[1.0], f64::INFINITY).is_err());
    // a zero normal: nothing can move
    let d = projection_l2(&[0.5, 0.5], &[0.0, 0.0], 1.0).unwrap();
    assert_eq!(d, vec![0.0, 0.0]);
}

// ---------------------------------------------------------------- the attack

/// Two-class models, each with an image in the middle of the box, labelled with its predicted
/// class, whose minimal ℓ∞ distance to the boundary is small (the box never binds): the bias is
/// set so that the margin is `δ·‖v‖₁` for a random `δ ∈ [0.02, 0.08]`.
fn exact_setting(seed: u64) -> Vec<(Linear<2>, Vec<f32>, usize)> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..4)
        .map(|_| {
            let m = Linear::<2>::random(&mut rng);
            let w = m.w.as_vec();
            let x: Vec<f32> = (0..P).map(|_| rng.gen_range(0.4..0.6)).collect();
            let y = rng.gen_range(0..2);
            let v: Vec<f32> = (0..P).map(|i| w[y * P + i] - w[(1 - y) * P + i]).collect();
            let l1: f32 = v.iter().map(|v| v.abs()).sum();
            let vx: f32 = v.iter().zip(&x).map(|(v, x)| v * x).sum();
            let margin = rng.gen_range(0.02..0.08) * l1;
            let mut b = vec![0.0f32; 2];
            b[y] = margin - vx;
            let m = Linear {
                w: m.w,
                b: Cpu::default().tensor_from_vec(b, (Const,)),
            };
            assert_eq!(argmax(&m.logits(&images(x.clone()))), y);
            (m, x, y)
        })
        .collect()
}

fn minimal_size(m: &Linear<2>, x: &[f32], y: usize, norm: Norm) -> f64 {
    let w = m.w.as_vec();
    let l = m.logits(&images(x.to_vec()));
    let v: Vec<f64> = (0..P)
        .map(|i| (w[y * P + i] - w[(1 - y) * P + i]) as f64)
        .collect();
    let margin = (l[y] - l[1 - y]) as f64;
    match norm {
        Norm::Linf => margin / v.iter().map(|v| v.abs()).sum::<f64>(),
        Norm::L2 => margin / v.iter().map(|v| v * v).sum::<f64>().sqrt(),
    }
}

fn reaches_the_minimal_perturbation(norm: Norm) {
    for seed in 0..3 {
        for (mut m, x, y) in exact_setting(seed) {
            let delta = minimal_size(&m, &x, y, norm);
            let xt = images(x.clone());
            // ε a bit above the minimum: broken, at the boundary
            let cfg = FabConfig::targeted(norm, 1.02 * delta);
            let (adv, robust) = fab_targeted(&mut m, &xt, &[y], &cfg).unwrap();
            assert_eq!(
                robust,
                vec![false],
                "{norm:?}: not broken at 1.02 × {delta}"
            );
            let (d, in_box) = distances(&xt, &adv, norm);
            assert!(in_box);
            assert!(
                d[0] <= 1.01 * delta && d[0] >= delta * (1.0 - 1e-4),
                "{norm:?}: ‖δ‖ = {} vs minimal {delta}",
                d[0]
            );
            let l = m.logits(&adv);
            let margin = (l[y] - l[1 - y]) as f64;
            assert!(margin <= 1e-3, "{norm:?}: margin {margin}");
            assert_ne!(argmax(&l), y);
            // ε a bit below: robust, returned unchanged
            let cfg = FabConfig::targeted(norm, 0.98 * delta);
            let (adv, robust) = fab_targeted(&mut m, &xt, &[y], &cfg).unwrap();
            assert_eq!(
                robust,
                vec![true],
                "{norm:?}: broken below the minimum {delta}"
            );
            assert_eq!(adv.as_vec(), xt.as_vec());
        }
    }
}

#[test]
fn fab_linf_reaches_the_minimal_perturbation_on_a_linear_model() {
    reaches_the_minimal_perturbation(Norm::Linf);
}

#[test]
fn fab_l2_reaches_the_minimal_perturbation_on_a_linear_model() {
    reaches_the_minimal_perturbation(Norm::L2);
}

fn stays_in_the_ball<const K: usize>(seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    for trial in 0..4 {
        let mut m = Linear::<K>::random(&mut rng);
        let x = batch(&mut rng, 8, 0.0, 1.0);
        let labels: Vec<usize> = (0..8).map(|_| rng.gen_range(0..K)).collect();
        let clean = m.logits(&x);
        for norm in [Norm::Linf, Norm::L2] {
            let eps = match norm {
                Norm::Linf => [0.02, 0.1, 0.3, 1.0][trial],
                Norm::L2 => [0.1, 0.5, 1.0, 3.0][trial],
            };
            let cfg = FabConfig {
                n_iter: 30,
                n_restarts: 2,
                seed: trial as u64,
                ..FabConfig::targeted(norm, eps)
            };
            let (adv, robust) = fab_targeted(&mut m, &x, &labels, &cfg).unwrap();
            let (d, in_box) = distances(&x, &adv, norm);
            assert!(in_box, "{norm:?}: outside [0, 1]");
            let after = m.logits(&adv);
            let (xv, av) = (x.as_vec(), adv.as_vec());
            for i in 0..8 {
                assert!(d[i] <= eps + 1e-9, "{norm:?}: ‖δ‖ = {} > {eps}", d[i]);
                let clean_ok = argmax(&clean[i * K..(i + 1) * K]) == labels[i];
                if !clean_ok {
                    assert!(!robust[i]);
                }
                if robust[i] || !clean_ok {
                    assert_eq!(&av[i * P..(i + 1) * P], &xv[i * P..(i + 1) * P]);
                } else {
                    assert_ne!(argmax(&after[i * K..(i + 1) * K]), labels[i]);
                }
            }
        }
    }
}

#[test]
fn fab_outputs_stay_in_the_ball_and_the_box() {
    stays_in_the_ball::<3>(20);
    stays_in_the_ball::<4>(21);
    stays_in_the_ball::<5>(22);
}

#[test]
fn fab_breaks_most_images_with_a_large_budget() {
    let mut rng = StdRng::seed_from_u64(30);
    let mut m = Linear::<4>::random(&mut rng);
    let x = batch(&mut rng, 16, 0.2, 0.8);
    let l = m.logits(&x);
    let labels: Vec<usize> = (0..16).map(|i| argmax(&l[i * 4..(i + 1) * 4])).collect();
    for norm in [Norm::Linf, Norm::L2] {
        let eps = match norm {
            Norm::Linf => 1.0,
            Norm::L2 => 3.0,
        };
        let (_, robust) =
            fab_targeted(&mut m, &x, &labels, &FabConfig::targeted(norm, eps)).unwrap();
        assert!(robust.iter().all(|r| !r), "{norm:?}: {robust:?}");
    }
}

#[test]
fn fab_rejects_invalid_settings() {
    let mut rng = StdRng::seed_from_u64(40);
    let mut m = Linear::<3>::random(&mut rng);
    let x = batch(&mut rng, 2, 0.0, 1.0);
    let base = FabConfig::targeted(Norm::Linf, 0.1);
    assert!(base.validate().is_ok());
    let bad = [
        FabConfig {
            eps: -0.1,
            ..base.clone()
        },
        FabConfig {
            eps: f64::NAN,
            ..base.clone()
        },
        FabConfig {
            n_iter: 0,
            ..base.clone()
        },
        FabConfig {
            n_restarts: 0,
            ..base.clone()
        },
        FabConfig {
            n_target_classes: 0,
            ..base.clone()
        },
        FabConfig {
            alpha_max: 1.5,
            ..base.clone()
        },
        FabConfig {
            alpha_max: -0.1,
            ..base.clone()
        },
        FabConfig {
            eta: 0.5,
            ..base.clone()
        },
        FabConfig {
            eta: f64::INFINITY,
            ..base.clone()
        },
        FabConfig {
            beta: 0.0,
            ..base.clone()
        },
        FabConfig {
            beta: 1.5,
            ..base.clone()
        },
    ];
    for cfg in bad {
        assert!(
            matches!(cfg.validate(), Err(Error::InvalidParameter { .. })),
            "{cfg:?}"
        );
        assert!(fab_targeted(&mut m, &x, &[0, 1], &cfg).is_err(), "{cfg:?}");
    }
    assert!(fab_targeted(&mut m, &x, &[0], &base).is_err());
    assert!(fab_targeted(&mut m, &x, &[0, 3], &base).is_err());
}

#[test]
fn fab_is_reproducible_with_a_fixed_seed() {
    let mut rng = StdRng::seed_from_u64(50);
    let mut m = Linear::<5>::random(&mut rng);
    let x = batch(&mut rng, 6, 0.0, 1.0);
    let l = m.logits(&x);
    let labels: Vec<usize> = (0..6).map(|i| argmax(&l[i * 5..(i + 1) * 5])).collect();
    for norm in [Norm::Linf, Norm::L2] {
        let eps = match norm {
            Norm::Linf => 0.1,
            Norm::L2 => 0.4,
        };
        let cfg = FabConfig {
            n_iter: 20,
            n_restarts: 3,
            seed: 7,
            ..FabConfig::targeted(norm, eps)
        };
        let (a1, r1) = fab_targeted(&mut m, &x, &labels, &cfg).unwrap();
        let (a2, r2) = fab_targeted(&mut m, &x, &labels, &cfg).unwrap();
        assert_eq!(a1.as_vec(), a2.as_vec());
        assert_eq!(r1, r2);
    }
}
