//! The memory a training run will need, estimated before it starts, and a check against what the
//! machine has free (docs/reproduction.md §3.7: ImageNette's ResNet-18 at 224 pixels holds about
//! 5× the activations of the CIFAR models per image, and its batch of 128 does not fit every
//! laptop).
//!
//! The estimate is a model of what the crate keeps, calibrated on measurements:
//! `peak ≈ 3.2 · F · 4 B · batch + 3 · P · 4 B + 150 MiB`, where `F` is the number of values the
//! network's convolutions (and the ImageNet stem's max-pool) output per image — every one of them
//! is kept for the backward pass, with its batch-norm/activation output and its gradient — and `P`
//! the number of parameters (weights, gradients, momentum). The factor 3.2 and the 150 MiB fit
//! the peak resident memory of `robust-paf train` with the ImageNet-stem ResNet-18 at 224 pixels,
//! B = 16 and 64 (816 and 2,380 MiB; BENCHMARKS.md), within 2 %; for the CIFAR ResNet-18 they
//! overestimate by a fifth (430 and 1,055 MiB measured at B = 32 and 128, `scripts/bench_pair.sh`;
//! an adversarial-training step peaks no higher: 1,003 MiB at B = 128). It is a guard against a
//! run that cannot fit, erring on the large side, not a measurement.

use super::config::Arch;

/// Bytes of one `f32`.
const F32: u64 = 4;
/// Values kept per convolution output value during a training step (fitted, see the module docs).
const KEPT_PER_OUTPUT: f64 = 3.2;
/// Copies of the parameters a step holds (weights, gradients, momentum).
const PARAMETER_COPIES: u64 = 3;
/// What the process holds besides (code, allocator, data loader).
const BASE_BYTES: u64 = 150 << 20;

/// What a training step at one batch size will hold, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MemoryEstimate {
    /// Activations kept for the backward pass, for the whole batch.
    pub activations: u64,
    /// Parameters with their gradients and optimizer state.
    pub parameters: u64,
    /// Everything: activations + parameters + the process's base.
    pub total: u64,
}

impl MemoryEstimate {
    /// "4.1 GiB (activations 3.7 GiB at batch 128, parameters 0.2 GiB)".
    pub fn describe(&self, batch: usize) -> String {
        format!(
            "{} (activations {} at batch {batch}, parameters {})",
            gib(self.total),
            gib(self.activations),
            gib(self.parameters)
        )
    }
}

/// `bytes` in GiB with one decimal ("3.7 GiB").
pub fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// Values a ResNet stage of `blocks` BasicBlocks outputs per image at `side`×`side`×`c`: two
/// convolutions per block, plus the shortcut's 1×1 convolution when the stage changes the size.
fn resnet_stage(blocks: u64, side: u64, c: u64, downsample: bool) -> u64 {
    (2 * blocks + u64::from(downsample)) * side * side * c
}

/// Values the convolutions (and pools that keep their output) of `arch` output per image; `None`
/// for [`Arch::Custom`], whose layers the crate does not know.
pub fn activation_values_per_image(arch: Arch) -> Option<u64> {
    let wrn = |depth: u64, k: u64| {
        let n = (depth - 4) / 6;
        32 * 32 * 16
            + resnet_stage(n, 32, 16 * k, true)
            + resnet_stage(n, 16, 32 * k, true)
            + resnet_stage(n, 8, 64 * k, true)
    };
    Some(match arch {
        Arch::ResNet18 => {
            32 * 32 * 64
                + resnet_stage(2, 32, 64, false)
                + resnet_stage(2, 16, 128, true)
                + resnet_stage(2, 8, 256, true)
                + resnet_stage(2, 4, 512, true)
        }
        Arch::ResNet18ImageNet => {
            112 * 112 * 64 // the 7×7/2 stem
                + 56 * 56 * 64 // the 3×3/2 max-pool
                + resnet_stage(2, 56, 64, false)
                + resnet_stage(2, 28, 128, true)
                + resnet_stage(2, 14, 256, true)
                + resnet_stage(2, 7, 512, true)
        }
        Arch::Wrn28x10 => wrn(28, 10),
        Arch::Wrn34x10 => wrn(34, 10),
        Arch::Wrn16x4 => wrn(16, 4),
        Arch::Wrn16x1 => wrn(16, 1),
        Arch::Wrn16x2 => wrn(16, 2),
        Arch::Wrn28x4 => wrn(28, 4),
        Arch::Wrn40x2 => wrn(40, 2),
        Arch::Vgg16Bn => {
            2 * 32 * 32 * 64
                + 2 * 16 * 16 * 128
                + 3 * 8 * 8 * 256
                + 3 * 4 * 4 * 512
                + 3 * 2 * 2 * 512
        }
        // three 3×3 convolutions: 32 channels at 32×32, 64 at 16×16, 128 at 8×8 (an upper bound
        // for the small CNN of the quick presets)
        Arch::SmallCnn => 32 * 32 * 32 + 16 * 16 * 64 + 8 * 8 * 128,
        Arch::Custom => return None,
    })
}

