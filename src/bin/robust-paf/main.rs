//! `robust-paf`: train, evaluate and sweep the paper's models from the command line.
//!
//! ```text
//! robust-paf train --preset quick-pgd-at --set model.activation=relu --out out/relu
//! robust-paf train --resume out/relu
//! robust-paf eval --checkpoint out/relu/best.safetensors --autoattack fast
//! robust-paf shape-metrics out/shape-standard --n-examples 1000
//! robust-paf sweep --config sweep.toml --shard 0/4
//! robust-paf collect out/shape-prelu
//! robust-paf presets
//! robust-paf import --from model_best.pth.tar --arch wrn-28-10 --activation pssilu2 --out out/imported
//! robust-paf export --checkpoint out/relu/best.safetensors --out relu.safetensors
//! ```
//!
//! Errors print one line (`error: ...`) and exit with status 1; usage errors exit with 2.

mod interop_cmd;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::rc::Rc;

use interop_cmd::{cmd_export, cmd_import, CliError, ExportArgs, ImportArgs};

use clap::{Args, Parser, Subcommand, ValueEnum};
use dfdx::tensor::Cpu;

use robust_paf::eval::{AaVersion, Epsilon, EvalConfig};
use robust_paf::progress::{self, Progress, Silent};
use robust_paf::train::assess::{checkpoint_test_set, SHAPE_METRICS_FILE};
use robust_paf::train::checkpoint::read_checkpoint;
use robust_paf::train::collective::from_environment;
use robust_paf::train::config::{preset_or_error, PRESETS};
use robust_paf::train::parallel::{receive_from_root, send_to_ranks};
use robust_paf::train::run::{read_summary, RunMode};
use robust_paf::train::sweep::{collect, to_csv, to_markdown, Shard, SweepConfig};
use robust_paf::train::{
    evaluate_checkpoint, load_data, run_shape_metrics, train_named_parallel, Collective,
    ShapeMetricsConfig, Single, TrainConfig, TrainData, TrainError,
};

#[derive(Parser)]
#[command(
    name = "robust-paf",
    version,
    about = "Train and evaluate the models of Dai, Mahloujifar & Mittal, \"Parameterizing \
             Activation Functions for Adversarial Robustness\" (arXiv 2110.05626)",
    long_about = "Train and evaluate the models of Dai, Mahloujifar & Mittal, \"Parameterizing \
                  Activation Functions for Adversarial Robustness\" (arXiv 2110.05626): standard \
                  training, PGD-AT and TRADES exactly as the paper's code, checkpoints that \
                  survive kill -9, per-epoch PGD evaluation, AutoAttack, and sweeps for Slurm \
                  arrays. Configurations are TOML files; `robust-paf presets` lists the \
                  experiments of the paper."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train one model (a new run, or --resume one)
    Train(TrainArgs),
    /// Evaluate a checkpoint: clean accuracy, PGD, optionally AutoAttack
    Eval(EvalArgs),
    /// The shape ablation's metrics of finished runs (average minimal radius, Square success
    /// rate, empirical Lipschitz), written to RUN/shape_metrics.json
    ShapeMetrics(ShapeMetricsArgs),
    /// Run a grid of trainings, or one deterministic share of it (Slurm arrays)
    Sweep(SweepArgs),
    /// Gather the summaries of finished runs under a folder into a table (CSV and Markdown)
    Collect(CollectArgs),
    /// List the presets (or print one as TOML)
    Presets(PresetsArgs),
    /// Import a PyTorch checkpoint (the official code's, RobustBench's) as a crate checkpoint
    Import(ImportArgs),
    /// Export a crate checkpoint as a safetensors state_dict with PyTorch's keys and layouts
    Export(ExportArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum DeviceArg {
    Cpu,
    /// an NVIDIA GPU (builds with `--features cuda` only)
    Cuda,
}

#[derive(Args)]
struct TrainArgs {
    /// A TOML configuration file
    #[arg(long, conflicts_with_all = ["preset", "resume"])]
    config: Option<PathBuf>,
    /// A preset (see `robust-paf presets`)
    #[arg(long, conflicts_with = "resume")]
    preset: Option<String>,
    /// Override a field: --set optim.epochs=10 --set model.activation=relu (repeatable)
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Run directory (default: out/<name>)
    #[arg(long, conflicts_with = "resume")]
    out: Option<PathBuf>,
    /// Continue the run in this directory, with its own config.toml
    #[arg(long, value_name = "DIR")]
    resume: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "cpu")]
    device: DeviceArg,
    /// No progress output
    #[arg(long)]
    quiet: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum AaArg {
    /// APGD-CE, APGD-T, FAB-T, Square (what the paper and RobustBench report)
    Standard,
    /// APGD-CE and APGD-T only (NOT the standard protocol)
    Fast,
}

