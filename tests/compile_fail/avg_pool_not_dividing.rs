// 8×8 average pooling (stride 8) on a 12×12 map: 8 does not divide 12.
use dfdx::shapes::Rank4;
use dfdx::tensor::{Cpu, Tensor, ZerosTensor};
use robust_paf::ops::*;

fn main() {
    let dev = Cpu::default();
    let x: Tensor<Rank4<1, 12, 12, 4>, f32, Cpu> = dev.zeros();
    let _ = try_avg_pool2d::<8, _, _, _, 4, _, _>(x);
}