/// The estimate for `arch` with `parameters` parameters at `batch` images per step (real and
/// synthetic together); `None` for [`Arch::Custom`].
pub fn estimate(arch: Arch, parameters: usize, batch: usize) -> Option<MemoryEstimate> {
    let per_image = activation_values_per_image(arch)?;
    let activations = (KEPT_PER_OUTPUT * (per_image * F32 * batch as u64) as f64) as u64;
    let parameters = PARAMETER_COPIES * F32 * parameters as u64;
    Some(MemoryEstimate {
        activations,
        parameters,
        total: activations + parameters + BASE_BYTES,
    })
}

/// The memory the system can give this process now: `MemAvailable` of `/proc/meminfo` (Linux);
/// `None` where it cannot be read. `ROBUST_PAF_MEMORY_AVAILABLE` (bytes) overrides it, for tests
/// and for machines whose limit is a container's.
pub fn available_memory() -> Option<u64> {
    if let Ok(v) = std::env::var("ROBUST_PAF_MEMORY_AVAILABLE") {
        return v.trim().parse().ok();
    }
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_meminfo(&info)
}

/// `MemAvailable` of a `/proc/meminfo` text, in bytes.
pub fn parse_meminfo(info: &str) -> Option<u64> {
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let mut words = line.split_whitespace().skip(1);
    let value: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") => Some(value * 1024),
        None => Some(value),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (parameters, batch, measured peak MiB, allowed relative error)
    fn check(arch: Arch, cases: &[(usize, usize, f64, f64, f64)]) {
        for &(p, batch, measured_mib, lo, hi) in cases {
            let e = estimate(arch, p, batch).unwrap();
            let ratio = e.total as f64 / (1u64 << 20) as f64 / measured_mib;
            assert!(
                (lo..=hi).contains(&ratio),
                "{arch} batch {batch}: estimate / measured = {ratio:.3}"
            );
        }
    }

    #[test]
    fn the_fit_reproduces_the_measured_peaks() {
        // `robust-paf train --preset imagenette-linf-resnet18 --set data.batch_size=B` (standard
        // training, release build, /usr/bin/time -v): 816 MiB at B = 16, 2,380 MiB at B = 64
        check(
            Arch::ResNet18ImageNet,
            &[
                (11_181_642, 16, 816.0, 0.95, 1.05),
                (11_181_642, 64, 2380.0, 0.95, 1.05),
            ],
        );
        // ResNet-18 (CIFAR): bench_pair.sh's peaks, 430 / 1,055 MiB; overestimated, never under
        check(
            Arch::ResNet18,
            &[
                (11_173_962, 32, 430.0, 1.0, 1.25),
                (11_173_962, 128, 1055.0, 1.0, 1.25),
            ],
        );
    }

    #[test]
    fn the_imagenet_stem_at_224_pixels_holds_four_times_the_cifar_activations() {
        // conv outputs per image: stem 802,816 + pool 200,704 + 4 × 200,704 + 5 × 100,352
        // + 5 × 50,176 + 5 × 25,088 = 2,684,416
        assert_eq!(
            activation_values_per_image(Arch::ResNet18ImageNet),
            Some(2_684_416)
        );
        // CIFAR: 65,536 + 4 × 65,536 + 5 × 32,768 + 5 × 16,384 + 5 × 8,192 = 614,400
        assert_eq!(activation_values_per_image(Arch::ResNet18), Some(614_400));
        let e = estimate(Arch::ResNet18ImageNet, 11_181_642, 128).unwrap();
        // 3.2 · 2,684,416 · 4 B · 128 = 4.40e9 B
        assert!((4.3..4.5).contains(&(e.activations as f64 / 1e9)), "{e:?}");
        assert_eq!(estimate(Arch::Custom, 1, 1), None);
    }

    #[test]
    fn meminfo_is_read_in_kilobytes() {
        let info = "MemTotal:       24000000 kB\nMemFree:  100 kB\nMemAvailable:   20000000 kB\n";
        assert_eq!(parse_meminfo(info), Some(20_000_000 * 1024));
        assert_eq!(parse_meminfo("MemTotal: 5 kB\n"), None);
        assert_eq!(parse_meminfo("MemAvailable: x kB\n"), None);
    }
}
