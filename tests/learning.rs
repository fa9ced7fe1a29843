//! A small conv net (the crate's own conv, batch norm, PSSiLU, pooling) learns a synthetic task:
//! classify whether a noisy 8×8 single-channel image holds a horizontal or a vertical 3-pixel bar.

#![allow(clippy::type_complexity)]

use dfdx::prelude::*;
use rand::{Rng, SeedableRng};
use robust_paf::activations::{Activation, Pssilu};
use robust_paf::models::{BatchNorm2d, Conv2d};
use robust_paf::ops::{try_global_avg_pool2d, Backend};

type Dev = Cpu;

struct Net {
    conv: Conv2d<1, 8, 3, 1, 1, Dev>,
    bn: BatchNorm2d<8, Dev>,
    act: Pssilu<Dev>,
    fc: dfdx::nn::modules::Linear<8, 2, f32, Dev>,
}

fn batch(
    rng: &mut rand::rngs::StdRng,
    dev: &Dev,
    n: usize,
) -> (
    Tensor<(usize, Const<8>, Const<8>, Const<1>), f32, Dev>,
    Tensor<(usize, Const<2>), f32, Dev>,
) {
    let mut x = vec![0.0f32; n * 64];
    let mut y = vec![0.0f32; n * 2];
    for i in 0..n {
        let right = rng.gen_bool(0.5); // true: vertical bar
        let (r, c) = (rng.gen_range(1..7), rng.gen_range(1..7));
        for d in 0..3 {
            let (rr, cc) = if right {
                (r + d - 1, c)
            } else {
                (r, c + d - 1)
            };
            x[i * 64 + rr * 8 + cc] = 1.0;
        }
        for v in &mut x[i * 64..(i + 1) * 64] {
            *v += rng.gen_range(0.0..0.2);
        }
        y[i * 2 + right as usize] = 1.0;
    }
    (
        dev.tensor_from_vec(x, (n, Const, Const, Const)),
        dev.tensor_from_vec(y, (n, Const)),
    )
}

#[test]
fn small_conv_net_learns() {
    let dev = Dev::seed_from_u64(7);
    let mut net = Net {
        conv: BuildModule::build(&dev),
        bn: BatchNorm2d::try_new(&dev).unwrap(),
        act: Pssilu::new(&dev),
        fc: dev.build_module::<dfdx::nn::builders::Linear<8, 2>, f32>(),
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let lr = 0.1f32;
    let mut last = f32::INFINITY;
    for step in 0..400 {
        let (x, y) = batch(&mut rng, &dev, 32);
        let x = x.leaky_trace();
        let h = net.conv.forward(x);
        let h = net.bn.forward_mut(h);
        let h = Activation::forward(&net.act, h);
        let logits = net.fc.forward(try_global_avg_pool2d(h).unwrap());
        let loss = cross_entropy_with_logits_loss(logits, y);
        let l = loss.array();
        let g = loss.backward();
        fn sgd<S: Shape, D: Backend>(t: &mut Tensor<S, f32, D>, g: &Gradients<f32, D>, lr: f32) {
            let upd = g.get(t) * lr;
            *t = t.clone() - upd;
        }
        sgd(&mut net.conv.weight, &g, lr);
        sgd(&mut net.bn.weight, &g, lr);
        sgd(&mut net.bn.bias, &g, lr);
        sgd(&mut net.fc.weight, &g, lr);
        sgd(&mut net.fc.bias, &g, lr);
        sgd(&mut net.act.alpha, &g, lr);
        if step >= 390 {
            last = last.min(l);
        }
    }
    // chance level is ln 2 = 0.693
    assert!(last < 0.25, "loss after 400 steps: {last}");
    assert!(net.act.validate().is_ok());
}