#[derive(Args)]
struct EvalArgs {
    /// A checkpoint written by `robust-paf train` (best.safetensors, last.safetensors) or
    /// `robust-paf import`
    #[arg(long)]
    checkpoint: PathBuf,
    /// Also run AutoAttack
    #[arg(long, value_enum)]
    autoattack: Option<AaArg>,
    /// ε as a decimal or a fraction: 0.031 (the paper's code), 8/255 (RobustBench); default:
    /// the training configuration's
    #[arg(long)]
    eps: Option<String>,
    /// PGD steps (0: no PGD)
    #[arg(long, default_value_t = 10)]
    pgd_steps: usize,
    /// Evaluate the first N test images only
    #[arg(long)]
    n_examples: Option<usize>,
    #[arg(long, default_value_t = 256)]
    batch_size: usize,
    /// Folder of the dataset (default: the training configuration's)
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Where to write the JSON report (default: <checkpoint>.eval.json)
    #[arg(long)]
    out: Option<PathBuf>,
    /// AutoAttack's state file, saved after every attack: the same command run again after an
    /// interruption continues after the last finished attack (use a new file for another
    /// checkpoint: the state does not identify the weights)
    #[arg(long)]
    state: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, value_enum, default_value = "cpu")]
    device: DeviceArg,
}

#[derive(Args)]
struct ShapeMetricsArgs {
    /// Run directories (each with best.safetensors), or folders of runs (searched for
    /// summary.json, e.g. a sweep's folder)
    #[arg(required = true)]
    runs: Vec<PathBuf>,
    /// Evaluate the first N test images only (default: all, as the paper)
    #[arg(long)]
    n_examples: Option<usize>,
    /// Square attack queries per image (the official eval_std.py: 1000)
    #[arg(long, default_value_t = 1000)]
    queries: usize,
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    #[arg(long, value_enum, default_value = "cpu")]
    device: DeviceArg,
}

#[derive(Args)]
struct SweepArgs {
    /// The sweep file (TOML: name, base, activations, fix_alpha, fix_beta, seeds, trainers)
    #[arg(long)]
    config: PathBuf,
    /// Run share I of N (0 <= I < N); default: SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT, else
    /// every run
    #[arg(long, value_name = "I/N")]
    shard: Option<String>,
    /// Folder of the sweep's runs: OUT/<sweep name>/<run id>
    #[arg(long, default_value = "out")]
    out: PathBuf,
    /// Override a field of every run (repeatable)
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// List the runs of the shard and exit
    #[arg(long)]
    dry_run: bool,
    #[arg(long, value_enum, default_value = "cpu")]
    device: DeviceArg,
    #[arg(long)]
    quiet: bool,
}

#[derive(Args)]
struct CollectArgs {
    /// A folder holding run directories (searched recursively for summary.json)
    dir: PathBuf,
    /// CSV output (default: DIR/results.csv)
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Markdown output (default: DIR/results.md)
    #[arg(long)]
    markdown: Option<PathBuf>,
}

