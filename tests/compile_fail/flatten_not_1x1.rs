// Flatten of a 2×2 map (only 1×1 maps flatten: NHWC and NCHW orders differ otherwise).
use dfdx::shapes::Rank4;
use dfdx::tensor::{Cpu, Tensor, ZerosTensor};
use robust_paf::ops::*;

fn main() {
    let dev = Cpu::default();
    let x: Tensor<Rank4<1, 2, 2, 4>, f32, Cpu> = dev.zeros();
    let _ = try_flatten(x);
}
