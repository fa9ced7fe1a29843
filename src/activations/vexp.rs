//! A branch-free `exp` for `f32` that the compiler vectorises, for the logistic sigmoid of the
//! SiLU family (SiLU, PSiLU, PSSiLU, fixed-β PSSiLU; PSoftplus's derivative) in the CPU kernels
//! (issue 11: the fused batch norm + PSSiLU spent most of its time in scalar `expf` calls, which
//! keep a loop from being vectorised).
//!
//! The method is Cephes' `expf` (S. Moshier): `x = n·ln 2 + r` with `n = round(x / ln 2)` and
//! `|r| ≤ ln 2 / 2` (ln 2 split in two constants so that `n·ln 2` is exact), `e^r` by a degree-6
//! polynomial, and `2ⁿ` assembled from its exponent bits. The rounding uses the `1.5·2²³` trick
//! instead of a float-to-int conversion, so every step is plain arithmetic. Relative error at
//! most 2 ulp over the whole range (checked against `f64::exp` in the tests below); NaN gives
//! NaN, `x ≤ −87.34` gives `≈ 2⁻¹²⁶` (about the smallest normal number; the sigmoid's `1/(1 + e)` and
//! `e/(1 + e)` are then `1` and `≈ 0` as with the exact value) and `x ≥ 88` gives
//! `e⁸⁸ ≈ 1.7·10³⁸` instead of `∞` (the sigmoids only take `exp` of non-positive numbers).
//!
//! Hand-written rather than a crate: `libm`'s and `std`'s `expf` are scalar calls, and SIMD
//! math crates (`sleef`, `wide`) bring their own vector types the generic `Real` code cannot use.

const LOG2E: f32 = std::f32::consts::LOG2_E;
/// ln 2 = LN2_HI + LN2_LO; LN2_HI is 0.693359375 = 355/512 (few mantissa bits: n·LN2_HI exact).
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Adding and subtracting 1.5·2²³ rounds a float of magnitude < 2²² to the nearest integer.
const ROUND: f32 = 12_582_912.0;
const LO: f32 = -87.336_55;
/// Below ln(f32::MAX) so that 2ⁿ stays a normal number (n ≤ 127).
const HI: f32 = 88.0;
/// Cephes' minimax coefficients of (e^r − 1 − r)/r² on [−ln 2 / 2, ln 2 / 2].
const P: [f32; 6] = [
    1.987_569_2e-4,
    1.398_199_9e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    1.666_666_5e-1,
    0.5,
];

/// e^x (see the module docs for the range and the accuracy).
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    let c = x.clamp(LO, HI);
    let t = c * LOG2E + ROUND;
    let n = t - ROUND;
    // the integer n from the bits of t: t = 1.5·2²³ + n exactly
    let ni = (t.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let r = (c - n * LN2_HI) - n * LN2_LO;
    let mut p = P[0];
    for &k in &P[1..] {
        p = p * r + k;
    }
    let er = (p * (r * r) + r) + 1.0;
    let scale = f32::from_bits(((ni + 127) as u32) << 23);
    let y = er * scale;
    // x ≠ x: NaN (clamp has turned it into a number)
    if x.is_nan() {
        x
    } else {
        y
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f32, b: f64) -> f64 {
        let ulp = (b.abs() as f32).max(f32::MIN_POSITIVE);
        let ulp = f32::from_bits(ulp.to_bits() + 1) - ulp;
        ((a as f64) - b).abs() / ulp as f64
    }

    #[test]
    fn within_two_ulp_of_the_exact_value_over_the_whole_range() {
        let mut worst: f64 = 0.0;
        let n = 400_000;
        for i in 0..=n {
            let x = LO + (HI - LO) * i as f32 / n as f32;
            let e = ulps(exp(x), (x as f64).exp());
            worst = worst.max(e);
            assert!(
                e <= 2.0,
                "exp({x}) = {} against {}: {e} ulp",
                exp(x),
                (x as f64).exp()
            );
        }
        // and the sigmoid's range around 0, densely
        for i in 0..=100_000 {
            let x = -20.0 * i as f32 / 100_000.0;
            assert!(ulps(exp(x), (x as f64).exp()) <= 2.0, "exp({x})");
        }
        assert!(worst > 0.0, "the test compares something");
    }

    #[test]
    fn special_values() {
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-0.0), 1.0);
        assert!(exp(f32::NAN).is_nan());
        for x in [f32::NEG_INFINITY, -1000.0, -88.0] {
            assert!(exp(x) > 0.0 && exp(x) <= 1.2e-38, "exp({x}) = {}", exp(x));
        }
        assert!(exp(1000.0) > 1.6e38 && exp(1000.0).is_finite());
        assert!((exp(1.0) - std::f32::consts::E).abs() <= f32::EPSILON * 3.0);
    }
}
