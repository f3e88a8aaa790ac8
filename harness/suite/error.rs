//! Errors in suite files, always with the place to fix them.

use std::fmt;
use std::path::{Path, PathBuf};

/// A problem in a suite file, shown as `file:line:col: message` on one line.
#[derive(Debug, Clone, PartialEq)]
pub struct SuiteError {
    pub file: PathBuf,
    pub line: u32,
    pub col: u32,
    pub message: String,
}

impl SuiteError {
    pub fn at(file: &Path, line: u32, col: u32, message: String) -> Self {
        // One line per error, whatever the parser gave us.
        let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
        SuiteError { file: file.to_path_buf(), line, col, message }
    }
}

impl fmt::Display for SuiteError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file.display(), self.line, self.col, self.message)
    }
}

impl std::error::Error for SuiteError {}
