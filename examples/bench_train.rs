//! What the trainer costs on top of the bare step: images/s of PGD-AT steps called directly on a
//! batch already in memory ([`train_step`]), against a whole epoch through [`train`] (data
//! loading and augmentation on the loader thread, the schedule, metrics, the end-of-epoch
//! checkpoint), and the per-epoch evaluation (clean + PGD-10) timed separately.
//!
//! `cargo run --release --example bench_train -- [--arch wrn-16-1|resnet18|cnn-small] [--act relu|pssilu]
//! [--batch 128] [--images 1024] [--eval 256]`; `ROBUST_PAF_PROFILE=1` adds the time per op.

use std::sync::Arc;
use std::time::Instant;

use dfdx::prelude::*;
use robust_paf::activations::{Pssilu, Relu};
use robust_paf::attacks::host_images;
use robust_paf::data::FashionMnist;
use robust_paf::models::{Classifier, ResNet18, SmallCnn, WideResNet16x1};
use robust_paf::progress::Silent;
use robust_paf::train::run::RunMode;
use robust_paf::train::{
    train, train_step, Sgd, SgdSettings, Start, StepSettings, TrainConfig, TrainData,
};

type Dev = Cpu;

fn arg(args: &[String], flag: &str) -> Option<String> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn bench<M>(cfg: &TrainConfig, data: &TrainData, images: usize)
where
    M: Classifier<Dev, Height = Const<32>, Width = Const<32>, Channels = Const<3>>
        + BuildModule<Dev, f32>,
{
    let dev = Dev::seed_from_u64(cfg.seed);
    let b = cfg.data.batch_size;
    let steps = images / b;
    // the bare step: one batch, already a tensor, `steps` times
    let mut model = M::build(&dev);
    let mut opt = Sgd::new(SgdSettings::default()).unwrap();
    let mut px = vec![0u8; 3072];
    let mut pixels = Vec::with_capacity(b * 3072);
    let mut labels = Vec::with_capacity(b);
    for i in 0..b {
        labels.push(data.train.read(i, &mut px).unwrap() as usize);
        pixels.extend(px.iter().map(|&v| v as f32 / 255.0));
    }
    let x = host_images::<M, Dev>(&dev, pixels, b);
    let settings = StepSettings::default();
    // warm-up step (allocator, thread pool)
    train_step(
        &cfg.trainer,
        &settings,
        &mut model,
        &mut opt,
        &x,
        &labels,
        Start::Seeded(0),
    )
    .unwrap();
    robust_paf::ops::profile::reset();
    let t = Instant::now();
    for s in 0..steps {
        train_step(
            &cfg.trainer,
            &settings,
            &mut model,
            &mut opt,
            &x,
            &labels,
            Start::Seeded(s as u64),
        )
        .unwrap();
    }
    let bare = t.elapsed().as_secs_f64();
    if robust_paf::ops::profile::enabled() {
        for (name, secs, calls) in robust_paf::ops::profile::report() {
            println!(
                "    {name:24} {:8.1} ms/step  {:5} calls/step",
                secs * 1e3 / steps as f64,
                calls as usize / steps
            );
        }
    }
    // a whole epoch through the trainer
    let dir = std::env::temp_dir().join(format!("robust-paf-bench-train-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let model = M::build(&dev);
    let t = Instant::now();
    let run = train(cfg, model, &dev, data, &dir, RunMode::Fresh, &mut Silent).unwrap();
    let total = t.elapsed().as_secs_f64();
    let records = robust_paf::train::run::read_metrics(&dir).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let r = &records[0];
    // the epoch's wall time without its evaluation: loader, steps, bookkeeping, checkpoint
    let train_secs = total - r.eval_seconds;
    let n = (steps * b) as f64;
    println!(
        "{:28} B={b} {steps} steps: bare step {:7.2} img/s | through the trainer {:7.2} img/s \
         ({:+.1}% time) | + evaluation of {} images (clean + PGD-{}) {:.1} s: {:7.2} img/s overall",
        run.summary.architecture,
        n / bare,
        n / train_secs,
        100.0 * (train_secs / bare - 1.0),
        r.test_examples,
        cfg.eval.pgd_steps,
        r.eval_seconds,
        n / total,
    );
}

fn number(args: &[String], flag: &str, default: usize) -> Result<usize, String> {
    match arg(args, flag) {
        None => Ok(default),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("{flag} {v}: expected a positive whole number")),
        },
    }
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let arch = arg(&args, "--arch").unwrap_or_else(|| "wrn-16-1".into());
    let act = arg(&args, "--act").unwrap_or_else(|| "pssilu".into());
    if !["wrn-16-1", "resnet18", "cnn-small"].contains(&arch.as_str()) {
        return Err(format!(
            "--arch {arch}: expected wrn-16-1, resnet18 or cnn-small"
        ));
    }
    let act_name = match act.as_str() {
        "relu" => "relu",
        "pssilu" => "pssilu2",
        _ => return Err(format!("--act {act}: expected relu or pssilu")),
    };
    let batch = number(&args, "--batch", 128)?;
    let images = number(&args, "--images", 1024)?;
    let eval = number(&args, "--eval", 256)?;
    let f = FashionMnist::embedded().map_err(|e| e.to_string())?;
    let used = (images / batch) * batch;
    if used == 0 || used > f.train.len() {
        return Err(format!(
            "--images {images} with --batch {batch}: between one batch and the {} embedded \
             training images",
            f.train.len()
        ));
    }
    let cfg = TrainConfig::preset(
        "quick-pgd-at",
        &[
            format!("model.arch=\"{arch}\""),
            format!("model.activation=\"{act_name}\""),
            "optim.epochs=1".into(),
            format!("data.batch_size={batch}"),
            format!("data.train_subset={used}"),
            format!("eval.n_examples={eval}"),
            format!("eval.batch_size={batch}"),
        ],
    )
    .map_err(|e| e.to_string())?;
    let data = TrainData {
        train: Arc::new(
            f.train
                .select("bench", &(0..used).collect::<Vec<_>>())
                .map_err(|e| e.to_string())?,
        ),
        synthetic: None,
        test: f.test,
        description: "Fashion-MNIST subset".into(),
    };
    println!(
        "robust-paf trainer benchmark: PGD-AT (10 steps), {} rayon threads",
        rayon::current_num_threads()
    );
    match (arch.as_str(), act.as_str()) {
        ("resnet18", "relu") => bench::<ResNet18<Relu<Dev>, Dev>>(&cfg, &data, used),
        ("resnet18", _) => bench::<ResNet18<Pssilu<Dev>, Dev>>(&cfg, &data, used),
        ("cnn-small", "relu") => bench::<SmallCnn<Relu<Dev>, Dev>>(&cfg, &data, used),
        ("cnn-small", _) => bench::<SmallCnn<Pssilu<Dev>, Dev>>(&cfg, &data, used),
        (_, "relu") => bench::<WideResNet16x1<Relu<Dev>, Dev>>(&cfg, &data, used),
        _ => bench::<WideResNet16x1<Pssilu<Dev>, Dev>>(&cfg, &data, used),
    }
    Ok(())
}
