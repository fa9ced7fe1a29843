//! Wall-clock time per op and direction (forward / backward), for finding where a training step
//! spends its time. Off unless the environment variable `ROBUST_PAF_PROFILE` is set when the first
//! op runs; then every CPU op adds its elapsed time here. Read with [`report`], clear with
//! [`reset`]. Used by `examples/bench_cpu.rs`; numbers are in `BENCHMARKS.md`.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

static ENABLED: OnceLock<bool> = OnceLock::new();
static TOTALS: Mutex<BTreeMap<&'static str, (f64, u64)>> = Mutex::new(BTreeMap::new());

/// Whether profiling is on (`ROBUST_PAF_PROFILE` set).
pub fn enabled() -> bool {
    *ENABLED.get_or_init(|| std::env::var_os("ROBUST_PAF_PROFILE").is_some())
}

/// Times the rest of the enclosing scope under `name` (when profiling is on): `let _t = scope("x");`.
pub struct Scope(Option<(&'static str, Instant)>);

pub fn scope(name: &'static str) -> Scope {
    Scope(enabled().then(|| (name, Instant::now())))
}

impl Drop for Scope {
    fn drop(&mut self) {
        if let Some((name, start)) = self.0 {
            let dt = start.elapsed().as_secs_f64();
            if let Ok(mut t) = TOTALS.lock() {
                let e = t.entry(name).or_insert((0.0, 0));
                e.0 += dt;
                e.1 += 1;
            }
        }
    }
}

/// `(name, total seconds, calls)` for every op timed since the last [`reset`], by name.
pub fn report() -> Vec<(&'static str, f64, u64)> {
    TOTALS
        .lock()
        .map(|t| t.iter().map(|(k, v)| (*k, v.0, v.1)).collect())
        .unwrap_or_default()
}

/// Clears the totals.
pub fn reset() {
    if let Ok(mut t) = TOTALS.lock() {
        t.clear();
    }
}
