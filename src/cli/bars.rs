//! The terminal's side of [`Progress`]: indicatif bars, drawn on stderr only
//! when it is a terminal (indicatif's own check) and the run is not quiet.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::progress::{Bar, Progress, Unit};

/// Bars for a command's stages, stacked.
pub(super) struct Bars {
    multi: MultiProgress,
}

impl Bars {
    /// Bars drawn on stderr, or nowhere when `quiet`.
    pub(super) fn new(quiet: bool) -> Bars {
        let multi = if quiet {
            MultiProgress::with_draw_target(ProgressDrawTarget::hidden())
        } else {
            MultiProgress::new()
        };
        Bars { multi }
    }
}

impl Progress for Bars {
    fn bar(&self, label: &str, total: u64, unit: Unit) -> Box<dyn Bar> {
        let template = match unit {
            Unit::Items(what) => format!(
                "{{prefix:>10}} [{{bar:30}}] {{pos}}/{{len}} {what} ({{per_sec}}, {{eta}}) {{msg}}"
            ),
            Unit::Bytes => "{prefix:>10} [{bar:30}] {binary_bytes}/{binary_total_bytes} \
                            ({binary_bytes_per_sec}, {eta}) {msg}"
                .to_string(),
        };
        let bar = self.multi.add(ProgressBar::new(total));
        bar.set_style(
            ProgressStyle::with_template(&template)
                .expect("a valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(label.to_string());
        Box::new(Shown(bar))
    }
}

/// A bar on the terminal; cleared when dropped.
struct Shown(ProgressBar);

impl Bar for Shown {
    fn inc(&self, n: u64) {
        self.0.inc(n);
    }

    fn set_total(&self, total: u64) {
        self.0.set_length(total);
    }

    fn note(&self, text: &str) {
        self.0.set_message(text.to_string());
    }
}

impl Drop for Shown {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}
