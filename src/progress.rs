//! Progress reporting for long work (evaluation, training): an indicatif bar in a terminal, a
//! plain line per step where there is no terminal (Jupyter, CI logs), or nothing.
//!
//! Training ([`auto_training`]) shows two bars in a terminal — the epochs of the run and the
//! batches of the current epoch with loss, accuracy and images/s ([`TrainBars`]) — and one plain
//! line per epoch elsewhere ([`EpochLines`]).

use std::io::IsTerminal;
use std::time::Instant;

/// CPU seconds (user + system, every thread) this process has used so far: with the wall time it
/// tells how many cores a phase kept busy. `None` where it cannot be read (`getrusage` on
/// Linux/glibc; other targets).
pub fn process_cpu_seconds() -> Option<f64> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
        // SAFETY: getrusage writes a whole `rusage` into the pointer it is given, which points
        // at one; on failure (it returns -1) the zeroed value is not read.
        let ru = unsafe {
            if libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr()) != 0 {
                return None;
            }
            ru.assume_init()
        };
        let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
        Some(secs(ru.ru_utime) + secs(ru.ru_stime))
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        None
    }
}

/// Receives progress of a long computation.
pub trait Progress {
    /// A new phase of `total` units (batches, attacks, epochs).
    fn start(&mut self, phase: &str, total: u64);
    /// `n` more units done.
    fn advance(&mut self, n: u64);
    /// A result worth a line of its own (robust accuracy after an attack, an epoch's loss).
    fn message(&mut self, msg: &str);
    /// The phase is over.
    fn finish(&mut self);
    /// A short live status of the phase ("loss 1.23 · acc 45.6% · 120 img/s"); bars show it.
    fn status(&mut self, _status: &str) {}
    /// Position in an enclosing loop (the epochs of a training run): `done` of `total`.
    fn outer(&mut self, _done: u64, _total: u64) {}
    /// True when the user asked to stop: long work returns `Error::Interrupted` at its next safe
    /// point (after saving what it can resume from).
    fn cancelled(&self) -> bool {
        false
    }
}

/// An indicatif progress bar on stderr.
#[derive(Default)]
pub struct Bar(Option<indicatif::ProgressBar>);

impl Progress for Bar {
    fn start(&mut self, phase: &str, total: u64) {
        let b = indicatif::ProgressBar::new(total);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{msg:30} [{bar:30}] {pos}/{len} {elapsed_precise} eta {eta}",
        ) {
            b.set_style(style.progress_chars("=> "));
        }
        b.set_message(phase.to_string());
        self.0 = Some(b);
    }
    fn advance(&mut self, n: u64) {
        if let Some(b) = &self.0 {
            b.inc(n);
        }
    }
    fn message(&mut self, msg: &str) {
        match &self.0 {
            Some(b) => b.println(msg),
            None => eprintln!("{msg}"),
        }
    }
    fn finish(&mut self) {
        if let Some(b) = self.0.take() {
            b.finish_and_clear();
        }
    }
}

/// One plain line per message and per phase, with elapsed time (no terminal control codes).
pub struct Lines {
    phase: String,
    total: u64,
    done: u64,
    started: Instant,
}

impl Default for Lines {
    fn default() -> Self {
        Lines {
            phase: String::new(),
            total: 0,
            done: 0,
            started: Instant::now(),
        }
    }
}

impl Progress for Lines {
    fn start(&mut self, phase: &str, total: u64) {
        self.phase = phase.to_string();
        self.total = total;
        self.done = 0;
        self.started = Instant::now();
        println!("{phase}: 0/{total}");
    }
    fn advance(&mut self, n: u64) {
        self.done += n;
    }
    fn message(&mut self, msg: &str) {
        println!("{msg}");
    }
    fn finish(&mut self) {
        println!(
            "{}: {}/{} in {:.1} s",
            self.phase,
            self.done,
            self.total,
            self.started.elapsed().as_secs_f64()
        );
    }
}

/// Reports nothing.
#[derive(Default)]
pub struct Silent;

impl Progress for Silent {
    fn start(&mut self, _: &str, _: u64) {}
    fn advance(&mut self, _: u64) {}
    fn message(&mut self, _: &str) {}
    fn finish(&mut self) {}
}

/// Training progress in a terminal: a bar over the run's epochs and one over the current phase's
/// batches with its status (loss, accuracy, images/s), messages printed above them.
#[derive(Default)]
pub struct TrainBars {
    multi: indicatif::MultiProgress,
    outer: Option<indicatif::ProgressBar>,
    inner: Option<indicatif::ProgressBar>,
    phase: String,
}

impl Progress for TrainBars {
    fn start(&mut self, phase: &str, total: u64) {
        if let Some(b) = self.inner.take() {
            b.finish_and_clear();
        }
        let b = self.multi.add(indicatif::ProgressBar::new(total));
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{prefix:>14} [{bar:30}] {pos}/{len} {elapsed_precise} eta {eta} {msg}",
        ) {
            b.set_style(style.progress_chars("=> "));
        }
        b.set_prefix(phase.to_string());
        self.phase = phase.to_string();
        self.inner = Some(b);
    }
    fn advance(&mut self, n: u64) {
        if let Some(b) = &self.inner {
            b.inc(n);
        }
    }
    fn status(&mut self, status: &str) {
        if let Some(b) = &self.inner {
            b.set_message(status.to_string());
        }
    }
    fn outer(&mut self, done: u64, total: u64) {
        let b = self.outer.get_or_insert_with(|| {
            let b = self.multi.insert(0, indicatif::ProgressBar::new(total));
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{prefix:>14} [{bar:30}] {pos}/{len} epochs {elapsed_precise} eta {eta}",
            ) {
                b.set_style(style.progress_chars("#> "));
            }
            b.set_prefix("run");
            b
        });
        b.set_length(total);
        b.set_position(done);
    }
    fn message(&mut self, msg: &str) {
        let _ = self.multi.println(msg);
    }
    fn finish(&mut self) {
        if let Some(b) = self.inner.take() {
            b.finish_and_clear();
        }
    }
}

impl Drop for TrainBars {
    fn drop(&mut self) {
        if let Some(b) = self.outer.take() {
            b.finish_and_clear();
        }
    }
}

/// Training progress without a terminal (Jupyter, CI): only the messages, one plain line each —
/// the trainer writes one per epoch.
#[derive(Default)]
pub struct EpochLines;

impl Progress for EpochLines {
    fn start(&mut self, _: &str, _: u64) {}
    fn advance(&mut self, _: u64) {}
    fn message(&mut self, msg: &str) {
        println!("{msg}");
    }
    fn finish(&mut self) {}
}

/// Training progress: [`TrainBars`] when stderr is a terminal, [`EpochLines`] otherwise.
pub fn auto_training() -> Box<dyn Progress> {
    if std::io::stderr().is_terminal() {
        Box::<TrainBars>::default()
    } else {
        Box::<EpochLines>::default()
    }
}

/// A bar when stderr is a terminal, plain lines otherwise (notebooks, logs).
pub fn auto() -> Box<dyn Progress> {
    if std::io::stderr().is_terminal() {
        Box::<Bar>::default()
    } else {
        Box::<Lines>::default()
    }
}
