//! Datasets (docs/reproduction.md §3.1, §3.5, §3.7): CIFAR-10/100, Fashion-MNIST (the offline
//! default, a committed subset), synthetic DDPM images (`.npz`, image folders), ImageNette (JPEGs
//! with torchvision's transforms), augmentation and batching. Stands apart from the model stack:
//! training, evaluation and notebooks use it.
//!
//! Every reader produces [`ImageSet`] (or an [`ImageSource`]): HWC bytes of one [`ImageShape`]
//! (32×32×3, or 224×224×3 for ImageNette) and labels; batches become `[0, 1]` float tensors in
//! the crate's NHWC layout (no normalisation, §3.1).

pub mod augment;
pub mod cifar;
pub mod download;
pub mod error;
pub mod fashion_mnist;
pub mod folder;
pub mod imagenette;
pub mod images;
pub mod loader;
pub mod npz;
pub mod transforms;

pub use cifar::{
    load_cifar, load_cifar10, load_cifar100, load_cifar100_coarse, Cifar, CifarVariant,
    CIFAR100_FOLDER, CIFAR10_FOLDER,
};
pub use download::{download_and_extract, download_cifar10, download_cifar100};
pub use error::DataError;
pub use fashion_mnist::FashionMnist;
pub use folder::{decode_png, ImageFolder};
pub use imagenette::{
    decode_image, download_imagenette, download_imagenette_from, ImageNette, ImageNetteConfig,
    ImageNetteSplit, OnCorrupt, Split, IMAGENETTE_RESIZE, IMAGENETTE_SIZE,
};
pub use images::{
    balanced_order, ImageSet, ImageShape, ImageSource, Subset, CHANNELS, IMAGE_BYTES, IMAGE_SIZE,
};
pub use loader::{
    shard_range, Epoch, HostBatch, ImageBatch, Loader, LoaderConfig, MixedConfig, MixedLoader,
};
pub use npz::{
    load_npz, open_npz_source, ConcatSource, NpyHeader, NpzImages, NpzStream, DEFAULT_CLASSES,
};
