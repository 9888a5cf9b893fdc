//! Source files (byte offset → line), the error sink, and path helpers.

use std::path::{Component, Path, PathBuf};

use super::error::ConfigError;

/// One file that was read: its absolute path and where its lines start.
#[derive(Debug)]
pub(crate) struct Source {
    pub path: PathBuf,
    /// The directory relative paths named in this file resolve against.
    pub dir: PathBuf,
    line_starts: Vec<usize>,
}

impl Source {
    pub fn new(path: PathBuf, text: &str) -> Self {
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Source { path, dir, line_starts }
    }

    /// 1-based line of a byte offset.
    pub fn line(&self, offset: usize) -> usize {
        self.line_starts.partition_point(|&s| s <= offset).max(1)
    }

    /// Resolves a path named in this file against the file's directory.
    pub fn resolve(&self, p: &str) -> PathBuf {
        clean(&self.dir.join(p))
    }
}

/// Collects errors; never stops early.
#[derive(Debug, Default)]
pub(crate) struct Ctx {
    pub errors: Vec<ConfigError>,
}

impl Ctx {
    /// Records an error at byte `offset` of `src`.
    pub fn err(&mut self, src: &Source, offset: usize, key: impl Into<String>, msg: impl Into<String>) {
        self.errors.push(ConfigError {
            file: src.path.clone(),
            line: src.line(offset),
            key: key.into(),
            message: msg.into(),
        });
    }

    /// Records an error about a whole file (line 0).
    pub fn file_err(&mut self, file: &Path, key: impl Into<String>, msg: impl Into<String>) {
        self.errors.push(ConfigError { file: file.to_path_buf(), line: 0, key: key.into(), message: msg.into() });
    }
}

/// Makes `p` absolute (against the current directory) without touching the
/// file system, and removes `.` / `..` components lexically.
pub(crate) fn absolute(p: &Path) -> PathBuf {
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    clean(&abs)
}

/// Lexically normalises `.` and `..` components.
pub(crate) fn clean(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Joins a dotted key: `join("proxy", "workers")` → `proxy.workers`. Keys
/// that are not bare TOML keys are quoted.
pub(crate) fn join(prefix: &str, key: &str) -> String {
    let bare = !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let key = if bare { key.to_string() } else { format!("{key:?}") };
    if prefix.is_empty() {
        key
    } else {
        format!("{prefix}.{key}")
    }
}