#[derive(Args)]
struct PresetsArgs {
    /// Print this preset's TOML
    #[arg(long)]
    show: Option<String>,
}

fn device_error(what: &str) -> TrainError {
    TrainError::Model(robust_paf::Error::Device(what.to_string()))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Train(a) => Ok(cmd_train(a)?),
        Command::Eval(a) => Ok(cmd_eval(a)?),
        Command::ShapeMetrics(a) => Ok(cmd_shape_metrics(a)?),
        Command::Sweep(a) => Ok(cmd_sweep(a)?),
        Command::Collect(a) => Ok(cmd_collect(a)?),
        Command::Presets(a) => Ok(cmd_presets(a)?),
        Command::Import(a) => cmd_import(a),
        Command::Export(a) => cmd_export(a),
    }
}

fn train_on(
    device: DeviceArg,
    cfg: &TrainConfig,
    data: &TrainData,
    dir: &Path,
    mode: RunMode,
    progress: &mut dyn Progress,
) -> Result<robust_paf::train::RunSummary, TrainError> {
    train_on_ranks(device, cfg, data, dir, mode, progress, Rc::new(Single))
}

/// [`train_on`] as one rank of `comm` (data-parallel under mpirun/srun).
fn train_on_ranks(
    device: DeviceArg,
    cfg: &TrainConfig,
    data: &TrainData,
    dir: &Path,
    mode: RunMode,
    progress: &mut dyn Progress,
    comm: Rc<dyn Collective>,
) -> Result<robust_paf::train::RunSummary, TrainError> {
    match device {
        DeviceArg::Cpu => train_named_parallel(
            Cpu::seed_from_u64(cfg.seed),
            cfg,
            data,
            dir,
            mode,
            progress,
            comm,
        ),
        DeviceArg::Cuda => {
            #[cfg(feature = "cuda")]
            {
                let dev = dfdx::tensor::Cuda::try_seed_from_u64(cfg.seed)
                    .map_err(|e| device_error(&format!("CUDA: {e:?}")))?;
                train_named_parallel(dev, cfg, data, dir, mode, progress, comm)
            }
            #[cfg(not(feature = "cuda"))]
            {
                let _ = (data, dir, mode, progress, comm);
                Err(device_error(
                    "this build has no CUDA support (rebuild with --features cuda)",
                ))
            }
        }
    }
}

/// The configuration, run directory and mode `robust-paf train`'s arguments name.
fn train_job(a: &TrainArgs) -> Result<(TrainConfig, PathBuf, RunMode), TrainError> {
    Ok(if let Some(dir) = &a.resume {
        let path = dir.join(robust_paf::train::run::CONFIG_FILE);
        if !path.is_file() {
            return Err(TrainError::RunDir {
                path: dir.clone(),
                reason: "holds no config.toml: not a run directory".into(),
            });
        }
        let cfg = TrainConfig::from_file_with(&path, &a.set)?;
        (cfg, dir.clone(), RunMode::Resume)
    } else {
        let cfg = match (&a.config, &a.preset) {
            (Some(p), _) => TrainConfig::from_file_with(p, &a.set)?,
            (None, Some(name)) => TrainConfig::preset(name, &a.set)?,
            (None, None) => {
                return Err(TrainError::Config {
                    field: "--config / --preset".into(),
                    value: "none".into(),
                    reason: "give a configuration file, a preset or --resume DIR".into(),
                })
            }
        };
        let dir = a
            .out
            .clone()
            .unwrap_or_else(|| PathBuf::from("out").join(&cfg.name));
        (cfg, dir, RunMode::Fresh)
    })
}

fn cmd_train(a: TrainArgs) -> Result<(), TrainError> {
    let collective = |e: String| TrainError::Model(robust_paf::Error::Collective(e));
    // one rank of several when launched by mpirun/srun (--features mpi), else one process
    let comm = from_environment().map_err(collective)?;
    let result = train_ranks(a, &comm);
    if let (Err(e), true) = (&result, comm.size() > 1) {
        // the other ranks may wait for this one: end the whole job (MPI_Abort), after the line
        eprintln!("error: rank {} of {}: {e}", comm.rank(), comm.size());
        comm.abort(1);
    }
    result
}

