//! Error collection: every problem is recorded with its file, position and
//! document path, and parsing goes on so one run reports all of them.

use crate::yaml::Pos;
use crate::ConfigError;

/// Where something is: file index, position, document path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct At {
    pub file: usize,
    pub pos: Pos,
    pub path: String,
}

/// Collects errors for one `parse` call.
pub(crate) struct Diag {
    pub files: Vec<String>,
    errors: Vec<(usize, ConfigError)>,
}

impl Diag {
    pub fn new(files: Vec<String>) -> Diag {
        Diag {
            files,
            errors: Vec::new(),
        }
    }

    pub fn err(&mut self, at: &At, message: impl Into<String>) {
        let e = ConfigError {
            file: self.files.get(at.file).cloned().unwrap_or_default(),
            line: at.pos.line,
            column: at.pos.col,
            path: at.path.clone(),
            message: message.into(),
        };
        self.errors.push((at.file, e));
    }

    /// `file:line:col`, for messages that name a second location.
    pub fn loc(&self, at: &At) -> String {
        format!(
            "{}:{}:{}",
            self.files.get(at.file).map(String::as_str).unwrap_or(""),
            at.pos.line,
            at.pos.col
        )
    }

    pub fn has_errors_in(&self, file: usize) -> bool {
        self.errors.iter().any(|(f, _)| *f == file)
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// All errors, ordered by file (as given), then line, then column.
    /// Errors at the same place keep the order they were found in.
    pub fn into_errors(mut self) -> Vec<ConfigError> {
        self.errors.sort_by_key(|(f, e)| (*f, e.line, e.column));
        self.errors.dedup();
        self.errors.into_iter().map(|(_, e)| e).collect()
    }
}

/// `parent.key`, or `key` at the root.
pub(crate) fn join_key(parent: &str, key: &str) -> String {
    // Built by hand: this runs for every field read, and `format!` costs
    // several times more than the copies.
    if parent.is_empty() {
        return key.to_string();
    }
    let mut s = String::with_capacity(parent.len() + 1 + key.len());
    s.push_str(parent);
    s.push('.');
    s.push_str(key);
    s
}

/// `parent[index]`, the path of a sequence item.
pub(crate) fn join_index(parent: &str, index: usize) -> String {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(index);
    let mut s = String::with_capacity(parent.len() + 2 + digits.len());
    s.push_str(parent);
    s.push('[');
    s.push_str(digits);
    s.push(']');
    s
}
