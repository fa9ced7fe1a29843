//! The quick start: loads the embedded default data (a class-balanced Fashion-MNIST subset,
//! 28×28 grey padded to 32×32×3, committed to the repository: no download), builds the paper's
//! CIFAR ResNet-18 and WideResNet-28-10 with the shared PSSiLU activation, runs one
//! forward/backward pass on a batch of real images, attacks the batch with the paper's PGD-10,
//! prints parameter counts and the activation's shape properties, and writes the activation plot.
//!
//! `cargo run --release --example quickstart`

use dfdx::prelude::*;
use robust_paf::activations::shape::properties_of;
use std::sync::Arc;

use robust_paf::activations::{Activation, Pssilu};
use robust_paf::attacks::{pgd, PgdConfig};
use robust_paf::data::{FashionMnist, HostBatch, Loader, LoaderConfig};
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
    batch: &HostBatch,
) {
    let dev = Dev::seed_from_u64(1);
    let x = batch.images(&dev);
    let y = batch
        .one_hot::<10, _>(&dev)
        .expect("Fashion-MNIST has 10 classes");
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

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let data = FashionMnist::embedded()?;
    println!(
        "{}: {} images, {} classes, per class {:?}",
        data.train.name,
        data.train.len(),
        data.train.classes,
        data.train.class_counts()
    );
    println!("{}: {} images", data.test.name, data.test.len());
    let test = Loader::new(Arc::new(data.test), LoaderConfig::eval(8))?;
    let batch = test.epoch(0).next().expect("a test batch")?;
    println!("first test batch: labels {:?}\n", batch.labels);

    let dev = Dev::seed_from_u64(0);
    let mut resnet = ResNet18::<Pssilu<Dev>, Dev>::new(&dev);
    step("ResNet-18 (PSSiLU)", &mut resnet, &batch);
    let mut wrn = WideResNet28x10::<Pssilu<Dev>, Dev>::new(&dev);
    step("WideResNet-28-10 (PSSiLU)", &mut wrn, &batch);

    // the paper's PGD-10 (ε 0.031, step 0.0078, unclamped random start) on the untrained ResNet-18
    let x = batch.images(&dev);
    let labels: Vec<usize> = batch.labels.iter().map(|&l| l as usize).collect();
    let adv = pgd(&mut resnet, &x, &labels, &PgdConfig::paper())?;
    let max_delta = x
        .as_vec()
        .iter()
        .zip(adv.as_vec())
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    println!("PGD-10 on the batch: max |δ| = {max_delta:.4} (ε = 0.031)");

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
