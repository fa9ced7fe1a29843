//! The datasets a [`TrainConfig`] names (docs/reproduction.md §3.1, §3.5): the real training
//! images, the synthetic ones of a 1:1 run, the test set, and the loader that batches them.

use std::path::PathBuf;
use std::sync::Arc;

use super::config::{default_data_dir, Dataset, SyntheticFormat, TrainConfig};
use super::TrainError;
use crate::data::imagenette::IMAGENETTE_FOLDER;
use crate::data::npz::open_npz_source;
use crate::data::{
    balanced_order, download_cifar10, download_cifar100, download_imagenette, load_cifar,
    CifarVariant, DataError, Epoch, FashionMnist, ImageFolder, ImageNette, ImageNetteConfig,
    ImageSet, ImageSource, Loader, LoaderConfig, MixedConfig, MixedLoader, Split, Subset,
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
    if d.dataset == Dataset::Imagenette {
        return load_imagenette(cfg, &dir);
    }
    let (train, test) = match d.dataset {
        Dataset::Imagenette => unreachable!("returned above"),
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

/// ImageNette (docs/reproduction.md §3.7): `dir` itself when it holds `train/` and `val/`, else
/// `dir/imagenette2`. The training split decodes on the loader's thread (`RandomResizedCrop` +
/// flip); the validation split is decoded into memory once (3,925 images, 590 MB at 224 pixels),
/// in class-interleaved order ([`balanced_order`]) so that `eval.n_examples` takes every class
/// alike (the full set is the same images as torchvision's order). `data.train_subset` takes
/// the first images of that interleaved order too. No synthetic data (the paper has none for
/// ImageNette). `data.download` fetches `imagenette2.tgz` into `dir` when the folder is missing.
fn load_imagenette(cfg: &TrainConfig, dir: &std::path::Path) -> Result<TrainData, TrainError> {
    let d = &cfg.data;
    if d.synthetic.is_some() {
        return Err(TrainError::Config {
            field: "data.synthetic".into(),
            value: "set".into(),
            reason: "ImageNette runs take no synthetic images".into(),
        });
    }
    let root = if dir.join("train").is_dir() && dir.join("val").is_dir() {
        dir.to_path_buf()
    } else {
        dir.join(IMAGENETTE_FOLDER)
    };
    let nette = match ImageNette::open(&root) {
        Err(DataError::Missing { .. }) if d.download && root == dir.join(IMAGENETTE_FOLDER) => {
            ImageNette::open(download_imagenette(dir)?)?
        }
        r => r?,
    };
    let icfg = ImageNetteConfig::default();
    let train_split = Arc::new(nette.split(Split::Train, icfg)?);
    let val = nette.split(Split::Val, icfg)?;
    let val_order = balanced_order(&val.labels());
    let n_test = cfg
        .eval
        .n_examples
        .unwrap_or(val_order.len())
        .min(val_order.len());
    let test = val.load_indices(&val_order[..n_test])?;
    let train: Arc<dyn ImageSource> = match d.train_subset {
        Some(n) if n < train_split.len() => {
            let order = balanced_order(&train_split.labels());
            Arc::new(Subset::new(train_split.clone(), order[..n].to_vec())?)
        }
        _ => train_split.clone(),
    };
    let description = format!(
        "{} ({} images), test: {} of {} validation images",
        train_split.name(),
        train.len(),
        test.len(),
        val.len()
    );
    Ok(TrainData {
        train,
        synthetic: None,
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

    /// Rank `rank` of `size`'s shard of every batch (data-parallel training).
    pub fn with_shard(self, rank: usize, size: usize) -> Self {
        match self {
            TrainLoader::Real(l) => TrainLoader::Real(l.with_shard(rank, size)),
            TrainLoader::Mixed(l) => TrainLoader::Mixed(l.with_shard(rank, size)),
        }
    }

    /// The size of the smallest (whole) batch of an epoch.
    pub fn smallest_batch(&self) -> usize {
        match self {
            TrainLoader::Real(l) => l.smallest_batch(),
            TrainLoader::Mixed(l) => l.smallest_batch(),
        }
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
