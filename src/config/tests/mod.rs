//! Config loader tests: each writes its files under a unique directory in
//! the system temp dir and checks `file:line: key` of every error.

mod dicom;
mod errors;
mod files;
mod items;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{load, Config, ConfigErrors};

/// A minimal main file: lines 1-6 (`[proxy]` at 1, `bind_port` at 6).
pub(super) const BASE: &str = "[proxy]
id = \"t\"

[network.default.http]
bind_address = \"127.0.0.1\"
bind_port = 8080
";

/// A fresh, empty directory for one test, removed when dropped.
pub(super) struct TmpDir(PathBuf);

impl std::ops::Deref for TmpDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(super) fn tmp(name: &str) -> TmpDir {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join("harmony-config-tests").join(format!("{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    TmpDir(dir)
}

/// Writes `text` to `dir/rel` (creating parents) and returns the path.
pub(super) fn write(dir: &Path, rel: &str, text: &str) -> PathBuf {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    p
}

pub(super) fn ok(main: &Path) -> Config {
    match load(main) {
        Ok(c) => c,
        Err(e) => panic!("expected the config to load, got:\n{e}"),
    }
}

pub(super) fn errs(main: &Path) -> ConfigErrors {
    match load(main) {
        Ok(_) => panic!("expected errors, config loaded"),
        Err(e) => e,
    }
}

/// Loads `BASE + extra` as a single main file and returns the errors.
pub(super) fn errs_main(name: &str, extra: &str) -> ConfigErrors {
    let dir = tmp(name);
    errs(&write(&dir, "harmony.toml", &format!("{BASE}{extra}")))
}

/// Asserts an error in a file ending with `file`, at `line`, with `key`,
/// whose message contains `msg`.
#[track_caller]
pub(super) fn has(e: &ConfigErrors, file: &str, line: usize, key: &str, msg: &str) {
    let found = e
        .iter()
        .any(|x| x.file.to_string_lossy().ends_with(file) && x.line == line && x.key == key && x.message.contains(msg));
    assert!(found, "no error {file}:{line}: {key}: ...{msg}... in:\n{e}");
}
