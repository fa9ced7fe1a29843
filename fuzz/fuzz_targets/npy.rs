//! `.npy` headers from arbitrary bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use robust_paf::data::npz::read_npy_header;

fuzz_target!(|data: &[u8]| {
    let mut r = data;
    let _ = read_npy_header(&mut r, data.len() as u64, std::path::Path::new("fuzz"), "m");
});
