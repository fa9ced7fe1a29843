//! The cifar reader on a file holding arbitrary bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("robust-paf-fuzz-cifar-{}", std::process::id()));
    if std::fs::write(&path, data).is_err() {
        return;
    }
    for v in [
        robust_paf::data::CifarVariant::Cifar10,
        robust_paf::data::CifarVariant::Cifar100Fine,
    ] {
        let _ = robust_paf::data::cifar::read_cifar_file(&path, v);
    }
    let _ = std::fs::remove_file(&path);
});
