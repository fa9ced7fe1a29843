//! 3×3, stride-1, padding-1 convolutions on the CPU without im2col (issue 11): nine shifted
//! gemms on a zero-padded copy of each image ("implicit GEMM" on the padded-width grid).
//!
//! An image is copied once into a buffer with a one-pixel zero border, `(h + 2) × (w + 2)`
//! pixels (`W2 = w + 2` per row) plus two zero pixels of slack. On the *padded-width grid*
//! `q = oh·W2 + ow` (`ow < W2`; the two columns `ow ≥ w` are scratch) the output of tap
//! `(kh, kw)` reads the padded input at `q + kh·W2 + kw`, so for each tap the input rows form
//! one strided matrix (row stride `c_in`) and the convolution is
//! `Y = Σ_taps Xp[shift(tap)] · W_tapᵀ`, nine gemms with `k = c_in` accumulating into one
//! `h·W2 × c_out` buffer whose valid rows are then copied out. Against im2col this saves the
//! nine-fold copy of the input (gemm packs its operand either way) at the price of computing the
//! two scratch columns: `(w + 2) / w` of the arithmetic, 6 % at 32×32, 12.5 % at 16×16, 25 % at
//! 8×8 ([`use_implicit`] picks the layers where it pays).
//!
//! The backward pass uses the same grid. The output gradient is copied into a padded buffer
//! `Gp` (same layout as `Xp`, border and slack zero): read at offset `W2 + 1` it is the output
//! gradient on the padded-width grid with zeros in the scratch columns, so the weight gradient
//! of each tap is `gW_tap += Gp[W2+1..]ᵀ · Xp[shift(tap)]` (`k = h·W2`, the scratch rows add
//! zero), and the input gradient is the forward convolution of `Gp` with the flipped, transposed
//! kernel: `gX = Σ_taps Gp[shift(tap)] · W_flip(tap)` (`k = c_out`), valid rows added to `gX`.
//! The arithmetic is the same sums in a different order: results agree with im2col to float
//! rounding (tests below compare both with a direct f64 convolution).

use rayon::prelude::*;

use super::conv::{matmul, Blocking};
use crate::ops::{ConvAlgorithm, ConvGeometry, Elem};

/// Fewest input channels for the implicit path: with few channels (the RGB stem) each gemm's
/// `k` is too small to be efficient and im2col's copy is cheap.
const MIN_CHANNELS: usize = 16;
/// Narrowest image for the implicit path. Measured on 2 cores at B=32
/// (`examples/bench_conv.rs`, `BENCHMARKS.md`): 32×32×64 forward 0.95x, backward 0.82x the time
/// of im2col; 16×16×128 even (1.02x, 0.97x); 8×8×256 slower (1.56x, 1.25x), where the scratch
/// columns and the small per-image gemms cost more than the copy they save.
const MIN_WIDTH: usize = 32;

/// Whether `g` takes the implicit path: with [`ConvAlgorithm::Auto`] (the default) 3×3,
/// stride 1, padding 1, at least [`MIN_CHANNELS`] in and out and [`MIN_WIDTH`] wide;
/// [`ConvAlgorithm::Implicit`] drops the size thresholds, [`ConvAlgorithm::Im2col`] never.
pub(crate) fn use_implicit(g: &ConvGeometry) -> bool {
    let fits = g.k == 3 && g.stride == 1 && g.pad == 1 && g.ho == g.h && g.wo == g.w;
    match crate::ops::conv_algorithm() {
        ConvAlgorithm::Im2col => false,
        ConvAlgorithm::Implicit => fits,
        ConvAlgorithm::Auto => fits && applies(g),
    }
}

fn applies(g: &ConvGeometry) -> bool {
    g.k == 3
        && g.stride == 1
        && g.pad == 1
        && g.ho == g.h
        && g.wo == g.w
        && g.c_in >= MIN_CHANNELS
        && g.c_out >= MIN_CHANNELS
        && g.w >= MIN_WIDTH
}

/// Row stride (pixels) of the padded grid, pixels of one padded image (slack included), and rows
/// of the padded-width output grid.
fn grid(g: &ConvGeometry) -> (usize, usize, usize) {
    let w2 = g.w + 2;
    (w2, (g.h + 2) * w2 + 2, g.h * w2)
}

/// Copies image `img` (`h × w × c`, NHWC) into the interior of the padded buffer `dst`, whose
/// border and slack are zero and stay zero.
fn pad_into(g: &ConvGeometry, c: usize, img: &[Elem], dst: &mut [Elem]) {
    let w2 = g.w + 2;
    for (i, row) in img.chunks_exact(g.w * c).enumerate() {
        let d = ((i + 1) * w2 + 1) * c;
        dst[d..d + g.w * c].copy_from_slice(row);
    }
}

