//! The png reader on a file holding arbitrary bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("robust-paf-fuzz-png-{}", std::process::id()));
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let mut out = vec![0u8; robust_paf::data::IMAGE_BYTES];
    let _ = robust_paf::data::decode_png(&path, &mut out);
    let _ = std::fs::remove_file(&path);
});
