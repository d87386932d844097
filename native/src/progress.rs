//! A dataset run's progress on an indicatif bar.

use maskforge_core::dataset::Progress;

/// A bar over `samples` samples, hidden when `quiet`.
pub fn sample_bar(samples: usize, quiet: bool) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    indicatif::ProgressBar::new(samples as u64).with_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} samples {per_sec} {elapsed} (eta {eta}) {msg}",
        )
        .expect("static template"),
    )
}

/// Shows a run's progress on an indicatif bar.
pub struct Bar(pub indicatif::ProgressBar);

impl Progress for Bar {
    fn step(&self, step: usize, total: usize) {
        self.0.set_message(format!("step {step}/{total}"));
    }

    fn sample_done(&self) {
        self.0.inc(1);
    }
}
