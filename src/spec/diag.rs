//! Diagnostics: one problem in the desired state, located by file, line, column
//! and key path, with a hint that says what to do.
//!
//! Loading collects every diagnostic it can instead of stopping at the first,
//! so `plimsoll validate` reports all problems of a repository in one run.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// A position in a source file: 1-based line and column.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Mark {
    pub line: usize,
    /// `u32` with `file` beside it keeps `Mark` (and so `Diag`) small.
    pub col: u32,
    /// Which file of a stack the position is in, when a stack is read from
    /// several (override files, `include:`, `extends:`): 0 is the stack's
    /// Compose file, `n` the n-th other file `spec::load` read for it.
    #[serde(skip)]
    pub file: u32,
}

impl Mark {
    pub const fn new(line: usize, col: usize) -> Self {
        Mark {
            line,
            col: if col > u32::MAX as usize {
                u32::MAX
            } else {
                col as u32
            },
            file: 0,
        }
    }
}

/// How bad a diagnostic is. Errors fail loading; warnings are printed and loading goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One problem found while loading the desired state. It is the error of
/// every step that reports one problem (reading a file, parsing YAML); its
/// `Display` is the line `plimsoll validate` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
pub struct Diag {
    pub severity: Severity,
    pub file: PathBuf,
    /// Where the offending construct starts; line 0 means "the whole file".
    pub mark: Mark,
    /// Key path in the document, for example `services.api.ports[1]`; empty for the document.
    pub key: String,
    pub message: String,
    /// What the user should do about it.
    pub hint: Option<String>,
}

impl Diag {
    pub fn error(
        file: &Path,
        mark: Mark,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Diag {
            severity: Severity::Error,
            file: file.to_path_buf(),
            mark,
            key: key.into(),
            message: message.into(),
            hint: None,
        }
    }

    pub fn warning(
        file: &Path,
        mark: Mark,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Diag {
            severity: Severity::Warning,
            ..Diag::error(file, mark, key, message)
        }
    }

    #[must_use]
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{level}: {}", self.file.display())?;
        if self.mark.line > 0 {
            write!(f, ":{}:{}", self.mark.line, self.mark.col)?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}