/// `robust-paf train` as one rank of `comm`.
fn train_ranks(a: TrainArgs, comm: &Rc<dyn Collective>) -> Result<(), TrainError> {
    let root = comm.rank() == 0;
    // rank 0 reads the configuration (the run directory may be on its machine only) and sends it
    let (cfg, dir, mode) = if root {
        let job = train_job(&a);
        let sent = job
            .as_ref()
            .map(|(cfg, dir, mode)| (cfg.to_toml(), dir, *mode == RunMode::Resume));
        send_to_ranks(&**comm, &sent)?;
        job?
    } else {
        let (text, dir, resume): (String, PathBuf, bool) = receive_from_root(&**comm)?;
        let cfg = TrainConfig::from_toml(&text, "rank 0's configuration")?;
        let mode = if resume {
            RunMode::Resume
        } else {
            RunMode::Fresh
        };
        (cfg, dir, mode)
    };
    // rank 0 reads (and downloads) the data first, then the others
    let data = if root { Some(load_data(&cfg)) } else { None };
    comm.barrier()?;
    let data = match data {
        Some(d) => d?,
        None => load_data(&cfg)?,
    };
    let mut p: Box<dyn Progress> = if a.quiet || !root {
        Box::new(Silent)
    } else {
        progress::auto_training()
    };
    let s = train_on_ranks(a.device, &cfg, &data, &dir, mode, p.as_mut(), comm.clone())?;
    if !root {
        return Ok(());
    }
    println!(
        "finished {}: best epoch {} | clean {} | PGD {} | {} | {}",
        s.name,
        s.best_epoch
            .map(|e| (e + 1).to_string())
            .unwrap_or("-".into()),
        fmt_acc(s.best_clean_accuracy),
        fmt_acc(s.best_pgd_accuracy),
        s.activation_parameters
            .iter()
            .map(|(k, v)| format!("{k} {v:.4}"))
            .collect::<Vec<_>>()
            .join(" "),
        dir.display()
    );
    Ok(())
}

fn fmt_acc(v: Option<f64>) -> String {
    v.map(|v| format!("{:.2}%", 100.0 * v))
        .unwrap_or_else(|| "-".into())
}

fn parse_eps(s: &str) -> Result<Epsilon, TrainError> {
    let bad = || TrainError::Config {
        field: "--eps".into(),
        value: s.to_string(),
        reason: "expected a decimal (0.031) or a fraction (8/255)".into(),
    };
    let e = if let Some((n, d)) = s.split_once('/') {
        let (n, d): (u32, u32) = (
            n.trim().parse().map_err(|_| bad())?,
            d.trim().parse().map_err(|_| bad())?,
        );
        if d == 0 {
            return Err(bad());
        }
        Epsilon::Fraction(n, d)
    } else {
        Epsilon::Decimal(s.trim().parse().map_err(|_| bad())?)
    };
    if !(e.value().is_finite() && e.value() >= 0.0) {
        return Err(bad());
    }
    Ok(e)
}

