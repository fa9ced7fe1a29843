// A 3-input-channel convolution fed a 16-channel image.
use dfdx::nn::Module;
use dfdx::shapes::Rank4;
use dfdx::tensor::{Cpu, Tensor, ZerosTensor};
use robust_paf::models::layers::Conv2d;

fn main() {
    let dev = Cpu::default();
    let conv: Conv2d<3, 64, 3, 1, 1, Cpu> = Conv2d {
        weight: dev.zeros(),
    };
    let x: Tensor<Rank4<1, 32, 32, 16>, f32, Cpu> = dev.zeros();
    let _ = conv.forward(x);
}
