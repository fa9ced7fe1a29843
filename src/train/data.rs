//! The datasets a [`TrainConfig`] names (docs/reproduction.md §3.1, §3.5): the real training
//! images, the synthetic ones of a 1:1 run, the test set, and the loader that batches them.

use std::path::PathBuf;
use std::sync::Arc;

use super::config::{default_data_dir, Dataset, SyntheticFormat, TrainConfig};
use super::TrainError;
use crate::data::npz::open_npz_source;
use crate::data::{
    download_cifar10, download_cifar100, load_cifar, CifarVariant, DataError, Epoch, FashionMnist,
    ImageFolder, ImageSet, ImageSource, Loader, LoaderConfig, MixedConfig, MixedLoader,
};

/// The data of a run.
#[derive(Clone)]
pub struct TrainData {
    pub train: Arc<dyn ImageSource>,
    /// Synthetic images mixed 1:1 into every batch (DDPM runs).
    pub synthetic: Option<Arc<dyn ImageSource>>,
    pub test: ImageSet,
    /// Human-readable description ("CIFAR-10 train (50,000) + 6,002,688 synthetic").
    pub description: String,
}

/// Loads what `cfg.data` names (downloading CIFAR when `data.download` is set).
pub fn load_data(cfg: &TrainConfig) -> Result<TrainData, TrainError> {
    let d = &cfg.data;
    let dir = d.dir.clone().unwrap_or_else(default_data_dir);
    let (train, test) = match d.dataset {
        Dataset::FashionMnistSubset => {
            let f = FashionMnist::embedded()?;
            (f.train, f.test)
        }
        Dataset::FashionMnist => {
            let f = FashionMnist::load_located(d.dir.as_deref())?;
            (f.train, f.test)
        }
        Dataset::Cifar10 | Dataset::Cifar100 => {
            let variant = if d.dataset == Dataset::Cifar10 {
                CifarVariant::Cifar10
            } else {
                CifarVariant::Cifar100Fine
            };
            let c = match load_cifar(&dir, variant) {
                Ok(c) => c,
                Err(DataError::Missing { .. }) if d.download => {
                    let folder: PathBuf = if d.dataset == Dataset::Cifar10 {
                        download_cifar10(&dir)?
                    } else {
                        download_cifar100(&dir)?
                    };
                    load_cifar(&folder, variant)?
                }
                Err(e) => return Err(e.into()),
            };
            (c.train, c.test)
        }
    };
    let train = match d.train_subset {
        Some(n) if n < train.len() => {
            let idx: Vec<usize> = (0..n).collect();
            train.select(format!("{} (first {n})", train.name), &idx)?
        }
        _ => train,
    };
    let mut description = format!("{} ({} images)", train.name, train.len());
    let synthetic: Option<Arc<dyn ImageSource>> = match &d.synthetic {
        None => None,
        Some(s) => {
            let mut note = "";
            let src: Arc<dyn ImageSource> = match s.format {
                SyntheticFormat::Npz => {
                    let (src, in_memory) = open_npz_source(&s.path, train.classes)?;
                    if in_memory {
                        note = " (deflated .npz, decompressed into memory)";
                    }
                    Arc::from(src)
                }
                SyntheticFormat::Folder => Arc::new(ImageFolder::open(&s.path)?),
            };
            description.push_str(&format!(
                " + {} synthetic images from {}{note}",
                src.len(),
                s.path.display()
            ));
            Some(src)
        }
    };
    Ok(TrainData {
        train: Arc::new(train),
        synthetic,
        test,
        description,
    })
}

/// The training batches of a run: real images only, or real + synthetic.
pub enum TrainLoader {
    Real(Loader),
    Mixed(MixedLoader),
}

impl TrainLoader {
    /// The loader `cfg` asks for over `data`, seeded with the run's seed; an error when `cfg`
    /// asks for synthetic images and `data` has none, or the other way round (never a silent
    /// real-only run).
    pub fn new(cfg: &TrainConfig, data: &TrainData) -> Result<Self, TrainError> {
        let d = &cfg.data;
        let mismatch = |reason: &str| TrainError::Config {
            field: "data.synthetic".into(),
            value: d
                .synthetic
                .as_ref()
                .map_or("none".into(), |s| s.path.display().to_string()),
            reason: reason.into(),
        };
        Ok(match (&data.synthetic, &d.synthetic) {
            (None, Some(_)) => {
                return Err(mismatch(
                    "the configuration asks for synthetic images, the data given has none",
                ))
            }
            (Some(_), None) => {
                return Err(mismatch(
                    "the data given has synthetic images, the configuration does not use them",
                ))
            }
            (Some(syn), Some(s)) => TrainLoader::Mixed(MixedLoader::new(
                data.train.clone(),
                syn.clone(),
                MixedConfig {
                    real_per_batch: d.batch_size,
                    synthetic_per_batch: s.per_batch,
                    augment: d.augment,
                    seed: cfg.seed,
                    prefetch: 2,
                },
            )?),
            _ => TrainLoader::Real(Loader::new(
                data.train.clone(),
                LoaderConfig {
                    augment: d.augment,
                    ..LoaderConfig::train(d.batch_size, cfg.seed)
                },
            )?),
        })
    }

    /// Steps per epoch.
    pub fn steps_per_epoch(&self) -> usize {
        match self {
            TrainLoader::Real(l) => l.steps_per_epoch(),
            TrainLoader::Mixed(l) => l.steps_per_epoch(),
        }
    }

    /// The batches of `epoch` from step `first` on.
    pub fn epoch_from(&self, epoch: usize, first: usize) -> Epoch {
        match self {
            TrainLoader::Real(l) => l.epoch_from(epoch, first),
            TrainLoader::Mixed(l) => l.epoch_from(epoch, first),
        }
    }
}
