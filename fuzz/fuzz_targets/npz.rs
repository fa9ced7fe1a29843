//! The npz reader on a file holding arbitrary bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("robust-paf-fuzz-npz-{}", std::process::id()));
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let _ = robust_paf::data::load_npz(&path, 10);
    let _ = robust_paf::data::NpzImages::open(&path, 10);
    let _ = std::fs::remove_file(&path);
});
