//! Progress reporting for long work (evaluation, training): an indicatif bar in a terminal, a
//! plain line per step where there is no terminal (Jupyter, CI logs), or nothing.

use std::io::IsTerminal;
use std::time::Instant;

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

/// A bar when stderr is a terminal, plain lines otherwise (notebooks, logs).
pub fn auto() -> Box<dyn Progress> {
    if std::io::stderr().is_terminal() {
        Box::<Bar>::default()
    } else {
        Box::<Lines>::default()
    }
}
