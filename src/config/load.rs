//! Reading the main file and the pipeline directory, and parsing them with
//! spans. Building the typed model is in `build.rs`.

use std::path::{Path, PathBuf};

use toml::de::DeTable;
use toml::Spanned;

use super::build::{build, Doc};
use super::error::ConfigErrors;
use super::model::Config;
use super::source::{absolute, Ctx, Source};

/// Loads and validates the main config file at `path` plus every `*.toml`
/// file in its `proxy.pipelines_path` directory. Returns every problem found,
/// each with file, line and key.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let mut cx = Ctx::default();
    let main_path = absolute(path);
    let main_text = match std::fs::read_to_string(&main_path) {
        Ok(t) => t,
        Err(e) => {
            cx.file_err(&main_path, "", format!("cannot read config file: {e}"));
            return Err(ConfigErrors::new(cx.errors));
        }
    };
    let main_src = Source::new(main_path.clone(), &main_text);
    let (main_doc, mut syntax_ok) = parse(&mut cx, &main_src, &main_text);

    // The pipeline files, read up front so the parsed trees can borrow them.
    let paths = pipeline_files(&mut cx, &main_src, main_doc.get_ref());
    let mut texts = Vec::with_capacity(paths.len());
    for p in paths {
        match std::fs::read_to_string(&p) {
            Ok(t) => texts.push((p, t)),
            Err(e) => {
                syntax_ok = false;
                cx.file_err(&p, "", format!("cannot read pipeline file: {e}"));
            }
        }
    }
    let srcs: Vec<Source> = texts.iter().map(|(p, t)| Source::new(p.clone(), t)).collect();
    let mut trees = Vec::with_capacity(texts.len());
    for ((_, text), src) in texts.iter().zip(&srcs) {
        let (tree, ok) = parse(&mut cx, src, text);
        syntax_ok &= ok;
        trees.push(tree);
    }

    let main = Doc { src: &main_src, t: main_doc.get_ref() };
    let pipes: Vec<Doc> = srcs.iter().zip(&trees).map(|(src, t)| Doc { src, t: t.get_ref() }).collect();
    let config = build(&mut cx, main, &pipes, syntax_ok);
    match config {
        Some(c) if cx.errors.is_empty() => Ok(c),
        _ => Err(ConfigErrors::new(cx.errors)),
    }
}

/// Parses with best-effort recovery; syntax errors are reported with their
/// line under the key "syntax". Returns the tree and whether it was clean.
fn parse<'i>(cx: &mut Ctx, src: &Source, text: &'i str) -> (Spanned<DeTable<'i>>, bool) {
    let (tree, errors) = DeTable::parse_recoverable(text);
    let ok = errors.is_empty();
    for e in errors {
        let span = e.span().unwrap_or(0..0);
        let mut msg = e.message().to_string();
        if msg == "duplicate key" {
            if let Some(k) = text.get(span.clone()).filter(|k| !k.is_empty()) {
                msg = format!("duplicate key {k}: already defined earlier in this file");
            }
        }
        cx.err(src, span.start, "syntax", msg);
    }
    (tree, ok)
}

/// The `*.toml` files of the pipelines directory, sorted by name. A missing
/// directory is an error only when `proxy.pipelines_path` was given.
fn pipeline_files(cx: &mut Ctx, main: &Source, doc: &DeTable<'_>) -> Vec<PathBuf> {
    let explicit = doc
        .get("proxy")
        .and_then(|p| p.get_ref().as_table())
        .and_then(|p| p.get_key_value("pipelines_path"))
        .and_then(|(k, v)| v.get_ref().as_str().map(|s| (s, k.span().start)));
    let dir = main.resolve(explicit.map_or(DEFAULT_PIPELINES_PATH, |(s, _)| s));
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) => {
            if let Some((_, at)) = explicit {
                let msg = if e.kind() == std::io::ErrorKind::NotFound {
                    format!("pipelines directory {} does not exist", dir.display())
                } else {
                    format!("cannot read pipelines directory {}: {e}", dir.display())
                };
                cx.err(main, at, "proxy.pipelines_path", msg);
            }
            return Vec::new();
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
        .map(|p| absolute(&p))
        .filter(|p| *p != main.path)
        .collect();
    files.sort();
    files
}

pub(crate) const DEFAULT_PIPELINES_PATH: &str = "pipelines";
pub(crate) const DEFAULT_SCRIPTS_PATH: &str = "../scripts";