/// `acc[q] = Σ_taps src[q + kh·W2 + kw] · rhs(tap)` on the padded-width grid (`rows` rows of
/// `n` values), where `src` is a padded image of `k` channels and `rhs(tap)` the `k × n` matrix
/// at `rhs[tap_offset(tap)..]` with strides `(rhs_rs, rhs_cs)`.
#[allow(clippy::too_many_arguments)]
fn nine_taps(
    par: gemm::Parallelism,
    w2: usize,
    rows: usize,
    k: usize,
    n: usize,
    src: &[Elem],
    rhs: &[Elem],
    tap_offset: impl Fn(usize, usize) -> usize,
    rhs_rs: isize,
    rhs_cs: isize,
    acc: &mut [Elem],
) {
    for kh in 0..3 {
        for kw in 0..3 {
            let s = (kh * w2 + kw) * k;
            matmul(
                par,
                rows,
                n,
                k,
                acc,
                n as isize,
                1,
                kh + kw > 0,
                &src[s..],
                k as isize,
                1,
                &rhs[tap_offset(kh, kw)..],
                rhs_rs,
                rhs_cs,
            );
        }
    }
}

/// `y = conv(x, w) + b` for a geometry where [`applies`] holds.
pub(crate) fn forward(
    g: &ConvGeometry,
    blk: Blocking,
    x: &[Elem],
    w: &[Elem],
    b: Option<&[Elem]>,
    y: &mut [Elem],
) {
    let (ci, co) = (g.c_in, g.c_out);
    let (w2, padded, rows) = grid(g);
    let (in_img, out_img) = (g.h * g.w * ci, g.h * g.w * co);
    let par = blk.parallelism();
    blk.split(g, out_img, y)
        .into_par_iter()
        .for_each(|(b_first, y_task)| {
            let mut xp = vec![0.0; padded * ci];
            let mut acc = vec![0.0; rows * co];
            for (i, y_img) in y_task.chunks_exact_mut(out_img).enumerate() {
                let img = b_first + i;
                pad_into(g, ci, &x[img * in_img..(img + 1) * in_img], &mut xp);
                // rhs(tap)[c][o] = w[o][kh][kw][c]
                nine_taps(
                    par,
                    w2,
                    rows,
                    ci,
                    co,
                    &xp,
                    w,
                    |kh, kw| (kh * 3 + kw) * ci,
                    1,
                    (9 * ci) as isize,
                    &mut acc,
                );
                for (oh, y_row) in y_img.chunks_exact_mut(g.w * co).enumerate() {
                    y_row.copy_from_slice(&acc[oh * w2 * co..(oh * w2 + g.w) * co]);
                    if let Some(b) = b {
                        for px in y_row.chunks_exact_mut(co) {
                            px.iter_mut().zip(b).for_each(|(y, b)| *y += b);
                        }
                    }
                }
            }
        });
}

/// Accumulates the input, weight and bias gradients for a geometry where [`applies`] holds.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward(
    g: &ConvGeometry,
    blk: Blocking,
    x: &[Elem],
    w: &[Elem],
    gy: &[Elem],
    gx: Option<&mut [Elem]>,
    gw: Option<&mut [Elem]>,
    gb: Option<&mut [Elem]>,
) {
    let (ci, co) = (g.c_in, g.c_out);
    let (w2, padded, rows) = grid(g);
    let (in_img, out_img) = (g.h * g.w * ci, g.h * g.w * co);
    let par = blk.parallelism();
    let want_gw = gw.is_some();
    let want_gb = gb.is_some();
    let want_gx = gx.is_some();
    let tasks = blk.backward_tasks(g, gx);
    let partial: Vec<(Vec<Elem>, Vec<f64>)> = tasks
        .into_par_iter()
        .map(|(b_first, nimg, mut gx_task)| {
            let mut gw_task = vec![0.0; if want_gw { co * 9 * ci } else { 0 }];
            let mut gb_task = vec![0.0f64; if want_gb { co } else { 0 }];
            let mut gp = vec![0.0; padded * co];
            let mut xp = vec![0.0; if want_gw { padded * ci } else { 0 }];
            let mut acc = vec![0.0; if want_gx { rows * ci } else { 0 }];
            for i in 0..nimg {
                let img = b_first + i;
                let gy_img = &gy[img * out_img..(img + 1) * out_img];
                if want_gb {
                    for px in gy_img.chunks_exact(co) {
                        gb_task
                            .iter_mut()
                            .zip(px)
                            .for_each(|(s, v)| *s += *v as f64);
                    }
                }
                pad_into(g, co, gy_img, &mut gp);
                if want_gw {
                    pad_into(g, ci, &x[img * in_img..(img + 1) * in_img], &mut xp);
                    let gy_grid = &gp[(w2 + 1) * co..];
                    for kh in 0..3 {
                        for kw in 0..3 {
                            let s = (kh * w2 + kw) * ci;
                            // gw[o][kh][kw][c] += Σ_q gy_grid[q][o] · xp[q + shift][c]
                            matmul(
                                par,
                                co,
                                ci,
                                rows,
                                &mut gw_task[(kh * 3 + kw) * ci..],
                                (9 * ci) as isize,
                                1,
                                true,
                                gy_grid,
                                1,
                                co as isize,
                                &xp[s..],
                                ci as isize,
                                1,
                            );
                        }
                    }
                }
                if let Some(gx_task) = gx_task.as_deref_mut() {
                    // the flipped kernel: rhs(tap)[o][c] = w[o][2 - kh][2 - kw][c]
                    nine_taps(
                        par,
                        w2,
                        rows,
                        co,
                        ci,
                        &gp,
                        w,
                        |kh, kw| ((2 - kh) * 3 + (2 - kw)) * ci,
                        (9 * ci) as isize,
                        1,
                        &mut acc,
                    );
                    let gx_img = &mut gx_task[i * in_img..(i + 1) * in_img];
                    for (ih, gx_row) in gx_img.chunks_exact_mut(g.w * ci).enumerate() {
                        gx_row
                            .iter_mut()
                            .zip(&acc[ih * w2 * ci..(ih * w2 + g.w) * ci])
                            .for_each(|(a, v)| *a += v);
                    }
                }
            }
            (gw_task, gb_task)
        })
        .collect();
    super::conv::add_partials(gw, gb, &partial);
}

