//! Progress and events of an apply: what happens to each object while it
//! happens.
//!
//! On a terminal, a live line per service (pulling, creating, waiting for
//! healthy 3/10, healthy); otherwise one structured log line per step on
//! stderr (JSON with `--log-format json`). Messages pass through the masker.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::spec::secrets::Masker;

/// How a step ended, for the live line's style.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Working,
    Done,
    Failed,
    /// Something failed and the step goes on (a `pre_stop` hook that failed).
    Warning,
}

/// Receives progress of an apply.
pub trait Progress: Send + Sync {
    /// `subject` is `stack/service`, `stack/network name` and so on.
    fn step(&self, subject: &str, message: &str, outcome: Outcome);
}

/// Plain log lines through `tracing` (text or JSON, as configured): one line
/// per change of state; repeated "waiting" updates of a subject are folded.
pub struct LogProgress {
    masker: Masker,
    last: Mutex<BTreeMap<String, String>>,
}

impl LogProgress {
    pub fn new(masker: Masker) -> Self {
        LogProgress {
            masker,
            last: Mutex::new(BTreeMap::new()),
        }
    }
}

impl Progress for LogProgress {
    fn step(&self, subject: &str, message: &str, outcome: Outcome) {
        let message = self.masker.mask(message);
        // "waiting for healthy (3s/60s)" and "(4s/60s)" are one state.
        let state = message.split(" (").next().unwrap_or_default().to_string();
        {
            let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            if outcome == Outcome::Working && last.get(subject) == Some(&state) {
                return;
            }
            last.insert(subject.to_string(), state);
        }
        match outcome {
            Outcome::Failed => tracing::error!(target: "plimsoll::apply", subject, "{message}"),
            Outcome::Warning => tracing::warn!(target: "plimsoll::apply", subject, "{message}"),
            _ => tracing::info!(target: "plimsoll::apply", subject, "{message}"),
        }
    }
}

/// A live line per subject on a terminal.
pub struct TerminalProgress {
    multi: MultiProgress,
    lines: Mutex<BTreeMap<String, ProgressBar>>,
    masker: Masker,
}

impl TerminalProgress {
    pub fn new(masker: Masker) -> Self {
        TerminalProgress {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            lines: Mutex::new(BTreeMap::new()),
            masker,
        }
    }
}

impl Progress for TerminalProgress {
    fn step(&self, subject: &str, message: &str, outcome: Outcome) {
        let message = self.masker.mask(message).into_owned();
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        let bar = lines.entry(subject.to_string()).or_insert_with(|| {
            let bar = self.multi.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {prefix:.bold} {wide_msg}")
                    .expect("valid template"),
            );
            bar.set_prefix(subject.to_string());
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        match outcome {
            Outcome::Working => bar.set_message(message),
            // Printed above the live lines, so the next step does not overwrite it.
            Outcome::Warning => {
                let _ = self.multi.println(format!("⚠ {subject} {message}"));
            }
            Outcome::Done => {
                bar.set_style(
                    ProgressStyle::with_template("✔ {prefix:.bold} {wide_msg:.green}")
                        .expect("valid template"),
                );
                bar.finish_with_message(message);
            }
            Outcome::Failed => {
                bar.set_style(
                    ProgressStyle::with_template("✘ {prefix:.bold} {wide_msg:.red}")
                        .expect("valid template"),
                );
                bar.finish_with_message(message);
            }
        }
    }
}

/// Collects steps in memory (tests, the audit log).
#[derive(Default)]
pub struct Recorder {
    pub steps: Mutex<Vec<(String, String, Outcome)>>,
}

impl Progress for Recorder {
    fn step(&self, subject: &str, message: &str, outcome: Outcome) {
        self.steps.lock().unwrap_or_else(|e| e.into_inner()).push((
            subject.to_string(),
            message.to_string(),
            outcome,
        ));
    }
}
