//! The quick start: builds the paper's CIFAR ResNet-18 and WideResNet-28-10 with the shared
//! PSSiLU activation, runs one forward/backward pass on a batch of images, prints parameter
//! counts and the activation's shape properties, and writes the activation plot.
//!
//! `cargo run --release --example quickstart`
//!
//! The batch is 8 random [0, 1] images with fixed labels: the embedded default dataset
//! (a Fashion-MNIST subset) arrives with the data work (issue 4).

use dfdx::prelude::*;
use robust_paf::activations::shape::properties_of;
use robust_paf::activations::{Activation, Pssilu};
use robust_paf::models::{Classifier, ResNet18, WideResNet28x10};
use robust_paf::notebook::{output_dir, paper_activations, plot_paper_activations, shape_table};

type Dev = Cpu;

fn step<
    M: Classifier<
        Dev,
        Height = Const<32>,
        Width = Const<32>,
        Channels = Const<3>,
        Classes = Const<10>,
    >,
>(
    name: &str,
    model: &mut M,
) {
    let dev = Dev::seed_from_u64(1);
    let x: Tensor<(usize, Const<32>, Const<32>, Const<3>), f32, Dev> =
        dev.sample_uniform_like(&(8, Const, Const, Const));
    let mut labels = vec![0.0f32; 80];
    for i in 0..8 {
        labels[i * 10 + i] = 1.0;
    }
    let y = dev.tensor_from_vec(labels, (8, Const::<10>));
    let t = std::time::Instant::now();
    let grads = model.alloc_grads();
    let logits = model.logits_mut(x.traced(grads));
    let loss = cross_entropy_with_logits_loss(logits, y);
    let l = loss.array();
    let grads = loss.backward();
    let alpha_grad = model.activation().parameters();
    println!(
        "{name}: {} trainable parameters, loss {l:.4}, forward+backward on 8 images in {:.2} s",
        model.num_trainable_params(),
        t.elapsed().as_secs_f64()
    );
    let _ = grads;
    println!("  shared activation parameters {alpha_grad:?}");
}

fn main() -> Result<(), robust_paf::Error> {
    let dev = Dev::seed_from_u64(0);
    let mut resnet = ResNet18::<Pssilu<Dev>, Dev>::new(&dev);
    step("ResNet-18 (PSSiLU)", &mut resnet);
    let mut wrn = WideResNet28x10::<Pssilu<Dev>, Dev>::new(&dev);
    step("WideResNet-28-10 (PSSiLU)", &mut wrn);

    println!("\nShape properties of PSSiLU at its initial values (PAPER.md §1.3):");
    println!("{:#?}", properties_of(resnet.activation()));
    println!(
        "\nAll twelve activations at the paper's initial values:\n{}",
        shape_table(&paper_activations())
    );

    let path = output_dir().join("activations.svg");
    plot_paper_activations()?.save(&path)?;
    println!("wrote {}", path.display());
    Ok(())
}