#[cfg(test)]
mod tests {
    //! The implicit path against im2col (itself checked against a direct f64 convolution in
    //! `conv.rs`, which also runs a geometry [`applies`] takes through the dispatch) on small
    //! geometries, every way of cutting the batch into tasks.
    use super::*;
    use rand::{Rng, SeedableRng};

    fn close(name: &str, got: &[Elem], want: &[Elem]) {
        assert_eq!(got.len(), want.len(), "{name}");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                "{name}[{i}]: {g} vs {w}"
            );
        }
    }

    #[test]
    fn implicit_matches_im2col() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        // (batch, h, w, c_in, c_out): square, non-square, one image, more tasks than images
        for (batch, h, w, ci, co) in [
            (3, 8, 8, 16, 16),
            (2, 9, 12, 16, 24),
            (1, 8, 8, 32, 16),
            (4, 10, 8, 16, 17),
        ] {
            let g = ConvGeometry {
                batch,
                h,
                w,
                c_in: ci,
                ho: h,
                wo: w,
                c_out: co,
                k: 3,
                stride: 1,
                pad: 1,
            };
            assert!(
                g.k == 3 && g.stride == 1 && g.pad == 1 && g.w == g.wo,
                "{g:?}"
            );
            let mut r =
                |n: usize| -> Vec<Elem> { (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect() };
            let (x, wt, bias, gy) = (
                r(batch * h * w * ci),
                r(co * 9 * ci),
                r(co),
                r(batch * h * w * co),
            );
            let mut y_ref = vec![0.0; g.rows() * co];
            let mut gx_ref = vec![1.0; x.len()];
            let mut gw_ref = vec![1.0; wt.len()];
            let mut gb_ref = vec![1.0; co];
            let im2col = Blocking {
                tasks: 1,
                rows: 1 << 20,
            };
            super::super::conv::conv_forward_blocked_im2col(
                &g,
                im2col,
                &x,
                &wt,
                Some(&bias),
                &mut y_ref,
            );
            super::super::conv::conv_backward_blocked_im2col(
                &g,
                im2col,
                &x,
                &wt,
                &gy,
                Some(&mut gx_ref),
                Some(&mut gw_ref),
                Some(&mut gb_ref),
            );
            for tasks in 1..=3 {
                let blk = Blocking {
                    tasks: tasks.min(batch),
                    rows: 1 << 20,
                };
                let what = format!("{g:?} {blk:?}");
                let mut y = vec![0.0; g.rows() * co];
                forward(&g, blk, &x, &wt, Some(&bias), &mut y);
                close(&format!("y {what}"), &y, &y_ref);
                let mut gx = vec![1.0; x.len()];
                let mut gw = vec![1.0; wt.len()];
                let mut gb = vec![1.0; co];
                backward(
                    &g,
                    blk,
                    &x,
                    &wt,
                    &gy,
                    Some(&mut gx),
                    Some(&mut gw),
                    Some(&mut gb),
                );
                close(&format!("gx {what}"), &gx, &gx_ref);
                close(&format!("gw {what}"), &gw, &gw_ref);
                close(&format!("gb {what}"), &gb, &gb_ref);
                // input gradient only (attacks), and weight gradient only
                let mut gx2 = vec![1.0; x.len()];
                backward(&g, blk, &x, &wt, &gy, Some(&mut gx2), None, None);
                close(&format!("gx only {what}"), &gx2, &gx_ref);
                let mut gw2 = vec![1.0; wt.len()];
                backward(&g, blk, &x, &wt, &gy, None, Some(&mut gw2), None);
                close(&format!("gw only {what}"), &gw2, &gw_ref);
            }
        }
    }
}