fn cmd_eval(a: EvalArgs) -> Result<(), TrainError> {
    let ckpt = read_checkpoint(&a.checkpoint)?;
    let (cfg, test) = checkpoint_test_set(&ckpt, &a.checkpoint, a.data_dir.as_deref())?;
    let eps = match &a.eps {
        Some(s) => parse_eps(s)?,
        None => Epsilon::Decimal(cfg.trainer.eps),
    };
    let mut pgd = match cfg.trainer.norm {
        robust_paf::attacks::Norm::Linf => robust_paf::attacks::PgdConfig::paper(),
        robust_paf::attacks::Norm::L2 => robust_paf::attacks::PgdConfig::paper_l2(),
    };
    pgd.steps = a.pgd_steps;
    pgd.step_size = cfg.trainer.step_size;
    let eval_cfg = EvalConfig {
        norm: cfg.trainer.norm,
        eps,
        pgd: (a.pgd_steps > 0).then_some(pgd),
        autoattack: a.autoattack.map(|v| match v {
            AaArg::Standard => AaVersion::Standard,
            AaArg::Fast => AaVersion::Fast,
        }),
        n_examples: a.n_examples,
        batch_size: a.batch_size,
        seed: a.seed,
        autoattack_state: a.state.clone(),
    };
    if a.batch_size == 0 {
        return Err(TrainError::Config {
            field: "--batch-size".into(),
            value: "0".into(),
            reason: "must be at least 1".into(),
        });
    }
    let mut p = progress::auto();
    let report = match a.device {
        DeviceArg::Cpu => evaluate_checkpoint(
            Cpu::seed_from_u64(a.seed),
            &ckpt,
            &cfg,
            &test,
            &eval_cfg,
            p.as_mut(),
        )?,
        DeviceArg::Cuda => {
            #[cfg(feature = "cuda")]
            {
                let dev = dfdx::tensor::Cuda::try_seed_from_u64(a.seed)
                    .map_err(|e| device_error(&format!("CUDA: {e:?}")))?;
                evaluate_checkpoint(dev, &ckpt, &cfg, &test, &eval_cfg, p.as_mut())?
            }
            #[cfg(not(feature = "cuda"))]
            {
                let _ = (eval_cfg, p);
                return Err(device_error(
                    "this build has no CUDA support (rebuild with --features cuda)",
                ));
            }
        }
    };
    let out = a.out.unwrap_or_else(|| {
        let mut p = a.checkpoint.clone().into_os_string();
        p.push(".eval.json");
        PathBuf::from(p)
    });
    report.save(&out)?;
    println!(
        "{} on {} ({} images, eps {}): clean {}{}{} -> {}",
        report.model,
        report.dataset,
        report.n_examples,
        report.eps_text,
        fmt_acc(Some(report.clean_accuracy)),
        report
            .pgd_accuracy
            .map(|v| format!(" | PGD-{} {}", a.pgd_steps, fmt_acc(Some(v))))
            .unwrap_or_default(),
        report
            .autoattack_accuracy
            .map(|v| format!(" | AutoAttack {}", fmt_acc(Some(v))))
            .unwrap_or_default(),
        out.display()
    );
    Ok(())
}

fn cmd_shape_metrics(a: ShapeMetricsArgs) -> Result<(), TrainError> {
    let cfg = ShapeMetricsConfig {
        n_examples: a.n_examples,
        square_queries: a.queries,
        batch_size: a.batch_size,
        ..ShapeMetricsConfig::paper()
    };
    cfg.validate()?;
    let mut dirs = Vec::new();
    for r in &a.runs {
        if r.join(robust_paf::train::run::BEST_FILE).is_file() {
            dirs.push(r.clone());
        } else {
            let found = collect(r)?;
            if found.is_empty() {
                return Err(TrainError::RunDir {
                    path: r.clone(),
                    reason: "neither a run (best.safetensors) nor a folder of finished runs".into(),
                });
            }
            dirs.extend(found.into_iter().map(|c| c.dir));
        }
    }
    let mut p = progress::auto();
    for (i, dir) in dirs.iter().enumerate() {
        println!("[{}/{}] {}", i + 1, dirs.len(), dir.display());
        let m = match a.device {
            DeviceArg::Cpu => run_shape_metrics(dir, &cfg, p.as_mut())?,
            DeviceArg::Cuda => {
                #[cfg(feature = "cuda")]
                {
                    let dev = dfdx::tensor::Cuda::try_seed_from_u64(0)
                        .map_err(|e| device_error(&format!("CUDA: {e:?}")))?;
                    robust_paf::train::assess::run_shape_metrics_on(dev, dir, &cfg, p.as_mut())?
                }
                #[cfg(not(feature = "cuda"))]
                {
                    return Err(device_error(
                        "this build has no CUDA support (rebuild with --features cuda)",
                    ));
                }
            }
        };
        println!(
            "  clean {} | radius {:.5} | Square {:.2}% | Lipschitz {:.4} -> {}",
            fmt_acc(Some(m.clean_accuracy)),
            m.average_radius,
            100.0 * m.square_success_rate,
            m.lipschitz,
            dir.join(SHAPE_METRICS_FILE).display()
        );
    }
    Ok(())
}

