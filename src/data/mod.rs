//! Datasets (PAPER.md §3.1, §3.5, §3.7): CIFAR-10/100, Fashion-MNIST (the offline default, a
//! committed subset), synthetic DDPM images (`.npz`, image folders), augmentation and batching.
//! Stands apart from the model stack: training, evaluation and notebooks use it.
//!
//! Every reader produces [`ImageSet`] (or an [`ImageSource`]): 32×32×3 HWC bytes and labels;
//! batches become `[0, 1]` float tensors in the crate's NHWC layout (no normalisation, §3.1).

pub mod error;
pub mod fashion_mnist;
pub mod images;

pub use error::DataError;
pub use fashion_mnist::FashionMnist;
pub use images::{ImageSet, ImageSource, CHANNELS, IMAGE_BYTES, IMAGE_SIZE};
