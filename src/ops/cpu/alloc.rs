//! Keeps glibc's `malloc` from returning every large tensor buffer to the kernel.
//!
//! A training step allocates and frees tens of buffers of 1–100 MB (activations, their copies,
//! gradients). glibc serves blocks above its mmap threshold (≤ 32 MB) with a fresh `mmap` and
//! gives them back on `free`, so every step page-faults and zeroes all of that memory again:
//! measured on 2 cores, 5.7 M page faults and 25–35 % of a ResNet-18 step at B=128
//! (`BENCHMARKS.md`). On the first CPU op this module sets `M_MMAP_MAX = 0` (large blocks come
//! from the heap) and a high `M_TRIM_THRESHOLD` (freed memory is kept for the next step), the
//! same effect as `GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=...`.
//! The cost: the process keeps its peak heap until it exits. Set `ROBUST_PAF_SYSTEM_MALLOC=1`
//! to leave `malloc` alone. Other platforms and allocators are not touched.

use std::sync::Once;

static TUNE: Once = Once::new();

/// Applies the settings above once per process (no-op outside Linux/glibc or when opted out).
pub(crate) fn tune_once() {
    TUNE.call_once(|| {
        if std::env::var_os("ROBUST_PAF_SYSTEM_MALLOC").is_some() {
            return;
        }
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: mallopt only changes allocator parameters; it is thread-safe in glibc.
        unsafe {
            libc::mallopt(libc::M_MMAP_MAX, 0);
            libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        }
    });
}