fn cmd_sweep(a: SweepArgs) -> Result<(), TrainError> {
    let sweep = SweepConfig::from_file(&a.config)?;
    let base_dir = a.config.parent().unwrap_or(Path::new("."));
    let runs = sweep.expand(base_dir, &a.set)?;
    let shard = match &a.shard {
        Some(s) => Shard::parse(s)?,
        None => Shard::from_slurm_env()?.unwrap_or(Shard::ALL),
    };
    let mine: Vec<_> = runs.iter().filter(|r| shard.contains(r.index)).collect();
    let root = a.out.join(&sweep.name);
    println!(
        "sweep {}: {} runs, shard {}/{}: {} runs -> {}",
        sweep.name,
        runs.len(),
        shard.index,
        shard.count,
        mine.len(),
        root.display()
    );
    if a.dry_run {
        for r in &mine {
            println!("  [{}] {}", r.index, r.id);
        }
        return Ok(());
    }
    let mut failed = Vec::new();
    for r in mine {
        let dir = root.join(&r.id);
        if read_summary(&dir)?.is_some() {
            println!("  [{}] {}: finished, skipped", r.index, r.id);
            continue;
        }
        println!("  [{}] {}", r.index, r.id);
        let result = load_data(&r.config).and_then(|data| {
            let mut p: Box<dyn Progress> = if a.quiet {
                Box::new(Silent)
            } else {
                progress::auto_training()
            };
            train_on(a.device, &r.config, &data, &dir, RunMode::Auto, p.as_mut())
        });
        match result {
            Ok(s) => println!(
                "  [{}] {}: done, best clean {} PGD {}",
                r.index,
                r.id,
                fmt_acc(s.best_clean_accuracy),
                fmt_acc(s.best_pgd_accuracy)
            ),
            Err(e) => {
                eprintln!("  [{}] {}: failed: {e}", r.index, r.id);
                failed.push(r.id.clone());
            }
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(TrainError::RunDir {
            path: root,
            reason: format!("{} run(s) failed: {}", failed.len(), failed.join(", ")),
        })
    }
}

fn cmd_collect(a: CollectArgs) -> Result<(), TrainError> {
    let runs = collect(&a.dir)?;
    if runs.is_empty() {
        return Err(TrainError::RunDir {
            path: a.dir.clone(),
            reason: "no finished runs (summary.json) found".into(),
        });
    }
    let csv = a.csv.unwrap_or_else(|| a.dir.join("results.csv"));
    let md = a.markdown.unwrap_or_else(|| a.dir.join("results.md"));
    let table = to_markdown(&runs, &a.dir);
    robust_paf::train::checkpoint::write_atomic(&csv, to_csv(&runs, &a.dir).as_bytes())?;
    robust_paf::train::checkpoint::write_atomic(&md, table.as_bytes())?;
    print!("{table}");
    println!(
        "{} runs -> {} and {}",
        runs.len(),
        csv.display(),
        md.display()
    );
    Ok(())
}

fn cmd_presets(a: PresetsArgs) -> Result<(), TrainError> {
    if let Some(name) = a.show {
        print!("{}", preset_or_error(&name)?);
        return Ok(());
    }
    for (name, _) in PRESETS {
        let cfg = TrainConfig::preset(name, &[])?;
        println!("{name:30} {}", cfg.description);
    }
    Ok(())
}
