//! IDX images and labels (gzipped or not) from arbitrary bytes: an error or a value, never a panic
//! or an allocation the bytes do not back.
#![no_main]
use libfuzzer_sys::fuzz_target;
use robust_paf::data::fashion_mnist::{read_idx_images, read_idx_labels};

fuzz_target!(|data: &[u8]| {
    let _ = read_idx_images(data, std::path::Path::new("fuzz"));
    let _ = read_idx_labels(data, std::path::Path::new("fuzz"));
});
