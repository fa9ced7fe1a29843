//! The PyTorch checkpoint reader (zip, legacy and safetensors `state_dict`s; issue 9) on a file
//! holding arbitrary bytes; seed the corpus with `tests/fixtures/torch/*.pt`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("robust-paf-fuzz-torch-{}", std::process::id()));
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let _ = robust_paf::interop::read_torch_state_dict(&path);
    let _ = std::fs::remove_file(&path);
});
