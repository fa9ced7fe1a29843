// A 128-channel batch norm after a convolution with 64 output channels.
use dfdx::nn::Module;
use dfdx::shapes::Rank4;
use dfdx::tensor::{Cpu, Tensor, ZerosTensor};
use robust_paf::models::layers::{BatchNorm2d, Conv2d};

fn main() {
    let dev = Cpu::default();
    let conv: Conv2d<3, 64, 3, 1, 1, Cpu> = Conv2d {
        weight: dev.zeros(),
    };
    let bn: BatchNorm2d<128, Cpu> = BatchNorm2d::try_new(&dev).unwrap();
    let x: Tensor<Rank4<1, 32, 32, 3>, f32, Cpu> = dev.zeros();
    let _ = bn.forward(conv.forward(x));
}
